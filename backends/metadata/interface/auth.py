"""The auth part of the metadata store: users, teams (workspaces) and their members, API
tokens, grants on experiments and registered models, the audit log, and the look-ups the
gateway needs to find the experiment or model a request touches.

Stores keep what they are given: hashing passwords and tokens is the caller's job (the
``auth`` package), so no secret ever reaches a store in clear. Every method raises
:mod:`backends.errors` exceptions only.

Every change that could make a server's cached users, tokens, memberships or grants stale
adds one to the matching counter of :meth:`AuthStore.auth_versions` in its own transaction
(creating a user or a token does not: nothing cached can contradict it). Servers poll the
counters, so a change made by any process reaches every one of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

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

__all__ = ["AuthStore"]


class AuthStore(ABC):
    @abstractmethod
    async def auth_versions(self) -> AuthVersions:
        """The change counters as committed now: one small read, cheap to poll."""

    # -- users ---------------------------------------------------------------------------

    @abstractmethod
    async def create_user(self, username: str, password_hash: str, *,
                          is_admin: bool = False) -> UserRecord:
        """Raises ``AlreadyExists`` when the username is taken."""

    @abstractmethod
    async def get_user(self, username: str) -> UserRecord:
        """Raises ``NotFound``."""

    @abstractmethod
    async def get_user_by_id(self, user_id: int) -> UserRecord:
        """Raises ``NotFound``."""

    @abstractmethod
    async def list_users(self) -> list[UserRecord]:
        """Every user, by id."""

    @abstractmethod
    async def update_user(self, username: str, *, password_hash: str | None = None,
                          is_admin: bool | None = None) -> UserRecord:
        """Change what is given. Raises ``NotFound``."""

    @abstractmethod
    async def replace_password_hash(self, username: str, old_hash: str,
                                    new_hash: str) -> bool:
        """Store ``new_hash`` only while the user's hash is still ``old_hash`` (a rehash
        must not undo a password changed meanwhile); False when it was not."""

    @abstractmethod
    async def delete_user(self, username: str) -> UserRecord:
        """Delete the user with their tokens, memberships and grants. Raises ``NotFound``."""

    # -- teams (workspaces) --------------------------------------------------------------

    @abstractmethod
    async def create_workspace(self, name: str, description: str = "") -> WorkspaceRow:
        """Raises ``AlreadyExists``."""

    @abstractmethod
    async def get_workspace(self, name: str) -> WorkspaceRow:
        """Raises ``NotFound``."""

    @abstractmethod
    async def list_workspaces(self) -> list[WorkspaceRow]:
        """Every workspace, by name; ``default`` always exists."""

    @abstractmethod
    async def delete_workspace(self, name: str) -> None:
        """Raises ``NotFound``; ``Conflict`` for ``default`` or while experiments or
        registered models live in it."""

    @abstractmethod
    async def set_member(self, workspace: str, user_id: int, role: str) -> None:
        """Add a member or change their role. Raises ``NotFound`` for an unknown workspace
        or user."""

    @abstractmethod
    async def remove_member(self, workspace: str, user_id: int) -> bool:
        """False when the user was not a member."""

    @abstractmethod
    async def list_members(self, workspace: str) -> list[tuple[UserRecord, str]]:
        """(user, role) pairs by username."""

    @abstractmethod
    async def memberships(self, user_id: int) -> dict[str, str]:
        """workspace → role of one user."""

    # -- API tokens ----------------------------------------------------------------------

    @abstractmethod
    async def create_token(self, row: TokenRow) -> None:
        """Store a token (its digest only). Raises ``NotFound`` for an unknown user."""

    @abstractmethod
    async def get_token(self, token_id: str) -> TokenRow:
        """Raises ``NotFound``."""

    @abstractmethod
    async def list_tokens(self, user_id: int | None = None) -> list[TokenRow]:
        """Tokens of one user (or everyone's), newest first."""

    @abstractmethod
    async def revoke_token(self, token_id: str, at: int) -> None:
        """Raises ``NotFound``. Revoking twice keeps the first time."""

    @abstractmethod
    async def touch_token(self, token_id: str, at: int) -> None:
        """Record a use (best effort)."""

    # -- grants --------------------------------------------------------------------------

    @abstractmethod
    async def set_grant(self, grant: GrantRow) -> None:
        """Insert or replace the grant of one principal on one resource."""

    @abstractmethod
    async def delete_grant(self, resource_type: str, workspace: str, resource_id: str,
                           principal_type: str, principal: str) -> bool:
        """False when there was none."""

    @abstractmethod
    async def grants_on(self, resource_type: str, workspace: str,
                        resource_id: str) -> list[GrantRow]:
        """Every grant on one resource, with the role permissions on every resource of its
        type in the workspace (``resource_id`` '*')."""

    @abstractmethod
    async def grants_of(self, principal_type: str, principal: str) -> list[GrantRow]:
        """Every grant to one principal."""

    @abstractmethod
    async def move_grants(self, resource_type: str, workspace: str, old_id: str,
                          new_id: str) -> None:
        """Carry grants over to a renamed resource."""

    @abstractmethod
    async def delete_grants_on(self, resource_type: str, workspace: str,
                               resource_id: str) -> None:
        """Drop the grants of a deleted resource, so a new one of the same name starts
        without them."""

    # -- roles (MLflow 3.17's RBAC) ------------------------------------------------------

    @abstractmethod
    async def create_role(self, name: str, workspace: str,
                          description: str | None) -> RoleRow:
        """NotFound for an unknown workspace, AlreadyExists for a taken name."""

    @abstractmethod
    async def get_role(self, role_id: int) -> RoleRow:
        """With its permissions; NotFound if there is none."""

    @abstractmethod
    async def list_roles(self, workspaces: Sequence[str] | None = None) -> list[RoleRow]:
        """Roles of the given workspaces (every workspace when None), with permissions."""

    @abstractmethod
    async def update_role(self, role_id: int, *, name: str | None,
                          description: str | None) -> RoleRow: ...

    @abstractmethod
    async def delete_role(self, role_id: int) -> RoleRow:
        """Deletes its permissions and assignments too; returns what was deleted."""

    @abstractmethod
    async def add_role_permission(self, role_id: int, resource_type: str, pattern: str,
                                  permission: str) -> RolePermissionRow:
        """AlreadyExists when the role has a permission on that resource pattern."""

    @abstractmethod
    async def get_role_permission(self, permission_id: int) -> RolePermissionRow: ...

    @abstractmethod
    async def update_role_permission(self, permission_id: int,
                                     permission: str) -> RolePermissionRow: ...

    @abstractmethod
    async def remove_role_permission(self, permission_id: int) -> RolePermissionRow: ...

    @abstractmethod
    async def list_role_permissions(self, role_id: int) -> list[RolePermissionRow]: ...

    @abstractmethod
    async def assign_role(self, user_id: int, role_id: int) -> RoleAssignment:
        """Idempotent: an existing assignment is returned as is."""

    @abstractmethod
    async def unassign_role(self, user_id: int, role_id: int) -> bool:
        """False when the user did not have the role."""

    @abstractmethod
    async def list_user_roles(self, user_id: int) -> list[RoleRow]: ...

    @abstractmethod
    async def list_role_users(self, role_id: int) -> list[RoleAssignment]: ...

    @abstractmethod
    async def role_memberships(self, user_id: int) -> list[tuple[int, str, str | None]]:
        """(role id, workspace, the role's permission on the workspace or None) for each of
        the user's roles."""

    # -- locating resources --------------------------------------------------------------

    @abstractmethod
    async def experiment_workspace(self, experiment_id: str) -> str | None:
        """The workspace of an experiment; None if unknown (or not an integer id)."""

    @abstractmethod
    async def experiment_id_by_name(self, workspace: str, name: str) -> str | None:
        """None if there is no such experiment."""

    @abstractmethod
    async def run_experiment(self, run_id: str) -> str | None:
        """The experiment id of a run; None if unknown."""

    @abstractmethod
    async def logged_model_experiment(self, model_id: str) -> str | None:
        """The experiment id of a logged model (deleted ones too); None if unknown."""

    @abstractmethod
    async def registered_model_exists(self, workspace: str, name: str) -> bool:
        """Whether the registered model exists in the workspace."""

    # -- rate limits ---------------------------------------------------------------------

    @abstractmethod
    async def set_limits(self, row: LimitRow) -> None:
        """Set a workspace's limits, replacing all of its previous ones; bumps ``limits``.
        Raises ``NotFound`` for an unknown workspace."""

    @abstractmethod
    async def delete_limits(self, workspace: str) -> bool:
        """Remove a workspace's limits (it takes the defaults again); False when it had
        none. Bumps ``limits`` when it had some."""

    @abstractmethod
    async def list_limits(self) -> list[LimitRow]:
        """Every workspace's limits, by workspace name."""

    @abstractmethod
    async def live_processes(self, process_id: str, at_ms: int, alive_ms: int) -> int:
        """Record that server process ``process_id`` is alive at ``at_ms``, forget those
        not seen for ``alive_ms``, and return how many are alive (itself included)."""

    @abstractmethod
    async def leave_processes(self, process_id: str) -> None:
        """Forget ``process_id`` (it is stopping), so the others' shares grow at once."""

    # -- audit ---------------------------------------------------------------------------

    @abstractmethod
    async def append_audit(self, rows: Sequence[AuditRow]) -> None:
        """Append records (:data:`AuditRow` tuples) in one transaction."""

    @abstractmethod
    async def query_audit(self, *, username: str | None = None,
                          resource_type: str | None = None, resource_id: str | None = None,
                          since: int | None = None, until: int | None = None,
                          limit: int = 100, offset: int = 0) -> list[AuditRecord]:
        """Records matching every given criterion, oldest first; ``until`` is exclusive."""
