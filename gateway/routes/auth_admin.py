"""Users, permissions, teams (workspaces), API tokens and the audit log.

The user and permission endpoints are those of MLflow 3.17's basic-auth app, so
``mlflow.server.get_app_client("basic-auth", tracking_uri=...)`` manages mlgate's users. The
workspace endpoints are MLflow's (``mlflow.create_workspace``, ``list_workspaces``); team
members, team grants, tokens and the audit log are mlgate's own, under ``/mlgate/v1``.
Every route declares its access like any other; the handlers add the checks that depend on
whom the request names, on a need-to-know basis: a user sees themselves, an administrator
everyone, a manager the members of the teams they manage and only their part in those teams
(:func:`_overseen`); a workspace is seen by its members and administrators. A refusal
answers alike whether what was named exists or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from auth import hashing
from auth.access import Access, Action, ResourceKind
from auth.identity import Identity
from auth.permissions import GRANTABLE, Permission, TeamRole
from auth.policy import (
    TEAM,
    USER,
    Policy,
    Resource,
    effective_permission,
    principals_of,
    role_of,
)
from backends import errors as be
from backends.metadata.interface.auth_entities import (
    GrantRow,
    RoleAssignment,
    RolePermissionRow,
    RoleRow,
    TokenRow,
    UserRecord,
    WorkspaceRow,
)
from gateway import accounts
from gateway.errors import MlflowError, invalid_parameter
from gateway.parsing import Field, Message, message_of
from gateway.render import json_response
from gateway.routes._common import store
from gateway.routing import Route
from gateway.security import Security, identity_of, security_of, workspace_of

__all__ = ["ROUTES"]

API2 = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
API3 = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")
MLGATE = ("/mlgate/v1",)

_ANY_USER = Access(ResourceKind.WORKSPACE, Action.READ)
_OWN_CHANGE = Access(ResourceKind.WORKSPACE, Action.READ, writes=True)  # audited
_WS_ADMIN = Access(ResourceKind.WORKSPACE, Action.MANAGE)
_TEAM_ADMIN = Access(ResourceKind.WORKSPACE, Action.MANAGE, "name")
_ADMIN = Access(ResourceKind.SERVER, Action.MANAGE)
_ADMIN_READ = Access(ResourceKind.SERVER, Action.READ)
_GRANT = Access(ResourceKind.GRANT_TARGET, Action.MANAGE, "resource_id")

_S = Field("string")
_USERNAME = Message({"username": _S})
_CREATE_USER = Message({"username": _S, "password": _S})
_PASSWORD = Message({"username": _S, "password": _S, "current_password": _S})
_SET_ADMIN = Message({"username": _S, "is_admin": Field("bool")})
_WORKSPACE = Message({"name": _S, "description": _S})
_MEMBER = Message({"username": _S, "role": _S})
_GRANT_REF = Message({"resource_type": _S, "resource_id": _S, "permission": _S})
_TOKEN = Message({"username": _S, "name": _S, "read_only": Field("bool"),
                  "workspace": _S, "expires_in_days": Field("double")})
_TOKENS = Message({"username": _S, "all": Field("bool")})
_AUDIT = Message({"username": _S, "resource_type": _S, "resource_id": _S,
                  "since": Field("int64"), "until": Field("int64"), "limit": Field("int64"),
                  "offset": Field("int64")})
_ROLES = Message({"workspace": Field("string", repeated=True)})
_PERMISSION_REF = Message({"username": Field("string"), "resource_type": Field("string"),
                           "resource_id": Field("string"), "permission": Field("string")})


def _security(request: web.Request) -> Security:
    sec = security_of(request)
    if sec is None or not sec.auth_on:
        raise MlflowError("Authentication is not enabled on this server (mlgate serve --auth).",
                          "ENDPOINT_NOT_FOUND")
    return sec


def _me(request: web.Request) -> Identity:
    ident = identity_of(request)
    if ident is None:  # enforce() authenticated every non-public route
        raise MlflowError("Not authenticated.", "UNAUTHENTICATED")
    return ident


def _denied(what: str) -> MlflowError:
    return MlflowError(f"Permission denied: {what}", "PERMISSION_DENIED")


def _user_json(user: UserRecord) -> dict[str, Any]:
    return {"id": user.user_id, "username": user.username, "is_admin": user.is_admin}


def _need(msg: dict[str, Any], name: str) -> str:
    return accounts.need(msg.get(name), name)


def _managed(me: Identity, policy: Policy) -> frozenset[str] | None:
    """The workspaces whose members ``me`` oversees; None: every user (an administrator).
    A token scoped to one workspace oversees no other."""
    if me.is_admin:
        return None
    scope = me.scope.workspace if me.scope is not None else None
    return frozenset(ws for ws in me.teams if role_of(me, ws, policy) is TeamRole.MANAGER
                     and scope in (None, ws))


async def _member_of_any(sec: Security, user_id: int, workspaces: frozenset[str]) -> bool:
    if not workspaces:
        return False
    them = await sec.identity_for(user_id)
    return any(role_of(them, ws, sec.policy) is not None for ws in workspaces)


@dataclass(frozen=True)
class _Overseen:
    """A user as the caller may see them: all of them (``workspaces`` None) or their part in
    the workspaces the caller manages."""

    user: UserRecord
    workspaces: frozenset[str] | None


async def _overseen(request: web.Request, username: str) -> _Overseen:
    """``username`` for themselves and administrators; for a manager of a team the user
    belongs to, their part in the workspaces the manager manages. Anyone else is refused
    alike whether the user exists or not, so a refusal tells no names."""
    sec = _security(request)
    me = _me(request)
    if me.username == username or me.is_admin:
        return _Overseen(await store(request).get_user(username), None)
    managed = _managed(me, sec.policy) or frozenset()
    try:
        user = await store(request).get_user(username) if managed else None
    except be.NotFound:
        user = None
    if user is None or not await _member_of_any(sec, user.user_id, managed):
        raise _denied(f"{me.username} may not see user {username}: only the user, an "
                      "administrator or a manager of one of their teams may.")
    return _Overseen(user, managed)


# -- users (MLflow's basic-auth API) ---------------------------------------------------


async def create_user(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    user = await accounts.create_user(store(request), msg.get("username") or "",
                                      msg.get("password") or "")
    ws = workspace_of(request)
    me = _me(request)
    if not me.is_admin:  # a workspace manager's new user joins their workspace
        await store(request).set_member(ws, user.user_id, TeamRole.MEMBER.value)
        sec.invalidate_user(user.user_id)
    return json_response({"user": _user_json(user)})


async def get_user(request: web.Request) -> web.Response:
    seen = await _overseen(request, _need(message_of(request), "username"))
    return json_response({"user": _user_json(seen.user)})


async def list_users(request: web.Request) -> web.Response:
    """Administrators: every user with every team (stock's answer). Anyone else: themselves
    with all their teams, and the members of the teams they manage with those teams only."""
    sec = _security(request)
    me = _me(request)
    managed = _managed(me, sec.policy)
    out = []
    for user in await store(request).list_users():
        shown = None if user.user_id == me.user_id else managed
        if shown is not None and not await _member_of_any(sec, user.user_id, shown):
            continue
        teams = await store(request).memberships(user.user_id)
        out.append({**_user_json(user), "roles": [
            {"workspace": ws, "name": role} for ws, role in sorted(teams.items())
            if shown is None or ws in shown]})
    return json_response({"users": out})


async def current_user(request: web.Request) -> web.Response:
    _security(request)
    me = _me(request)
    return json_response({"user": {"id": me.user_id, "username": me.username,
                                   "is_admin": me.is_admin}, "is_basic_auth": True})


async def update_password(request: web.Request) -> web.Response:
    sec = _security(request)
    body = message_of(request)
    username, password = _need(body, "username"), _need(body, "password")
    me = _me(request)
    if me.scope is not None:
        raise _denied("passwords cannot be changed with an API token.")
    if me.username == username:
        current = body.get("current_password")
        if not current:
            raise invalid_parameter(
                "Current password is required when changing your own password.")
        user = await store(request).get_user(username)
        if not hashing.verify_password(user.password_hash, str(current)):
            raise invalid_parameter("Current password does not match.")
        if password == current:
            raise invalid_parameter("New password must differ from the current password.")
    elif not me.is_admin:
        raise _denied("only administrators may change another user's password.")
    user = await accounts.set_password(store(request), username, password)
    sec.invalidate_user(user.user_id)
    return json_response({})


async def update_admin(request: web.Request) -> web.Response:
    sec = _security(request)
    body = message_of(request)
    user = await accounts.set_admin(store(request), _need(body, "username"),
                                    body.get("is_admin"))
    sec.invalidate_user(user.user_id)
    return json_response({})


async def delete_user(request: web.Request) -> web.Response:
    sec = _security(request)
    username = _need(message_of(request), "username")
    if username == _me(request).username:
        raise MlflowError("Users cannot delete their own account. Ask another admin to "
                          "delete this user instead.", "BAD_REQUEST")
    user = await accounts.delete_user(store(request), username)
    sec.invalidate_user(user.user_id)
    return json_response({})


# -- per-user permissions (MLflow 3.17's unified grant API) ----------------------------


async def _change_grant(request: web.Request, principal_type: str, principal: str,
                        msg: dict[str, Any], *, grant: bool) -> None:
    sec = _security(request)
    rtype, rid, ws = msg.get("resource_type"), msg.get("resource_id"), workspace_of(request)
    if grant:
        row = await accounts.grant(store(request), principal_type, principal, rtype, rid,
                                   msg.get("permission"), workspace=ws)
    else:
        row, _ = await accounts.revoke_grant(store(request), principal_type, principal,
                                             rtype, rid, workspace=ws)
    sec.invalidate_grants(row.resource_type, row.workspace, row.resource_id)


async def grant_user_permission(request: web.Request) -> web.Response:
    msg = message_of(request)
    user = await store(request).get_user(_need(msg, "username"))
    await _change_grant(request, USER, str(user.user_id), msg, grant=True)
    return json_response({})


async def revoke_user_permission(request: web.Request) -> web.Response:
    msg = message_of(request)
    user = await store(request).get_user(_need(msg, "username"))
    await _change_grant(request, USER, str(user.user_id), msg, grant=False)
    return json_response({})


async def get_user_permission(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    username = _need(msg, "username")
    seen = await _overseen(request, username)
    rtype, rid = accounts.grant_target(msg.get("resource_type"), msg.get("resource_id"))
    if rtype == "experiment":
        ws = await store(request).experiment_workspace(rid)
    else:
        ws = workspace_of(request)
    if seen.workspaces is not None and ws not in seen.workspaces:
        # A missing resource is refused alike, so the answer tells no ids of other teams.
        raise _denied(f"{_me(request).username} may not see {username}'s permission on "
                      f"{rtype} '{rid}': it is not in a workspace they manage.")
    ident = await sec.identity_for(seen.user.user_id)
    permission = Permission.NO_PERMISSIONS
    if ws is not None:
        kind = (ResourceKind.EXPERIMENT if rtype == "experiment"
                else ResourceKind.REGISTERED_MODEL)
        resource = Resource(kind, ws, await sec.grants(rtype, ws, rid))
        permission = effective_permission(ident, resource, sec.policy)
    if permission is Permission.DENY:
        permission = Permission.NO_PERMISSIONS
    return json_response({"allowed": permission.rank >= Permission.USE.rank,
                          "permission": permission.name})


def _grant_json(g: GrantRow) -> dict[str, Any]:
    return {"resource_type": g.resource_type, "resource_id": g.resource_id,
            "workspace": g.workspace, "permission": g.permission,
            "principal_type": g.principal_type}


async def _permissions_of(request: web.Request, ident: Identity,
                          workspaces: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Every grant that applies to ``ident`` (to them, their teams, an open ``default``,
    their roles); only those on resources in ``workspaces`` unless it is None."""
    sec = _security(request)
    rows = []
    for principal in principals_of(ident, sec.policy):
        rows.extend(await store(request).grants_of(principal.kind, principal.name))
    return [_grant_json(g) for g in rows if workspaces is None or g.workspace in workspaces]


async def list_user_permissions(request: web.Request) -> web.Response:
    sec = _security(request)
    seen = await _overseen(request, _need(message_of(request), "username"))
    ident = await sec.identity_for(seen.user.user_id)
    return json_response({"permissions": await _permissions_of(request, ident,
                                                                seen.workspaces)})


async def current_user_permissions(request: web.Request) -> web.Response:
    _security(request)
    me = _me(request)
    return json_response({"is_admin": me.is_admin,
                          "permissions": await _permissions_of(request, me)})


# -- workspaces (teams) ----------------------------------------------------------------


def _workspaces_on(request: web.Request) -> Security:
    sec = security_of(request)
    if sec is None or not sec.workspaces_on:
        raise MlflowError("Workspaces are not enabled on this server (mlgate serve "
                          "--enable-workspaces or --auth).", "ENDPOINT_NOT_FOUND")
    return sec


def _sees_workspace(sec: Security, me: Identity | None, name: str) -> bool:
    """A workspace is visible to its members (an open ``default`` to everyone) and to
    administrators."""
    return (not sec.auth_on or me is None or me.is_admin
            or role_of(me, name, sec.policy) is not None)


async def list_workspaces(request: web.Request) -> web.Response:
    sec = _workspaces_on(request)
    me = identity_of(request)
    rows = [w for w in await store(request).list_workspaces()
            if _sees_workspace(sec, me, w.name)]
    return json_response({"workspaces": [{"name": w.name, "description": w.description}
                                         for w in rows]})


async def create_workspace(request: web.Request) -> web.Response:
    sec = _workspaces_on(request)
    body = message_of(request)
    row = await accounts.create_team(store(request), _need(body, "name"),
                                     str(body.get("description") or ""))
    sec.invalidate_workspaces()
    return json_response({"workspace": {"name": row.name, "description": row.description}},
                         status=201)


async def _visible_workspace(request: web.Request, sec: Security, name: str) -> WorkspaceRow:
    """The workspace ``name``; to a non-member, the answer for one that does not exist, word
    for word."""
    gone = MlflowError(f"Workspace '{name}' not found.", "RESOURCE_DOES_NOT_EXIST")
    if not _sees_workspace(sec, identity_of(request), name):
        raise gone
    try:
        return await store(request).get_workspace(name)
    except be.NotFound:
        raise gone from None


async def get_workspace(request: web.Request) -> web.Response:
    sec = _workspaces_on(request)
    row = await _visible_workspace(request, sec, message_of(request)["name"])
    return json_response({"workspace": {"name": row.name, "description": row.description}})


async def delete_workspace(request: web.Request) -> web.Response:
    sec = _workspaces_on(request)
    await store(request).delete_workspace(message_of(request)["name"])
    sec.invalidate_workspaces()
    sec.invalidate_user()
    return web.Response(status=204)


# -- team members and team grants (mlgate) ---------------------------------------------


async def list_members(request: web.Request) -> web.Response:
    _security(request)
    name = message_of(request)["name"]
    await store(request).get_workspace(name)
    members = await store(request).list_members(name)
    return json_response({"members": [{**_user_json(u), "role": role} for u, role in members]})


async def add_member(request: web.Request) -> web.Response:
    sec = _security(request)
    body = message_of(request)
    user = await accounts.add_member(store(request), body["name"], _need(body, "username"),
                                     body.get("role"))
    sec.invalidate_user(user.user_id)
    return json_response({})


async def remove_member(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    user, dropped = await accounts.remove_member(store(request), sec.policy, msg["name"],
                                                 msg["username"])
    sec.invalidate_user(user.user_id)
    for grant in dropped:
        sec.invalidate_grants(grant.resource_type, grant.workspace, grant.resource_id)
    return json_response({})


async def grant_team_permission(request: web.Request) -> web.Response:
    msg = message_of(request)
    # A team is granted to by those who see it: else a grant on one's own experiment would
    # tell which team names exist.
    await _visible_workspace(request, _security(request), msg["name"])
    await _change_grant(request, TEAM, msg["name"], msg, grant=True)
    return json_response({})


async def revoke_team_permission(request: web.Request) -> web.Response:
    msg = message_of(request)
    await _change_grant(request, TEAM, msg["name"], msg, grant=False)
    return json_response({})


# -- roles (MLflow 3.17's RBAC API) -------------------------------------------------------

# What a role may hold a permission on. Runs, logged models and artifacts are judged as
# their experiment and model versions as their registered model, so stock's sub-resource
# tiers (run, logged_model, registered_model_version, ...) have nothing to attach to here.
_ROLE_RESOURCE_TYPES = ("experiment", "registered_model", "workspace")
_ROLE = Message({"role_id": Field("int64")})
_ROLE_CREATE = Message({"name": Field("string"), "workspace": Field("string"),
                        "description": Field("string")})
_ROLE_UPDATE = Message({"role_id": Field("int64"), "name": Field("string"),
                        "description": Field("string")})
_ROLE_PERMISSION = Message({"role_id": Field("int64"), "resource_type": Field("string"),
                            "resource_pattern": Field("string"),
                            "permission": Field("string")})
_ROLE_PERMISSION_REF = Message({"role_permission_id": Field("int64"),
                                "permission": Field("string")})
_ROLE_ASSIGNMENT = Message({"username": Field("string"), "role_id": Field("int64")})


def _role_permission_json(p: RolePermissionRow) -> dict[str, Any]:
    return {"id": p.permission_id, "role_id": p.role_id, "resource_type": p.resource_type,
            "resource_pattern": p.resource_pattern, "permission": p.permission}


def _role_json(role: RoleRow) -> dict[str, Any]:
    return {"id": role.role_id, "name": role.name, "workspace": role.workspace,
            "description": role.description,
            "permissions": [_role_permission_json(p) for p in role.permissions]}


def _manages(request: web.Request, me: Identity, workspace: str) -> bool:
    if me.scope is not None and me.scope.workspace not in (None, workspace):
        return False  # a token scoped to one workspace manages no other
    return me.is_admin or role_of(me, workspace, _security(request).policy) is TeamRole.MANAGER


def _role_admin(request: web.Request, workspace: str) -> Identity:
    """Roles of a workspace are managed by administrators and the workspace's managers."""
    me = _me(request)
    if not _manages(request, me, workspace):
        raise _denied(f"only an administrator or a manager of workspace '{workspace}' may "
                      "manage its roles.")
    return me


def _role_viewer(request: web.Request, role: RoleRow) -> None:
    me = _me(request)
    if not _manages(request, me, role.workspace) and role.role_id not in me.roles:
        raise _denied(f"role {role.role_id} is not visible to {me.username}.")


def _role_id(msg: dict[str, Any], name: str = "role_id") -> int:
    """A required id field; ``message_of`` has already made it an int (an int64 field)."""
    value = msg.get(name)
    if value is None:
        raise invalid_parameter(f"Missing value for required parameter '{name}'.")
    return int(value)


async def _managed_role(request: web.Request, msg: dict[str, Any]) -> RoleRow:
    """The role ``msg`` names, which the caller must manage."""
    role = await store(request).get_role(_role_id(msg))
    _role_admin(request, role.workspace)
    return role


async def _visible_role(request: web.Request, msg: dict[str, Any]) -> RoleRow:
    """The role ``msg`` names, which the caller must be allowed to see."""
    role = await store(request).get_role(_role_id(msg))
    _role_viewer(request, role)
    return role


def _assignment_json(a: RoleAssignment) -> dict[str, Any]:
    return {"id": a.assignment_id, "user_id": a.user_id, "role_id": a.role_id}


def _role_permission_level(msg: dict[str, Any], resource_type: str) -> Permission:
    permission = accounts.parse_permission(msg.get("permission"))
    allowed = ({Permission.USE, Permission.MANAGE} if resource_type == "workspace"
               else GRANTABLE)
    if permission not in allowed:
        raise invalid_parameter(
            f"Permission {permission.name} cannot be given on a {resource_type}; use one of "
            f"{', '.join(p.name for p in sorted(allowed, key=lambda p: p.rank))}.")
    return permission


async def create_role(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    name, workspace = str(msg.get("name") or "").strip(), str(msg.get("workspace") or "")
    if not name:
        raise invalid_parameter("Role name cannot be empty.")
    if not workspace.strip():
        raise invalid_parameter("Workspace cannot be empty.")
    _role_admin(request, workspace)
    role = await store(request).create_role(name, workspace, msg.get("description"))
    sec.invalidate_roles()
    return json_response({"role": _role_json(role)})


async def get_role(request: web.Request) -> web.Response:
    _security(request)
    role = await _visible_role(request, message_of(request))
    return json_response({"role": _role_json(role)})


async def list_roles(request: web.Request) -> web.Response:
    sec = _security(request)
    me = _me(request)
    workspaces = message_of(request).get("workspace", [])
    if any(not w.strip() for w in workspaces):
        raise invalid_parameter("Parameter 'workspace' must be a non-empty string when provided.")
    if not workspaces:
        if not me.is_admin:
            raise _denied("only an administrator may list the roles of every workspace.")
        roles = await store(request).list_roles()
    else:
        for ws in workspaces:
            if not me.is_admin and role_of(me, ws, sec.policy) is None:
                raise _denied(f"{me.username} is not a member of workspace '{ws}'.")
        roles = await store(request).list_roles(workspaces)
    return json_response({"roles": [_role_json(r) for r in roles]})


async def update_role(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    role = await _managed_role(request, msg)
    name, description = msg.get("name"), msg.get("description")
    if name is None and description is None:
        raise invalid_parameter(
            "At least one of 'name' or 'description' must be provided to update a role.")
    if name is not None and not str(name).strip():
        raise invalid_parameter("Role name cannot be empty.")
    role = await store(request).update_role(role.role_id, name=name, description=description)
    sec.invalidate_roles()
    return json_response({"role": _role_json(role)})


async def delete_role(request: web.Request) -> web.Response:
    sec = _security(request)
    role = await _managed_role(request, message_of(request))
    await store(request).delete_role(role.role_id)
    sec.invalidate_roles()
    return json_response({})


async def add_role_permission(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    role = await _managed_role(request, msg)
    rtype, pattern = _need(msg, "resource_type"), _need(msg, "resource_pattern")
    if rtype not in _ROLE_RESOURCE_TYPES:
        raise invalid_parameter(
            f"Invalid resource type '{rtype}'. mlgate roles hold permissions on: "
            f"{', '.join(_ROLE_RESOURCE_TYPES)} (runs, logged models and artifacts follow "
            "their experiment, model versions their registered model).")
    if rtype == "workspace" and pattern != "*":
        raise invalid_parameter("A workspace permission takes the resource pattern '*'.")
    if rtype == "experiment" and pattern != "*" \
            and await store(request).experiment_workspace(pattern) != role.workspace:
        raise MlflowError(f"No Experiment with id={pattern} exists in workspace "
                          f"'{role.workspace}'", "RESOURCE_DOES_NOT_EXIST")
    permission = _role_permission_level(msg, rtype)
    row = await store(request).add_role_permission(role.role_id, rtype, pattern,
                                                   permission.name)
    sec.invalidate_roles()
    return json_response({"role_permission": _role_permission_json(row)})


async def _own_role_permission(request: web.Request,
                               msg: dict[str, Any]) -> RolePermissionRow:
    row = await store(request).get_role_permission(_role_id(msg, "role_permission_id"))
    _role_admin(request, (await store(request).get_role(row.role_id)).workspace)
    return row


async def remove_role_permission(request: web.Request) -> web.Response:
    sec = _security(request)
    row = await _own_role_permission(request, message_of(request))
    await store(request).remove_role_permission(row.permission_id)
    sec.invalidate_roles()
    return json_response({})


async def update_role_permission(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    row = await _own_role_permission(request, msg)
    permission = _role_permission_level(msg, row.resource_type)
    row = await store(request).update_role_permission(row.permission_id, permission.name)
    sec.invalidate_roles()
    return json_response({"role_permission": _role_permission_json(row)})


async def list_role_permissions(request: web.Request) -> web.Response:
    _security(request)
    role = await _visible_role(request, message_of(request))
    return json_response({"role_permissions": [_role_permission_json(p)
                                               for p in role.permissions]})


async def assign_role(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    role = await _managed_role(request, msg)
    user = await store(request).get_user(_need(msg, "username"))
    row = await store(request).assign_role(user.user_id, role.role_id)
    sec.invalidate_roles()
    return json_response({"assignment": _assignment_json(row)})


async def unassign_role(request: web.Request) -> web.Response:
    sec = _security(request)
    msg = message_of(request)
    role = await _managed_role(request, msg)
    user = await store(request).get_user(_need(msg, "username"))
    await store(request).unassign_role(user.user_id, role.role_id)
    sec.invalidate_roles()
    return json_response({})


async def list_role_users(request: web.Request) -> web.Response:
    _security(request)
    # Who else holds a role is for those who manage it (stock's validate_can_manage_roles):
    # a role may be given to users of other teams.
    role = await _managed_role(request, message_of(request))
    rows = await store(request).list_role_users(role.role_id)
    return json_response({"assignments": [_assignment_json(a) for a in rows]})


async def list_user_roles(request: web.Request) -> web.Response:
    seen = await _overseen(request, _need(message_of(request), "username"))
    roles = await store(request).list_user_roles(seen.user.user_id)
    if seen.workspaces is not None:  # a manager: the roles of the workspaces they manage
        roles = [r for r in roles if r.workspace in seen.workspaces]
    return json_response({"roles": [_role_json(r) for r in roles]})


# -- API tokens (mlgate) ---------------------------------------------------------------


def _token_json(t: TokenRow) -> dict[str, Any]:
    return {"token_id": t.token_id, "user_id": t.user_id, "name": t.name,
            "read_only": t.read_only, "workspace": t.workspace, "created_at": t.created_at,
            "expires_at": t.expires_at, "last_used_at": t.last_used_at,
            "revoked_at": t.revoked_at}


async def create_token(request: web.Request) -> web.Response:
    _security(request)
    me = _me(request)
    if me.scope is not None:
        raise _denied("API tokens cannot create tokens; log in with a password.")
    body = message_of(request)
    username = str(body.get("username") or me.username)
    if username != me.username and not me.is_admin:
        raise _denied("only administrators may create tokens for other users.")
    expires = body.get("expires_in_days")
    workspace = body.get("workspace")
    user = await store(request).get_user(username)
    token, row = await accounts.issue_token(
        store(request), user, name=str(body.get("name") or ""),
        read_only=bool(body.get("read_only", False)), workspace=workspace or None,
        expires_in_days=None if expires is None else float(expires))
    return json_response({"token": token, "info": _token_json(row)})


async def list_tokens(request: web.Request) -> web.Response:
    _security(request)
    me = _me(request)
    msg = message_of(request)
    username = msg.get("username")
    if username and username != me.username and not me.is_admin:
        raise _denied("only administrators may list other users' tokens.")
    if me.is_admin and username:
        user_id: int | None = (await store(request).get_user(username)).user_id
    elif me.is_admin and msg.get("all"):
        user_id = None
    else:
        user_id = me.user_id
    rows = await store(request).list_tokens(user_id)
    return json_response({"tokens": [_token_json(t) for t in rows]})


async def revoke_token(request: web.Request) -> web.Response:
    sec = _security(request)
    me = _me(request)
    token_id = message_of(request)["token_id"]
    # Someone else's token is answered as one that does not exist.
    gone = MlflowError(f"Token '{token_id}' not found", "RESOURCE_DOES_NOT_EXIST")
    try:
        row = await store(request).get_token(token_id)
    except be.NotFound:
        raise gone from None
    if row.user_id != me.user_id and not me.is_admin:
        raise gone
    await accounts.revoke_token(store(request), token_id)
    sec.invalidate_token(token_id)
    return json_response({})


# -- audit log (mlgate) ----------------------------------------------------------------


async def query_audit(request: web.Request) -> web.Response:
    sec = _security(request)
    if sec.audit is not None:
        await sec.audit.flush()
    msg = message_of(request)
    limit = msg.get("limit") or 1000
    if not 1 <= limit <= 10_000:
        raise invalid_parameter("'limit' must be between 1 and 10000.")
    rows = await store(request).query_audit(
        username=msg.get("username") or None,
        resource_type=msg.get("resource_type") or None,
        resource_id=msg.get("resource_id") or None,
        since=msg.get("since"), until=msg.get("until"),
        limit=limit, offset=msg.get("offset") or 0)
    return json_response({"records": [
        {"id": r.audit_id, "time": r.ts, "username": r.username, "workspace": r.workspace,
         "action": r.action, "resource_type": r.resource_type, "resource_id": r.resource_id,
         "outcome": r.outcome, "status": r.status, "client_address": r.client_address,
         "request_id": r.request_id}
        for r in rows]})


ROUTES = [
    Route("POST", "/users/create", create_user, _WS_ADMIN, API2, _CREATE_USER),
    Route("GET", "/users/get", get_user, _ANY_USER, API2, _USERNAME),
    Route("GET", "/users/list", list_users, _ANY_USER, API2),
    Route("GET", "/users/current", current_user, _ANY_USER, API2),
    Route("PATCH", "/users/update-password", update_password, _OWN_CHANGE, API2, _PASSWORD),
    Route("PATCH", "/users/update-admin", update_admin, _ADMIN, API2, _SET_ADMIN),
    Route("DELETE", "/users/delete", delete_user, _ADMIN, API2, _USERNAME),
    Route("GET", "/users/current/permissions", current_user_permissions, _ANY_USER, API3),
    Route("GET", "/users/permissions/list", list_user_permissions, _ANY_USER, API3, _USERNAME),
    Route("POST", "/users/permissions/grant", grant_user_permission, _GRANT, API3,
          _PERMISSION_REF),
    Route("POST", "/users/permissions/revoke", revoke_user_permission, _GRANT, API3,
          _PERMISSION_REF),
    Route("GET", "/users/permissions/get", get_user_permission, _ANY_USER, API3,
          _PERMISSION_REF),
    Route("GET", "/workspaces", list_workspaces, _ANY_USER, API3),
    Route("POST", "/workspaces", create_workspace, _ADMIN, API3, _WORKSPACE),
    Route("GET", "/workspaces/{name}", get_workspace,
          Access(ResourceKind.WORKSPACE, Action.READ, "name"), API3),
    Route("DELETE", "/workspaces/{name}", delete_workspace, _ADMIN, API3),
    Route("GET", "/teams/{name}/members", list_members, _TEAM_ADMIN, MLGATE),
    Route("POST", "/teams/{name}/members", add_member, _TEAM_ADMIN, MLGATE, _MEMBER),
    Route("DELETE", "/teams/{name}/members/{username}", remove_member, _TEAM_ADMIN, MLGATE),
    Route("POST", "/teams/{name}/permissions/grant", grant_team_permission, _GRANT, MLGATE,
          _GRANT_REF),
    Route("POST", "/teams/{name}/permissions/revoke", revoke_team_permission, _GRANT, MLGATE,
          _GRANT_REF),
    Route("POST", "/tokens", create_token, _OWN_CHANGE, MLGATE, _TOKEN),
    Route("GET", "/tokens", list_tokens, _ANY_USER, MLGATE, _TOKENS),
    Route("DELETE", "/tokens/{token_id}", revoke_token, _OWN_CHANGE, MLGATE),
    Route("GET", "/audit", query_audit, _ADMIN_READ, MLGATE, _AUDIT),
    # Roles: the handlers check the role's workspace (administrators and its managers change
    # it; its members see it). Changes are declared as workspace management, so read-only
    # tokens cannot make them and each is audited.
    Route("POST", "/roles/create", create_role, _WS_ADMIN, API3, _ROLE_CREATE),
    Route("GET", "/roles/get", get_role, _ANY_USER, API3, _ROLE),
    Route("GET", "/roles/list", list_roles, _ANY_USER, API3, _ROLES),
    Route("PATCH", "/roles/update", update_role, _WS_ADMIN, API3, _ROLE_UPDATE),
    Route("DELETE", "/roles/delete", delete_role, _WS_ADMIN, API3, _ROLE),
    Route("POST", "/roles/permissions/add", add_role_permission, _WS_ADMIN, API3,
          _ROLE_PERMISSION),
    Route("DELETE", "/roles/permissions/remove", remove_role_permission, _WS_ADMIN, API3,
          _ROLE_PERMISSION_REF),
    Route("GET", "/roles/permissions/list", list_role_permissions, _ANY_USER, API3, _ROLE),
    Route("PATCH", "/roles/permissions/update", update_role_permission, _WS_ADMIN, API3,
          _ROLE_PERMISSION_REF),
    Route("POST", "/roles/assign", assign_role, _WS_ADMIN, API3, _ROLE_ASSIGNMENT),
    Route("DELETE", "/roles/unassign", unassign_role, _WS_ADMIN, API3, _ROLE_ASSIGNMENT),
    Route("GET", "/roles/users/list", list_role_users, _ANY_USER, API3, _ROLE),
    Route("GET", "/users/roles/list", list_user_roles, _ANY_USER, API3, _USERNAME),
]
