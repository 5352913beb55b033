"""``POST /graphql``: stock MLflow 3.17's GraphQL API, answered as stock answers it.

Parsed, validated and executed by graphql-core, the reference implementation stock itself
runs (under graphene), against stock's schema (:mod:`~gateway.routes._graphql_schema`).
Resolvers call the metadata store, and the REST routes' shared functions, directly.

One reading of each request: the route's parse step (:func:`read_graphql`) parses the
document, applies stock's limits, validates it, coerces its variables, selects the
operation and collects its root fields (through fragments, inline fragments, aliases and
``@skip``/``@include``, as the executor does). What each root field's ``input`` names goes
into the message as ``experiment_ids`` and ``run_ids``, which the enforcement point
authorizes (READ, answered as the REST routes answer) before anything executes; a field
over its limit (more than 100 runs' histories, datasets of no experiment or of more than
20) is refused by the parse step instead, and names and reads nothing. The handler then
runs that very execution context, and each root resolver reads its input from the parse
step's record, not from a second coercion. The searches name nothing and are filtered as
their REST routes are: ``mlflowSearchRuns`` like ``runs/search``,
``mlflowSearchModelVersions`` and a run's model versions like ``model-versions/search``. A
run's experiment is the one its check judged.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
    validate,
)
from graphql.execution import ExecutionContext
from graphql.execution.collect_fields import collect_fields
from graphql.execution.values import get_argument_values

from auth.access import Access, Action, Ref, ResourceKind
from backends import errors as be
from backends.metadata.interface.entities import Experiment, Run, ViewType
from backends.metadata.interface.registry_entities import ModelVersion
from gateway.errors import ERROR_RENDERER, MlflowError, from_backend, invalid_parameter
from gateway.parsing import message_of, read_json_body
from gateway.routes._common import max_results, store
from gateway.routes._graphql_schema import SCHEMA
from gateway.routes.artifacts import run_artifacts
from gateway.routes.metrics import MAX_INTERVAL_RESULTS, check_interval_runs
from gateway.routes.registry import readable_model_versions
from gateway.routes.ui_api import check_dataset_experiments
from gateway.routing import Route
from gateway.security import visibility_of

__all__ = ["ROUTES", "read_graphql"]

log = logging.getLogger("mlgate.graphql")

# Stock's limits (mlflow/server/graphql/graphql_no_batching.py), checked before validation.
MAX_DEPTH = 10
MAX_SELECTIONS = 1000
MAX_ROOT_FIELDS = 10  # MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS's default
MAX_ALIASES = 10  # MLFLOW_SERVER_GRAPHQL_MAX_ALIASES's default
# Stock has none; the UI's largest document is about 250 tokens, and a bound keeps a huge
# document from costing a parse before the limits above can refuse it.
MAX_TOKENS = 20_000
# The lexer is pure Python on the event loop, and comments, blanks and one long string are
# no tokens: a 60 MB comment held every request for 10 s. The UI's documents are < 10 KB.
MAX_DOCUMENT = 100 * 1024
# The whole request, variables included: graphql-core coerces the variables before any
# limit of ours can look at them, and 12 million run ids (60 MB) held the loop for 19 s.
# The UI's requests are under 10 KB.
MAX_REQUEST = 256 * 1024

_PLAN = "graphql"  # the message's key for the prepared execution


class RootCall(NamedTuple):
    """A root field the operation executes: its name, its coerced ``input``, and the
    message it is refused with if the input is over a limit."""

    field: str
    input: dict[str, Any]
    refusal: str | None = None


@dataclass
class _Context:
    """What resolvers read: the request, the parse step's root calls by response key, and
    what this request has already looked up."""

    request: web.Request
    calls: dict[str, RootCall] = field(default_factory=dict)
    experiments: dict[str, Experiment] = field(default_factory=dict)
    fatal: BaseException | None = None  # an outage or a bug: answered 503/500, not data


@dataclass(frozen=True)
class _Plan:
    execution: ExecutionContext | None
    answer: list[str] | None = None  # errors answered without executing anything


# -- the parse step ------------------------------------------------------------------------


async def read_graphql(request: web.Request) -> dict[str, Any]:
    """The request as the enforcement point and the handler read it: ``experiment_ids`` and
    ``run_ids`` the operation names, and the prepared execution. A body that is no GraphQL
    request, or a document that does not parse, is a 400 (stock: a 500 HTML page)."""
    try:
        body = await read_json_body(request, MAX_REQUEST)
    except web.HTTPRequestEntityTooLarge:
        raise invalid_parameter(
            f"A GraphQL request may be at most {MAX_REQUEST} bytes long.") from None
    query = body.get("query")
    variables = body.get("variables")
    operation_name = body.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise invalid_parameter("A GraphQL request needs its document as a 'query' string.")
    if len(query) > MAX_DOCUMENT:
        raise invalid_parameter(
            f"The GraphQL document is longer than {MAX_DOCUMENT} characters.")
    if variables is not None and not isinstance(variables, dict):
        raise invalid_parameter("GraphQL 'variables' must be a JSON object.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise invalid_parameter("GraphQL 'operationName' must be a string.")
    try:
        document = parse(query, no_location=False, max_tokens=MAX_TOKENS)
    except GraphQLError as exc:
        raise invalid_parameter(f"The GraphQL document does not parse: {exc.message}") from None
    # From here on, refusals are answered in GraphQL's shape, with the REST routes' status.
    request[ERROR_RENDERER] = _error_response
    msg: dict[str, Any] = {"experiment_ids": [], "run_ids": []}
    refusal = _over_limits(document)
    if refusal is not None:
        msg[_PLAN] = _Plan(None, [refusal])
        return msg
    errors = validate(SCHEMA, document)
    if errors:
        msg[_PLAN] = _Plan(None, [e.message for e in errors])
        return msg
    context = _Context(request)
    built = ExecutionContext.build(SCHEMA, document, context_value=context,
                                   raw_variable_values=variables,
                                   operation_name=operation_name)
    if isinstance(built, list):
        msg[_PLAN] = _Plan(None, [e.message for e in built])
        return msg
    operation = built.operation
    root = SCHEMA.mutation_type if operation.operation is OperationType.MUTATION else (
        SCHEMA.query_type if operation.operation is OperationType.QUERY else None)
    if root is None:
        msg[_PLAN] = _Plan(None, ["Schema is not configured to execute subscription operation."])
        return msg
    try:
        context.calls = _root_calls(built, operation, root)
    except GraphQLError as exc:
        msg[_PLAN] = _Plan(None, [exc.message])
        return msg
    for call in context.calls.values():
        names = _named_ids(call)
        msg["experiment_ids"] += names[0]
        msg["run_ids"] += names[1]
    msg[_PLAN] = _Plan(built)
    return msg


def _root_calls(built: ExecutionContext, operation: OperationDefinitionNode,
                root: GraphQLObjectType) -> dict[str, RootCall]:
    """Every root field the executor will resolve, by response key, with its input coerced
    from the same variable values the executor uses."""
    fields = collect_fields(SCHEMA, built.fragments, built.variable_values, root,
                            operation.selection_set)
    calls = {}
    for key, nodes in fields.items():
        name = nodes[0].name.value
        if name.startswith("__"):
            continue  # introspection: names nothing
        args = get_argument_values(root.fields[name], nodes[0], built.variable_values)
        inp = args.get("input") or {}
        refusal = None
        if name in _LIMITS:
            try:
                _LIMITS[name](inp)
            except MlflowError as exc:
                refusal = exc.message
        calls[key] = RootCall(name, inp, refusal)
    return calls


def _strings(values: Any) -> list[str]:
    if isinstance(values, str):
        return [values]
    if isinstance(values, list):
        return [v for v in values if isinstance(v, str)]
    return []


# Checked in the parse step, before the enforcement point would look up every id: a call
# over its limit is answered with the refusal (its field null, as stock's errors are).
_LIMITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "mlflowGetMetricHistoryBulkInterval":
        lambda inp: check_interval_runs(_strings(inp.get("runIds"))),
    "mlflowSearchDatasets":
        lambda inp: check_dataset_experiments(_strings(inp.get("experimentIds"))),
}


def _named_ids(call: RootCall) -> tuple[list[str], list[str]]:
    """(experiment ids, run ids) a root call reads. A refused call reads nothing. A search
    names none: it is filtered by what the caller may read, as its REST route is. A run
    named twice (``runId`` and ``runUuid``) is read by either, so both are named."""
    inp = call.input
    if call.refusal is not None:
        return [], []
    if call.field == "mlflowGetExperiment":
        return _strings(inp.get("experimentId")), []
    if call.field in ("mlflowGetRun", "mlflowListArtifacts"):
        return [], _strings(inp.get("runId")) + _strings(inp.get("runUuid"))
    if call.field == "mlflowGetMetricHistoryBulkInterval":
        return [], _strings(inp.get("runIds"))
    if call.field == "mlflowSearchDatasets":
        return _strings(inp.get("experimentIds")), []
    return [], []


def _over_limits(document: Any) -> str | None:
    """Stock's ``check_query_safety``: the message for a document over its limits."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    root_fields = max_aliases = selections = 0
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        stack: list[tuple[SelectionSetNode, int, frozenset[str]]] = [
            (definition.selection_set, 1, frozenset())]
        while stack:
            selection_set, depth, visited = stack.pop()
            if depth > MAX_DEPTH:
                return f"Query exceeds maximum depth of {MAX_DEPTH}"
            found, aliases = _level(selection_set, fragments, visited)
            for node in found:
                if depth == 1:
                    root_fields += 1
                if node.selection_set:
                    stack.append((node.selection_set, depth + 1, visited))
                selections += 1
                if selections > MAX_SELECTIONS:
                    return f"Query exceeds maximum total selections of {MAX_SELECTIONS}"
            max_aliases = max(max_aliases, aliases)
    for count, limit, what, var in (
            (root_fields, MAX_ROOT_FIELDS, "root fields", "MAX_ROOT_FIELDS"),
            (max_aliases, MAX_ALIASES, "aliases", "MAX_ALIASES")):
        if count > limit:
            return (f"GraphQL queries should have at most {limit} {what}, got {count} "
                    f"{what}. To increase the limit, set the MLFLOW_SERVER_GRAPHQL_{var} "
                    "environment variable.")
    return None


def _level(selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode],
           visited: frozenset[str]) -> tuple[list[FieldNode], int]:
    """The fields of one level, fragments spread in (each once), and their aliases."""
    out: list[FieldNode] = []
    aliases = 0
    queue = deque(selection_set.selections)
    seen = set(visited)
    while queue:
        node = queue.popleft()
        if isinstance(node, FieldNode):
            out.append(node)
            aliases += node.alias is not None
        elif isinstance(node, InlineFragmentNode):
            queue.extend(node.selection_set.selections)
        elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
            seen.add(node.name.value)
            spread = fragments.get(node.name.value)
            if spread is not None:
                queue.extend(spread.selection_set.selections)
    return out, aliases


# -- the handler ---------------------------------------------------------------------------


def _response(data: Any, errors: list[str] | None, status: int = 200) -> web.Response:
    # Stock answers with Flask's jsonify: keys sorted, a trailing newline.
    body = orjson.dumps({"data": data, "errors": errors or None},
                        option=orjson.OPT_SORT_KEYS) + b"\n"
    return web.Response(body=body, status=status, content_type="application/json")


def _error_response(error: MlflowError) -> web.Response:
    return _response(None, [error.message], error.status)


async def graphql(request: web.Request) -> web.Response:
    plan: _Plan = message_of(request)[_PLAN]
    if plan.execution is None:
        return _response(None, plan.answer)
    execution = plan.execution
    try:
        data = execution.execute_operation(execution.operation, None)
        if isawaitable(data):
            data = await data
    except GraphQLError as exc:
        execution.collected_errors.add(exc, None)
        data = None
    context: _Context = execution.context_value
    if context.fatal is not None:
        raise context.fatal  # rendered by the error middleware: 503, or a logged 500
    result = execution.build_response(data, execution.collected_errors.errors)
    return _response(result.data, [e.message for e in result.errors or ()])


# -- resolvers -----------------------------------------------------------------------------

_Resolver = Callable[..., Awaitable[Any]]


def _guarded(resolve: _Resolver) -> _Resolver:
    """Errors as stock words them (the message only); an outage or a bug ends the request."""

    async def run(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        context: _Context = info.context
        try:
            return await resolve(source, info, **args)
        except MlflowError as exc:
            raise GraphQLError(exc.message) from None
        except be.Unavailable as exc:
            context.fatal = exc
            raise GraphQLError("The store is unavailable.") from None
        except be.BackendError as exc:
            raise GraphQLError(from_backend(exc).message) from None
        except Exception as exc:  # noqa: BLE001 - graphql-core would echo str(exc)
            context.fatal = exc
            raise GraphQLError("An internal error occurred; see the server log.") from None

    return run


def _input(info: GraphQLResolveInfo) -> dict[str, Any]:
    """A root field's input as the parse step coerced it; raises the refusal it recorded."""
    context: _Context = info.context
    call = context.calls[str(info.path.key)]
    if call.refusal is not None:
        raise invalid_parameter(call.refusal)
    return call.input


async def _experiment_of(context: _Context, experiment_id: str) -> Experiment:
    found = context.experiments.get(experiment_id)
    if found is None:
        found = await store(context.request).get_experiment(experiment_id)
        context.experiments[experiment_id] = found
    return found


async def resolve_get_experiment(_root: Any, info: GraphQLResolveInfo, **_: Any) -> Any:
    experiment_id = _input(info).get("experimentId") or ""
    exp = await _experiment_of(info.context, experiment_id)
    return {"experiment": _experiment(exp), "apiError": None}


async def resolve_get_run(_root: Any, info: GraphQLResolveInfo, **_: Any) -> Any:
    inp = _input(info)
    run = await store(info.context.request).get_run(inp.get("runId") or inp.get("runUuid")
                                                    or "")
    return {"run": _run(run), "apiError": None}


async def resolve_search_runs(_root: Any, info: GraphQLResolveInfo, **_: Any) -> Any:
    inp = _input(info)
    request = info.context.request
    experiment_ids = _strings(inp.get("experimentIds"))
    if not experiment_ids:
        return {"runs": [], "nextPageToken": "", "apiError": None}
    page = await store(request).search_runs(
        experiment_ids,
        filter_string=inp.get("filter") or "",
        view_type=ViewType[inp.get("runViewType") or "ACTIVE_ONLY"],
        max_results=max_results(inp.get("maxResults"), default=1000),
        order_by=_strings(inp.get("orderBy")),
        page_token=inp.get("pageToken") or None,
        visibility=visibility_of(request),
    )
    return {"runs": [_run(r) for r in page.items], "nextPageToken": page.next_page_token or "",
            "apiError": None}


async def resolve_run_experiment(run: dict[str, Any], info: GraphQLResolveInfo) -> Any:
    # The experiment judged when the run was: readable whenever the run is.
    return _experiment(await _experiment_of(info.context, run["info"]["experimentId"]))


async def resolve_run_model_versions(run: dict[str, Any], info: GraphQLResolveInfo) -> Any:
    page = await readable_model_versions(
        info.context.request, filter_string=f"run_id='{run['info']['runId']}'",
        max_results=None, order_by=[], page_token=None)
    return [_model_version(v) for v in page.items]


async def resolve_metric_history_bulk_interval(_root: Any, info: GraphQLResolveInfo,
                                               **_: Any) -> Any:
    inp = _input(info)
    run_ids, key = _strings(inp.get("runIds")), inp.get("metricKey") or ""
    if not run_ids or not key:
        return {"metrics": [], "apiError": None}  # stock: no points, and no error
    # Stock takes the sample's size and step range from /graphql's query string (Flask's
    # request.args), never from the input: without one, 2,500 points over every step.
    points = await store(info.context.request).sample_metric_history(
        run_ids, key, max_results=MAX_INTERVAL_RESULTS)
    # No NaN guard, as stock's MlflowMetricWithRunId has none: graphql-core's Float makes
    # a NaN null and adds stock's error.
    return {"metrics": [{"key": m.key, "value": _stored(m.value), "timestamp": m.timestamp,
                         "step": m.step, "runId": m.run_id or ""} for m in points],
            "apiError": None}


async def resolve_list_artifacts(_root: Any, info: GraphQLResolveInfo, **_: Any) -> Any:
    inp = _input(info)
    listing = await run_artifacts(info.context.request,
                                  inp.get("runId") or inp.get("runUuid") or "", inp.get("path"))
    return {"rootUri": listing.root_uri, "nextPageToken": "", "apiError": None,
            "files": [{"path": f.path, "isDir": f.is_dir, "fileSize": f.file_size or 0}
                      for f in listing.files]}


async def resolve_search_model_versions(_root: Any, info: GraphQLResolveInfo,
                                        **_: Any) -> Any:
    inp = _input(info)
    page = await readable_model_versions(
        info.context.request, filter_string=inp.get("filter") or "",
        max_results=inp.get("maxResults"), order_by=_strings(inp.get("orderBy")),
        page_token=inp.get("pageToken"))
    return {"modelVersions": [_model_version(v) for v in page.items],
            "nextPageToken": page.next_page_token or "", "apiError": None}


async def resolve_search_datasets(_root: Any, info: GraphQLResolveInfo, **_: Any) -> Any:
    inp = _input(info)
    summaries = await store(info.context.request).search_datasets(
        _strings(inp.get("experimentIds")))
    return {"datasetSummaries": [{"experimentId": d.experiment_id, "name": d.name,
                                  "digest": d.digest, "context": d.context or ""}
                                 for d in summaries],
            "apiError": None}


def _stored(value: float) -> float:
    """±inf as stock's store keeps it: the largest float."""
    return math.copysign(sys.float_info.max, value) if math.isinf(value) else value


async def resolve_metric_value(metric: dict[str, Any], _info: GraphQLResolveInfo) -> Any:
    value = metric["value"]
    if math.isnan(value):
        return None  # stock's MlflowMetricExtension: NaN is null, without an error
    return _stored(value)


def _install_resolvers() -> None:
    query, mutation = SCHEMA.query_type, SCHEMA.mutation_type
    assert query is not None and mutation is not None
    query.fields["mlflowGetExperiment"].resolve = _guarded(resolve_get_experiment)
    query.fields["mlflowGetMetricHistoryBulkInterval"].resolve = _guarded(
        resolve_metric_history_bulk_interval)
    query.fields["mlflowGetRun"].resolve = _guarded(resolve_get_run)
    query.fields["mlflowListArtifacts"].resolve = _guarded(resolve_list_artifacts)
    query.fields["mlflowSearchModelVersions"].resolve = _guarded(resolve_search_model_versions)
    query.fields["mlflowSearchRuns"].resolve = _guarded(resolve_search_runs)
    mutation.fields["mlflowSearchDatasets"].resolve = _guarded(resolve_search_datasets)
    mutation.fields["mlflowSearchRuns"].resolve = _guarded(resolve_search_runs)
    run_type = SCHEMA.type_map["MlflowRunExtension"]
    metric_type = SCHEMA.type_map["MlflowMetricExtension"]
    assert isinstance(run_type, GraphQLObjectType) and isinstance(metric_type,
                                                                  GraphQLObjectType)
    run_type.fields["experiment"].resolve = _guarded(resolve_run_experiment)
    run_type.fields["modelVersions"].resolve = _guarded(resolve_run_model_versions)
    metric_type.fields["value"].resolve = resolve_metric_value


_install_resolvers()


# -- entities as stock's protos read through graphene: unset strings "", int64s 0 ----------


def _kv(items: Any) -> list[dict[str, str]]:
    return [{"key": t.key, "value": t.value or ""} for t in items]


def _experiment(e: Experiment) -> dict[str, Any]:
    return {
        "experimentId": e.experiment_id,
        "name": e.name,
        "artifactLocation": e.artifact_location or "",
        "lifecycleStage": e.lifecycle_stage,
        "lastUpdateTime": e.last_update_time or 0,
        "creationTime": e.creation_time or 0,
        "tags": _kv(e.tags),
        "effectiveTraceArchivalRetention": "",
        "workspace": e.workspace,
    }


def _run(r: Run) -> dict[str, Any]:
    i = r.info
    return {
        "info": {
            "runId": i.run_id, "runUuid": i.run_id, "runName": i.run_name or "",
            "experimentId": i.experiment_id, "userId": i.user_id or "", "status": i.status,
            "startTime": i.start_time or 0, "endTime": i.end_time or 0,
            "artifactUri": i.artifact_uri or "", "lifecycleStage": i.lifecycle_stage,
        },
        "data": {
            "metrics": [{
                "key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step,
                "datasetName": m.dataset_name or "", "datasetDigest": m.dataset_digest or "",
                "modelId": m.model_id or "", "runId": "",
            } for m in r.metrics],
            "params": [{"key": p.key, "value": p.value} for p in r.params],
            "tags": _kv(r.tags),
        },
        "inputs": {
            "datasetInputs": [{
                "tags": _kv(d.tags),
                "dataset": {
                    "name": d.dataset.name, "digest": d.dataset.digest,
                    "sourceType": d.dataset.source_type, "source": d.dataset.source,
                    "schema": d.dataset.schema or "", "profile": d.dataset.profile or "",
                },
            } for d in r.dataset_inputs],
            "modelInputs": [{"modelId": m.model_id} for m in r.model_inputs],
        },
        "outputs": {
            "modelOutputs": [{"modelId": m.model_id, "step": m.step} for m in r.model_outputs],
        },
    }


def _model_version(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name, "version": str(v.version), "creationTimestamp": v.creation_timestamp,
        "lastUpdatedTimestamp": v.last_updated_timestamp or 0, "userId": v.user_id or "",
        "currentStage": v.current_stage, "description": v.description or "",
        "source": v.source or "", "runId": v.run_id or "", "status": v.status,
        "statusMessage": v.status_message or "", "tags": _kv(v.tags),
        "runLink": v.run_link or "", "aliases": list(v.aliases), "modelId": v.model_id or "",
    }


# Every id the document names is the request's own resource, checked for READ as the REST
# routes check theirs (404 where the caller may not learn of it, 403 otherwise).
_ACCESS = Access(ResourceKind.WORKSPACE, Action.READ, refs=(
    Ref(ResourceKind.EXPERIMENT, "experiment_ids", primary=True),
    Ref(ResourceKind.RUN, "run_ids", primary=True),
))

ROUTES = [
    Route(method, "/graphql", graphql, _ACCESS, prefixes=("",), reader=read_graphql)
    for method in ("POST", "GET")
]
