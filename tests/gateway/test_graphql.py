"""``POST /graphql`` through a real socket on SQLite and PostgreSQL: the web UI's documents
(as captured from the MLflow 3.17 bundle), and documents for stock's other root fields,
answered field by field as a live stock ``mlflow server`` answers them for the same data;
stock's limits and error wording; malformed requests; and, with auth, that every id a
document names is authorized the way the REST routes authorize it, wherever in the
document the id is written, and that searches find what their REST routes find."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from access_world import (
    ADMIN,
    API2,
    API3,
    Api,
    Reply,
    World,
    build_world,
    seed_admin,
    settings_for,
    store_uris,
)
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

# The documents the bundle sends, byte for byte (captured from stock's traffic).
GET_EXPERIMENT = 'query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!) @component(name: "MLflow.ExperimentRunTracking") {\n  mlflowGetExperiment(input: $input) {\n    apiError {\n      code\n      message\n      __typename\n    }\n    experiment {\n      artifactLocation\n      creationTime\n      effectiveTraceArchivalRetention\n      experimentId\n      lastUpdateTime\n      lifecycleStage\n      name\n      tags {\n        key\n        value\n        __typename\n      }\n      __typename\n    }\n    __typename\n  }\n}\n'
GET_RUN = 'query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {\n  mlflowGetRun(input: $data) {\n    apiError {\n      helpUrl\n      code\n      message\n      __typename\n    }\n    run {\n      info {\n        runName\n        status\n        runUuid\n        experimentId\n        artifactUri\n        endTime\n        lifecycleStage\n        startTime\n        userId\n        __typename\n      }\n      experiment {\n        experimentId\n        name\n        tags {\n          key\n          value\n          __typename\n        }\n        artifactLocation\n        lifecycleStage\n        lastUpdateTime\n        __typename\n      }\n      modelVersions {\n        status\n        version\n        name\n        source\n        __typename\n      }\n      data {\n        metrics {\n          key\n          value\n          step\n          timestamp\n          __typename\n        }\n        params {\n          key\n          value\n          __typename\n        }\n        tags {\n          key\n          value\n          __typename\n        }\n        __typename\n      }\n      inputs {\n        datasetInputs {\n          dataset {\n            digest\n            name\n            profile\n            schema\n            source\n            sourceType\n            __typename\n          }\n          tags {\n            key\n            value\n            __typename\n          }\n          __typename\n        }\n        modelInputs {\n          modelId\n          __typename\n        }\n        __typename\n      }\n      outputs {\n        modelOutputs {\n          modelId\n          step\n          __typename\n        }\n        __typename\n      }\n      __typename\n    }\n    __typename\n  }\n}\n'
_RUN_FIELDS = """
      info { runName status runUuid experimentId artifactUri endTime lifecycleStage startTime
             userId __typename }
      experiment { experimentId name tags { key value __typename } artifactLocation
                   lifecycleStage lastUpdateTime __typename }
      data { metrics { key value step timestamp __typename } params { key value __typename }
             tags { key value __typename } __typename }
      inputs { datasetInputs { dataset { digest name profile schema source sourceType
                                         __typename }
                               tags { key value __typename } __typename }
               modelInputs { modelId __typename } __typename }
      outputs { modelOutputs { modelId step __typename } __typename }"""
SEARCH_RUNS = ("query SearchRuns($data: MlflowSearchRunsInput!) { mlflowSearchRuns(input: $data)"
               " { apiError { helpUrl code message __typename } runs {" + _RUN_FIELDS
               + " modelVersions { version name creationTimestamp status source __typename }"
               " __typename } __typename } }")
# In the bundle, behind a feature flag that is off: 3.17's charts ask REST instead.
BULK_INTERVAL = 'query GetMetricHistoryBulkInterval($data: MlflowGetMetricHistoryBulkIntervalInput!)\n  @component(name: "MLflow.ExperimentRunTracking") {\n    mlflowGetMetricHistoryBulkInterval(input: $data) {\n      __typename\n      metrics {\n        timestamp\n        step\n        runId\n        key\n        value\n      }\n      apiError {\n        code\n        message\n      }\n    }\n  }\n'
# Not in the bundle: the fields as MLflow's own GraphQL tests ask for them, with the UI's
# __typename and apiError.
LIST_ARTIFACTS = ("query ListArtifacts($data: MlflowListArtifactsInput) {"
                  " mlflowListArtifacts(input: $data) { rootUri nextPageToken"
                  " files { path isDir fileSize __typename } apiError { code message }"
                  " __typename } }")
SEARCH_MODEL_VERSIONS = (
    "query SearchModelVersions($data: MlflowSearchModelVersionsInput) {"
    " mlflowSearchModelVersions(input: $data) { nextPageToken modelVersions { name version"
    " creationTimestamp lastUpdatedTimestamp userId currentStage description source runId"
    " status statusMessage tags { key value } runLink aliases modelId __typename }"
    " apiError { code message } __typename } }")
SEARCH_DATASETS = ("mutation SearchDatasets($data: MlflowSearchDatasetsInput) {"
                   " mlflowSearchDatasets(input: $data) { datasetSummaries { experimentId name"
                   " digest context __typename } apiError { code message } __typename } }")


def op(query: str, variables: dict[str, Any] | None = None,
       name: str | None = None) -> dict[str, Any]:
    return {"operationName": name, "variables": variables or {}, "query": query}


def fill(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace(name, value)
    return template


def get_run(run_id: str) -> dict[str, Any]:
    return op(GET_RUN, {"data": {"runId": run_id}}, "GetRun")


def get_experiment(experiment_id: str) -> dict[str, Any]:
    return op(GET_EXPERIMENT, {"input": {"experimentId": experiment_id}},
              "MlflowGetExperimentQuery")


def search_runs(*experiment_ids: str) -> dict[str, Any]:
    return op(SEARCH_RUNS, {"data": {"experimentIds": list(experiment_ids)}}, "SearchRuns")


def bulk_interval(*run_ids: str, **data: Any) -> dict[str, Any]:
    return op(BULK_INTERVAL, {"data": {"runIds": list(run_ids), **data}},
              "GetMetricHistoryBulkInterval")


def list_artifacts(**data: Any) -> dict[str, Any]:
    return op(LIST_ARTIFACTS, {"data": data}, "ListArtifacts")


def search_model_versions(**data: Any) -> dict[str, Any]:
    return op(SEARCH_MODEL_VERSIONS, {"data": data}, "SearchModelVersions")


def search_datasets(*experiment_ids: str) -> dict[str, Any]:
    return op(SEARCH_DATASETS, {"data": {"experimentIds": list(experiment_ids)}},
              "SearchDatasets")


# -- one data set on both servers -----------------------------------------------------------


async def _post(session: aiohttp.ClientSession, base: str, path: str, body: Any) -> Any:
    async with session.post(base + API2 + path, json=body) as resp:
        assert resp.status == 200, (path, await resp.text())
        return await resp.json()


async def seed(session: aiohttp.ClientSession, base: str, label: str) -> dict[str, str]:
    """An experiment with a tag; a finished run with stepped metrics (one NaN, one +inf, one
    3,000 points long: more than a chart's sample), params, tags, two dataset inputs (one
    with a context), files in its artifacts; two registered model versions from the run."""
    exp = (await _post(session, base, "/experiments/create", {
        "name": f"gql-{label}", "tags": [{"key": "team", "value": "a"}]}))["experiment_id"]
    run = (await _post(session, base, "/runs/create", {
        "experiment_id": exp, "run_name": "run-0", "start_time": 1_700_000_000_000,
        "user_id": "alice", "tags": [{"key": "mlflow.user", "value": "alice"}]}))["run"]["info"]
    run_id = run["run_id"]
    metrics = [{"key": "loss", "value": 1 / (s + 1), "timestamp": 1_700_000_000_100 + s,
                "step": s} for s in range(5)]
    metrics += [{"key": "nan", "value": "NaN", "timestamp": 1_700_000_000_200, "step": 0},
                {"key": "inf", "value": "Infinity", "timestamp": 1_700_000_000_200, "step": 0}]
    await _post(session, base, "/runs/log-batch", {
        "run_id": run_id, "metrics": metrics,
        "params": [{"key": "lr", "value": "0.1"}, {"key": "opt", "value": "adam"}],
        "tags": [{"key": "team", "value": "a"}]})
    for start in range(0, 3000, 1000):
        await _post(session, base, "/runs/log-batch", {"run_id": run_id, "metrics": [
            {"key": "long", "value": s % 97, "timestamp": 1_700_000_001_000 + s, "step": s}
            for s in range(start, start + 1000)]})
    await _post(session, base, "/runs/log-inputs", {"run_id": run_id, "datasets": [{
        "tags": [{"key": "mlflow.data.context", "value": "training"}],
        "dataset": {"name": "train-ds", "digest": "a5357541", "source_type": "code",
                    "source": '{"tags": {}}', "schema": '{"mlflow_colspec": []}',
                    "profile": '{"num_rows": 3}'}}]})
    await _post(session, base, "/runs/log-inputs", {"run_id": run_id, "datasets": [{
        "dataset": {"name": "eval-ds", "digest": "0c0ffee0", "source_type": "code",
                    "source": "{}"}}]})
    root = run["artifact_uri"].removeprefix("mlflow-artifacts:").lstrip("/")
    for path, data in (("a.txt", b"hello"), ("empty.txt", b""), ("dir/b.txt", b"xy"),
                       ("dir/sub/c.txt", b"z")):
        async with session.put(f"{base}/api/2.0/mlflow-artifacts/artifacts/{root}/{path}",
                               data=data) as resp:
            assert resp.status == 200, (path, await resp.text())
    model = f"clf-{label}"
    await _post(session, base, "/registered-models/create", {"name": model})
    for _ in range(2):
        await _post(session, base, "/model-versions/create", {
            "name": model, "source": run["artifact_uri"] + "/model", "run_id": run_id})
    await _post(session, base, "/runs/update", {"run_id": run_id, "status": "FINISHED",
                                                "end_time": 1_700_000_009_000})
    return {"exp": exp, "run": run_id, "label": label}


def normalized(body: Any, ids: dict[str, str]) -> Any:
    """``body`` with the server's own ids and names, and the times it chose, made equal;
    a run's latest metrics in key order (their order is the store's, as in ``runs/get``:
    PostgreSQL's differs from SQLite's)."""
    text = json.dumps(body, sort_keys=True)
    text = text.replace(ids["run"], "RUN").replace(ids["label"], "LABEL")
    text = text.replace(f'"experimentId": "{ids["exp"]}"', '"experimentId": "EXP"')
    text = text.replace(f":/{ids['exp']}", ":/EXP")
    out = json.loads(text)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: "TIME" if k in ("creationTime", "lastUpdateTime", "creationTimestamp",
                                      "lastUpdatedTimestamp")
                   else walk(v) for k, v in value.items()}
            if isinstance(out.get("metrics"), list):  # stable: a history keeps its order
                out["metrics"].sort(key=lambda m: str(m.get("key")))
            if isinstance(out.get("datasetSummaries"), list):  # stock leaves the order to SQL
                out["datasetSummaries"].sort(key=lambda d: json.dumps(d, sort_keys=True))
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(out)


def differences(stock: Any, ours: Any, path: str = "$") -> Iterator[str]:
    if isinstance(stock, dict) and isinstance(ours, dict):
        for key in stock.keys() | ours.keys():
            yield from differences(stock.get(key), ours.get(key), f"{path}.{key}")
    elif isinstance(stock, list) and isinstance(ours, list) and len(stock) == len(ours):
        for i, (a, b) in enumerate(zip(stock, ours, strict=True)):
            yield from differences(a, b, f"{path}[{i}]")
    elif stock != ours:
        yield f"{path}: stock {stock!r}, mlgate {ours!r}"


@pytest.fixture(params=["sqlite", "postgres"])
async def client(request: pytest.FixtureRequest, aiohttp_client: Any,
                 tmp_path: Path) -> TestClient:
    uri = (request.getfixturevalue("pg_database") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/gql.db")
    settings = Settings(backend_store_uri=uri, artifacts_destination=str(tmp_path / "art"))
    c: TestClient = await aiohttp_client(create_app(settings))
    return c


async def _graphql(session: Any, base: str, body: Any) -> tuple[int, Any]:
    async with session.post(base + "/graphql", json=body) as resp:
        return resp.status, json.loads(await resp.read())


def _bad_documents(ids: dict[str, str]) -> list[dict[str, Any]]:
    deep = "{ a " * 10 + "}" * 10
    many = " ".join(f"f{i}: __typename" for i in range(1001))
    return [
        op("{ nosuch }"),
        op("query A { __typename } query B { __typename }"),
        op("query A { __typename }", name="Nope"),
        op("query Q($i: MlflowGetRunInput!) { mlflowGetRun(input: $i) { apiError { code } } }"),
        get_run("0123456789abcdef0123456789abcdef"),
        get_experiment("987654"),
        get_experiment("abc"),
        op("{ mlflowGetExperiment(input: {experimentId: \"1\"}) " + deep + " }"),
        op("{ mlflowGetRun { run { info { " + many + " } } } }"),
        op("{ " + " ".join(f"a{i}: __typename" for i in range(11)) + " }"),
        op("{ mlflowGetRun { run { " + " ".join(f"a{i}: info {{ runId }}" for i in range(6))
           + " ...F } } } fragment F on MlflowRunExtension { "
           + " ".join(f"b{i}: data {{ params {{ key }} }}" for i in range(5)) + " }"),
        op(fill('{ a: mlflowGetRun(input: {runId: "RUN"}) { run { info { runId } } } '
                'b: mlflowGetRun(input: {runId: "nope"}) { run { info { runId } } } }',
                RUN=ids["run"])),
        op(fill('{ mlflowGetRun(input: {runId: "RUN"}) { run { data { metrics { key value } } } } }',
                RUN=ids["run"])),
    ]


def _field_documents(ids: dict[str, str]) -> list[dict[str, Any]]:
    """The bulk interval, artifact listing, model version and dataset searches: good input,
    input stock ignores, and input it refuses."""
    run, exp, name = ids["run"], ids["exp"], f"name='clf-{ids['label']}'"
    both_listings = fill(
        "fragment F on MlflowListArtifactsResponse { files { path isDir fileSize } }"
        ' query Q { top: mlflowListArtifacts(input: {runId: "RUN"}) { ...F }'
        ' sub: mlflowListArtifacts(input: {runUuid: "RUN", path: "dir"}) { ...F rootUri } }',
        RUN=run)
    versions_literal = ("{ a: mlflowSearchModelVersions(input: {filter: \"NAME\", maxResults: 1})"
                        " { nextPageToken modelVersions { version } }"
                        " b: mlflowSearchModelVersions(input: {filter: \"NAME\", maxResults: \"1\"})"
                        " { nextPageToken modelVersions { version } } }")
    return [
        bulk_interval(run, metricKey="long"),
        # What the UI would send: stock reads none of these three, and samples 2,500 points.
        bulk_interval(run, metricKey="long", startStep=5, endStep=20, maxResults=320),
        bulk_interval(run, metricKey="loss", startStep=3),
        bulk_interval(run, run, metricKey="loss"),
        bulk_interval(run, metricKey="nan"),  # null, with graphql-core's error, as stock
        bulk_interval(run, metricKey="inf"),
        bulk_interval(metricKey="loss"),
        bulk_interval(run),
        bulk_interval("0123456789abcdef0123456789abcdef", metricKey="loss"),
        list_artifacts(runId=run),
        list_artifacts(runUuid=run, pageToken="zz"),
        list_artifacts(runId=run, path="dir/"),
        list_artifacts(runId=run, path=""),
        list_artifacts(runId=run, path="a.txt"),
        list_artifacts(runId=run, path="nope"),
        list_artifacts(runId=run, path="../x"),
        list_artifacts(runId=run, path="/abs"),
        list_artifacts(runId=run, path="dir/../.."),
        list_artifacts(runId="nosuch"),
        list_artifacts(),
        op(both_listings, name="Q"),
        search_model_versions(filter=name),
        search_model_versions(filter=name, maxResults="1"),
        search_model_versions(filter=name, maxResults=1, orderBy=["version_number ASC"]),
        search_model_versions(filter=f"run_id='{run}'"),
        search_model_versions(filter="bogus ==="),
        search_model_versions(filter=name, maxResults="0"),
        search_model_versions(filter=name, maxResults="300000"),
        search_model_versions(filter=name, pageToken="bad"),
        op(fill(versions_literal, NAME=name)),
        search_datasets(exp),
        search_datasets(exp, exp, "987654"),
        search_datasets("987654"),
        search_datasets(),
        search_datasets(*map(str, range(21))),
        search_datasets("abc"),
    ]


async def test_ui_documents_and_errors_match_stock(client: TestClient,
                                                   stock_mlflow_url: str) -> None:
    label = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as stock:
        stock_ids = await seed(stock, stock_mlflow_url, label)
        ours = await seed(client.session, str(client.make_url("")).rstrip("/"), label)
        cases = [
            (get_experiment(stock_ids["exp"]), get_experiment(ours["exp"])),
            (get_run(stock_ids["run"]), get_run(ours["run"])),
            (search_runs(stock_ids["exp"]), search_runs(ours["exp"])),
            *zip(_field_documents(stock_ids), _field_documents(ours), strict=True),
            *zip(_bad_documents(stock_ids), _bad_documents(ours), strict=True),
        ]
        for theirs, mine in cases:
            status, expected = await _graphql(stock, stock_mlflow_url, theirs)
            got_status, got = await _graphql(client.session, str(client.make_url("")).rstrip("/"),
                                             mine)
            want = normalized(expected, stock_ids)
            assert got_status == status, (mine["query"][:120], got)
            assert normalized(got, ours) == want, (mine["query"][:120], list(
                differences(want, normalized(got, ours))))
    run = normalized(got, ours)  # the last case: NaN is null, +inf stock's largest float
    metrics = run["data"]["mlflowGetRun"]["run"]["data"]["metrics"]
    assert {m["key"]: m["value"] for m in metrics} == {
        "loss": 0.2, "nan": None, "inf": 1.7976931348623157e308, "long": 2999 % 97}
    # The whole history of 3,000 points, sampled to stock's 2,500 whatever the input asks.
    status, body = await _graphql(client.session, str(client.make_url("")).rstrip("/"),
                                  bulk_interval(ours["run"], metricKey="long", maxResults=10))
    points = body["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert (status, len(points), points[0]["step"], points[-1]["step"]) == (200, 2500, "0", "2999")


async def test_answers_are_flask_json(client: TestClient) -> None:
    resp = await client.post("/graphql", json=op("{ __typename }"))
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.read() == b'{"data":{"__typename":"Query"},"errors":null}\n'


@pytest.mark.parametrize("body, content_type", [
    (b'{"query": "query {"}', "application/json"),  # stock: 500 HTML
    (b'{"query": "{ __typename }"}', "text/plain"),
    (b"not json", "application/json"),
    (b"[]", "application/json"),
    (b"{}", "application/json"),  # stock: 500 HTML
    (b'{"query": 1}', "application/json"),
    (b'{"query": "{ __typename }", "variables": []}', "application/json"),
    (b'{"query": "{ __typename }", "operationName": 3}', "application/json"),
    (b'{"query": "' + b"{ a " * 20_000 + b'"}', "application/json"),
    # No tokens, but a lexer pass on the event loop: 60 MB of comment held it 10 s.
    (b'{"query": "#' + b"x" * 200_000 + b'\\n{ __typename }"}', "application/json"),
])
async def test_malformed_requests_are_mlflow_400s(client: TestClient, body: bytes,
                                                  content_type: str) -> None:
    resp = await client.post("/graphql", data=body, headers={"Content-Type": content_type})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error_code"] == "INVALID_PARAMETER_VALUE"


async def test_subscriptions_and_unknown_mutations_execute_nothing(client: TestClient) -> None:
    for query in ("subscription { __typename }",
                  "mutation { mlflowDeleteExperiment { apiError { code } } }",
                  "mutation { mlflowCreateExperiment { apiError { code } } }"):
        resp = await client.post("/graphql", json=op(query))
        body = await resp.json()
        assert resp.status == 200 and body["data"] is None and body["errors"], query


# -- with auth: the world of tests/access_world.py -----------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


@pytest.fixture
async def world(aiohttp_client: Any, store_uri: str, tmp_path: Path) -> AsyncIterator[World]:
    await seed_admin(store_uri)
    api = Api(await aiohttp_client(create_app(settings_for(store_uri, tmp_path))))
    try:
        yield await build_world(api)
    finally:
        await api.client.close()


async def ask(api: Api, who: str, body: Any, workspace: str = "team-a") -> Reply:
    return await api.call("POST", "/graphql", who, body, workspace=workspace)


def placements(exp: str, run: str) -> dict[str, dict[str, Any]]:
    """One document per place an id can be written; each reads ``run`` or ``exp``."""
    sel = "{ run { info { runName } data { params { value } tags { value } } } }"
    templates = {
        "inline literal": '{ mlflowGetRun(input: {runId: "RUN"}) SEL }',
        "alias": '{ mine: mlflowGetRun(input: {runId: "RUN"}) SEL }',
        "fragment": '{ ...F } fragment F on Query { mlflowGetRun(input: {runId: "RUN"}) SEL }',
        "inline fragment": '{ ... on Query { mlflowGetRun(input: {runId: "RUN"}) SEL } }',
        "skipped": '{ mlflowGetRun(input: {runId: "RUN"}) @skip(if: false) SEL }',
        "mutation's search": 'mutation { mlflowSearchRuns(input: {experimentIds: ["EXP"]}) '
                             '{ runs { info { runName } } } }',
        "experiment literal": '{ mlflowGetExperiment(input: {experimentId: "EXP"}) '
                              '{ experiment { name tags { value } } } }',
        "listing literal": '{ mlflowListArtifacts(input: {runId: "RUN"}) { files { path } } }',
        "listing's run_uuid, aliased": '{ mine: mlflowListArtifacts(input: {runUuid: "RUN"}) '
                                       '{ files { path } } }',
        "included listing": '{ mlflowListArtifacts(input: {runId: "RUN", path: ""}) '
                            '@include(if: true) { files { path } } }',
        "history in a fragment": '{ ...F } fragment F on Query { '
                                 'mlflowGetMetricHistoryBulkInterval(input: {runIds: ["RUN"], '
                                 'metricKey: "loss"}) { metrics { timestamp } } }',
        "datasets in an inline fragment": 'mutation { ... on Mutation { mlflowSearchDatasets('
                                          'input: {experimentIds: ["EXP"]}) '
                                          '{ datasetSummaries { name } } } }',
    }
    return {
        "variables": get_run(run),
        "run_uuid variable": op(GET_RUN, {"data": {"runUuid": run}}),
        "experiment variables": get_experiment(exp),
        "variable in a literal": op(fill(
            "query Q($r: String) { mlflowGetRun(input: {runId: $r}) SEL }", SEL=sel), {"r": run}),
        "listing variables": list_artifacts(runId=run),
        "listing's run_uuid variable": list_artifacts(runUuid=run, path="model"),
        "history variables": bulk_interval(run, metricKey="loss"),
        "history variables, unskipped": op(
            "query Q($no: Boolean!, $d: MlflowGetMetricHistoryBulkIntervalInput) {"
            " mlflowGetMetricHistoryBulkInterval(input: $d) @skip(if: $no)"
            " { metrics { timestamp } } }",
            {"no": False, "d": {"runIds": [run], "metricKey": "loss"}}),
        "datasets variables": search_datasets(exp),
        **{where: op(fill(t, RUN=run, EXP=exp, SEL=sel)) for where, t in templates.items()},
    }


async def test_anonymous_callers_are_challenged(world: World) -> None:
    reply = await world.api.send("POST", "/graphql", "anonymous",
                                 body=json.dumps(get_run(world.victim.run_id)).encode(),
                                 content_type="application/json")
    assert reply.status == 401
    resp = await world.api.client.post("/graphql", json=op("{ __typename }"))
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'


async def _victim_dataset(world: World) -> str:
    """a1 logs a dataset input to the victim's run; its name is secret."""
    name = f"zsecretds{uuid.uuid4().hex[:10]}"
    await world.api.ok("POST", f"{API2}/runs/log-inputs", "a1", {
        "run_id": world.victim.run_id, "datasets": [{"dataset": {
            "name": name, "digest": "d1", "source_type": "code", "source": "{}"}}]},
        workspace="team-a")
    return name


async def test_another_team_reads_nothing_wherever_the_id_is_written(world: World) -> None:
    v, api = world.victim, world.api
    secrets = (*v.secrets, await _victim_dataset(world))
    made_up = placements("987654", uuid.uuid4().hex)
    for where, body in placements(v.experiment_id, v.run_id).items():
        for who in ("b1", "b-mgr", "loner", "a2"):
            for workspace in ("team-a", "team-b", "default"):
                reply = await ask(api, who, body, workspace)
                assert not reply.holds(secrets), (where, who, workspace, str(reply))
                if "search" in where:
                    assert reply.status == 200 and reply.json()["data"]["mlflowSearchRuns"][
                        "runs"] == [], (where, who, str(reply))
                    continue
                assert reply.status in (403, 404), (where, who, workspace, str(reply))
                assert reply.json()["data"] is None
                if who != "a2" or workspace != "team-a":
                    # Outside team-a: the answer for a made-up id, nothing more.
                    other = await ask(api, who, made_up[where], workspace)
                    assert reply.status == other.status == 404, (where, who, str(reply))
    # One unreadable id refuses the whole document, the caller's own ids with it: in a
    # second call of the same field, in the same list, or as the other of a run's two ids.
    own, theirs = world.other, v
    for template in (
            ('{ own: mlflowGetRun(input: {runId: "OWN"}) { run { info { runName } } } '
             'theirs: mlflowGetRun(input: {runId: "RUN"}) { run { info { runName } } } }'),
            ('{ own: mlflowListArtifacts(input: {runId: "OWN"}) { files { path } } '
             'theirs: mlflowListArtifacts(input: {runId: "RUN"}) { files { path } } }'),
            ('{ mlflowGetMetricHistoryBulkInterval(input: {runIds: ["OWN", "RUN"], '
             'metricKey: "loss"}) { metrics { timestamp } } }'),
            ('mutation { mlflowSearchDatasets(input: {experimentIds: ["OWNEXP", "EXP"]}) '
             '{ datasetSummaries { name } } }'),
            '{ mlflowListArtifacts(input: {runId: "OWN", runUuid: "RUN"}) { files { path } } }',
            '{ mlflowListArtifacts(input: {runId: "RUN", runUuid: "OWN"}) { files { path } } }',
            '{ mlflowGetRun(input: {runId: "OWN", runUuid: "RUN"}) { run { info { runName } } } }'):
        body = op(fill(template, OWNEXP=own.experiment_id, EXP=theirs.experiment_id,
                       OWN=own.run_id, RUN=theirs.run_id))
        reply = await ask(api, "b1", body, "team-b")
        assert reply.status == 404 and not reply.holds(secrets), (template, str(reply))


async def test_a_call_over_its_limit_names_and_reads_nothing(world: World) -> None:
    """Refused in the parse step: its ids are not looked up, its field is null with the
    message, and the document's other calls are still authorized."""
    v, api = world.victim, world.api
    for body, field, refusal in (
            (bulk_interval(*[v.run_id] * 101, metricKey="loss"),
             "mlflowGetMetricHistoryBulkInterval",
             "GetMetricHistoryBulkInterval request must specify at most 100 run_ids."),
            (search_datasets(*[v.experiment_id] * 21), "mlflowSearchDatasets",
             "SearchDatasets request cannot specify more than 20 experiment_ids."),
            (search_datasets(), "mlflowSearchDatasets",
             "SearchDatasets request must specify at least one experiment_id.")):
        for who in ("a1", "b1"):
            reply = await ask(api, who, body)
            assert reply.status == 200 and not reply.holds(v.secrets), (who, str(reply))
            assert reply.json()["data"] == {field: None}, str(reply)
            assert [e[:len(refusal)] for e in reply.json()["errors"]] == [refusal], str(reply)
    both = op(fill('{ many: mlflowGetMetricHistoryBulkInterval(input: {runIds: [IDS], '
                   'metricKey: "loss"}) { metrics { timestamp } } '
                   'one: mlflowGetMetricHistoryBulkInterval(input: {runIds: ["RUN"], '
                   'metricKey: "loss"}) { metrics { timestamp } } }',
                   IDS=", ".join([f'"{world.other.run_id}"'] * 101), RUN=v.run_id))
    reply = await ask(api, "b1", both, "team-b")
    assert reply.status == 404 and not reply.holds(v.secrets), str(reply)


async def test_a_member_without_a_grant_is_refused_as_by_rest(world: World) -> None:
    v, api = world.victim, world.api
    rest = await api.call("GET", f"{API2}/runs/get", "a2", query={"run_id": v.run_id},
                          workspace="team-a")
    reply = await ask(api, "a2", get_run(v.run_id))
    assert (reply.status, reply.json()) == (rest.status, {"data": None, "errors": [
        rest.json()["message"]]})
    assert rest.status == 403


async def test_readers_get_the_run_and_only_readable_model_versions(world: World) -> None:
    v, api = world.victim, world.api
    for who in ("a1", "rd", "a1-read-only", ADMIN):
        reply = await ask(api, who, get_run(v.run_id))
        run = reply.json()["data"]["mlflowGetRun"]["run"]
        assert reply.status == 200 and run["info"]["runUuid"] == v.run_id, (who, str(reply))
        assert run["experiment"]["experimentId"] == v.experiment_id
        assert [m["name"] for m in run["modelVersions"]] == [v.rm_name], who
        found = await ask(api, who, search_runs(v.experiment_id))
        assert [r["info"]["runUuid"] for r in found.json()["data"]["mlflowSearchRuns"]["runs"]
                ] == [v.run_id], who
    # rd may read the experiment but no longer the registered model: the run, no versions.
    await api.ok("POST", f"{API3}/users/permissions/grant", "a1", {
        "username": "rd", "resource_type": "registered_model", "resource_id": v.rm_name,
        "permission": "DENY"}, workspace="team-a")
    for body in (get_run(v.run_id), search_runs(v.experiment_id),
                 search_model_versions(filter=f"run_id='{v.run_id}'")):
        reply = await ask(api, "rd", body)
        assert reply.status == 200 and v.rm_name not in reply.body.decode(), str(reply)
        assert reply.json()["errors"] is None


async def test_readers_list_sample_and_search_the_run(world: World) -> None:
    v, api = world.victim, world.api
    dataset = await _victim_dataset(world)
    for who in ("a1", "rd", "a1-read-only", ADMIN):
        listing = (await ask(api, who, list_artifacts(runUuid=v.run_id, path="model"))).json()
        assert [f["path"] for f in listing["data"]["mlflowListArtifacts"]["files"]] == [
            "model/MLmodel"], who
        history = (await ask(api, who, bulk_interval(v.run_id, metricKey="loss"))).json()
        assert [(m["runId"], m["value"]) for m in history["data"][
            "mlflowGetMetricHistoryBulkInterval"]["metrics"]] == [(v.run_id, 0.5)], who
        found = (await ask(api, who, search_datasets(v.experiment_id))).json()
        assert [d["name"] for d in found["data"]["mlflowSearchDatasets"][
            "datasetSummaries"]] == [dataset], who


async def test_model_version_search_finds_what_rest_finds(world: World) -> None:
    """Each caller, in each workspace, with each filter: the versions REST's
    model-versions/search returns, no more (workspace and grants alike)."""
    v, api = world.victim, world.api
    await api.ok("POST", f"{API3}/users/permissions/grant", "a1", {
        "username": "rd", "resource_type": "registered_model", "resource_id": v.rm_name,
        "permission": "DENY"}, workspace="team-a")
    for who in ("a1", "a2", "rd", "b1", "b-mgr", "loner", ADMIN):
        for workspace in ("team-a", "team-b", "default"):
            for where in ("", f"name='{v.rm_name}'", f"run_id='{v.run_id}'",
                          f"run_id='{world.other.run_id}'"):
                rest = await api.call("GET", f"{API2}/model-versions/search", who,
                                      query={"filter": where}, workspace=workspace)
                reply = await ask(api, who, search_model_versions(filter=where), workspace)
                found = reply.json()["data"]["mlflowSearchModelVersions"]
                assert reply.status == rest.status == 200, (who, workspace, where, str(reply))
                assert [(m["name"], m["version"]) for m in found["modelVersions"]] == [
                    (m["name"], m["version"]) for m in rest.json().get("model_versions", [])
                ], (who, workspace, where)
                if who not in ("a1", ADMIN):
                    assert not reply.holds(v.secrets), (who, workspace, where, str(reply))
