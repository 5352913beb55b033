"""``/registered-models/*`` and ``/model-versions/*``: the model registry (T2).

GET endpoints read the query string, POST/PATCH/DELETE a JSON body, as stock. Prompts are
registered models tagged ``mlflow.prompt.is_prompt``; their versions need a placeholder
source instead of the source checks of ordinary versions.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.access import Access, Action, Ref, ResourceKind
from backends import errors
from backends.metadata.interface import registry_validation as rv
from backends.metadata.interface.entities import Page, Tag
from backends.metadata.interface.registry_entities import IS_PROMPT_TAG, ModelVersion
from gateway.errors import invalid_parameter
from gateway.parsing import Field, Message, message_of, missing
from gateway.render import json_response
from gateway.routes._common import KEY_VALUE, store
from gateway.routes._registry_render import model_version, registered_model
from gateway.routing import Route
from gateway.security import (
    grant_creator,
    grants_deleted,
    grants_renamed,
    visibility_of,
    workspace_of,
)

__all__ = ["ROUTES", "readable_model_versions"]

_PROMPT_SOURCES = frozenset({"dummy-source", "prompt-template"})

_S = Field("string")
NAME = Message({"name": _S})
CREATE_RM = Message({"name": _S, "tags": Field("message", repeated=True, message=KEY_VALUE),
                     "description": _S, "deployment_job_id": _S})
RENAME = Message({"name": _S, "new_name": _S})
UPDATE_RM = Message({"name": _S, "description": _S, "deployment_job_id": _S})
SEARCH = Message({"filter": _S, "max_results": Field("int64"),
                  "order_by": Field("string", repeated=True), "page_token": _S})
LATEST = Message({"name": _S, "stages": Field("string", repeated=True)})
RM_TAG = Message({"name": _S, "key": _S, "value": _S})
ALIAS = Message({"name": _S, "alias": _S, "version": _S})
CREATE_MV = Message({"name": _S, "source": _S, "run_id": _S,
                     "tags": Field("message", repeated=True, message=KEY_VALUE),
                     "run_link": _S, "description": _S, "model_id": _S})
VERSION = Message({"name": _S, "version": _S})
UPDATE_MV = Message({"name": _S, "version": _S, "description": _S})
TRANSITION = Message({"name": _S, "version": _S, "stage": _S,
                      "archive_existing_versions": Field("bool")})
MV_TAG = Message({"name": _S, "version": _S, "key": _S, "value": _S})


def _need(msg: dict[str, Any], name: str) -> str:
    value = msg.get(name)
    if value is None or value == "":
        raise missing(name)
    return str(value)


def _name(msg: dict[str, Any]) -> str:
    return rv.validate_model_name(msg.get("name"))


def _tags(items: list[dict[str, Any]] | None, check: Any) -> list[Tag]:
    out = []
    for item in items or []:
        check(item.get("key"), item.get("value"))
        out.append(Tag(item["key"], item.get("value", "")))
    return out


# -- registered models ---------------------------------------------------------------------


async def create_registered_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    tags = _tags(msg.get("tags"), rv.validate_registered_model_tag)
    model = await store(request).create_registered_model(
        name, tags=tags, description=msg.get("description", ""), workspace=workspace_of(request))
    await grant_creator(request, "registered_model", name)
    return json_response({"registered_model": registered_model(model)})


async def get_registered_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    model = await store(request).get_registered_model(_name(msg), workspace=workspace_of(request))
    return json_response({"registered_model": registered_model(model)})


async def rename_registered_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    new_name = rv.validate_model_name(msg.get("new_name"), "new_name")
    model = await store(request).rename_registered_model(name, new_name,
        workspace=workspace_of(request))
    await grants_renamed(request, "registered_model", name, new_name)
    return json_response({"registered_model": registered_model(model)})


async def update_registered_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    model = await store(request).update_registered_model(
        _name(msg), msg.get("description", ""), workspace=workspace_of(request))
    return json_response({"registered_model": registered_model(model)})


async def delete_registered_model(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    await store(request).delete_registered_model(name, workspace=workspace_of(request))
    await grants_deleted(request, "registered_model", name)
    return json_response({})


def _limit(value: int | None, default: int, limit: int) -> int:
    if value is None:
        return default
    if value > limit:
        raise invalid_parameter(
            "Invalid value for request parameter max_results. It must be at most "
            f"{limit}, but got value {value}")
    if value < 1:
        raise invalid_parameter(
            f"Invalid value for max_results. It must be a positive integer, but got {value}")
    return value


async def search_registered_models(request: web.Request) -> web.Response:
    msg = message_of(request)
    page = await store(request).search_registered_models(
        filter_string=msg.get("filter", ""),
        max_results=_limit(msg.get("max_results"), 100, 1000),
        order_by=msg.get("order_by", []),
        page_token=msg.get("page_token") or None,
        workspace=workspace_of(request), visibility=visibility_of(request),
    )
    body: dict[str, Any] = {}
    if page.items:
        body["registered_models"] = [registered_model(m) for m in page.items]
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return json_response(body)


async def get_latest_versions(request: web.Request) -> web.Response:
    msg = message_of(request)
    versions = await store(request).get_latest_versions(_name(msg), msg.get("stages", []),
        workspace=workspace_of(request))
    return json_response({"model_versions": [model_version(v) for v in versions]}
                         if versions else {})


async def set_registered_model_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    key = _need(msg, "key")
    rv.validate_registered_model_tag(key, msg.get("value"))
    await store(request).set_registered_model_tag(name, Tag(key, msg.get("value", "")),
        workspace=workspace_of(request))
    return json_response({})


async def delete_registered_model_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    key = _need(msg, "key")
    rv.validate_registered_model_tag(key, None)
    await store(request).delete_registered_model_tag(name, key, workspace=workspace_of(request))
    return json_response({})


# -- aliases -------------------------------------------------------------------------------


async def set_alias(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    alias = rv.validate_alias(_need(msg, "alias"), reserved=True)
    await store(request).set_registered_model_alias(name, alias, _need(msg, "version"),
        workspace=workspace_of(request))
    return json_response({})


async def delete_alias(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    alias = rv.validate_alias(_need(msg, "alias"), reserved=False)
    await store(request).delete_registered_model_alias(name, alias, workspace=workspace_of(request))
    return json_response({})


async def get_version_by_alias(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    alias = rv.validate_alias(_need(msg, "alias"), reserved=False)
    version = await store(request).get_model_version_by_alias(name, alias,
        workspace=workspace_of(request))
    return json_response({"model_version": model_version(version)})


# -- model versions ------------------------------------------------------------------------


async def _check_source(request: web.Request, source: str, run_id: str,
                        model_id: str) -> None:
    """Stock's source checks: the source must lie inside the run's or the logged model's
    artifact root (or name that run or model)."""
    if model_id:
        try:
            location: str | None = (
                await store(request).get_logged_model(model_id)).artifact_uri
        except errors.NotFound:
            location = None
            if rv.is_local_uri(source) or rv.is_mlflow_artifacts_uri(source):
                raise rv_not_contained(source, "model_id") from None
        rv.validate_source_for_model(source, model_id, location)
        return
    artifact_uri: str | None = None
    if run_id and (rv.is_local_uri(source) or rv.is_mlflow_artifacts_uri(source)):
        try:
            artifact_uri = (await store(request).get_run(run_id)).info.artifact_uri
        except errors.NotFound:
            raise rv_not_contained(source, "run_id") from None
    rv.validate_source_for_run(source, run_id or None, artifact_uri)


def rv_not_contained(source: str, id_name: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(
        f"Invalid model version source: '{source}'. The {id_name} request parameter must "
        "identify the resource that contains the source.")


async def create_model_version(request: web.Request) -> web.Response:
    msg = message_of(request)
    name = _name(msg)
    source = _need(msg, "source")
    tags = _tags(msg.get("tags"), rv.validate_model_version_tag)
    is_prompt = {t.key: t.value for t in tags}.get(IS_PROMPT_TAG, "false").lower() == "true"
    run_id, model_id = msg.get("run_id", ""), msg.get("model_id", "")
    if is_prompt:
        if source not in _PROMPT_SOURCES:
            raise invalid_parameter(
                f"Invalid prompt source: '{source}'. Prompt sources must use an MLflow "
                "placeholder.")
    else:
        await _check_source(request, source, run_id, model_id)
    version = await store(request).create_model_version(
        name, source, run_id=run_id or None, tags=tags, run_link=msg.get("run_link", ""),
        description=msg.get("description", ""), model_id=model_id or None,
            workspace=workspace_of(request))
    return json_response({"model_version": model_version(version)})


async def get_model_version(request: web.Request) -> web.Response:
    msg = message_of(request)
    version = await store(request).get_model_version(_name(msg), _need(msg, "version"),
        workspace=workspace_of(request))
    return json_response({"model_version": model_version(version)})


async def update_model_version(request: web.Request) -> web.Response:
    msg = message_of(request)
    version = await store(request).update_model_version(
        _name(msg), _need(msg, "version"), msg.get("description"), workspace=workspace_of(request))
    return json_response({"model_version": model_version(version)})


async def transition_stage(request: web.Request) -> web.Response:
    msg = message_of(request)
    name, number, stage = _name(msg), _need(msg, "version"), _need(msg, "stage")
    version = await store(request).transition_model_version_stage(
        name, number, stage,
        archive_existing_versions=msg.get("archive_existing_versions", False),
            workspace=workspace_of(request))
    return json_response({"model_version": model_version(version)})


async def delete_model_version(request: web.Request) -> web.Response:
    msg = message_of(request)
    await store(request).delete_model_version(_name(msg), _need(msg, "version"),
        workspace=workspace_of(request))
    return json_response({})


async def get_download_uri(request: web.Request) -> web.Response:
    msg = message_of(request)
    uri = await store(request).get_model_version_download_uri(
        _name(msg), _need(msg, "version"), workspace=workspace_of(request))
    return json_response({"artifact_uri": uri})


async def readable_model_versions(
    request: web.Request, *, filter_string: str, max_results: int | None,
    order_by: list[str], page_token: str | None,
) -> Page[ModelVersion]:
    """A page of the versions the caller may read in their workspace: what
    ``model-versions/search`` and GraphQL's ``mlflowSearchModelVersions`` answer."""
    return await store(request).search_model_versions(
        filter_string=filter_string,
        max_results=_limit(max_results, 200_000, 200_000),
        order_by=order_by,
        page_token=page_token or None,
        workspace=workspace_of(request), visibility=visibility_of(request),
    )


async def search_model_versions(request: web.Request) -> web.Response:
    msg = message_of(request)
    page = await readable_model_versions(
        request, filter_string=msg.get("filter", ""), max_results=msg.get("max_results"),
        order_by=msg.get("order_by", []), page_token=msg.get("page_token"))
    body: dict[str, Any] = {}
    if page.items:
        body["model_versions"] = [model_version(v) for v in page.items]
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return json_response(body)


async def set_model_version_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    name, number, key = _name(msg), _need(msg, "version"), _need(msg, "key")
    rv.validate_model_version_tag(key, msg.get("value", ""))
    await store(request).set_model_version_tag(name, number, Tag(key, msg.get("value", "")),
        workspace=workspace_of(request))
    return json_response({})


async def delete_model_version_tag(request: web.Request) -> web.Response:
    msg = message_of(request)
    name, number, key = _name(msg), _need(msg, "version"), _need(msg, "key")
    rv.validate_registered_model_tag(key, None)
    await store(request).delete_model_version_tag(name, number, key,
        workspace=workspace_of(request))
    return json_response({})


def _rm(action: Action) -> Access:
    return Access(ResourceKind.REGISTERED_MODEL, action, "name")


_CREATE = Access(ResourceKind.WORKSPACE, Action.CREATE,
                 creates=ResourceKind.REGISTERED_MODEL)
# Stock's rule: a new version needs READ on what it copies: the run and the logged model it
# names and what a models:/ source names. Without it, EDIT on a registered model would let a
# caller publish, and then download, another team's run.
_CREATE_MV = Access(ResourceKind.REGISTERED_MODEL, Action.UPDATE, "name", refs=(
    Ref(ResourceKind.RUN, "run_id", strict=True),
    Ref(ResourceKind.LOGGED_MODEL, "model_id", strict=True),
    Ref(ResourceKind.MODEL_SOURCE, "source")))
_SEARCH = Access(ResourceKind.WORKSPACE, Action.READ)

ROUTES = [
    Route("POST", "/registered-models/create", create_registered_model, _CREATE, message=CREATE_RM),
    Route("GET", "/registered-models/get", get_registered_model, _rm(Action.READ), message=NAME),
    Route("POST", "/registered-models/rename", rename_registered_model, _rm(Action.UPDATE), message=RENAME),
    Route("PATCH", "/registered-models/update", update_registered_model, _rm(Action.UPDATE), message=UPDATE_RM),
    Route("DELETE", "/registered-models/delete", delete_registered_model, _rm(Action.MANAGE), message=NAME),
    Route("GET", "/registered-models/search", search_registered_models, _SEARCH, message=SEARCH),
    Route("POST", "/registered-models/get-latest-versions", get_latest_versions,
          _rm(Action.READ), message=LATEST),
    Route("GET", "/registered-models/get-latest-versions", get_latest_versions,
          _rm(Action.READ), message=LATEST),
    Route("POST", "/registered-models/set-tag", set_registered_model_tag, _rm(Action.UPDATE), message=RM_TAG),
    Route("DELETE", "/registered-models/delete-tag", delete_registered_model_tag,
          _rm(Action.UPDATE), message=RM_TAG),
    Route("POST", "/registered-models/alias", set_alias, _rm(Action.UPDATE), message=ALIAS),
    Route("DELETE", "/registered-models/alias", delete_alias, _rm(Action.DELETE), message=ALIAS),
    Route("GET", "/registered-models/alias", get_version_by_alias, _rm(Action.READ), message=ALIAS),
    Route("POST", "/model-versions/create", create_model_version, _CREATE_MV, message=CREATE_MV),
    Route("GET", "/model-versions/get", get_model_version, _rm(Action.READ), message=VERSION),
    Route("PATCH", "/model-versions/update", update_model_version, _rm(Action.UPDATE), message=UPDATE_MV),
    Route("POST", "/model-versions/transition-stage", transition_stage, _rm(Action.UPDATE), message=TRANSITION),
    Route("DELETE", "/model-versions/delete", delete_model_version, _rm(Action.DELETE), message=VERSION),
    Route("GET", "/model-versions/search", search_model_versions, _SEARCH, message=SEARCH),
    Route("GET", "/model-versions/get-download-uri", get_download_uri, _rm(Action.READ), message=VERSION),
    Route("POST", "/model-versions/set-tag", set_model_version_tag, _rm(Action.UPDATE), message=MV_TAG),
    Route("DELETE", "/model-versions/delete-tag", delete_model_version_tag,
          _rm(Action.DELETE), message=MV_TAG),
]
