"""``mlgate import --auth-db``: stock basic-auth's users, roles and permissions.

Stock keeps them in their own database (``basic_auth.db`` by default), versioned in
``alembic_version_auth`` (none before MLflow 3.6, whose tables are the initial revision's).
From revision ``e5f6a7b8c9d0`` on, roles are the only permissions stock reads; before it,
the per-resource tables are, and they are turned into one role per user and workspace, as
stock's own upgrade to that revision does, except that a legacy ``NO_PERMISSIONS`` row, which
stock then drops, becomes ``DENY``: dropping it would give the user the default again, which
may be more than they had.

Users keep their stock password hashes (Werkzeug's scrypt or PBKDF2); the first successful
login rehashes to Argon2id. A hash of another kind, or at a work factor stock never chose
(which would make every login attempt for the name cost seconds), comes over but never
verifies: the report names those users, who need a new password. A user already in mlgate
keeps mlgate's password and admin flag, and gets none of the source's roles: the source
must not hand an existing account rights it does not have.

Permissions on types mlgate has no room for are skipped and counted: a positive one only
loses access, and a ``DENY`` on a resource mlgate does not serve (scorers, gateway
endpoints, MCP servers) denies nothing. A ``DENY`` on a sub-resource tier (runs, logged
models, traces, model versions, ...) mlgate can not express, so the import refuses it
rather than open what stock closed; remove or widen the row in the source and run again.
Every step is idempotent: run again, nothing is added twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

from auth.hashing import password_hash_usable
from auth.names import valid_team_name, valid_username
from backends import errors
from backends.importer.sources import StockReader
from backends.metadata.interface.auth import AuthStore

__all__ = ["AuthImport", "AuthPlan", "import_auth", "read_auth"]

# Stock's auth revisions, oldest first; roles are the truth from _ROLES_ONLY on.
_REVISIONS = ("8606fa83a998", "0965eb92f5f0", "a1b2c3d4e5f6", "2ed73881770d",
              "c3d4e5f6a7b8", "e5f6a7b8c9d0", "f1a2b3c4d5e6")
_ROLES_ONLY = _REVISIONS.index("e5f6a7b8c9d0")
_LEVELS = {"READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}
_KEPT_TYPES = ("experiment", "registered_model", "workspace")
# Resources mlgate does not serve at all: a DENY on one of them has nothing to deny.
_ABSENT_TYPES = ("scorer", "scorer_version", "gateway_secret", "gateway_endpoint",
                 "gateway_model_definition", "mcp_server", "mcp_server_version",
                 "review_queue")
_FAN_OUT = ("experiment", "registered_model")


@dataclass(frozen=True)
class _User:
    stock_id: int
    username: str
    password_hash: str
    is_admin: bool


@dataclass
class _Role:
    name: str
    workspace: str
    description: str | None
    # (resource_type, pattern) -> permission, already merged: DENY wins, else the highest
    permissions: dict[tuple[str, str], str] = field(default_factory=dict)
    usernames: set[str] = field(default_factory=set)


@dataclass
class AuthPlan:
    """What the stock auth database holds, in mlgate's terms."""

    revision: str
    users: list[_User]
    roles: list[_Role]
    skipped: list[str]  # "resource_type pattern PERMISSION (role)" of each skipped row
    unusable: list[str]  # users whose stock hash mlgate will not check

    def counts(self) -> dict[str, int]:
        return {"users": len(self.users), "roles": len(self.roles),
                "role permissions": sum(len(r.permissions) for r in self.roles),
                "role assignments": sum(len(r.usernames) for r in self.roles),
                "skipped": len(self.skipped)}


@dataclass
class AuthImport:
    """What ``import_auth`` wrote: new rows per kind, and users left as they were (with the
    role assignments the source gave them and they did not get)."""

    added: dict[str, int]
    kept_users: list[str]
    withheld: list[str]  # "user → role (workspace)"


async def _revision(reader: StockReader) -> str:
    tables = await reader.tables()
    if "alembic_version_auth" in tables:
        rows = await reader.fetch("SELECT version_num FROM alembic_version_auth")
        revision = str(rows[0][0]) if rows else ""
    elif "users" in tables:
        revision = _REVISIONS[0]  # before 3.6: the initial tables, not yet versioned
    else:
        raise errors.InvalidArgument(
            f"{reader.uri} is not a stock basic-auth database (no users table)")
    if revision not in _REVISIONS:
        raise errors.InvalidArgument(
            f"the auth database is at revision {revision!r}, which mlgate import does not "
            f"know (it reads {', '.join(_REVISIONS)})")
    return revision


def _merge(into: dict[tuple[str, str], str], key: tuple[str, str], permission: str) -> None:
    old = into.get(key)
    if old == "DENY" or (old is not None and permission != "DENY"
                         and _LEVELS[old] >= _LEVELS[permission]):
        return
    into[key] = permission


class _Builder:
    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], _Role] = {}
        self.skipped: list[str] = []
        self.refused: list[str] = []

    def role(self, workspace: str, name: str, description: str | None = None) -> _Role:
        return self.roles.setdefault((workspace, name), _Role(name, workspace, description))

    def permit(self, role: _Role, resource_type: str, pattern: str, permission: str) -> None:
        permission = permission.upper()
        where = f"{resource_type} {pattern!r} {permission} (role {role.name!r})"
        if permission == "NO_PERMISSIONS":
            return  # stock's roles never hold it; legacy rows are mapped before this
        if resource_type == "prompt":
            if pattern != "*":
                resource_type = "registered_model"  # prompts are registered models here
            elif permission != "DENY":
                self.skipped.append(where)
                return
        if resource_type == "workspace":
            permission = {"READ": "USE", "EDIT": "USE"}.get(permission, permission)
        if resource_type in _KEPT_TYPES and (permission in _LEVELS or permission == "DENY"):
            _merge(role.permissions, (resource_type, pattern), permission)
        elif permission != "DENY" or resource_type in _ABSENT_TYPES:
            self.skipped.append(where)
        else:
            self.refused.append(where)


async def _legacy(reader: StockReader, b: _Builder, users: dict[int, _User]) -> None:
    """The per-resource tables of revisions before ``e5f6a7b8c9d0``, as stock's upgrade maps
    them, into a ``__user_<id>__`` role per user and workspace."""
    tables = await reader.tables()

    def grant(user_id: int, workspace: str, rtype: str, pattern: str, perm: str | None) -> None:
        user = users.get(int(user_id))
        if user is None or perm is None:
            return
        role = b.role(workspace, f"__user_{user.stock_id}__")
        role.usernames.add(user.username)
        b.permit(role, rtype, pattern, "DENY" if perm.upper() == "NO_PERMISSIONS" else perm)

    if "workspace_permissions" in tables:
        for uid, ws, perm in await reader.fetch(
                "SELECT user_id, workspace, permission FROM workspace_permissions"):
            if perm.upper() == "NO_PERMISSIONS":
                continue  # no workspace grant: the same as stock's upgrade
            grant(uid, ws, "workspace", "*", perm)
            if perm.upper() == "EDIT":
                for rtype in _FAN_OUT:
                    grant(uid, ws, rtype, "*", "EDIT")
    for uid, exp_id, perm in await reader.fetch(
            "SELECT user_id, experiment_id, permission FROM experiment_permissions"):
        grant(uid, "default", "experiment", str(exp_id), perm)
    has_ws = "workspace" in await reader.columns("registered_model_permissions")
    ws_col = "workspace" if has_ws else "'default'"
    for uid, ws, name, perm in await reader.fetch(
            f"SELECT user_id, {ws_col}, name, permission FROM registered_model_permissions"):
        grant(uid, ws, "registered_model", name, perm)
    if "scorer_permissions" in tables:
        for uid, exp_id, scorer, perm in await reader.fetch(
                "SELECT user_id, experiment_id, scorer_name, permission FROM scorer_permissions"):
            grant(uid, "default", "scorer", f"{exp_id}/{quote(scorer, safe='')}", perm)
    for table, column, rtype in (
            ("gateway_secret_permissions", "secret_id", "gateway_secret"),
            ("gateway_endpoint_permissions", "endpoint_id", "gateway_endpoint"),
            ("gateway_model_definition_permissions", "model_definition_id",
             "gateway_model_definition")):
        if table in tables:
            for uid, rid, perm in await reader.fetch(
                    f"SELECT user_id, {column}, permission FROM {table}"):
                grant(uid, "default", rtype, str(rid), perm)


async def _roles(reader: StockReader, b: _Builder, users: dict[int, _User]) -> None:
    tables = await reader.tables()
    if "roles" not in tables:
        return
    by_id: dict[int, _Role] = {}
    for role_id, name, workspace, description in await reader.fetch(
            "SELECT id, name, workspace, description FROM roles ORDER BY id"):
        by_id[int(role_id)] = b.role(workspace, name, description)
    for role_id, rtype, pattern, perm in await reader.fetch(
            "SELECT role_id, resource_type, resource_pattern, permission"
            " FROM role_permissions ORDER BY id"):
        if int(role_id) in by_id:
            b.permit(by_id[int(role_id)], rtype, pattern, perm)
    for user_id, role_id in await reader.fetch(
            "SELECT user_id, role_id FROM user_role_assignments ORDER BY id"):
        user = users.get(int(user_id))
        if user is not None and int(role_id) in by_id:
            by_id[int(role_id)].usernames.add(user.username)


async def read_auth(reader: StockReader) -> AuthPlan:
    """Read a stock auth database (connected ``reader``) into a plan; ``InvalidArgument``
    when its revision is unknown or it holds a ``DENY`` mlgate can not express."""
    revision = await _revision(reader)
    users = {int(uid): _User(int(uid), name, pw_hash or "", bool(admin))
             for uid, name, pw_hash, admin in await reader.fetch(
                 "SELECT id, username, password_hash, is_admin FROM users ORDER BY id")
             if name}
    b = _Builder()
    for uid, user in list(users.items()):
        if not valid_username(user.username):  # mlgate could not create it either
            b.skipped.append(f"user {user.username!r}: not a valid user name")
            del users[uid]
    if _REVISIONS.index(revision) < _ROLES_ONLY:
        await _legacy(reader, b, users)
    await _roles(reader, b, users)
    if b.refused:
        raise errors.InvalidArgument(
            "the auth database denies access at a level mlgate does not have (runs, logged "
            "models and artifacts follow their experiment, versions their model); remove or "
            "widen these rows and run again: " + "; ".join(b.refused[:20]))
    unusable = [u.username for u in users.values() if not password_hash_usable(u.password_hash)]
    roles = []
    for role in b.roles.values():
        if role.workspace == "default" or valid_team_name(role.workspace):
            roles.append(role)
        else:  # a team mlgate would not create (reserved, or not a URL-safe name)
            b.skipped.append(f"role {role.name!r}: workspace {role.workspace!r} is not a "
                             "valid team name")
    return AuthPlan(revision, list(users.values()), roles, b.skipped, unusable)


async def _ensure_workspaces(store: AuthStore, names: Iterable[str]) -> int:
    present = {w.name for w in await store.list_workspaces()}
    added = 0
    for name in sorted(set(names) - present):
        try:
            await store.create_workspace(name)
            added += 1
        except errors.AlreadyExists:
            pass
    return added


async def import_auth(plan: AuthPlan, store: AuthStore) -> AuthImport:
    """Write ``plan`` into ``store``, adding only what is missing."""
    added = dict.fromkeys(("users", "workspaces", "roles", "role permissions",
                           "role assignments"), 0)
    kept: list[str] = []
    withheld: list[str] = []
    ids: dict[str, int] = {}
    for user in plan.users:
        try:
            record = await store.create_user(user.username, user.password_hash,
                                             is_admin=user.is_admin)
            added["users"] += 1
        except errors.AlreadyExists:
            record = await store.get_user(user.username)
            # The same hash: made by an earlier run of this import, so its roles are due.
            if record.password_hash != user.password_hash or record.is_admin != user.is_admin:
                kept.append(user.username)
                continue
        ids[user.username] = record.user_id
    added["workspaces"] = await _ensure_workspaces(store, (r.workspace for r in plan.roles))
    existing = {(r.workspace, r.name): r for r in await store.list_roles()}
    for role in plan.roles:
        row = existing.get((role.workspace, role.name))
        if row is None:
            row = await store.create_role(role.name, role.workspace, role.description)
            added["roles"] += 1
        have = {(p.resource_type, p.resource_pattern)
                for p in await store.list_role_permissions(row.role_id)}
        for (rtype, pattern), permission in role.permissions.items():
            if (rtype, pattern) not in have:
                await store.add_role_permission(row.role_id, rtype, pattern, permission)
                added["role permissions"] += 1
        assigned = {a.user_id for a in await store.list_role_users(row.role_id)}
        for username in sorted(role.usernames):
            if username not in ids:
                withheld.append(f"{username} → {role.name} ({role.workspace})")
            elif ids[username] not in assigned:
                await store.assign_role(ids[username], row.role_id)
                added["role assignments"] += 1
    return AuthImport(added, kept, withheld)
