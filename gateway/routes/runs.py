"""``/runs/*``: lifecycle, logging (metric, param, tag, batch, inputs, outputs) and search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from auth.access import Access, Action, Ref, ResourceKind
from backends.metadata.interface import validation
from backends.metadata.interface.entities import (
    Dataset,
    DatasetInput,
    Metric,
    ModelInput,
    ModelOutput,
    Param,
    RunStatus,
    RunWrite,
    Tag,
    ViewType,
    now_ms,
)
from gateway import render
from gateway.errors import invalid_parameter
from gateway.keys import BATCHER
from gateway.names import random_run_name
from gateway.parsing import Field, Message, message_of, missing, plain_items
from gateway.routes._common import (
    KEY_VALUE,
    max_results,
    require,
    run_id_of,
    settings,
    store,
    tags_of,
)
from gateway.routing import Route
from gateway.security import visibility_of, workspace_of

__all__ = ["ROUTES"]

RUN_NAME_TAG = "mlflow.runName"
STATUS = {s.name: s.value for s in RunStatus}
VIEW_TYPE = {v.name: v.value for v in ViewType}

_RUN_REF = {"run_id": Field("string"), "run_uuid": Field("string")}

METRIC = Message({
    "key": Field("string"),
    "value": Field("double"),
    "timestamp": Field("int64"),
    "step": Field("int64"),
    "model_id": Field("string"),
    "dataset_name": Field("string"),
    "dataset_digest": Field("string"),
    "run_id": Field("string"),
})
CREATE = Message({
    "experiment_id": Field("string"),
    "user_id": Field("string"),
    "run_name": Field("string"),
    "start_time": Field("int64"),
    "tags": Field("message", repeated=True, message=KEY_VALUE),
})
GET = Message(_RUN_REF)
UPDATE = Message({**_RUN_REF, "status": Field("enum", enum=STATUS),
                  "end_time": Field("int64"), "run_name": Field("string")})
LOG_METRIC = Message({**_RUN_REF, **METRIC.fields})
LOG_PARAM = Message({**_RUN_REF, "key": Field("string"), "value": Field("string")})
SET_TAG = Message({**_RUN_REF, "key": Field("string"), "value": Field("string")})
DELETE_TAG = Message({"run_id": Field("string"), "key": Field("string")})
LOG_BATCH = Message({
    "run_id": Field("string"),
    # What the client sends: taken as it is, several times faster than the full parse.
    "metrics": Field("message", repeated=True, message=METRIC, fast=plain_items({
        "key": (str,), "value": (float, int), "timestamp": (int,), "step": (int,)})),
    "params": Field("message", repeated=True, message=KEY_VALUE),
    "tags": Field("message", repeated=True, message=KEY_VALUE),
})
SEARCH = Message({
    "experiment_ids": Field("string", repeated=True),
    "filter": Field("string"),
    "run_view_type": Field("enum", enum=VIEW_TYPE),
    "max_results": Field("int64"),
    "order_by": Field("string", repeated=True),
    "page_token": Field("string"),
})
DATASET = Message({
    "name": Field("string"), "digest": Field("string"), "source_type": Field("string"),
    "source": Field("string"), "schema": Field("string"), "profile": Field("string"),
})
DATASET_INPUT = Message({
    "tags": Field("message", repeated=True, message=KEY_VALUE),
    "dataset": Field("message", message=DATASET),
})
LOG_INPUTS = Message({
    "run_id": Field("string"),
    "datasets": Field("message", repeated=True, message=DATASET_INPUT),
    "models": Field("message", repeated=True, message=Message({"model_id": Field("string")})),
})
LOG_OUTPUTS = Message({
    "run_id": Field("string"),
    "models": Field("message", repeated=True,
                    message=Message({"model_id": Field("string"), "step": Field("int64")})),
})


def _metric(msg: dict[str, Any], field: str = "", index: int = 0) -> Metric:
    """The metric of a log-metric message, or of item ``index`` of a log-batch's ``field``
    (whose path a message names is only built for a message)."""
    key, value, timestamp = msg.get("key"), msg.get("value"), msg.get("timestamp")
    if not key or value is None or timestamp is None:
        prefix = f"{field}[{index}]." if field else ""
        name = "key" if not key else "value" if value is None else "timestamp"
        raise missing(prefix + name)
    return Metric(
        key, value, timestamp, msg.get("step", 0),
        msg.get("model_id") or None, msg.get("dataset_name") or None,
        msg.get("dataset_digest") or None,
    )


def _params(items: list[dict[str, Any]]) -> list[Param]:
    out = []
    for i, item in enumerate(items):
        if not item.get("key"):
            raise missing(f"params[{i}].key")
        if item.get("value") is None:
            raise missing(f"params[{i}].value")
        out.append(Param(item["key"], item["value"]))
    return out


async def create_run(request: web.Request) -> web.Response:
    msg = message_of(request)
    tags = tags_of(msg.get("tags"))
    for i, tag in enumerate(tags):
        validation.validate_tag(tag, f"tags[{i}]", truncate=settings(request).truncate_long_values)
    tag_name = next((t.value for t in tags if t.key == RUN_NAME_TAG), None)
    run_name = msg.get("run_name") or None
    if run_name and tag_name and run_name != tag_name:
        raise invalid_parameter(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{run_name}', mlflow.runName='{tag_name}')."
        )
    run_name = run_name or tag_name or random_run_name()
    run = await store(request).create_run(
        str(msg.get("experiment_id") or "0"),
        user_id=msg.get("user_id", ""),
        run_name=run_name,
        start_time=msg.get("start_time", now_ms()),
        tags=[t for t in tags if t.key != RUN_NAME_TAG],
    )
    return render.json_response({"run": render.run(run)})


async def get_run(request: web.Request) -> web.Response:
    msg = message_of(request)
    run = await store(request).get_run(run_id_of(msg))
    return render.json_response({"run": render.run(run)})


async def update_run(request: web.Request) -> web.Response:
    msg = message_of(request)
    info = await store(request).update_run(
        run_id_of(msg),
        status=msg.get("status"),
        end_time=msg.get("end_time"),
        run_name=msg.get("run_name") or None,
    )
    return render.json_response({"run_info": render.run_info(info)})


async def delete_run(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).delete_run(run_id_of(msg))
    return render.json_response({})


async def restore_run(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).restore_run(run_id_of(msg))
    return render.json_response({})


async def _log(request: web.Request, run_id: str, *, metrics: Sequence[Metric] = (),
               params: Sequence[Param] = (), tags: Sequence[Tag] = ()) -> web.Response:
    validation.validate_run_id(run_id)
    checked = validation.validate_batch(
        metrics, params, tags, truncate=settings(request).truncate_long_values
    )
    await request.app[BATCHER].submit(RunWrite(run_id, checked[0], checked[1], checked[2]),
                                      workspace_of(request))
    return render.json_response({})


async def log_metric(request: web.Request) -> web.Response:
    msg = message_of(request)
    return await _log(request, run_id_of(msg), metrics=[_metric(msg)])


async def log_param(request: web.Request) -> web.Response:
    msg = message_of(request)
    key = require(msg, "key")
    if msg.get("value") is None:
        raise missing("value")
    return await _log(request, run_id_of(msg), params=[Param(key, msg["value"])])


async def set_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    key = require(msg, "key")
    if msg.get("value") is None:
        raise missing("value")
    return await _log(request, run_id_of(msg), tags=[Tag(key, msg["value"])])


async def delete_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).delete_tag(require(msg, "run_id"), require(msg, "key"))
    return render.json_response({})


async def log_batch(request: web.Request) -> web.Response:
    msg = message_of(request)
    metrics = [_metric(m, "metrics", i) for i, m in enumerate(msg.get("metrics", []))]
    run_id = require(msg, "run_id")
    return await _log(
        request, run_id,
        metrics=metrics,
        params=_params(msg.get("params", [])),
        tags=tags_of(msg.get("tags")),
    )


async def search_runs(request: web.Request) -> web.Response:
    msg = message_of(request)
    experiment_ids = msg.get("experiment_ids", [])
    limit = max_results(msg.get("max_results"), default=1000)
    if not experiment_ids:
        return render.json_response({})
    page = await store(request).search_runs(
        experiment_ids,
        filter_string=msg.get("filter", ""),
        view_type=ViewType[msg.get("run_view_type", "ACTIVE_ONLY")],
        max_results=limit,
        order_by=msg.get("order_by", []),
        page_token=msg.get("page_token") or None,
        visibility=visibility_of(request),
    )
    body: dict[str, Any] = {}
    if page.items:
        body["runs"] = [render.run(r) for r in page.items]
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return render.json_response(body)


async def log_inputs(request: web.Request) -> web.Response:
    msg = message_of(request)
    run_id = require(msg, "run_id")
    inputs = []
    for i, item in enumerate(msg.get("datasets", [])):
        ds = item.get("dataset")
        if ds is None:
            raise missing(f"datasets[{i}].dataset")
        for name in ("name", "digest", "source_type", "source"):
            if not ds.get(name):
                raise missing(f"datasets[{i}].dataset.{name}")
        inputs.append(DatasetInput(
            Dataset(ds["name"], ds["digest"], ds["source_type"], ds["source"],
                    ds.get("schema"), ds.get("profile")),
            tuple(tags_of(item.get("tags"), f"datasets[{i}].tags")),
        ))
    models = []
    for i, m in enumerate(msg.get("models", [])):
        if not m.get("model_id"):
            raise missing(f"models[{i}].model_id")
        models.append(ModelInput(m["model_id"]))
    validation.validate_dataset_inputs(inputs)
    await store(request).log_inputs(run_id, datasets=inputs, models=models)
    return render.json_response({})


async def log_outputs(request: web.Request) -> web.Response:
    msg = message_of(request)
    run_id = require(msg, "run_id")
    models = []
    for i, m in enumerate(msg.get("models", [])):
        if not m.get("model_id"):
            raise missing(f"models[{i}].model_id")
        models.append(ModelOutput(m["model_id"], m.get("step", 0)))
    if not models:
        raise missing("models")
    await store(request).log_outputs(run_id, models)
    return render.json_response({})


def _on_run(action: Action, *refs: Ref) -> Access:
    return Access(ResourceKind.RUN, action, "run_id", refs=refs)


# Writing to a run that names a logged model writes to that model too (its metrics, its
# inputs and outputs): the caller needs the same right on it.
def _model_ref(field: str) -> Ref:
    return Ref(ResourceKind.LOGGED_MODEL, field, Action.UPDATE)


_UPDATE = Action.UPDATE

ROUTES = [
    Route("POST", "/runs/create", create_run,
          Access(ResourceKind.EXPERIMENT, _UPDATE, "experiment_id", default="0"),
          message=CREATE),
    Route("GET", "/runs/get", get_run, _on_run(Action.READ), message=GET),
    Route("POST", "/runs/update", update_run, _on_run(_UPDATE), message=UPDATE),
    Route("POST", "/runs/delete", delete_run, _on_run(Action.DELETE), message=GET),
    Route("POST", "/runs/restore", restore_run, _on_run(Action.DELETE), message=GET),
    Route("POST", "/runs/log-metric", log_metric, _on_run(_UPDATE, _model_ref("model_id")),
          message=LOG_METRIC, rows=lambda _: 1),
    Route("POST", "/runs/log-parameter", log_param, _on_run(_UPDATE), message=LOG_PARAM),
    Route("POST", "/runs/set-tag", set_tag, _on_run(_UPDATE), message=SET_TAG),
    Route("POST", "/runs/delete-tag", delete_tag, _on_run(_UPDATE), message=DELETE_TAG),
    Route("POST", "/runs/log-batch", log_batch,
          _on_run(_UPDATE, _model_ref("metrics.model_id")), message=LOG_BATCH,
          rows=lambda msg: len(msg.get("metrics") or ())),
    Route("POST", "/runs/log-inputs", log_inputs,
          _on_run(_UPDATE, Ref(ResourceKind.LOGGED_MODEL, "models.model_id")),
          message=LOG_INPUTS),
    Route("POST", "/runs/outputs", log_outputs, _on_run(_UPDATE, _model_ref("models.model_id")),
          message=LOG_OUTPUTS),
    # experiment_ids is reduced to readable experiments inside the query (auth issue).
    Route("POST", "/runs/search", search_runs, Access(ResourceKind.WORKSPACE, Action.READ),
          message=SEARCH),
]
