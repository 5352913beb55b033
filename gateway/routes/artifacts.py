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
from typing import Any, Final, NamedTuple

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from backends import errors as be
from backends.artifacts.base import ArtifactStore, ByteStream, FileInfo, UploadedPart
from backends.registry import (
    MissingDependency,
    UnsupportedScheme,
    artifact_scheme,
    open_artifact_store,
)
from gateway.artifact_paths import (
    Location,
    join_path,
    logged_model_root,
    run_root,
    served_roots,
    store_path,
    under_root,
    validate_path,
)
from gateway.errors import MlflowError
from gateway.keys import ARTIFACTS, METADATA, SETTINGS
from gateway.observability import request_id
from gateway.observability.metrics import count_bytes
from gateway.observability.request_id import request_id_of
from gateway.parsing import Field, Message, body_chunks, message_of, missing
from gateway.render import json_response
from gateway.routes._common import run_id_of
from gateway.routing import API, ARTIFACTS_API, Route

__all__ = [
    "ROUTES",
    "SHA256_HEADER",
    "Listing",
    "capabilities",
    "content_disposition",
    "destination_scheme",
    "guess_mime_type",
    "parse_range",
    "run_artifacts",
    "send_stream",
]

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

# The hex SHA-256 of an artifact: sent by a client with an upload to have it checked, and
# returned with every download of an object whose digest the store recorded.
SHA256_HEADER: Final = "X-MLgate-SHA256"
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
MAX_PARTS: Final = 10000
PRESIGNED_TTL: Final = 900

MPU_UNSUPPORTED: Final = "Multipart upload is not supported for the current artifact repository"
MPD_UNSUPPORTED: Final = "Multipart download is not supported for the current artifact repository"

_READ = Access(ResourceKind.ARTIFACT_PATH, Action.READ, "path")
_UPDATE = Access(ResourceKind.ARTIFACT_PATH, Action.UPDATE, "path")
_DELETE = Access(ResourceKind.ARTIFACT_PATH, Action.DELETE, "path")
# The multipart routes' URL names a directory; their body's ``path`` is the client's file.
_UPDATE_DIR = Access(ResourceKind.ARTIFACT_PATH, Action.UPDATE, "directory")

LIST = Message({"path": Field("string")})
RUN_LIST = Message({
    "run_id": Field("string"),
    "run_uuid": Field("string"),
    "path": Field("string"),
    "page_token": Field("string"),
})
MPU_PART = Message({"upload_id": Field("string"), "part_number": Field("string")})
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


def destination_scheme(request: web.Request) -> str:
    """The proxied destination's scheme (``file`` for a local folder), as the artifact byte
    counters are labelled."""
    return artifact_scheme(request.app[SETTINGS].artifacts_destination) or "file"


def _disabled(request: web.Request) -> web.Response:
    """Stock's Flask answer when artifacts are not served: 503 text/html naming the rule."""
    rule = request.match_info.route.resource
    canonical = rule.canonical if rule is not None else request.path
    flask_rule = canonical.replace("{path}", "<path:artifact_path>").replace(
        "{directory}", "<path:artifact_path>")
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


def _path_param(request: web.Request, name: str = "path") -> str:
    return validate_path(message_of(request)[name])


def capabilities(app: web.Application) -> tuple[bool, bool]:
    """``(multipart uploads, multipart downloads)`` as ``server-info`` reports them: what
    the mpu/* and presigned routes really do with this destination and settings."""
    settings = app[SETTINGS]
    if not settings.serve_artifacts or ARTIFACTS not in app:
        return False, False
    store = app[ARTIFACTS]
    mode = settings.artifact_multipart
    uploads = store.supports_multipart and mode != "off"
    downloads = store.supports_presigned and mode == "presigned"
    return uploads, downloads


def _announced_sha256(request: web.Request, header: str = SHA256_HEADER) -> str | None:
    value = request.headers.get(header)
    if value is None:
        return None
    value = value.strip()
    if not _HEX64.fullmatch(value):
        raise MlflowError(f"{header} must be 64 hexadecimal digits (a SHA-256)",
                          "INVALID_PARAMETER_VALUE")
    return value.lower()


# -- the proxy ---------------------------------------------------------------------------


def requested_span(request: web.Request, size: int) -> tuple[int, int | None] | None:
    """``(offset, length)`` of the single byte range a request asks of a ``size``-byte file,
    ``None`` for the whole file. Raises :class:`ValueError` when it cannot be satisfied:
    answer :func:`unsatisfiable`."""
    range_header = request.headers.get("Range")
    # We have no validator to compare an If-Range with, so such a request gets the whole
    # file, which RFC 9110 allows and is always correct.
    if range_header is None or "If-Range" in request.headers:
        return None
    span = parse_range(range_header, size)
    return None if span is None else (span[0], span[1] - span[0])


def unsatisfiable(size: int) -> web.Response:
    return web.Response(status=416, text="", headers={"Content-Range": f"bytes */{size}"})


async def send_file(request: web.Request, stream: ByteStream, key: str, *, ranged: bool,
                    what: str, headers: dict[str, str], scheme: str) -> web.StreamResponse:
    """``stream`` (the file at ``key``, or the range of it asked for) as an attachment, with
    its type guessed from its name; ``headers`` added. ``scheme``: the store's, for the
    byte counters."""
    resp = web.StreamResponse(status=206 if ranged else 200)
    filename = posixpath.basename(key)
    resp.headers["Content-Type"] = guess_mime_type(filename)
    resp.headers["Content-Disposition"] = content_disposition(filename)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Accept-Ranges"] = "bytes"
    # Prepared here, not by the middleware that sets it on other responses.
    resp.headers[request_id.HEADER] = request_id_of(request)
    resp.headers.update(headers)
    if ranged:
        last = stream.offset + stream.length - 1
        resp.headers["Content-Range"] = f"bytes {stream.offset}-{last}/{stream.size}"
    resp.content_length = stream.length
    if request.method == "HEAD":
        await resp.prepare(request)
        return resp
    return await send_stream(request, resp, stream, what, scheme)


async def send_stream(request: web.Request, resp: web.StreamResponse, stream: ByteStream,
                      what: str, scheme: str) -> web.StreamResponse:
    """Send ``stream`` as the body of ``resp`` (headers set)."""
    try:
        await resp.prepare(request)
        async for chunk in count_bytes(request, scheme, "out", stream):
            await resp.write(chunk)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client went away; nothing more to send
    except Exception:
        # The status line is gone already: cut the connection so the client sees a short
        # body rather than a complete-looking one, and log the cause.
        log.exception("%s failed mid-stream", what)
        if request.transport is not None:
            request.transport.close()
    return resp


async def upload(request: web.Request) -> web.Response:
    """``PUT /artifacts/{path}``: stream the body into the store."""
    if not _serving(request):
        return _detail(_NATIVE_DISABLED, 503)
    path = _path_param(request)
    if not posixpath.split(path)[1]:
        return _detail("Artifact path must include a filename (cannot end with '/').", 400)
    key = store_path(path)
    sha256 = _announced_sha256(request)
    try:
        await _store(request).put(key, count_bytes(request, destination_scheme(request), "in",
                                                   body_chunks(request, CHUNK_SIZE)),
                                  sha256=sha256)
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
    span = None
    if "Range" in request.headers:
        info = await store.stat(key)
        if info is None:
            raise MlflowError(f"No such artifact: '{path}'", "RESOURCE_DOES_NOT_EXIST")
        if info.is_dir:
            return _is_directory(path)
        try:
            span = requested_span(request, info.file_size or 0)
        except ValueError:
            return unsatisfiable(info.file_size or 0)
    offset, length = span or (0, None)
    try:
        async with store.get(key, offset, length) as stream:
            return await send_file(request, stream, key, ranged=span is not None,
                                   what=f"download of {key!r}",
                                   headers={SHA256_HEADER: stream.sha256} if stream.sha256
                                   else {}, scheme=destination_scheme(request))
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
    msg = message_of(request)
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


def _mpu_store(request: web.Request) -> ArtifactStore:
    store = _store(request)
    if not capabilities(request.app)[0]:
        # The client falls back to a single streamed PUT when it reads this exact message.
        raise MlflowError(MPU_UNSUPPORTED, "NOT_IMPLEMENTED")
    return store


async def _mpu_message(
    request: web.Request, message: Message, required: tuple[str, ...]
) -> tuple[str, dict[str, Any]]:
    """The target key (``<dir>/<basename of the client's local path>``, as stock builds
    it) and the parsed body."""
    directory = store_path(_path_param(request, "directory"))
    msg = message_of(request)
    for name in required:
        if name not in msg or msg[name] in ("", []):
            raise missing(name)
    name = posixpath.basename(msg["path"].replace("\\", "/"))
    if not name:
        raise MlflowError("'path' must name a file", "INVALID_PARAMETER_VALUE")
    validate_path(name)
    return join_path(directory, store_path(name)), msg


def _upload_id(msg: dict[str, Any]) -> str:
    upload_id = msg.get("upload_id") or ""
    if not upload_id:
        raise missing("upload_id")
    return str(upload_id)


async def mpu_create(request: web.Request) -> web.Response:
    """``POST /mpu/create/{dir}``: start a multipart upload. In the default ``proxy`` mode
    each credential's URL is this gateway's ``mpu/upload`` route; in ``presigned`` mode a
    presigned S3 URL."""
    if not _serving(request):
        return _disabled(request)
    key, msg = await _mpu_message(request, MPU_CREATE, ("path",))
    store = _mpu_store(request)
    num_parts = int(msg.get("num_parts") or 1)
    if not 1 <= num_parts <= MAX_PARTS:
        raise MlflowError(f"num_parts must be between 1 and {MAX_PARTS}",
                          "INVALID_PARAMETER_VALUE")
    upload_id = await store.create_multipart(key)
    presigned = request.app[SETTINGS].artifact_multipart == "presigned" and (
        store.supports_presigned)
    credentials = []
    if presigned:
        for n in range(1, num_parts + 1):
            url, headers = await store.presign_part(key, upload_id, n, PRESIGNED_TTL)
            credentials.append({"url": url, "part_number": n, "headers": headers})
    else:
        marker = "/mpu/create/"
        base = request.path[: request.path.index(marker)]
        origin = f"{_client_scheme(request)}://{request.host}"
        quoted = urllib.parse.quote(key)
        headers = {}
        if "Authorization" in request.headers:
            # The client sends these headers with each part; without its own credentials
            # the gateway's access check would refuse the parts.
            headers["Authorization"] = request.headers["Authorization"]
        for n in range(1, num_parts + 1):
            query = urllib.parse.urlencode({"upload_id": upload_id, "part_number": n})
            credentials.append({"url": f"{origin}{base}/mpu/upload/{quoted}?{query}",
                                "part_number": n, "headers": headers})
    return json_response({"upload_id": upload_id, "credentials": credentials})


def _client_scheme(request: web.Request) -> str:
    """The scheme the client called with: a load balancer that terminates TLS says it in
    ``X-Forwarded-Proto``. Taken from anyone: it only shapes the URLs handed back to the
    caller who sent it, as ``Host`` does."""
    sent = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return sent if sent in ("http", "https") else request.scheme


async def mpu_upload_part(request: web.Request) -> web.Response:
    """``PUT /mpu/upload/{path}?upload_id=&part_number=``: one part, streamed from the
    client to the store (mlgate's own route, handed out by ``mpu/create``). Answers the
    part's ETag, which the client passes back to ``mpu/complete``."""
    if not _serving(request):
        return _disabled(request)
    key = store_path(_path_param(request))
    store = _mpu_store(request)
    msg = message_of(request)
    upload_id, number = msg.get("upload_id", ""), msg.get("part_number", "")
    if not upload_id:
        raise missing("upload_id")
    if not _DIGITS.fullmatch(number) or not 1 <= int(number) <= MAX_PARTS:
        raise MlflowError(f"part_number must be between 1 and {MAX_PARTS}",
                          "INVALID_PARAMETER_VALUE")
    part = await store.put_part(key, upload_id, int(number), count_bytes(
        request, destination_scheme(request), "in", body_chunks(request, CHUNK_SIZE)))
    return web.Response(status=200, headers={"ETag": part.etag})


async def mpu_complete(request: web.Request) -> web.Response:
    """``POST /mpu/complete/{dir}``: assemble the parts into the object."""
    if not _serving(request):
        return _disabled(request)
    key, msg = await _mpu_message(request, MPU_COMPLETE, ("path", "parts"))
    store = _mpu_store(request)
    parts = []
    for part in msg["parts"]:
        number = int(part.get("part_number") or 0)
        if not 1 <= number <= MAX_PARTS:
            raise MlflowError(f"part_number must be between 1 and {MAX_PARTS}",
                              "INVALID_PARAMETER_VALUE")
        parts.append(UploadedPart(number, str(part.get("etag") or "")))
    await store.complete_multipart(key, _upload_id(msg), parts)
    return json_response({})


async def mpu_abort(request: web.Request) -> web.Response:
    """``POST /mpu/abort/{dir}``: discard the upload and its parts."""
    if not _serving(request):
        return _disabled(request)
    key, msg = await _mpu_message(request, MPU_ABORT, ("path",))
    store = _mpu_store(request)
    await store.abort_multipart(key, _upload_id(msg))
    return json_response({})


async def presigned(request: web.Request) -> web.Response:
    """``GET /presigned/{path}``: a presigned download URL in ``presigned`` mode on S3;
    otherwise 501 and downloads pass through the proxy."""
    if not _serving(request):
        return _disabled(request)
    key = store_path(_path_param(request))
    if not capabilities(request.app)[1]:
        raise MlflowError(MPD_UNSUPPORTED, "NOT_IMPLEMENTED")
    store = _store(request)
    info = await store.stat(key)
    if info is None or info.is_dir:
        raise MlflowError(f"No such artifact: '{key}'", "RESOURCE_DOES_NOT_EXIST")
    url, headers = await store.presign_get(key, PRESIGNED_TTL)
    return json_response({"url": url, "headers": headers, "file_size": info.file_size or 0})


# -- /mlflow/artifacts/list --------------------------------------------------------------


class Listing(NamedTuple):
    """A run's or logged model's artifacts under one path: the root URI, and the children
    with paths relative to it."""

    root_uri: str
    files: list[FileInfo]


async def run_artifacts(request: web.Request, run_id: str, path: str | None) -> Listing:
    """The run's artifacts under ``path`` (checked as stock checks it), run-relative: what
    ``artifacts/list`` and GraphQL's ``mlflowListArtifacts`` answer."""
    relative = validate_path(path) if path is not None else None
    run = await request.app[METADATA].get_run(run_id)
    root = run_root(run.info.artifact_uri, served_roots(request.app[SETTINGS]), run.info.run_id)
    return await _listing(request, run.info.artifact_uri, root, relative)


def _listing_response(listing: Listing) -> web.Response:
    body: dict[str, Any] = {"root_uri": listing.root_uri}
    if listing.files:
        body["files"] = [_file_entry(f.path, f.is_dir, f.file_size) for f in listing.files]
    return json_response(body)


async def list_run_artifacts(request: web.Request) -> web.Response:
    """``GET /mlflow/artifacts/list``: the run's artifacts under ``path``, run-relative."""
    msg = message_of(request)
    return _listing_response(await run_artifacts(request, run_id_of(msg), msg.get("path")))


MODEL_LIST = Message({"artifact_directory_path": Field("string")})


async def list_logged_model_artifacts(request: web.Request) -> web.Response:
    """``GET /mlflow/logged-models/{model_id}/artifacts/directories``: a model's artifacts."""
    msg = message_of(request)
    relative = msg.get("artifact_directory_path") or None
    if relative is not None:
        relative = validate_path(relative)
    model = await request.app[METADATA].get_logged_model(request.match_info["model_id"])
    root = logged_model_root(model.artifact_uri, served_roots(request.app[SETTINGS]),
                             model.model_id)
    return _listing_response(await _listing(request, model.artifact_uri, root, relative))


async def _listing(request: web.Request, root_uri: str, root: Location,
                   relative: str | None) -> Listing:
    """The children of ``relative`` under ``root`` (``root_uri`` checked by
    :func:`run_root` or :func:`logged_model_root`)."""
    target = under_root(root, relative or "")
    if root.scheme == "mlflow-artifacts" and _serving(request):
        infos = [info async for info in _store(request).iter_dir("/".join(target.segments))]
    else:
        infos = await _list_direct(root, "/".join(target.segments[len(root.segments):]))
    files = []
    for info in infos:
        name = posixpath.basename(info.path)
        files.append(FileInfo(f"{relative.rstrip('/')}/{name}" if relative else name,
                              info.is_dir, info.file_size))
    return Listing(root_uri, files)


async def _list_direct(root: Location, key: str) -> list[FileInfo]:
    """List a run whose artifacts are not behind this proxy (a local path, ``s3://``…) by
    opening a store on its (checked, normalized) root for the one request, as stock does."""
    try:
        store = open_artifact_store(root.uri)
    except (UnsupportedScheme, MissingDependency, ValueError) as exc:
        raise MlflowError(f"Cannot list artifacts of root '{root.uri}': {exc}",
                          "INVALID_PARAMETER_VALUE") from None
    async with store:
        return [info async for info in store.iter_dir(key)]


_PATH = "/artifacts/{path:.*}"

ROUTES = [
    Route("GET", "/logged-models/{model_id}/artifacts/directories", list_logged_model_artifacts,
          Access(ResourceKind.LOGGED_MODEL, Action.READ, "model_id"), message=MODEL_LIST),
    Route("PUT", _PATH, upload, _UPDATE, prefixes=ARTIFACTS_API, body=False),
    Route("GET", _PATH, download, _READ, prefixes=ARTIFACTS_API, body=False),
    Route("DELETE", _PATH, delete, _DELETE, prefixes=ARTIFACTS_API, body=False),
    Route("GET", "/artifacts", list_artifacts, Access(
        ResourceKind.ARTIFACT_PATH, Action.READ, "path", default=""), message=LIST, prefixes=ARTIFACTS_API),
    Route("POST", "/mpu/create/{directory:.*}", mpu_create, _UPDATE_DIR, message=MPU_CREATE,
          prefixes=ARTIFACTS_API),
    Route("POST", "/mpu/complete/{directory:.*}", mpu_complete, _UPDATE_DIR,
          message=MPU_COMPLETE, prefixes=ARTIFACTS_API),
    Route("POST", "/mpu/abort/{directory:.*}", mpu_abort, _UPDATE_DIR, message=MPU_ABORT,
          prefixes=ARTIFACTS_API),
    Route("PUT", "/mpu/upload/{path:.*}", mpu_upload_part, _UPDATE, message=MPU_PART,
          prefixes=ARTIFACTS_API, body=False),
    Route("GET", "/presigned/{path:.*}", presigned, _READ, prefixes=ARTIFACTS_API, body=False),
    Route("GET", "/artifacts/list", list_run_artifacts,
          Access(ResourceKind.RUN, Action.READ, "run_id"), prefixes=API, message=RUN_LIST),
]
