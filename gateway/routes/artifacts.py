"""The mlflow-artifacts proxy (reference T4) and ``/mlflow/artifacts/list`` (T1).

Bytes stream both ways: an upload passes ``request.content`` to the store chunk by chunk,
a download writes the store's chunks to a :class:`web.StreamResponse`. Shapes follow stock
3.17: the upload, download and trailing-slash/directory errors come from its FastAPI
routes (``{"detail": …}``), the rest from its Flask handlers (MLflow error JSON).
"""

from __future__ import annotations

import logging
import mimetypes
import posixpath
import re
import unicodedata
import urllib.parse
from typing import Any, Final

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from backends import errors as be
from backends.artifacts.base import ArtifactStore, FileInfo
from backends.registry import MissingDependency, UnsupportedScheme, open_artifact_store
from gateway.artifact_paths import join_path, proxied_root_path, store_path, validate_path
from gateway.errors import MlflowError
from gateway.keys import ARTIFACTS, METADATA, SETTINGS
from gateway.parsing import Field, Message, missing, read_message
from gateway.render import json_response
from gateway.routes._common import run_id_of
from gateway.routing import API, ARTIFACTS_API, Route

__all__ = ["ROUTES", "content_disposition", "guess_mime_type", "parse_range"]

log = logging.getLogger("mlgate.artifacts")

CHUNK_SIZE: Final = 1024 * 1024

# Stock serves these as text/plain whatever mimetypes says (mlflow/utils/mime_type_utils.py).
_TEXT_EXTENSIONS: Final = frozenset({
    "txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop", "hocon",
    "toml", "yaml", "yml", "xml", "json", "js", "py", "py3", "csv", "tsv", "md", "rst",
    "ipynb", "MLmodel", "mlproject",
})
# werkzeug's token characters: a filename made only of these goes out unquoted.
_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

_DIGITS: Final = re.compile(r"\d+", re.ASCII)

MPU_UNSUPPORTED: Final = "Multipart upload is not supported for the current artifact repository"
MPD_UNSUPPORTED: Final = "Multipart download is not supported for the current artifact repository"

_READ = Access(ResourceKind.ARTIFACT_PATH, Action.READ, "path")
_UPDATE = Access(ResourceKind.ARTIFACT_PATH, Action.UPDATE, "path")
_DELETE = Access(ResourceKind.ARTIFACT_PATH, Action.DELETE, "path")

LIST = Message({"path": Field("string")})
RUN_LIST = Message({
    "run_id": Field("string"),
    "run_uuid": Field("string"),
    "path": Field("string"),
    "page_token": Field("string"),
})
MPU_CREATE = Message({"path": Field("string"), "num_parts": Field("int64")})
MPU_ABORT = Message({"path": Field("string"), "upload_id": Field("string")})
MPU_COMPLETE = Message({
    "path": Field("string"),
    "upload_id": Field("string"),
    "parts": Field("message", repeated=True, message=Message({
        "part_number": Field("int64"), "etag": Field("string"), "url": Field("string"),
    })),
})


# -- helpers (pure) ----------------------------------------------------------------------


def guess_mime_type(filename: str) -> str:
    """The Content-Type stock gives ``filename``: text/plain for its text extensions and
    for ``MLmodel``/``mlproject``, else :mod:`mimetypes`, else application/octet-stream."""
    name = posixpath.basename(filename)
    extension = posixpath.splitext(name)[1].replace(".", "") or name
    if extension in _TEXT_EXTENSIONS:
        return "text/plain"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _quote_header_value(value: str) -> str:
    if not value:
        return '""'
    if _TOKEN_CHARS.issuperset(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def content_disposition(filename: str) -> str:
    """``attachment; filename=…`` as stock builds it (RFC 6266), with an RFC 5987
    ``filename*`` for non-ASCII names."""
    try:
        filename.encode("ascii")
    except UnicodeEncodeError:
        fallback = (
            unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
            or "download"
        )
        quoted = urllib.parse.quote(filename, safe="!#$&+-.^_`|~")
        return f"attachment; filename={_quote_header_value(fallback)}; filename*=UTF-8''{quoted}"
    return f"attachment; filename={_quote_header_value(filename)}"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) for a single ``bytes=a-b``, ``bytes=a-`` or
    ``bytes=-n`` range of a ``size``-byte file, ``None`` to ignore the header and send the
    whole file (several ranges, or not a byte range). Raises :class:`ValueError` when the
    range cannot be satisfied (416)."""
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None  # RFC 9110 lets a server ignore a Range it does not support
    first, dash, last = (part.strip() for part in spec.strip().partition("-"))
    if not dash or not (first or last) or not all(_DIGITS.fullmatch(p) for p in (first, last) if p):
        return None
    if first:
        start = int(first)
        if last and int(last) < start:
            return None  # malformed, so ignored
        end = int(last) + 1 if last else size
    else:
        start, end = max(size - int(last), 0), size  # the last n bytes
    if start >= size:
        raise ValueError(f"range {header!r} starts past the end of {size} bytes")
    return start, min(end, size)


def _detail(message: str, status: int) -> web.Response:
    # FastAPI's HTTPException body, which stock's native artifact routes answer with.
    return json_response({"detail": message}, status=status)


def _store(request: web.Request) -> ArtifactStore:
    return request.app[ARTIFACTS]


def _serving(request: web.Request) -> bool:
    return request.app[SETTINGS].serve_artifacts


def _disabled(request: web.Request) -> web.Response:
    """Stock's Flask answer when artifacts are not served: 503 text/html naming the rule."""
    rule = request.match_info.route.resource
    canonical = rule.canonical if rule is not None else request.path
    flask_rule = canonical.replace("{path}", "<path:artifact_path>")
    return web.Response(
        status=503,
        content_type="text/html",
        text=(
            f"Endpoint: {flask_rule} disabled due to the mlflow server running with "
            "`--no-serve-artifacts`. To enable artifacts server functionality, run "
            "`mlflow server` with `--serve-artifacts`"
        ),
    )


_NATIVE_DISABLED = (
    "Artifact serving is disabled. Run `mlflow server` with `--serve-artifacts` to enable."
)


def _path_param(request: web.Request) -> str:
    return validate_path(request.match_info["path"])


# -- the proxy ---------------------------------------------------------------------------


async def upload(request: web.Request) -> web.Response:
    """``PUT /artifacts/{path}``: stream the body into the store."""
    if not _serving(request):
        return _detail(_NATIVE_DISABLED, 503)
    path = _path_param(request)
    if not posixpath.split(path)[1]:
        return _detail("Artifact path must include a filename (cannot end with '/').", 400)
    key = store_path(path)
    try:
        await _store(request).put(key, request.content.iter_chunked(CHUNK_SIZE))
    except ConnectionError:
        # The client went away mid-body (aiohttp raises ConnectionResetError from the
        # stream); the store has already discarded the partial file. Nobody reads this.
        log.info("upload of %r aborted by the client", key)
        return web.Response(status=400)
    # Stock's native route answers 200 with an empty body, which the client reads as {}.
    return web.Response(status=200)


async def download(request: web.Request) -> web.StreamResponse:
    """``GET /artifacts/{path}``: stream the file, honouring a single byte Range."""
    if not _serving(request):
        return _detail(_NATIVE_DISABLED, 503)
    path = _path_param(request)
    key = store_path(path)
    store = _store(request)
    offset, length = 0, None
    ranged = False
    range_header = request.headers.get("Range")
    # We have no validator to compare an If-Range with, so such a request gets the whole
    # file, which RFC 9110 allows and is always correct.
    if range_header is not None and "If-Range" not in request.headers:
        info = await store.stat(key)
        if info is None:
            raise MlflowError(f"No such artifact: '{path}'", "RESOURCE_DOES_NOT_EXIST")
        if info.is_dir:
            return _is_directory(path)
        try:
            span = parse_range(range_header, info.file_size or 0)
        except ValueError:
            return web.Response(status=416, text="",
                                headers={"Content-Range": f"bytes */{info.file_size or 0}"})
        if span is not None:
            offset, length, ranged = span[0], span[1] - span[0], True
    try:
        async with store.get(key, offset, length) as stream:
            resp = web.StreamResponse(status=206 if ranged else 200)
            filename = posixpath.basename(key)
            resp.headers["Content-Type"] = guess_mime_type(filename)
            resp.headers["Content-Disposition"] = content_disposition(filename)
            resp.headers["X-Content-Type-Options"] = "nosniff"
            resp.headers["Accept-Ranges"] = "bytes"
            if ranged:
                last = stream.offset + stream.length - 1
                resp.headers["Content-Range"] = f"bytes {stream.offset}-{last}/{stream.size}"
            resp.content_length = stream.length
            try:
                await resp.prepare(request)
                async for chunk in stream:
                    await resp.write(chunk)
                await resp.write_eof()
            except ConnectionError:
                pass  # the client went away; nothing more to send
            except Exception:
                # The status line is gone already: cut the connection so the client sees a
                # short body rather than a complete-looking one, and log the cause.
                log.exception("download of %r failed mid-stream", key)
                if request.transport is not None:
                    request.transport.close()
            return resp
    except be.InvalidArgument:
        # Offset 0 is always valid, so this is a directory (or the store says so itself).
        info = await store.stat(key)
        if info is not None and info.is_dir:
            return _is_directory(path)
        raise


def _is_directory(path: str) -> web.Response:
    return _detail(f"Artifact path refers to a directory, not a file: '{path}'", 400)


def _file_entry(path: str, is_dir: bool, size: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "is_dir": is_dir}
    if size:  # stock omits file_size for directories and for empty files
        entry["file_size"] = size
    return entry


async def list_artifacts(request: web.Request) -> web.Response:
    """``GET /artifacts?path=``: the children of ``path`` as basenames."""
    if not _serving(request):
        return _disabled(request)
    msg = await read_message(request, LIST)
    key = store_path(validate_path(msg["path"])) if "path" in msg else ""
    files = [
        _file_entry(posixpath.basename(info.path), info.is_dir, info.file_size)
        async for info in _store(request).iter_dir(key)
    ]
    return json_response({"files": files} if files else {})


async def delete(request: web.Request) -> web.Response:
    """``DELETE /artifacts/{path}``: the file, or the directory and everything below."""
    if not _serving(request):
        return _disabled(request)
    key = store_path(_path_param(request))
    if not key:
        raise MlflowError("Invalid path", "INVALID_PARAMETER_VALUE")
    try:
        await _store(request).delete(key)
    except be.NotFound:
        pass  # stock deletes nothing and answers {} when nothing is there
    return json_response({})


async def _mpu(request: web.Request, message: Message, required: tuple[str, ...]) -> web.Response:
    if not _serving(request):
        return _disabled(request)
    _path_param(request)
    msg = await read_message(request, message)
    for name in required:
        if name not in msg or msg[name] in ("", []):
            raise missing(name)
    # No store does multipart yet, and server-info says so; the client falls back to a
    # single streamed PUT when it reads this exact message.
    raise MlflowError(MPU_UNSUPPORTED, "NOT_IMPLEMENTED")


async def mpu_create(request: web.Request) -> web.Response:
    """``POST /mpu/create/{path}``: 501, multipart is not supported."""
    return await _mpu(request, MPU_CREATE, ("path",))


async def mpu_complete(request: web.Request) -> web.Response:
    """``POST /mpu/complete/{path}``: 501, multipart is not supported."""
    return await _mpu(request, MPU_COMPLETE, ("path", "parts"))


async def mpu_abort(request: web.Request) -> web.Response:
    """``POST /mpu/abort/{path}``: 501, multipart is not supported."""
    return await _mpu(request, MPU_ABORT, ("path",))


async def presigned(request: web.Request) -> web.Response:
    """``GET /presigned/{path}``: 501; downloads always pass through the proxy."""
    if not _serving(request):
        return _disabled(request)
    _path_param(request)
    raise MlflowError(MPD_UNSUPPORTED, "NOT_IMPLEMENTED")


# -- /mlflow/artifacts/list --------------------------------------------------------------


async def list_run_artifacts(request: web.Request) -> web.Response:
    """``GET /mlflow/artifacts/list``: the run's artifacts under ``path``, run-relative."""
    msg = await read_message(request, RUN_LIST)
    run_id = run_id_of(msg)
    relative = validate_path(msg["path"]) if "path" in msg else None
    run = await request.app[METADATA].get_run(run_id)
    return json_response(await _listing(request, run.info.artifact_uri, relative))


MODEL_LIST = Message({"artifact_directory_path": Field("string")})


async def list_logged_model_artifacts(request: web.Request) -> web.Response:
    """``GET /mlflow/logged-models/{model_id}/artifacts/directories``: a model's artifacts."""
    msg = await read_message(request, MODEL_LIST)
    relative = msg.get("artifact_directory_path") or None
    if relative is not None:
        relative = validate_path(relative)
    model = await request.app[METADATA].get_logged_model(request.match_info["model_id"])
    return json_response(await _listing(request, model.artifact_uri, relative))


async def _listing(request: web.Request, root_uri: str, relative: str | None) -> dict[str, Any]:
    """``{root_uri, files}`` for the children of ``relative`` under ``root_uri``."""
    rel_key = store_path(relative or "")
    root = proxied_root_path(root_uri)
    if root is not None and _serving(request):
        infos = [info async for info in _store(request).iter_dir(join_path(root, rel_key))]
    else:
        infos = await _list_direct(root_uri, rel_key)
    files = []
    for info in infos:
        name = posixpath.basename(info.path)
        files.append(_file_entry(f"{relative.rstrip('/')}/{name}" if relative else name,
                                 info.is_dir, info.file_size))
    body: dict[str, Any] = {"root_uri": root_uri}
    if files:
        body["files"] = files
    return body


async def _list_direct(root_uri: str, key: str) -> list[FileInfo]:
    """List a run whose artifacts are not behind this proxy (a local path, ``s3://``…) by
    opening a store on its root for the one request, as stock does."""
    if proxied_root_path(root_uri) is not None:
        raise MlflowError(
            f"Cannot list artifacts of root '{root_uri}': this server does not serve "
            "artifacts (--no-serve-artifacts)", "INVALID_PARAMETER_VALUE")
    try:
        store = open_artifact_store(root_uri)
    except (UnsupportedScheme, MissingDependency, ValueError) as exc:
        raise MlflowError(f"Cannot list artifacts of root '{root_uri}': {exc}",
                          "INVALID_PARAMETER_VALUE") from None
    async with store:
        return [info async for info in store.iter_dir(key)]


_PATH = "/artifacts/{path:.*}"

ROUTES = [
    Route("GET", "/logged-models/{model_id}/artifacts/directories", list_logged_model_artifacts,
          Access(ResourceKind.LOGGED_MODEL, Action.READ, "model_id")),
    Route("PUT", _PATH, upload, _UPDATE, prefixes=ARTIFACTS_API),
    Route("GET", _PATH, download, _READ, prefixes=ARTIFACTS_API),
    Route("DELETE", _PATH, delete, _DELETE, prefixes=ARTIFACTS_API),
    Route("GET", "/artifacts", list_artifacts, _READ, prefixes=ARTIFACTS_API),
    Route("POST", "/mpu/create/{path:.*}", mpu_create, _UPDATE, prefixes=ARTIFACTS_API),
    Route("POST", "/mpu/complete/{path:.*}", mpu_complete, _UPDATE, prefixes=ARTIFACTS_API),
    Route("POST", "/mpu/abort/{path:.*}", mpu_abort, _UPDATE, prefixes=ARTIFACTS_API),
    Route("GET", "/presigned/{path:.*}", presigned, _READ, prefixes=ARTIFACTS_API),
    Route("GET", "/artifacts/list", list_run_artifacts,
          Access(ResourceKind.RUN, Action.READ, "run_id"), prefixes=API),
]
