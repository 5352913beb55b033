"""MLflow-shaped errors: ``{"error_code", "message", "sqlstate", "error_class"}`` with MLflow's status.

Handlers raise :class:`MlflowError`; backends raise :mod:`backends.errors`. The middleware
renders both, renders aiohttp's own answers under the API prefixes (an unknown path, a wrong
method, a body too large or that cannot be decoded) the same way, and turns anything
unexpected into a generic ``INTERNAL_ERROR`` whose detail goes only to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from backends import errors as be

__all__ = [
    "API_PREFIXES",
    "BASE_PATH",
    "ERROR_CODE_TO_HTTP_STATUS",
    "ERROR_RENDERER",
    "MlflowError",
    "cut_off",
    "error_middleware",
    "error_response",
    "invalid_parameter",
]

log = logging.getLogger("mlgate.errors")

ERROR_CODE_TO_HTTP_STATUS: Final[dict[str, int]] = {
    "INTERNAL_ERROR": 500,
    "INVALID_STATE": 500,
    "DATA_LOSS": 500,
    "FEATURE_DISABLED": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "CANCELLED": 499,
    "RESOURCE_EXHAUSTED": 429,
    "ABORTED": 409,
    "RESOURCE_CONFLICT": 409,
    "ALREADY_EXISTS": 409,
    "NOT_FOUND": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "PERMISSION_DENIED": 403,
    "CUSTOMER_UNAUTHORIZED": 401,
    "UNAUTHENTICATED": 401,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_PARAMETER_VALUE": 400,
}

# Where clients expect MLflow's JSON errors; other paths keep aiohttp's plain answers.
API_PREFIXES: Final = ("/api/", "/ajax-api/", "/mlgate/")
# The server's --static-prefix ("" without one), which every path starts with.
BASE_PATH = web.AppKey("base_path", str)

# aiohttp's own refusals under the API prefixes, as (code, message); others by their reason.
_HTTP_ERRORS: Final[dict[int, tuple[str, str]]] = {
    404: ("ENDPOINT_NOT_FOUND", "No API endpoint at {method} {path}."),
    405: ("ENDPOINT_NOT_FOUND", "No API endpoint at {method} {path}; it answers {allow}."),
    413: ("INVALID_PARAMETER_VALUE", "The request body is larger than the server accepts."),
}
_MAX_ECHOED_PATH = 200

# (sqlstate, error_class) as MLflow 3.17 derives them; codes absent here carry neither.
_CLASSIFICATION: Final[dict[str, tuple[str, str]]] = {
    "INVALID_PARAMETER_VALUE": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "BAD_REQUEST": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "RESOURCE_ALREADY_EXISTS": ("KAM00", "RESOURCE_ALREADY_EXISTS"),
    "RESOURCE_DOES_NOT_EXIST": ("KAM00", "RESOURCE_NOT_FOUND"),
    "ENDPOINT_NOT_FOUND": ("KAM00", "RESOURCE_NOT_FOUND"),
    "PERMISSION_DENIED": ("KAM00", "PERMISSION_DENIED"),
    "CUSTOMER_UNAUTHORIZED": ("KAM00", "PERMISSION_DENIED"),
    "INTERNAL_ERROR": ("XXM00", "CLIENT_INTERNAL_ERROR"),
    "INVALID_STATE": ("XXM00", "CLIENT_INTERNAL_ERROR"),
    "FEATURE_DISABLED": ("KAM00", "FEATURE_DISABLED"),
    "TEMPORARILY_UNAVAILABLE": ("XXM00", "CLIENT_INTERNAL_ERROR"),
}

_BACKEND_CODES: Final[list[tuple[type[be.BackendError], str]]] = [
    (be.NotFound, "RESOURCE_DOES_NOT_EXIST"),
    (be.AlreadyExists, "RESOURCE_ALREADY_EXISTS"),
    (be.InvalidArgument, "INVALID_PARAMETER_VALUE"),
    (be.Conflict, "INVALID_PARAMETER_VALUE"),
    (be.NotImplementedByStore, "NOT_IMPLEMENTED"),
    (be.Unavailable, "TEMPORARILY_UNAVAILABLE"),
]


class MlflowError(Exception):
    """An error to render as MLflow does. ``message`` is shown to the client."""

    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.headers = headers  # sent with the answer (a 429's Retry-After)

    @property
    def status(self) -> int:
        return ERROR_CODE_TO_HTTP_STATUS.get(self.error_code, 500)


def invalid_parameter(message: str) -> MlflowError:
    return MlflowError(message, "INVALID_PARAMETER_VALUE")


def error_body(error_code: str, message: str) -> dict[str, str]:
    body = {"error_code": error_code, "message": message}
    if error_code in _CLASSIFICATION:
        body["sqlstate"], body["error_class"] = _CLASSIFICATION[error_code]
    return body


def error_response(error: MlflowError, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(error_body(error.error_code, error.message)),
        status=error.status,
        content_type="application/json",
        headers=headers,
    )


# How an MlflowError is answered on this request, when not as MLflow's JSON: set by a route's
# parse step (GraphQL answers {"data": null, "errors": [message]} with the same status).
ERROR_RENDERER: web.RequestKey[Callable[[MlflowError], web.Response]] = web.RequestKey(
    "mlgate_error_renderer")


def from_backend(exc: be.BackendError) -> MlflowError:
    for cls, code in _BACKEND_CODES:
        if isinstance(exc, cls):
            return MlflowError(str(exc), code)
    return MlflowError(str(exc), "INTERNAL_ERROR")


def _from_http(request: web.Request, exc: web.HTTPException) -> web.Response:
    code, template = _HTTP_ERRORS.get(
        exc.status,
        ("INVALID_PARAMETER_VALUE" if exc.status < 500 else "INTERNAL_ERROR", "{reason}."))
    message = template.format(
        method=request.method, path=request.path[:_MAX_ECHOED_PATH],
        allow=exc.headers.get("Allow", "").replace(",", ", "), reason=exc.reason)
    headers = {name: exc.headers[name] for name in ("Allow", "Retry-After")
               if name in exc.headers}
    return web.Response(body=orjson.dumps(error_body(code, message)), status=exc.status,
                        content_type="application/json", headers=headers)


def cut_off(request: web.Request, exc: BaseException) -> bool:
    """Whether ``exc`` is aiohttp's reader learning that the connection went away (closed by
    the client, or by the server's body timeout): a connection error, or the RuntimeError
    its stream raises when asked to wait on a lost connection, with the connection gone.
    Answered and audited as a 400, not as the server's error."""
    transport = request.transport
    gone = transport is None or transport.is_closing()
    return gone and (isinstance(exc, ConnectionError) or (
        type(exc) is RuntimeError and str(exc) == "Connection closed."))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MlflowError as exc:
        render = request.get(ERROR_RENDERER)
        response = (render or error_response)(exc)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    except be.BackendError as exc:
        err = from_backend(exc)
        headers = {"Retry-After": "1"} if err.error_code == "TEMPORARILY_UNAVAILABLE" else None
        return error_response(err, headers)
    except web.HTTPException as exc:
        base = request.app.get(BASE_PATH, "")
        if exc.status < 400 or not (request.path.startswith(base) and request.path[
                len(base):].startswith(API_PREFIXES)):
            raise
        return _from_http(request, exc)
    except web.RequestPayloadError:
        # The body broke off, or is not in the Content-Encoding it claims (gzip that is not).
        # Its rest cannot be read either: end it here (aiohttp would try to drain it and log
        # the same error again) and close the connection after answering.
        request.content.feed_eof()
        response = error_response(invalid_parameter(
            "The request body could not be read: it is cut short or not in its "
            "Content-Encoding."))
        response.force_close()
        return response
    except Exception as exc:
        if cut_off(request, exc):
            # The connection closed mid-request: nothing can be answered, and it is not the
            # server's fault; counted as a 500 it would let any client inflate the 5xx rate.
            # Still logged, with what was raised.
            log.info("%s %s: the connection closed mid-request (%r)",
                     request.method, request.path, exc)
            response = error_response(invalid_parameter(
                "The request was cut short: the connection closed."))
            response.force_close()
            return response
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            MlflowError("An internal error occurred; see the server log.", "INTERNAL_ERROR")
        )
