"""Authentication, workspaces and authorization: the one enforcement point.

- :mod:`~gateway.security.middleware`: the middleware (:func:`enforcer`) and what handlers
  read of its outcome (:func:`workspace_of`, :func:`identity_of`, :func:`visibility_of`);
- :mod:`~gateway.security.authentication`: credentials to identities, failed-login limits;
- :mod:`~gateway.security.resolution`: the ids a request names to the resources judged;
- :mod:`~gateway.security.state`: :class:`Security`, the per-process state and the audit;
- :mod:`~gateway.security.effects`: grants that follow from what a handler did;
- :mod:`~gateway.security.caches`: the TTL cache they share;
- :mod:`~gateway.security.watch`: changes made by other processes, which empty those caches;
- :mod:`~gateway.security.limits`: per-workspace and per-caller rate limits;
- :mod:`~gateway.security.shares`: a fair share of the store's connections per workspace.
"""

from __future__ import annotations

from gateway.security.effects import grant_creator, grants_deleted, grants_renamed
from gateway.security.middleware import (
    WORKSPACE_HEADER,
    WORKSPACE_NAME,
    Admission,
    admission_of,
    enforcer,
    identity_of,
    visibility_of,
    workspace_of,
)
from gateway.security.state import SECURITY, Security, security_of

__all__ = [
    "SECURITY",
    "WORKSPACE_HEADER",
    "WORKSPACE_NAME",
    "Admission",
    "Security",
    "admission_of",
    "enforcer",
    "grant_creator",
    "grants_deleted",
    "grants_renamed",
    "identity_of",
    "security_of",
    "visibility_of",
    "workspace_of",
]
