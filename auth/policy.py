"""The permission check: :func:`is_allowed`, a pure function over plain data.

Resources are judged at two grains: a workspace (a team), and an experiment or registered
model. Runs, metrics, logged models and artifacts are judged as their experiment; model
versions as their registered model (the gateway resolves them before asking).

For a user on an experiment or registered model, in order:

1. An admin may do everything.
2. A token scoped to one workspace may do nothing elsewhere; a read-only token only reads.
3. A manager of the resource's workspace has MANAGE.
4. Grants to the user, to the user's teams and to the user's roles on the resource (a
   role's permission on every resource of the type counts as one on this one): any DENY
   wins; otherwise the highest grant, but never less than the member default when the user
   belongs to the resource's workspace. A role's permission on a workspace makes its users
   members (USE) or managers (MANAGE) of it, like team membership.
5. No grant: the member default for members of the workspace, nothing for anyone else.

Deny by default: an unknown kind, a missing identity or a missing resource is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from auth.access import Action, ResourceKind
from auth.identity import Identity
from auth.permissions import Permission, TeamRole

__all__ = ["ROLE", "Grant", "Policy", "Principal", "Resource", "effective_permission",
           "is_allowed"]

USER = "user"
TEAM = "team"
ROLE = "role"


@dataclass(frozen=True)
class Principal:
    """Who a grant is for: a user (``name`` = user id as text), a team (workspace name) or
    an MLflow role (role id as text)."""

    kind: str  # "user" | "team" | "role"
    name: str


@dataclass(frozen=True)
class Grant:
    principal: Principal
    permission: Permission


@dataclass(frozen=True)
class Resource:
    """What a request touches, resolved: its kind, the workspace it lives in, and every grant
    on it (``grants`` is ignored for a workspace)."""

    kind: ResourceKind
    workspace: str
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class Policy:
    """Server-wide settings of the check."""

    member_default: Permission = Permission.NO_PERMISSIONS


def principals_of(identity: Identity) -> tuple[Principal, ...]:
    """The user, each of their teams and each of their roles."""
    return (Principal(USER, str(identity.user_id)),
            *(Principal(TEAM, ws) for ws in sorted(identity.teams)),
            *(Principal(ROLE, str(r)) for r in sorted(identity.roles)))


def _applicable(identity: Identity, grants: Iterable[Grant]) -> list[Permission]:
    """The grants to one of :func:`principals_of` ``identity`` (matched field by field: this
    runs on every check of a non-admin, where building the principals cost more)."""
    user = str(identity.user_id)
    roles = {str(r) for r in identity.roles} if identity.roles else ()
    out = []
    for g in grants:
        kind, name = g.principal.kind, g.principal.name
        if (name == user if kind == USER else name in identity.teams if kind == TEAM
                else kind == ROLE and name in roles):
            out.append(g.permission)
    return out


def effective_permission(identity: Identity, resource: Resource,
                         policy: Policy = Policy()) -> Permission:
    """The level ``identity`` holds on an experiment or registered model (token scope not
    applied; :func:`is_allowed` applies it)."""
    if identity.is_admin:
        return Permission.MANAGE
    role = identity.role_in(resource.workspace)
    if role is TeamRole.MANAGER:
        return Permission.MANAGE
    base = policy.member_default if role is not None else Permission.NO_PERMISSIONS
    if base is Permission.DENY:
        base = Permission.NO_PERMISSIONS
    granted = _applicable(identity, resource.grants)
    if Permission.DENY in granted:
        return Permission.DENY
    best = base
    for permission in granted:
        if permission.rank > best.rank:
            best = permission
    return best


def _workspace_allows(identity: Identity, action: Action, workspace: str) -> bool:
    if identity.is_admin:
        return True
    role = identity.role_in(workspace)
    if action is Action.READ:
        # Searches and listings: rows are filtered to what the caller may read.
        return True
    if action is Action.CREATE:
        return role is not None
    return role is TeamRole.MANAGER


def is_allowed(identity: Identity | None, action: Action, resource: Resource,
               policy: Policy = Policy()) -> bool:
    """May ``identity`` do ``action`` on ``resource``? Pure; deny by default."""
    if resource.kind is ResourceKind.PUBLIC:
        return True
    if identity is None:
        return False
    scope = identity.scope
    if scope is not None:
        if scope.workspace is not None and scope.workspace != resource.workspace:
            return False
        if scope.read_only and action is not Action.READ:
            return False
    if resource.kind is ResourceKind.SERVER:
        return identity.is_admin
    if resource.kind is ResourceKind.WORKSPACE:
        return _workspace_allows(identity, action, resource.workspace)
    if resource.kind in (ResourceKind.EXPERIMENT, ResourceKind.REGISTERED_MODEL):
        return effective_permission(identity, resource, policy).allows(action)
    return False  # runs, models, paths: resolve to their experiment or model first
