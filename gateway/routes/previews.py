"""The web UI's file previews: ``/get-artifact`` (a run's file),
``/model-versions/get-artifact`` (a registered model version's) and
``/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files`` (a logged model's).

Each resolves the file below its owner's checked artifact root
(:mod:`gateway.artifact_paths`: no ``..``, nothing outside the root) and streams it as the
artifact proxy's download does, with stock's preview headers (``_send_artifact``,
``handlers.py:1270-1294``): an attachment, stock's content type, ``nosniff``, ``no-cache``,
one byte range. They are downloads, so with auth each is audited (``Route.download``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from backends import errors as be
from backends.artifacts.base import ArtifactStore
from backends.registry import MissingDependency, UnsupportedScheme, open_artifact_store
from gateway.artifact_paths import (
    Location,
    invalid_location,
    logged_model_root,
    parse_location,
    run_root,
    served_roots,
    under_root,
    validate_path,
)
from gateway.errors import MlflowError
from gateway.keys import ARTIFACTS, METADATA, SETTINGS
from gateway.parsing import Field, Message, message_of
from gateway.routes._common import require, run_id_of
from gateway.routes.artifacts import (
    destination_scheme,
    requested_span,
    send_file,
    unsatisfiable,
)
from gateway.routing import Route
from gateway.security import workspace_of

__all__ = ["ROUTES"]

RUN_FILE = Message({
    "run_id": Field("string"),
    "run_uuid": Field("string"),
    "path": Field("string"),
})
MODEL_FILE = Message({"artifact_file_path": Field("string")})
VERSION_FILE = Message({
    "name": Field("string"),
    "version": Field("string"),
    "path": Field("string"),
})


async def get_run_artifact(request: web.Request) -> web.StreamResponse:
    """``GET /get-artifact?run_uuid=&path=``: one file of a run's artifacts."""
    msg = message_of(request)
    run_id = run_id_of(msg)
    relative = validate_path(require(msg, "path"))
    run = await request.app[METADATA].get_run(run_id)
    root = run_root(run.info.artifact_uri, served_roots(request.app[SETTINGS]), run.info.run_id)
    return await _send(request, root, relative)


async def get_model_version_artifact(request: web.Request) -> web.StreamResponse:
    """``GET /model-versions/get-artifact?name=&version=&path=``: one file below the
    version's storage location (or source), which must be a run's artifacts
    (``runs:/<run>/…``) or lie under a root this server serves."""
    msg = message_of(request)
    name, version = require(msg, "name"), require(msg, "version")
    relative = validate_path(require(msg, "path"))
    uri = await request.app[METADATA].get_model_version_download_uri(
        name, version, workspace=workspace_of(request))
    roots = served_roots(request.app[SETTINGS])
    if uri.startswith("runs:/"):
        run_id, _, inner = uri[len("runs:/"):].partition("/")
        run = await request.app[METADATA].get_run(run_id)
        root = run_root(run.info.artifact_uri, roots, run.info.run_id)
        if inner:
            root = under_root(root, validate_path(inner))
    else:
        try:
            root = parse_location(uri)
        except ValueError:
            raise invalid_location(uri) from None
        if not roots.serves(root):
            raise invalid_location(uri)
    return await _send(request, root, relative)


async def get_logged_model_artifact(request: web.Request) -> web.StreamResponse:
    """``GET …/logged-models/{model_id}/artifacts/files?artifact_file_path=``."""
    relative = message_of(request).get("artifact_file_path")
    if not relative:
        raise MlflowError('Request must include the "artifact_file_path" query parameter.',
                          "BAD_REQUEST")
    relative = validate_path(relative)
    model = await request.app[METADATA].get_logged_model(request.match_info["model_id"])
    root = logged_model_root(model.artifact_uri, served_roots(request.app[SETTINGS]),
                             model.model_id)
    return await _send(request, root, relative)


async def _send(request: web.Request, root: Location, relative: str) -> web.StreamResponse:
    target = under_root(root, relative)
    async with AsyncExitStack() as stack:
        if root.scheme == "mlflow-artifacts":
            if not request.app[SETTINGS].serve_artifacts or ARTIFACTS not in request.app:
                raise MlflowError("Artifact serving is disabled on this server.",
                                  "INVALID_PARAMETER_VALUE")
            store = request.app[ARTIFACTS]
            key = "/".join(target.segments)
        else:  # a root outside the proxy (a local path, s3://…): opened for this request
            try:
                store = open_artifact_store(root.uri)
            except (UnsupportedScheme, MissingDependency, ValueError) as exc:
                raise MlflowError(f"Cannot read artifacts of root '{root.uri}': {exc}",
                                  "INVALID_PARAMETER_VALUE") from None
            await stack.enter_async_context(store)
            key = "/".join(target.segments[len(root.segments):])
        return await _stream(request, store, key,
                             destination_scheme(request) if root.scheme == "mlflow-artifacts"
                             else root.scheme)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with always returns)


async def _stream(request: web.Request, store: ArtifactStore, key: str, scheme: str
                  ) -> web.StreamResponse:
    info = await store.stat(key)
    if info is None:
        raise MlflowError(f"No such artifact: '{key}'", "RESOURCE_DOES_NOT_EXIST")
    if info.is_dir:
        raise MlflowError(f"Artifact path refers to a directory, not a file: '{key}'",
                          "INVALID_PARAMETER_VALUE")
    size = info.file_size or 0
    try:
        span = requested_span(request, size)
    except ValueError:
        return unsatisfiable(size)
    offset, length = span or (0, None)
    try:
        async with store.get(key, offset, length) as stream:
            return await send_file(request, stream, key, ranged=span is not None,
                                   what=f"preview of {key!r}",
                                   headers={"Cache-Control": "no-cache"}, scheme=scheme)
    except be.NotFound:
        raise MlflowError(f"No such artifact: '{key}'", "RESOURCE_DOES_NOT_EXIST") from None


ROUTES = [
    Route(method, path, handler, access, prefixes=prefixes, message=message, download=True)
    for method in ("GET", "HEAD")  # HEAD as stock's Flask answers it on every GET route
    for path, handler, access, prefixes, message in (
        ("/get-artifact", get_run_artifact,
         Access(ResourceKind.RUN, Action.READ, "run_id"), ("",), RUN_FILE),
        ("/model-versions/get-artifact", get_model_version_artifact,
         Access(ResourceKind.REGISTERED_MODEL, Action.READ, "name"), ("",), VERSION_FILE),
        ("/logged-models/{model_id}/artifacts/files", get_logged_model_artifact,
         Access(ResourceKind.LOGGED_MODEL, Action.READ, "model_id"),
         ("/ajax-api/2.0/mlflow",), MODEL_FILE),
    )
]
