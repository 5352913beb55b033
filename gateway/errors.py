"""MLflow-shaped errors: ``{"error_code", "message", "sqlstate", "error_class"}`` with MLflow's status.

Handlers raise :class:`MlflowError`; backends raise :mod:`backends.errors`. The middleware
renders both, and turns anything unexpected into a generic ``INTERNAL_ERROR`` whose detail
goes only to the log.
"""

from __future__ import annotations

import logging
from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from backends import errors as be

__all__ = [
    "ERROR_CODE_TO_HTTP_STATUS",
    "MlflowError",
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

    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code

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


def from_backend(exc: be.BackendError) -> MlflowError:
    for cls, code in _BACKEND_CODES:
        if isinstance(exc, cls):
            return MlflowError(str(exc), code)
    return MlflowError(str(exc), "INTERNAL_ERROR")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MlflowError as exc:
        return error_response(exc)
    except be.BackendError as exc:
        err = from_backend(exc)
        headers = {"Retry-After": "1"} if err.error_code == "TEMPORARILY_UNAVAILABLE" else None
        return error_response(err, headers)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            MlflowError("An internal error occurred; see the server log.", "INTERNAL_ERROR")
        )
