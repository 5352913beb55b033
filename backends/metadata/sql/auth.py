"""SQL of the auth tables (:class:`AuthStore`), shared by SQLite and PostgreSQL.

:class:`SqlAuthMixin` is inherited by :class:`~backends.metadata.sql.tracking.SqlMetadataStore`
and uses its ``_tx()``/``_read()`` connections and ``?`` placeholders.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import fields
from typing import Any, TypeVar

from backends import errors
from backends.metadata.interface.auth import AuthStore
from backends.metadata.interface.auth_entities import (
    AuditRecord,
    AuditRow,
    AuthVersions,
    GrantRow,
    LimitRow,
    RoleAssignment,
    RolePermissionRow,
    RoleRow,
    TokenRow,
    UserRecord,
    WorkspaceRow,
)
from backends.metadata.interface.entities import now_ms
from backends.metadata.interface.validation import int64
from backends.metadata.sql.dialect import Dialect

T = TypeVar("T")

__all__ = ["SqlAuthMixin"]

_USER_COLS = "user_id, username, password_hash, is_admin"
_TOKEN_COLS = ("token_id, user_id, name, digest, read_only, workspace, created_at, expires_at,"
               " last_used_at, revoked_at")
_GRANT_COLS = "resource_type, workspace, resource_id, principal_type, principal, permission"
_ROLE_PERM_COLS = "grant_id, principal, resource_type, resource_id, permission"
# A role permission on every resource of a type ('*'). Only roles have those: a grant to a
# user or team on '*' would be on a registered model named '*'.
_ROLE_WILDCARD = "(resource_id = '*' AND principal_type = 'role')"
_LIMIT_COLS = ("workspace, requests_per_second, rows_per_second, caller_requests_per_second,"
               " caller_rows_per_second")
_SCOPES = tuple(f.name for f in fields(AuthVersions))
_AUDIT_COLS = ("ts, username, workspace, action, resource_type, resource_id, outcome, status,"
               " client_address, request_id")


def _user(row: Any) -> UserRecord:
    return UserRecord(int(row[0]), row[1], row[2], bool(row[3]))


def _token(row: Any) -> TokenRow:
    return TokenRow(row[0], int(row[1]), row[2], row[3], bool(row[4]), row[5], int(row[6]),
                    row[7], row[8], row[9])


def _grant(row: Any) -> GrantRow:
    return GrantRow(row[0], row[1], row[2], row[3], row[4], row[5])


def _role_permission(row: Any) -> RolePermissionRow:
    return RolePermissionRow(int(row[0]), int(row[1]), row[2], row[3], row[4])


async def _changed(db: Any, *scopes: str) -> None:
    """Add one to the change counters of ``scopes`` in the caller's transaction. Called as
    its last statement, so the one row's lock is held only until the commit."""
    if not scopes or not set(scopes) <= set(_SCOPES):
        raise ValueError(f"unknown auth scopes {scopes}")
    sets = ", ".join(f"{scope} = {scope} + 1" for scope in scopes)  # names from _SCOPES
    await db.execute(f"UPDATE auth_versions SET {sets} WHERE id = 1")


def _int_id(value: str) -> int | None:
    try:
        return int64(value)
    except (TypeError, ValueError):
        return None


class SqlAuthMixin(AuthStore):
    @abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Any]: ...

    @abstractmethod
    async def _in_tx(self, body: Callable[[Any], Coroutine[Any, Any, T]], *,
                     small: bool = False) -> T: ...

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Any]: ...

    _dialect: Dialect

    def _among(self, ids: Sequence[str]) -> tuple[str, Sequence[object]]:
        return self._dialect.among(ids)

    async def auth_versions(self) -> AuthVersions:
        async with self._read() as db:
            cur = await db.execute(f"SELECT {', '.join(_SCOPES)} FROM auth_versions")
            row = await cur.fetchone()
        return AuthVersions(*(int(v) for v in row))

    # -- users ---------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str, *,
                          is_admin: bool = False) -> UserRecord:
        async with self._tx() as db:
            # A concurrent creation of the same name makes this one insert nothing.
            cur = await db.execute(
                self._dialect.insert_ignore(
                    "auth_users", ("username", "password_hash", "is_admin", "created_at"),
                    ("username",)),
                (username, password_hash, int(is_admin), now_ms()))
            if cur.rowcount != 1:
                raise errors.AlreadyExists(f"User '{username}' already exists.")
            cur = await db.execute(
                f"SELECT {_USER_COLS} FROM auth_users WHERE username = ?", (username,))
            row = await cur.fetchone()
        return _user(row)

    async def get_user(self, username: str) -> UserRecord:
        async with self._read() as db:
            cur = await db.execute(
                f"SELECT {_USER_COLS} FROM auth_users WHERE username = ?", (username,))
            row = await cur.fetchone()
        if row is None:
            raise errors.NotFound(f"User with username={username} not found")
        return _user(row)

    async def get_user_by_id(self, user_id: int) -> UserRecord:
        async with self._read() as db:
            cur = await db.execute(
                f"SELECT {_USER_COLS} FROM auth_users WHERE user_id = ?", (user_id,))
            row = await cur.fetchone()
        if row is None:
            raise errors.NotFound(f"User with id={user_id} not found")
        return _user(row)

    async def list_users(self) -> list[UserRecord]:
        async with self._read() as db:
            cur = await db.execute(f"SELECT {_USER_COLS} FROM auth_users ORDER BY user_id")
            return [_user(r) for r in await cur.fetchall()]

    async def update_user(self, username: str, *, password_hash: str | None = None,
                          is_admin: bool | None = None) -> UserRecord:
        async with self._tx() as db:
            # Then read back (MySQL has no UPDATE ... RETURNING, and its rowcount counts
            # changed rows, not matched ones).
            await db.execute(
                "UPDATE auth_users SET password_hash = COALESCE(?, password_hash),"
                " is_admin = COALESCE(?, is_admin) WHERE username = ?",
                (password_hash, None if is_admin is None else int(is_admin), username))
            cur = await db.execute(
                f"SELECT {_USER_COLS} FROM auth_users WHERE username = ?", (username,))
            row = await cur.fetchone()
            scopes = [scope for scope, given in (("credentials", password_hash),
                                                  ("identities", is_admin)) if given is not None]
            if row is not None and scopes:
                await _changed(db, *scopes)
        if row is None:
            raise errors.NotFound(f"User with username={username} not found")
        return _user(row)

    async def replace_password_hash(self, username: str, old_hash: str,
                                    new_hash: str) -> bool:
        async with self._tx() as db:
            await db.execute(
                "UPDATE auth_users SET password_hash = ? WHERE username = ?"
                " AND password_hash = ?", (new_hash, username, old_hash))
            # Whether it holds new_hash now, not the rowcount: MySQL counts a row set to
            # the value it had (old_hash == new_hash) as unchanged. A salted hash that
            # another writer stored is never this one.
            cur = await db.execute(
                "SELECT 1 FROM auth_users WHERE username = ? AND password_hash = ?",
                (username, new_hash))
            return await cur.fetchone() is not None

    async def delete_user(self, username: str) -> UserRecord:
        async with self._tx() as db:
            cur = await db.execute(
                f"SELECT {_USER_COLS} FROM auth_users WHERE username = ?", (username,))
            row = await cur.fetchone()
            if row is None:
                raise errors.NotFound(f"User with username={username} not found")
            user = _user(row)
            for table in ("auth_tokens", "auth_team_members", "auth_role_users"):
                await db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user.user_id,))
            await db.execute(
                "DELETE FROM auth_grants WHERE principal_type = 'user' AND principal = ?",
                (str(user.user_id),))
            await db.execute("DELETE FROM auth_users WHERE user_id = ?", (user.user_id,))
            await _changed(db, "credentials", "grants")
        return user

    # -- teams (workspaces) --------------------------------------------------------------

    async def create_workspace(self, name: str, description: str = "") -> WorkspaceRow:
        async with self._tx() as db:
            cur = await db.execute(
                self._dialect.insert_ignore(
                    "auth_workspaces", ("name", "description", "created_at"), ("name",)),
                (name, description, now_ms()))
            if cur.rowcount != 1:
                raise errors.AlreadyExists(f"Workspace '{name}' already exists.")
            await _changed(db, "workspaces")
        return WorkspaceRow(name, description)

    async def get_workspace(self, name: str) -> WorkspaceRow:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT name, description FROM auth_workspaces WHERE name = ?", (name,))
            row = await cur.fetchone()
        if row is None:
            raise errors.NotFound(f"Workspace '{name}' not found.")
        return WorkspaceRow(row[0], row[1] or "")

    async def list_workspaces(self) -> list[WorkspaceRow]:
        async with self._read() as db:
            cur = await db.execute("SELECT name, description FROM auth_workspaces ORDER BY name")
            return [WorkspaceRow(r[0], r[1] or "") for r in await cur.fetchall()]

    async def delete_workspace(self, name: str) -> None:
        if name == "default":
            raise errors.Conflict("The default workspace cannot be deleted.")
        async with self._tx() as db:
            for table in ("experiments", "registered_models"):
                cur = await db.execute(
                    f"SELECT 1 FROM {table} WHERE workspace = ? LIMIT 1", (name,))
                if await cur.fetchone() is not None:
                    raise errors.Conflict(
                        f"Workspace '{name}' still holds {table.replace('_', ' ')}.")
            await db.execute("DELETE FROM auth_grants WHERE principal_type = 'team'"
                             " AND principal = ?", (name,))
            await db.execute("DELETE FROM auth_team_members WHERE workspace = ?", (name,))
            await db.execute(
                "DELETE FROM auth_grants WHERE principal_type = 'role' AND principal IN"
                f" (SELECT {self._dialect.cast_text('role_id')} FROM auth_roles"
                " WHERE workspace = ?)", (name,))
            await db.execute("DELETE FROM auth_role_users WHERE role_id IN"
                             " (SELECT role_id FROM auth_roles WHERE workspace = ?)", (name,))
            await db.execute("DELETE FROM auth_roles WHERE workspace = ?", (name,))
            cur = await db.execute("DELETE FROM rate_limits WHERE workspace = ?", (name,))
            limited = cur.rowcount > 0
            cur = await db.execute("DELETE FROM auth_workspaces WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise errors.NotFound(f"Workspace '{name}' not found.")
            await _changed(db, "workspaces", "identities", "grants",
                           *(("limits",) if limited else ()))

    async def set_member(self, workspace: str, user_id: int, role: str) -> None:
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT (SELECT 1 FROM auth_workspaces WHERE name = ?),"
                " (SELECT 1 FROM auth_users WHERE user_id = ?)", (workspace, user_id))
            row = await cur.fetchone()
            if row is None or row[0] is None:
                raise errors.NotFound(f"Workspace '{workspace}' not found.")
            if row[1] is None:
                raise errors.NotFound(f"User with id={user_id} not found")
            await db.execute(
                self._dialect.upsert("auth_team_members", ("workspace", "user_id", "role"),
                                     ("workspace", "user_id"), ("role",)),
                (workspace, user_id, role))
            await _changed(db, "identities")

    async def remove_member(self, workspace: str, user_id: int) -> bool:
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM auth_team_members WHERE workspace = ? AND user_id = ?",
                (workspace, user_id))
            if cur.rowcount == 0:
                return False
            await _changed(db, "identities")
            return True

    async def list_members(self, workspace: str) -> list[tuple[UserRecord, str]]:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT u.user_id, u.username, u.password_hash, u.is_admin, m.role"
                " FROM auth_team_members m JOIN auth_users u ON u.user_id = m.user_id"
                " WHERE m.workspace = ? ORDER BY u.username", (workspace,))
            return [(_user(r), r[4]) for r in await cur.fetchall()]

    async def memberships(self, user_id: int) -> dict[str, str]:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT workspace, role FROM auth_team_members WHERE user_id = ?", (user_id,))
            return {r[0]: r[1] for r in await cur.fetchall()}

    # -- API tokens ----------------------------------------------------------------------

    async def create_token(self, row: TokenRow) -> None:
        async with self._tx() as db:
            cur = await db.execute("SELECT 1 FROM auth_users WHERE user_id = ?", (row.user_id,))
            if await cur.fetchone() is None:
                raise errors.NotFound(f"User with id={row.user_id} not found")
            await db.execute(
                f"INSERT INTO auth_tokens ({_TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.token_id, row.user_id, row.name, row.digest, int(row.read_only),
                 row.workspace, row.created_at, row.expires_at, row.last_used_at,
                 row.revoked_at))

    async def get_token(self, token_id: str) -> TokenRow:
        async with self._read() as db:
            cur = await db.execute(
                f"SELECT {_TOKEN_COLS} FROM auth_tokens WHERE token_id = ?", (token_id,))
            row = await cur.fetchone()
        if row is None:
            raise errors.NotFound(f"Token '{token_id}' not found")
        return _token(row)

    async def list_tokens(self, user_id: int | None = None) -> list[TokenRow]:
        async with self._read() as db:
            if user_id is None:
                cur = await db.execute(
                    f"SELECT {_TOKEN_COLS} FROM auth_tokens ORDER BY created_at DESC, token_id")
            else:
                cur = await db.execute(
                    f"SELECT {_TOKEN_COLS} FROM auth_tokens WHERE user_id = ?"
                    " ORDER BY created_at DESC, token_id", (user_id,))
            return [_token(r) for r in await cur.fetchall()]

    async def revoke_token(self, token_id: str, at: int) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE auth_tokens SET revoked_at = COALESCE(revoked_at, ?)"
                " WHERE token_id = ?", (at, token_id))
            # Not the rowcount: revoking a revoked token changes nothing, which MySQL
            # counts as no row.
            cur = await db.execute("SELECT 1 FROM auth_tokens WHERE token_id = ?", (token_id,))
            if await cur.fetchone() is None:
                raise errors.NotFound(f"Token '{token_id}' not found")
            await _changed(db, "credentials")

    async def touch_token(self, token_id: str, at: int) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE auth_tokens SET last_used_at = ? WHERE token_id = ?", (at, token_id))

    # -- grants --------------------------------------------------------------------------

    async def set_grant(self, grant: GrantRow) -> None:
        async with self._tx() as db:
            await db.execute(
                self._dialect.upsert(
                    "auth_grants", _GRANT_COLS.split(", "),
                    ("resource_type", "workspace", "resource_id", "principal_type", "principal"),
                    ("permission",)),
                (grant.resource_type, grant.workspace, grant.resource_id,
                 grant.principal_type, grant.principal, grant.permission))
            await _changed(db, "grants")

    async def delete_grant(self, resource_type: str, workspace: str, resource_id: str,
                           principal_type: str, principal: str) -> bool:
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM auth_grants WHERE resource_type = ? AND workspace = ?"
                " AND resource_id = ? AND principal_type = ? AND principal = ?",
                (resource_type, workspace, resource_id, principal_type, principal))
            if cur.rowcount == 0:
                return False
            await _changed(db, "grants")
            return True

    async def grants_on(self, resource_type: str, workspace: str,
                        resource_id: str) -> list[GrantRow]:
        async with self._read() as db:
            cur = await db.execute(
                f"SELECT {_GRANT_COLS} FROM auth_grants WHERE resource_type = ?"
                f" AND workspace = ? AND (resource_id = ? OR {_ROLE_WILDCARD}) ORDER BY grant_id",
                (resource_type, workspace, resource_id))
            return [_grant(r) for r in await cur.fetchall()]

    async def grants_of(self, principal_type: str, principal: str) -> list[GrantRow]:
        async with self._read() as db:
            cur = await db.execute(
                f"SELECT {_GRANT_COLS} FROM auth_grants WHERE principal_type = ?"
                " AND principal = ? ORDER BY grant_id", (principal_type, principal))
            return [_grant(r) for r in await cur.fetchall()]

    async def move_grants(self, resource_type: str, workspace: str, old_id: str,
                          new_id: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "DELETE FROM auth_grants WHERE resource_type = ? AND workspace = ?"
                f" AND resource_id = ? AND NOT {_ROLE_WILDCARD}",
                (resource_type, workspace, new_id))
            await db.execute(
                "UPDATE auth_grants SET resource_id = ? WHERE resource_type = ?"
                f" AND workspace = ? AND resource_id = ? AND NOT {_ROLE_WILDCARD}",
                (new_id, resource_type, workspace, old_id))
            await _changed(db, "grants")

    async def delete_grants_on(self, resource_type: str, workspace: str,
                               resource_id: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "DELETE FROM auth_grants WHERE resource_type = ? AND workspace = ?"
                f" AND resource_id = ? AND NOT {_ROLE_WILDCARD}",
                (resource_type, workspace, resource_id))
            await _changed(db, "grants")

    # -- roles ---------------------------------------------------------------------------

    async def _roles(self, db: Any, where: str, params: Sequence[Any]) -> list[RoleRow]:
        cur = await db.execute(
            f"SELECT role_id, name, workspace, description FROM auth_roles r WHERE {where}"
            " ORDER BY role_id", params)
        rows = list(await cur.fetchall())
        if not rows:
            return []
        perms: dict[int, list[RolePermissionRow]] = {}
        among, ids = self._among([str(r[0]) for r in rows])
        cur = await db.execute(
            f"SELECT {_ROLE_PERM_COLS} FROM auth_grants WHERE principal_type = 'role'"
            f" AND principal {among} ORDER BY grant_id", ids)
        for p in await cur.fetchall():
            perm = _role_permission(p)
            perms.setdefault(perm.role_id, []).append(perm)
        return [RoleRow(int(r[0]), r[1], r[2], r[3], tuple(perms.get(int(r[0]), ())))
                for r in rows]

    async def _role(self, db: Any, role_id: int) -> RoleRow:
        found = await self._roles(db, "role_id = ?", (role_id,))
        if not found:
            raise errors.NotFound(f"Role with id={role_id} not found")
        return found[0]

    async def create_role(self, name: str, workspace: str,
                          description: str | None) -> RoleRow:
        async with self._tx() as db:
            cur = await db.execute("SELECT 1 FROM auth_workspaces WHERE name = ?", (workspace,))
            if await cur.fetchone() is None:
                raise errors.NotFound(f"Workspace '{workspace}' not found.")
            cur = await db.execute(
                "SELECT 1 FROM auth_roles WHERE workspace = ? AND name = ?", (workspace, name))
            if await cur.fetchone() is not None:
                raise errors.AlreadyExists(
                    f"Role '{name}' already exists in workspace '{workspace}'.")
            role_id = await self._dialect.insert_returning(
                db, "INSERT INTO auth_roles (name, workspace, description) VALUES (?, ?, ?)",
                (name, workspace, description), "role_id")
            return RoleRow(int(role_id), name, workspace, description)

    async def get_role(self, role_id: int) -> RoleRow:
        async with self._read() as db:
            return await self._role(db, role_id)

    async def list_roles(self, workspaces: Sequence[str] | None = None) -> list[RoleRow]:
        async with self._read() as db:
            if workspaces is None:
                return await self._roles(db, "1 = 1", ())
            among, names = self._among(list(workspaces))
            return await self._roles(db, f"workspace {among}", names)

    async def update_role(self, role_id: int, *, name: str | None,
                          description: str | None) -> RoleRow:
        async with self._tx() as db:
            role = await self._role(db, role_id)
            if name is not None and name != role.name:
                cur = await db.execute(
                    "SELECT 1 FROM auth_roles WHERE workspace = ? AND name = ?",
                    (role.workspace, name))
                if await cur.fetchone() is not None:
                    raise errors.AlreadyExists(
                        f"Role '{name}' already exists in workspace '{role.workspace}'.")
            await db.execute(
                "UPDATE auth_roles SET name = COALESCE(?, name),"
                " description = COALESCE(?, description) WHERE role_id = ?",
                (name, description, role_id))
            return await self._role(db, role_id)

    async def delete_role(self, role_id: int) -> RoleRow:
        async with self._tx() as db:
            role = await self._role(db, role_id)
            await db.execute("DELETE FROM auth_grants WHERE principal_type = 'role'"
                             " AND principal = ?", (str(role_id),))
            await db.execute("DELETE FROM auth_role_users WHERE role_id = ?", (role_id,))
            await db.execute("DELETE FROM auth_roles WHERE role_id = ?", (role_id,))
            await _changed(db, "identities", "grants")
            return role

    async def add_role_permission(self, role_id: int, resource_type: str, pattern: str,
                                  permission: str) -> RolePermissionRow:
        async with self._tx() as db:
            role = await self._role(db, role_id)
            cur = await db.execute(
                "SELECT 1 FROM auth_grants WHERE resource_type = ? AND workspace = ?"
                " AND resource_id = ? AND principal_type = 'role' AND principal = ?",
                (resource_type, role.workspace, pattern, str(role_id)))
            if await cur.fetchone() is not None:
                raise errors.AlreadyExists(
                    f"Role {role_id} already has a permission on {resource_type} '{pattern}'.")
            grant_id = await self._dialect.insert_returning(
                db, f"INSERT INTO auth_grants ({_GRANT_COLS}) VALUES (?, ?, ?, 'role', ?, ?)",
                (resource_type, role.workspace, pattern, str(role_id), permission), "grant_id")
            found = await self._role_permission_row(db, int(grant_id))
            await _changed(db, "identities", "grants")
            return found

    async def _role_permission_row(self, db: Any, permission_id: int) -> RolePermissionRow:
        cur = await db.execute(
            f"SELECT {_ROLE_PERM_COLS} FROM auth_grants WHERE grant_id = ?"
            " AND principal_type = 'role'", (permission_id,))
        row = await cur.fetchone()
        if row is None:
            raise errors.NotFound(f"Role permission with id={permission_id} not found")
        return _role_permission(row)

    async def get_role_permission(self, permission_id: int) -> RolePermissionRow:
        async with self._read() as db:
            return await self._role_permission_row(db, permission_id)

    async def update_role_permission(self, permission_id: int,
                                     permission: str) -> RolePermissionRow:
        async with self._tx() as db:
            await self._role_permission_row(db, permission_id)
            await db.execute("UPDATE auth_grants SET permission = ? WHERE grant_id = ?",
                             (permission, permission_id))
            await _changed(db, "identities", "grants")
            return await self._role_permission_row(db, permission_id)

    async def remove_role_permission(self, permission_id: int) -> RolePermissionRow:
        async with self._tx() as db:
            found = await self._role_permission_row(db, permission_id)
            await db.execute("DELETE FROM auth_grants WHERE grant_id = ?", (permission_id,))
            await _changed(db, "identities", "grants")
            return found

    async def list_role_permissions(self, role_id: int) -> list[RolePermissionRow]:
        async with self._read() as db:
            return list((await self._role(db, role_id)).permissions)

    async def assign_role(self, user_id: int, role_id: int) -> RoleAssignment:
        async with self._tx() as db:
            await self._role(db, role_id)
            cur = await db.execute("SELECT 1 FROM auth_users WHERE user_id = ?", (user_id,))
            if await cur.fetchone() is None:
                raise errors.NotFound(f"User with id={user_id} not found")
            await db.execute(
                self._dialect.insert_ignore("auth_role_users", ("role_id", "user_id"),
                                            ("role_id", "user_id")), (role_id, user_id))
            cur = await db.execute(
                "SELECT assignment_id, user_id, role_id FROM auth_role_users"
                " WHERE role_id = ? AND user_id = ?", (role_id, user_id))
            row = await cur.fetchone()
            await _changed(db, "identities")
            return RoleAssignment(int(row[0]), int(row[1]), int(row[2]))

    async def unassign_role(self, user_id: int, role_id: int) -> bool:
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM auth_role_users WHERE role_id = ? AND user_id = ?",
                (role_id, user_id))
            if cur.rowcount == 0:
                return False
            await _changed(db, "identities")
            return True

    async def list_user_roles(self, user_id: int) -> list[RoleRow]:
        async with self._read() as db:
            return await self._roles(
                db, "role_id IN (SELECT role_id FROM auth_role_users WHERE user_id = ?)",
                (user_id,))

    async def list_role_users(self, role_id: int) -> list[RoleAssignment]:
        async with self._read() as db:
            await self._role(db, role_id)
            cur = await db.execute(
                "SELECT assignment_id, user_id, role_id FROM auth_role_users WHERE role_id = ?"
                " ORDER BY assignment_id", (role_id,))
            return [RoleAssignment(int(r[0]), int(r[1]), int(r[2]))
                    for r in await cur.fetchall()]

    async def role_memberships(self, user_id: int) -> list[tuple[int, str, str | None]]:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT r.role_id, r.workspace, g.permission FROM auth_role_users a"
                " JOIN auth_roles r ON r.role_id = a.role_id"
                " LEFT JOIN auth_grants g ON g.principal_type = 'role'"
                f" AND g.principal = {self._dialect.cast_text('r.role_id')}"
                " AND g.resource_type = 'workspace'"
                " WHERE a.user_id = ? ORDER BY r.role_id", (user_id,))
            return [(int(r[0]), r[1], r[2]) for r in await cur.fetchall()]

    # -- locating resources --------------------------------------------------------------

    async def experiment_workspace(self, experiment_id: str) -> str | None:
        exp_id = _int_id(experiment_id)
        if exp_id is None:
            return None
        async with self._read() as db:
            cur = await db.execute(
                "SELECT workspace FROM experiments WHERE experiment_id = ?", (exp_id,))
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def experiment_id_by_name(self, workspace: str, name: str) -> str | None:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT experiment_id FROM experiments WHERE workspace = ? AND name = ?",
                (workspace, name))
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def run_experiment(self, run_id: str) -> str | None:
        async with self._read() as db:
            cur = await db.execute("SELECT experiment_id FROM runs WHERE run_id = ?", (run_id,))
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def logged_model_experiment(self, model_id: str) -> str | None:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT experiment_id FROM logged_models WHERE model_id = ?", (model_id,))
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def registered_model_exists(self, workspace: str, name: str) -> bool:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?",
                (workspace, name))
            return await cur.fetchone() is not None

    # -- rate limits ---------------------------------------------------------------------

    async def set_limits(self, row: LimitRow) -> None:
        async with self._tx() as db:
            cur = await db.execute("SELECT 1 FROM auth_workspaces WHERE name = ?",
                                   (row.workspace,))
            if await cur.fetchone() is None:
                raise errors.NotFound(f"Workspace '{row.workspace}' not found.")
            columns = (*_LIMIT_COLS.split(", "), "updated_at")
            await db.execute(
                self._dialect.upsert("rate_limits", columns, ("workspace",), columns[1:]),
                (row.workspace, row.requests_per_second, row.rows_per_second,
                 row.caller_requests_per_second, row.caller_rows_per_second, now_ms()))
            await _changed(db, "limits")

    async def delete_limits(self, workspace: str) -> bool:
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM rate_limits WHERE workspace = ?", (workspace,))
            if cur.rowcount == 0:
                return False
            await _changed(db, "limits")
        return True

    async def list_limits(self) -> list[LimitRow]:
        async with self._read() as db:
            cur = await db.execute(f"SELECT {_LIMIT_COLS} FROM rate_limits ORDER BY workspace")
            return [LimitRow(r[0], *(None if v is None else float(v) for v in r[1:]))
                    for r in await cur.fetchall()]

    async def live_processes(self, process_id: str, at_ms: int, alive_ms: int) -> int:
        async with self._tx() as db:
            await db.execute(
                self._dialect.upsert("live_processes", ("process_id", "seen_at"),
                                     ("process_id",), ("seen_at",)),
                (process_id, at_ms))
            await db.execute("DELETE FROM live_processes WHERE seen_at < ?",
                             (at_ms - alive_ms,))
            cur = await db.execute("SELECT COUNT(*) FROM live_processes")
            row = await cur.fetchone()
        return int(row[0])

    async def leave_processes(self, process_id: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM live_processes WHERE process_id = ?", (process_id,))

    # -- audit ---------------------------------------------------------------------------

    async def append_audit(self, rows: Sequence[AuditRow]) -> None:
        if not rows:
            return

        async def insert(db: Any) -> None:
            await self._insert_audit(db, rows)

        await self._audit_tx(insert)

    async def _insert_audit(self, db: Any, rows: Sequence[AuditRow]) -> None:
        """The rows' INSERT, inside the audit transaction (PostgreSQL uses COPY)."""
        await db.executemany(
            f"INSERT INTO audit_log ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    async def _audit_tx(self, body: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        """A write transaction on the database holding the audit log: the metadata
        database itself, unless the store keeps the log apart (SQLite)."""
        await self._in_tx(body)

    def _audit_read(self) -> AbstractAsyncContextManager[Any]:
        """A read snapshot of the database holding the audit log."""
        return self._read()

    async def _audit_narrow(self, where: list[str], params: list[Any], username: str | None,
                            resource_id: str | None) -> None:
        """Add conditions that let the query find a user's or a resource's rows fast. The
        default adds none: the columns' own indexes serve (PostgreSQL)."""

    async def query_audit(self, *, username: str | None = None,
                          resource_type: str | None = None, resource_id: str | None = None,
                          since: int | None = None, until: int | None = None,
                          limit: int = 100, offset: int = 0) -> list[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, op, value in (("username", "=", username),
                                  ("resource_type", "=", resource_type),
                                  ("resource_id", "=", resource_id),
                                  ("ts", ">=", since), ("ts", "<", until)):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        await self._audit_narrow(where, params, username, resource_id)
        sql = f"SELECT {_AUDIT_COLS}, audit_id FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY audit_id LIMIT ? OFFSET ?"
        async with self._audit_read() as db:
            cur = await db.execute(sql, (*params, limit, offset))
            return [AuditRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6],
                                None if r[7] is None else int(r[7]), r[8],
                                audit_id=int(r[10]), request_id=r[9])
                    for r in await cur.fetchall()]
