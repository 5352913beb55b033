"""The per-process state of authentication and authorization: :class:`Security`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aiohttp import web

from auth.identity import Identity
from auth.names import MAX_USERNAME, valid_team_name
from auth.permissions import Permission, TeamRole
from auth.policy import DEFAULT_WORKSPACE, Grant, Policy, principals_of, role_of
from backends import errors as be
from backends.metadata.interface.auth_entities import GrantRow, Visibility
from backends.metadata.interface.entities import now_ms
from backends.metadata.interface.store import MetadataStore
from gateway.audit import AuditLog
from gateway.observability.request_id import request_id_of
from gateway.security.authentication import Authenticator
from gateway.security.limits import RateLimits
from gateway.security.resolution import Resolver
from gateway.security.shares import PoolShares
from gateway.security.watch import AuthWatch
from gateway.settings import Settings

__all__ = ["SECURITY", "Security", "policy_of", "security_of"]

log = logging.getLogger("mlgate.auth")


def policy_of(settings: Settings) -> Policy:
    """The permission policy ``settings`` describe (the CLI's team changes judge by it too)."""
    return Policy(Permission.parse(settings.auth_member_default),
                  default_workspace_open=settings.auth_default_workspace_open)

# Characters of a resource id kept in an audit record (ids and names are shorter; the rest
# is what a caller made up).
MAX_AUDIT_RESOURCE_ID = 1000


class Security:
    """What the enforcement point keeps between requests: the policy, the authenticator and
    resolver with their caches, and the audit log (auth on)."""

    def __init__(self, store: MetadataStore, settings: Settings) -> None:
        self.store = store
        self.auth_on = settings.auth
        self.workspaces_on = settings.workspaces_enabled
        self.policy = policy_of(settings)
        ttl = settings.auth_cache_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self.authenticator = Authenticator(
            store, ttl=ttl, max_failures=settings.auth_max_failures,
            failure_window=settings.auth_failure_window,
            trusted_proxies=settings.trusted_proxies, on_failure=self._login_failed,
            spawn=self._spawn)
        self.resolver = Resolver(store, ttl)
        self.audit = AuditLog(store) if self.auth_on else None
        self.limits = RateLimits(store, settings)
        self.pool_shares = PoolShares(
            settings.sqlite_readers if settings.backend_store_uri.startswith("sqlite")
            else settings.db_pool_size)
        # Changes made by other processes: to what is cached, and to the rate limits.
        self.watch = AuthWatch(store, self.changed_elsewhere)
        # Since start, for /metrics: logins refused (a wrong password, an unknown or bad
        # token), and attempts answered 429 by the failed-login limit.
        self.failed_logins = 0
        self.rate_limited = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.audit is not None:
            self.audit.start()
        self.watch.start()
        self.limits.start()

    async def close(self) -> None:
        await self.watch.close()
        await self.limits.close()
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        if self.audit is not None:
            await self.audit.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except be.BackendError as exc:
                log.debug("background auth write failed: %s", exc)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- invalidation (called by the admin routes) ---------------------------------------

    def invalidate_user(self, user_id: int | None = None) -> None:
        self.authenticator.invalidate_user(user_id)

    def invalidate_token(self, token_id: str) -> None:
        self.authenticator.invalidate_token(token_id)

    def invalidate_grants(self, resource_type: str, workspace: str, resource_id: str) -> None:
        self.resolver.invalidate_grants(resource_type, workspace, resource_id)

    def invalidate_workspaces(self) -> None:
        self.resolver.invalidate_workspaces()

    def invalidate_roles(self) -> None:
        """A role, its users or its permissions changed: who holds what may change for any
        user and any resource of its workspace (role changes are rare administration)."""
        self.authenticator.invalidate_roles()
        self.resolver.invalidate_grants()

    def changed_elsewhere(self, scopes: frozenset[str]) -> None:
        """The store's change counters of ``scopes`` moved (:class:`AuthWatch`): drop
        everything cached that they cover, whoever made the change."""
        if "credentials" in scopes:  # passwords, deleted users, revoked tokens
            self.authenticator.invalidate_user()
        if "identities" in scopes:  # admin flags, members, roles: who holds what
            self.authenticator.invalidate_roles()
        if "grants" in scopes:
            self.resolver.invalidate_grants()
        if "workspaces" in scopes:
            self.resolver.invalidate_workspaces()
        if "limits" in scopes:
            self.limits.reload()

    # -- what the admin routes ask ------------------------------------------------------

    async def identity_for(self, user_id: int) -> Identity:
        return await self.authenticator.identity_for(user_id)

    async def grants(self, resource_type: str, workspace: str,
                     resource_id: str) -> tuple[Grant, ...]:
        return await self.resolver.grants(resource_type, workspace, resource_id)

    async def set_grant(self, row: GrantRow) -> None:
        await self.store.set_grant(row)
        self.invalidate_grants(row.resource_type, row.workspace, row.resource_id)

    def visibility(self, identity: Identity | None, workspace: str) -> Visibility | None:
        """What a search in ``workspace`` may return to ``identity``."""
        if not self.auth_on:
            return Visibility(workspace) if self.workspaces_on else None
        if identity is None:
            return Visibility(workspace, ())
        role = role_of(identity, workspace, self.policy)
        if identity.is_admin or role is TeamRole.MANAGER:
            return Visibility(workspace)
        principals = tuple((p.kind, p.name) for p in principals_of(identity, self.policy))
        readable = role is not None and self.policy.member_default.rank >= Permission.READ.rank
        return Visibility(workspace, principals, readable)

    # -- audit ---------------------------------------------------------------------------

    def audit_record(self, request: web.Request, username: str | None, workspace: str | None,
                     action: str, resource_type: str | None, resource_id: str | None,
                     outcome: str, status: int | None) -> None:
        if self.audit is None:
            return
        if resource_id is not None and len(resource_id) > MAX_AUDIT_RESOURCE_ID:
            # A name as the client sent it, checked by nothing yet when the request is
            # refused: kilobytes of it would flood the log, and a row no database column
            # holds (MariaDB's TEXT) would hold up every record after it.
            resource_id = resource_id[:MAX_AUDIT_RESOURCE_ID - 1] + "\u2026"
        self.audit.record((now_ms(), username, workspace, action,
                           resource_type, resource_id, outcome, status,
                           self.authenticator.client_address(request), request_id_of(request)))

    def _login_failed(self, request: web.Request, username: str | None) -> None:
        self.failed_logins += 1
        # Both are the client's words, checked by nothing yet: a junk token costs no hash, so
        # unchecked they would put kilobytes of anyone's text in every row, under any team.
        sent = request.headers.get("X-MLFLOW-WORKSPACE", "").strip() or DEFAULT_WORKSPACE
        workspace = sent if valid_team_name(sent) else None
        if username is not None and len(username) > MAX_USERNAME:
            username = username[:MAX_USERNAME - 1] + "\u2026"  # no user has a longer name
        self.audit_record(request, username, workspace, "login", None, None, "failed", 401)


SECURITY = web.AppKey("security", Security)


def security_of(request: web.Request) -> Security | None:
    return request.app.get(SECURITY)
