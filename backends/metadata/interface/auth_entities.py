"""Plain records of the auth tables (users, teams, tokens, grants, audit), as stores return
them. The gateway turns them into :mod:`auth` objects; backends do not import ``auth``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AUDIT_FIELDS", "AuditRecord", "AuditRow", "AuthVersions", "GrantRow",
           "LimitRow", "RoleAssignment", "RolePermissionRow", "RoleRow", "TokenRow", "UserRecord",
           "Visibility", "WorkspaceRow"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: int
    username: str
    password_hash: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class WorkspaceRow:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class TokenRow:
    token_id: str
    user_id: int
    name: str
    digest: str
    read_only: bool
    workspace: str | None
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class GrantRow:
    resource_type: str  # "experiment" | "registered_model"
    workspace: str
    resource_id: str  # experiment id as text, or registered model name
    principal_type: str  # "user" | "team" | "role"
    principal: str  # user id as text, team (workspace) name, or role id as text
    permission: str  # READ, USE, EDIT, MANAGE, DENY


@dataclass(frozen=True, slots=True)
class RolePermissionRow:
    """A role's permission: a grant whose principal is the role; ``resource_pattern`` is an
    id, a name, or ``*`` for every resource of the type in the role's workspace."""

    permission_id: int
    role_id: int
    resource_type: str  # "experiment" | "registered_model" | "workspace"
    resource_pattern: str
    permission: str


@dataclass(frozen=True, slots=True)
class RoleRow:
    role_id: int
    name: str
    workspace: str
    description: str | None
    permissions: tuple[RolePermissionRow, ...] = ()


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    assignment_id: int
    user_id: int
    role_id: int


@dataclass(frozen=True, slots=True)
class AuthVersions:
    """Counters of the changes to the auth tables, by what a change makes stale in a
    server's caches: a store adds one in the transaction of the change (``auth_versions``)."""

    credentials: int = 0  # a password changed, a user was deleted, a token revoked
    identities: int = 0  # an admin flag, a team's members, a role or who holds it
    grants: int = 0  # a grant or a role's permissions
    workspaces: int = 0  # a team (workspace) was created or deleted
    limits: int = 0  # a workspace's rate limits were set or removed


@dataclass(frozen=True, slots=True)
class LimitRow:
    """A workspace's rate limits, per second across all server processes. None takes the
    server's default; 0 is no limit. ``caller_*`` apply to each token or user in it."""

    workspace: str
    requests_per_second: float | None = None
    rows_per_second: float | None = None
    caller_requests_per_second: float | None = None
    caller_rows_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    ts: int
    username: str | None
    workspace: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: str  # "allowed" | "denied" | "failed" | "error"
    status: int | None
    client_address: str | None
    audit_id: int | None = None
    request_id: str | None = None  # the request's X-Request-Id; None in records made before


# An audit record as the gateway queues and stores it: AuditRecord's fields in order, without
# the id the database assigns. Plain tuples of strings and numbers, which the garbage
# collector stops tracking, so thousands pending between two batches cost it nothing.
AuditRow = tuple[int, str | None, str | None, str, str | None, str | None, str, int | None,
                 str | None, str | None]
AUDIT_FIELDS = ("ts", "username", "workspace", "action", "resource_type", "resource_id",
                "outcome", "status", "client_address", "request_id")


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which experiments and registered models a search may return, as part of its SQL.

    ``principals`` is ``None`` to see everything in ``workspace`` (admins, the workspace's
    managers, or auth off); otherwise the (principal_type, principal) pairs whose grants
    count, and ``default_readable`` says whether a resource with no grant is readable (the
    caller is a member and the member default is READ or more). A DENY to any principal
    hides a resource.
    """

    workspace: str
    principals: tuple[tuple[str, str], ...] | None = None
    default_readable: bool = False
