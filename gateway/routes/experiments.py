"""``/experiments/*``: create, get, search, rename, delete, restore, tags."""

from __future__ import annotations

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from backends.metadata.interface import validation
from backends.metadata.interface.entities import Tag, ViewType
from gateway import render
from gateway.artifact_paths import artifact_location, served_roots
from gateway.parsing import Field, Message, message_of
from gateway.routes._common import KEY_VALUE, max_results, require, settings, store, tags_of
from gateway.routing import Route
from gateway.security import grant_creator, visibility_of, workspace_of

__all__ = ["ROUTES"]

VIEW_TYPE = {v.name: v.value for v in ViewType}

CREATE = Message({
    "name": Field("string"),
    "artifact_location": Field("string"),
    "tags": Field("message", repeated=True, message=KEY_VALUE),
})
BY_ID = Message({"experiment_id": Field("string")})
BY_NAME = Message({"experiment_name": Field("string")})
SEARCH = Message({
    "max_results": Field("int64"),
    "page_token": Field("string"),
    "filter": Field("string"),
    "order_by": Field("string", repeated=True),
    "view_type": Field("enum", enum=VIEW_TYPE),
})
UPDATE = Message({"experiment_id": Field("string"), "new_name": Field("string")})
SET_TAG = Message({"experiment_id": Field("string"), "key": Field("string"),
                   "value": Field("string")})
DELETE_TAG = Message({"experiment_id": Field("string"), "key": Field("string")})


async def create_experiment(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = require(msg, "name")
    validation.validate_experiment_name(name)
    tags = tags_of(msg.get("tags"))
    for tag in tags:
        validation.validate_experiment_tag(tag)
    location = msg.get("artifact_location") or None
    if location is not None:
        # Runs' roots are built under it and listed by this server: only its own roots.
        location = artifact_location(location, served_roots(settings(request)))
    exp_id = await store(request).create_experiment(
        name,
        artifact_root=settings(request).artifact_root,
        artifact_location=location,
        tags=tags,
        workspace=workspace_of(request),
    )
    await grant_creator(request, "experiment", str(exp_id))
    return render.json_response({"experiment_id": exp_id})


async def get_experiment(request: web.Request) -> web.Response:
    msg = message_of(request)
    exp = await store(request).get_experiment(require(msg, "experiment_id"))
    return render.json_response({"experiment": render.experiment(exp)})


async def get_experiment_by_name(request: web.Request) -> web.Response:
    msg = message_of(request)
    exp = await store(request).get_experiment_by_name(require(msg, "experiment_name"),
                                                      workspace_of(request))
    return render.json_response({"experiment": render.experiment(exp)})


async def search_experiments(request: web.Request) -> web.Response:
    msg = message_of(request)
    page = await store(request).search_experiments(
        view_type=ViewType[msg.get("view_type", "ACTIVE_ONLY")],
        filter_string=msg.get("filter", ""),
        max_results=max_results(msg.get("max_results"), default=None),
        order_by=msg.get("order_by", []),
        page_token=msg.get("page_token") or None,
        workspace=workspace_of(request),
        visibility=visibility_of(request),
    )
    body: dict[str, object] = {}
    if page.items:
        body["experiments"] = [render.experiment(e) for e in page.items]
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return render.json_response(body)


async def update_experiment(request: web.Request) -> web.Response:
    msg = message_of(request)
    exp_id = require(msg, "experiment_id")
    new_name = require(msg, "new_name")
    validation.validate_experiment_name(new_name)
    await store(request).rename_experiment(exp_id, new_name)
    return render.json_response({})


async def delete_experiment(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).delete_experiment(require(msg, "experiment_id"))
    return render.json_response({})


async def restore_experiment(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).restore_experiment(require(msg, "experiment_id"))
    return render.json_response({})


async def set_experiment_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    exp_id = require(msg, "experiment_id")
    tag = Tag(require(msg, "key"), msg.get("value", ""))
    validation.validate_experiment_tag(tag)
    await store(request).set_experiment_tag(exp_id, tag)
    return render.json_response({})


async def delete_experiment_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).delete_experiment_tag(require(msg, "experiment_id"), require(msg, "key"))
    return render.json_response({})


def _on_experiment(action: Action) -> Access:
    return Access(ResourceKind.EXPERIMENT, action, "experiment_id")


ROUTES = [
    Route("POST", "/experiments/create", create_experiment,
          Access(ResourceKind.WORKSPACE, Action.CREATE, creates=ResourceKind.EXPERIMENT), message=CREATE),
    Route("GET", "/experiments/get", get_experiment, _on_experiment(Action.READ), message=BY_ID),
    Route("GET", "/experiments/get-by-name", get_experiment_by_name,
          Access(ResourceKind.EXPERIMENT, Action.READ, "experiment_name"), message=BY_NAME),
    # Search filters rows by what the caller may read (auth issue), so no pre-check.
    Route("POST", "/experiments/search", search_experiments,
          Access(ResourceKind.WORKSPACE, Action.READ), message=SEARCH),
    Route("GET", "/experiments/search", search_experiments,
          Access(ResourceKind.WORKSPACE, Action.READ), message=SEARCH),
    Route("POST", "/experiments/update", update_experiment, _on_experiment(Action.UPDATE), message=UPDATE),
    Route("POST", "/experiments/delete", delete_experiment, _on_experiment(Action.DELETE), message=BY_ID),
    Route("POST", "/experiments/restore", restore_experiment, _on_experiment(Action.DELETE), message=BY_ID),
    Route("POST", "/experiments/set-experiment-tag", set_experiment_tag,
          _on_experiment(Action.UPDATE), message=SET_TAG),
    Route("POST", "/experiments/delete-experiment-tag", delete_experiment_tag,
          _on_experiment(Action.UPDATE), message=DELETE_TAG),
]
