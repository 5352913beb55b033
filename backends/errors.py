"""Errors raised by every backend, whatever its driver.

Backends translate their driver's exceptions into this hierarchy (``raise … from exc``)
so the gateway can render them without knowing which driver ran::

    BackendError
    ├── NotFound          the resource does not exist            → 404 RESOURCE_DOES_NOT_EXIST
    ├── AlreadyExists     a unique name or id is taken           → 400 RESOURCE_ALREADY_EXISTS
    ├── InvalidArgument   the input is not acceptable            → 400 INVALID_PARAMETER_VALUE
    ├── Conflict          the input contradicts stored state     → 400 INVALID_PARAMETER_VALUE
    ├── NotImplementedByStore  the store cannot do this          → 501 NOT_IMPLEMENTED
    └── Unavailable       the store cannot be reached right now  → 503 TEMPORARILY_UNAVAILABLE
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "BackendError",
    "Conflict",
    "InvalidArgument",
    "NotFound",
    "NotImplementedByStore",
    "Unavailable",
]


class BackendError(Exception):
    """Base of every error a backend raises on purpose. ``str(exc)`` is safe to show users."""


class NotFound(BackendError):
    pass


class AlreadyExists(BackendError):
    pass


class InvalidArgument(BackendError):
    pass


class Conflict(BackendError):
    pass


class NotImplementedByStore(BackendError):
    pass


class Unavailable(BackendError):
    pass
