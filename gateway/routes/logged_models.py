"""``/logged-models*``: MLflow 3 logged models (create, get, finalize, delete, search, tags,
params)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from auth.access import Access, Action, Ref, ResourceKind
from backends.metadata.interface import validation
from backends.metadata.interface.entities import LoggedModelStatus, Param
from gateway import render
from gateway.errors import invalid_parameter
from gateway.names import random_run_name
from gateway.parsing import Field, Message, message_of, missing
from gateway.routes._common import KEY_VALUE, max_results, require, store, tags_of
from gateway.routing import Route
from gateway.security import visibility_of

__all__ = ["ROUTES"]

STATUS = {s.name: s.value for s in LoggedModelStatus}
_BAD_NAME = re.compile(r"[/:.%\"']")

CREATE = Message({
    "experiment_id": Field("string"),
    "name": Field("string"),
    "model_type": Field("string"),
    "source_run_id": Field("string"),
    "params": Field("message", repeated=True, message=KEY_VALUE),
    "tags": Field("message", repeated=True, message=KEY_VALUE),
})
GET = Message({"allow_deleted": Field("bool")})
FINALIZE = Message({"model_id": Field("string"), "status": Field("enum", enum=STATUS)})
TAGS = Message({"tags": Field("message", repeated=True, message=KEY_VALUE)})
PARAMS = Message({"params": Field("message", repeated=True, message=KEY_VALUE)})
SEARCH = Message({
    "experiment_ids": Field("string", repeated=True),
    "filter": Field("string"),
    "datasets": Field("message", repeated=True, message=Message({
        "dataset_name": Field("string"), "dataset_digest": Field("string")})),
    "max_results": Field("int64"),
    "order_by": Field("message", repeated=True, message=Message({
        "field_name": Field("string"), "ascending": Field("bool"),
        "dataset_name": Field("string"), "dataset_digest": Field("string")})),
    "page_token": Field("string"),
})


def _params(items: list[dict[str, Any]] | None) -> list[Param]:
    out = []
    for i, item in enumerate(items or []):
        if not item.get("key"):
            raise missing(f"params[{i}].key")
        out.append(validation.validate_param(Param(item["key"], item.get("value", "")),
                                             f"params[{i}]"))
    return out


async def create_logged_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    experiment_id = require(msg, "experiment_id")
    name = msg.get("name") or random_run_name()
    if _BAD_NAME.search(name):
        raise invalid_parameter(
            f"Invalid model name '{name}'. Names cannot contain the following characters: "
            "('/', ':', '.', '%', '\"', \"'\")")
    model = await store(request).create_logged_model(
        experiment_id,
        name=name,
        model_type=msg.get("model_type", ""),
        source_run_id=msg.get("source_run_id") or None,
        params=_params(msg.get("params")),
        tags=tags_of(msg.get("tags")),
    )
    return render.json_response({"model": render.logged_model(model)})


async def get_logged_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    model = await store(request).get_logged_model(
        msg["model_id"], allow_deleted=msg.get("allow_deleted", False))
    return render.json_response({"model": render.logged_model(model)})


async def finalize_logged_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    status = require(msg, "status")
    if status not in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"):
        raise invalid_parameter(f"Invalid status {status!r} for finalizing a logged model")
    model = await store(request).finalize_logged_model(msg["model_id"], status)
    return render.json_response({"model": render.logged_model(model)})


async def delete_logged_model(request: web.Request) -> web.Response:
    await store(request).delete_logged_model(message_of(request)["model_id"])
    return render.json_response({})


async def set_logged_model_tags(request: web.Request) -> web.Response:
    msg = message_of(request)
    tags = [validation.validate_tag(t, f"tags[{i}]")
            for i, t in enumerate(tags_of(msg.get("tags")))]
    await store(request).set_logged_model_tags(msg["model_id"], tags)
    return render.json_response({})


async def delete_logged_model_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).delete_logged_model_tag(msg["model_id"], msg["tag_key"])
    return render.json_response({})


async def log_logged_model_params(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).log_logged_model_params(msg["model_id"], _params(msg.get("params")))
    return render.json_response({})


async def search_logged_models(request: web.Request) -> web.Response:
    msg = message_of(request)
    experiment_ids = msg.get("experiment_ids") or []
    if not experiment_ids:
        raise invalid_parameter("At least one experiment ID must be specified.")
    limit = msg.get("max_results") or 100  # proto default 50; the store's default for 0 is 100
    page = await store(request).search_logged_models(
        experiment_ids,
        filter_string=msg.get("filter", ""),
        datasets=msg.get("datasets", []),
        max_results=max_results(limit, default=100),
        order_by=msg.get("order_by", []),
        page_token=msg.get("page_token") or None,
        visibility=visibility_of(request),
    )
    body: dict[str, Any] = {}
    if page.items:
        body["models"] = [render.logged_model(m) for m in page.items]
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return render.json_response(body)


def _on_model(action: Action) -> Access:
    return Access(ResourceKind.LOGGED_MODEL, action, "model_id")


ROUTES = [
    Route("POST", "/logged-models", create_logged_model,
          Access(ResourceKind.EXPERIMENT, Action.UPDATE, "experiment_id",
                 refs=(Ref(ResourceKind.RUN, "source_run_id"),)), message=CREATE),
    Route("POST", "/logged-models/search", search_logged_models,
          Access(ResourceKind.WORKSPACE, Action.READ), message=SEARCH),
    Route("GET", "/logged-models/{model_id}", get_logged_model, _on_model(Action.READ), message=GET),
    Route("PATCH", "/logged-models/{model_id}", finalize_logged_model, _on_model(Action.UPDATE), message=FINALIZE),
    Route("DELETE", "/logged-models/{model_id}", delete_logged_model, _on_model(Action.DELETE)),
    Route("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags,
          _on_model(Action.UPDATE), message=TAGS),
    Route("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_logged_model_tag,
          _on_model(Action.DELETE)),
    Route("POST", "/logged-models/{model_id}/params", log_logged_model_params,
          _on_model(Action.UPDATE), message=PARAMS),
]
