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

A user's role in a workspace (:func:`role_of`) is their team role there; with
``Policy.default_workspace_open`` every user is at least a member of ``default``, as every
authenticated user is on stock MLflow: they may create experiments and registered models
there (the gateway grants creators MANAGE) and get the member default on the rest. Closed,
``default`` is a team like any other.

On a workspace: anyone may READ (searches, whose rows are filtered instead), members and
managers may CREATE, managers may do the rest.

Deny by default: an unknown kind, a missing identity or a missing resource is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from auth.access import Action, ResourceKind
from auth.identity import Identity
from auth.permissions import Permission, TeamRole

__all__ = ["DEFAULT_WORKSPACE", "ROLE", "Grant", "Policy", "Principal", "Resource",
           "effective_permission", "is_allowed", "refusal", "role_of"]

DEFAULT_WORKSPACE = "default"  # the workspace of requests that name none (as on stock)

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


class Resource(NamedTuple):
    """What a request touches, resolved: its kind, the workspace it lives in, and every grant
    on it (``grants`` is ignored for a workspace). A NamedTuple: one is made for every check
    (a frozen dataclass costs several times as much to make)."""

    kind: ResourceKind
    workspace: str
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class Policy:
    """Server-wide settings of the check."""

    member_default: Permission = Permission.NO_PERMISSIONS
    # Every user is a member of DEFAULT_WORKSPACE. Off here (deny by default); the server's
    # --auth-default-workspace-open turns it on unless told otherwise.
    default_workspace_open: bool = False


def role_of(identity: Identity, workspace: str, policy: Policy = Policy()) -> TeamRole | None:
    """``identity``'s role in ``workspace`` for every permission purpose: their team role,
    or MEMBER of an open default workspace; None: not a member."""
    role = identity.role_in(workspace)
    if role is None and policy.default_workspace_open and workspace == DEFAULT_WORKSPACE:
        return TeamRole.MEMBER
    return role


def principals_of(identity: Identity, policy: Policy = Policy()) -> tuple[Principal, ...]:
    """The user, each workspace they are a member of (:func:`role_of`) and each of their
    roles: whom a grant must name to apply to them."""
    teams = set(identity.teams)
    if policy.default_workspace_open:
        teams.add(DEFAULT_WORKSPACE)
    return (Principal(USER, str(identity.user_id)),
            *(Principal(TEAM, ws) for ws in sorted(teams)),
            *(Principal(ROLE, str(r)) for r in sorted(identity.roles)))


def _applicable(identity: Identity, grants: Iterable[Grant], policy: Policy,
                ) -> list[Permission]:
    """The grants to one of :func:`principals_of` ``identity`` (matched field by field: this
    runs on every check of a non-admin, where building the principals cost more)."""
    user = str(identity.user_id)
    roles = {str(r) for r in identity.roles} if identity.roles else ()
    open_default = policy.default_workspace_open
    out = []
    for g in grants:
        kind, name = g.principal.kind, g.principal.name
        if (name == user if kind == USER
                else (name in identity.teams or open_default and name == DEFAULT_WORKSPACE)
                if kind == TEAM else kind == ROLE and name in roles):
            out.append(g.permission)
    return out


def effective_permission(identity: Identity, resource: Resource,
                         policy: Policy = Policy()) -> Permission:
    """The level ``identity`` holds on an experiment or registered model (token scope not
    applied; :func:`is_allowed` applies it)."""
    if identity.is_admin:
        return Permission.MANAGE
    role = role_of(identity, resource.workspace, policy)
    if role is TeamRole.MANAGER:
        return Permission.MANAGE
    base = policy.member_default if role is not None else Permission.NO_PERMISSIONS
    if base is Permission.DENY:
        base = Permission.NO_PERMISSIONS
    granted = _applicable(identity, resource.grants, policy)
    if Permission.DENY in granted:
        return Permission.DENY
    best = base
    for permission in granted:
        if permission.rank > best.rank:
            best = permission
    return best


def _workspace_allows(identity: Identity, action: Action, workspace: str,
                      policy: Policy) -> bool:
    if identity.is_admin:
        return True
    role = role_of(identity, workspace, policy)
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
        return _workspace_allows(identity, action, resource.workspace, policy)
    if resource.kind in (ResourceKind.EXPERIMENT, ResourceKind.REGISTERED_MODEL):
        return effective_permission(identity, resource, policy).allows(action)
    return False  # runs, models, paths: resolve to their experiment or model first


_NOUNS = {  # kind -> (one, many), as a refusal names them
    ResourceKind.EXPERIMENT: ("experiment", "experiments"),
    ResourceKind.RUN: ("run", "runs"),
    ResourceKind.LOGGED_MODEL: ("logged model", "logged models"),
    ResourceKind.REGISTERED_MODEL: ("registered model", "registered models"),
    ResourceKind.ARTIFACT_PATH: ("artifact", "artifacts"),
    ResourceKind.GRANT_TARGET: ("experiment or registered model", "permissions"),
}


def refusal(identity: Identity | None, action: Action, kind: ResourceKind,
            workspace: str) -> str:
    """What was refused and where, for a 403's message (no prefix, no final period):
    ``a1 may not create experiments in workspace team-a``, ``a1 may not update this run in
    workspace team-a``. ``kind`` is what the request acts on; with CREATE, the kind it
    creates (WORKSPACE when the caller does not know: "anything"). A token whose scope
    explains the refusal is named."""
    who = identity.username if identity is not None else "an anonymous caller"
    verb = action.value
    if kind in (ResourceKind.SERVER, ResourceKind.PUBLIC):
        text = f"{who} may not {verb} this: it is for administrators"
    elif kind is ResourceKind.WORKSPACE:
        text = (f"{who} may not create anything in workspace {workspace}"
                if action is Action.CREATE else f"{who} may not {verb} workspace {workspace}")
    else:
        one, many = _NOUNS.get(kind) or (kind.value.replace("_", " "),
                                         kind.value.replace("_", " ") + "s")
        text = (f"{who} may not create {many} in workspace {workspace}"
                if action is Action.CREATE
                else f"{who} may not {verb} this {one} in workspace {workspace}")
    scope = identity.scope if identity is not None else None
    if scope is not None and scope.workspace is not None and scope.workspace != workspace:
        text += f" (the token is for workspace {scope.workspace})"
    elif scope is not None and scope.read_only and action is not Action.READ:
        text += " (the token is read-only)"
    return text
