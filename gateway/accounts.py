"""Changes to users, teams, tokens and grants, shared by the admin API
(:mod:`gateway.routes.auth_admin`) and the operator commands (:mod:`gateway.cli_auth`), so
that both check what they are given in one way and change the store in one way.

Who may make a change is the caller's business: the routes check the requester, and the
CLI is the operator's. Input that is not acceptable raises
:class:`~gateway.errors.MlflowError` (``INVALID_PARAMETER_VALUE`` unless said otherwise);
the store raises :mod:`backends.errors`. Every change reaches the other server processes
through the store's change counters (:mod:`gateway.security.watch`); the routes also drop
what they changed from their own process's caches at once.
"""

from __future__ import annotations

from auth import hashing
from auth.names import MAX_USERNAME, valid_team_name, valid_username
from auth.permissions import GRANTABLE, Permission, TeamRole
from auth.policy import USER, Policy, role_of
from backends.metadata.interface.auth_entities import (
    GrantRow,
    LimitRow,
    TokenRow,
    UserRecord,
    WorkspaceRow,
)
from backends.metadata.interface.entities import now_ms
from backends.metadata.interface.store import MetadataStore
from gateway.errors import MlflowError, invalid_parameter
from gateway.security.authentication import load_identity

__all__ = [
    "LIMIT_FIELDS",
    "RESOURCE_TYPES",
    "add_member",
    "create_team",
    "create_user",
    "delete_user",
    "grant",
    "grant_target",
    "issue_token",
    "limits_of",
    "need",
    "parse_permission",
    "remove_member",
    "resource_workspace",
    "revoke_grant",
    "revoke_token",
    "set_admin",
    "set_limits",
    "set_password",
    "team_role",
]

RESOURCE_TYPES = ("experiment", "registered_model")  # what grants are on
_MAX_TOKEN_DAYS = 1e6


def need(value: object, name: str) -> str:
    if not value:
        raise invalid_parameter(f"Missing value for required parameter '{name}'.")
    return str(value)


# -- users ---------------------------------------------------------------------------------


MIN_PASSWORD = 12  # stock 3.17's rule, for every user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise invalid_parameter(f"Password must be at least {MIN_PASSWORD} characters.")


async def create_user(store: MetadataStore, username: str, password: str, *,
                      is_admin: bool = False) -> UserRecord:
    """Raises ``AlreadyExists`` for a taken name."""
    if not username or not password:
        raise invalid_parameter("Username and password cannot be empty.")
    _check_password(password)
    if not valid_username(username):
        raise invalid_parameter(
            f"Invalid username: at most {MAX_USERNAME} characters, with no control "
            "characters and no ':'.")
    return await store.create_user(username, hashing.hash_password(password),
                                   is_admin=is_admin)


async def set_password(store: MetadataStore, username: str, password: str) -> UserRecord:
    """Raises ``NotFound``. Checking the current password is the caller's business."""
    _check_password(need(password, "password"))
    return await store.update_user(username, password_hash=hashing.hash_password(password))


async def set_admin(store: MetadataStore, username: str, is_admin: object) -> UserRecord:
    if not isinstance(is_admin, bool):
        raise invalid_parameter("'is_admin' must be true or false.")
    return await store.update_user(username, is_admin=is_admin)


async def delete_user(store: MetadataStore, username: str) -> UserRecord:
    """Delete the user with their tokens, memberships and grants; raises ``NotFound``."""
    return await store.delete_user(need(username, "username"))


# -- teams (workspaces) --------------------------------------------------------------------


async def create_team(store: MetadataStore, name: str, description: str = "") -> WorkspaceRow:
    if not valid_team_name(name):
        raise invalid_parameter(
            f"Invalid workspace name '{name}': 2-63 lowercase letters, digits and inner "
            "hyphens, not a reserved name.")
    return await store.create_workspace(name, description)


def team_role(value: str | None) -> TeamRole:
    """A member's role; ``member`` when none is given."""
    try:
        return TeamRole(value or TeamRole.MEMBER.value)
    except ValueError:
        raise invalid_parameter("'role' must be member or manager.") from None


async def add_member(store: MetadataStore, team: str, username: str,
                     role: str | None) -> UserRecord:
    """Add ``username`` to ``team`` or change their role there; raises ``NotFound``."""
    user = await store.get_user(need(username, "username"))
    await store.set_member(team, user.user_id, team_role(role).value)
    return user


async def remove_member(store: MetadataStore, policy: Policy, team: str,
                        username: str) -> tuple[UserRecord, list[GrantRow]]:
    """Take ``username`` out of ``team``; returns them and the grants dropped with it.

    Out of the team, out of its work: unless a role keeps them a member, the grants made to
    them in the team (a creator's MANAGE among them) go too, or they could still read,
    change and pass them on."""
    user = await store.get_user(need(username, "username"))
    if not await store.remove_member(team, user.user_id):
        raise MlflowError(f"{user.username} is not a member of {team}.",
                          "RESOURCE_DOES_NOT_EXIST")
    dropped = []
    if role_of(await load_identity(store, user.user_id), team, policy) is None:
        for row in await store.grants_of(USER, str(user.user_id)):
            if row.workspace == team and await store.delete_grant(
                    row.resource_type, team, row.resource_id, USER, row.principal):
                dropped.append(row)
    return user, dropped


# -- grants --------------------------------------------------------------------------------


def parse_permission(value: object) -> Permission:
    """A permission level's name (``READ``, ...), any case."""
    try:
        return Permission.parse(need(value, "permission"))
    except ValueError as exc:
        raise invalid_parameter(str(exc)) from None


def _grantable(value: object) -> Permission:
    permission = parse_permission(value)
    if permission not in GRANTABLE:
        raise invalid_parameter(f"Permission {permission.name} cannot be granted; use one "
                                "of READ, USE, EDIT, MANAGE, DENY.")
    return permission


def grant_target(resource_type: object, resource_id: object) -> tuple[str, str]:
    """(resource type, resource id) of a grant, checked."""
    rtype, rid = need(resource_type, "resource_type"), need(resource_id, "resource_id")
    if rtype not in RESOURCE_TYPES:
        raise invalid_parameter(f"Invalid resource type '{rtype}'. mlgate grants on: "
                                f"{', '.join(RESOURCE_TYPES)}.")
    return rtype, rid


async def resource_workspace(store: MetadataStore, rtype: str, rid: str, workspace: str) -> str:
    """Where the resource lives: an experiment's own workspace, else ``workspace``."""
    if rtype == "experiment":
        ws = await store.experiment_workspace(rid)
        if ws is None:
            raise MlflowError(f"No Experiment with id={rid} exists", "RESOURCE_DOES_NOT_EXIST")
        return ws
    return workspace


async def grant(store: MetadataStore, principal_type: str, principal: str,
                resource_type: object, resource_id: object, permission: object, *,
                workspace: str) -> GrantRow:
    """Grant ``permission`` to a user (their id as text) or a team on an experiment, or on a
    registered model of ``workspace``; replaces their earlier grant there."""
    rtype, rid = grant_target(resource_type, resource_id)
    level = _grantable(permission)
    ws = await resource_workspace(store, rtype, rid, workspace)
    row = GrantRow(rtype, ws, rid, principal_type, principal, level.name)
    await store.set_grant(row)
    return row


async def revoke_grant(store: MetadataStore, principal_type: str, principal: str,
                       resource_type: object, resource_id: object, *,
                       workspace: str) -> tuple[GrantRow, bool]:
    """Drop a principal's grant; returns the grant's key (its permission left empty) and
    whether there was one."""
    rtype, rid = grant_target(resource_type, resource_id)
    ws = await resource_workspace(store, rtype, rid, workspace)
    found = await store.delete_grant(rtype, ws, rid, principal_type, principal)
    return GrantRow(rtype, ws, rid, principal_type, principal, ""), found


# -- API tokens ----------------------------------------------------------------------------


async def issue_token(store: MetadataStore, user: UserRecord, *, name: str = "",
                      read_only: bool = False, workspace: str | None = None,
                      expires_in_days: float | None = None) -> tuple[str, TokenRow]:
    """Create a token for ``user``; returns (the secret token, shown once; its record)."""
    if expires_in_days is not None and not 0 < expires_in_days < _MAX_TOKEN_DAYS:
        raise invalid_parameter("'expires_in_days' must be a positive number.")
    token, token_id, digest = hashing.new_token()
    now = now_ms()
    expires = None if expires_in_days is None else now + int(expires_in_days * 86_400_000)
    row = TokenRow(token_id, user.user_id, name, digest, read_only, workspace, now, expires,
                   None, None)
    await store.create_token(row)
    return token, row


async def revoke_token(store: MetadataStore, token_id: str) -> None:
    """Raises ``NotFound``; revoking twice keeps the first time."""
    await store.revoke_token(token_id, now_ms())


# -- rate limits ---------------------------------------------------------------------------

LIMIT_FIELDS = ("requests_per_second", "rows_per_second", "caller_requests_per_second",
                "caller_rows_per_second")
_MAX_RATE = 1e9


def limits_of(team: str, values: dict[str, object]) -> LimitRow:
    """A team's limits from ``values`` (:data:`LIMIT_FIELDS`; one missing takes the
    server's default, 0 is no limit)."""
    checked: dict[str, float | None] = {}
    for name in LIMIT_FIELDS:
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= _MAX_RATE):
            raise invalid_parameter(f"'{name}' must be a number from 0 (no limit) to "
                                    f"{_MAX_RATE:g}.")
        checked[name] = None if value is None else float(value)
    return LimitRow(team, **checked)


async def set_limits(store: MetadataStore, team: str, values: dict[str, object]) -> LimitRow:
    """Replace ``team``'s limits; raises ``NotFound`` for an unknown team."""
    row = limits_of(need(team, "name"), values)
    await store.set_limits(row)
    return row
