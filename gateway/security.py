"""Authentication, workspaces and authorization: the one enforcement point.

:func:`enforcer` makes the middleware that checks every request when auth or workspaces are on
(:func:`gateway.routing.access_middleware` takes its place when both are off). It selects
the workspace (``X-MLFLOW-WORKSPACE``, else ``default``), authenticates (HTTP Basic or
``Authorization: Bearer mlg_…``), resolves what the route's declared
:class:`~auth.access.Access` names (a run to its experiment, a logged model to its
experiment, an artifact path to its experiment, a model version to its registered model)
and asks :func:`auth.is_allowed`. Handlers read the outcome through
:func:`workspace_of` and :func:`visibility_of`.

Caches (per process, ``--auth-cache-seconds``): Authorization headers that proved valid, with
the identity they name (keyed by a BLAKE2s digest of the header, never the header or password; a
hit skips the failed-login limiter, which only counts failures), tokens,
users' roles, resources' grants and what a run or logged model resolves to; changes made
through this process invalidate them at once, other worker processes within the TTL. Which
experiment a run or logged model belongs to never changes, so that is cached without expiry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from auth import hashing
from auth.access import Access, Action, ResourceKind
from auth.identity import Identity, InvalidToken, TokenRecord, TokenScope
from auth.permissions import Permission, TeamRole
from auth.policy import (
    USER,
    Grant,
    Policy,
    Principal,
    Resource,
    is_allowed,
    principals_of,
)
from backends import errors as be
from backends.metadata.auth_entities import GrantRow, Visibility
from backends.metadata.base import MetadataStore
from gateway.audit import AuditHelper, AuditLog
from gateway.errors import MlflowError, from_backend
from gateway.parsing import PARSED_BODY
from gateway.routing import declared_access
from gateway.settings import Settings

__all__ = [
    "SECURITY",
    "WORKSPACE_HEADER",
    "Security",
    "enforcer",
    "identity_of",
    "visibility_of",
    "workspace_of",
]

log = logging.getLogger("mlgate.auth")

WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
DEFAULT_WORKSPACE = "default"
WORKSPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED_WORKSPACES = frozenset({"workspaces", "api", "ajax-api", "static-files"})

# What enforce admitted the request as (an _Admission): one key, one store per request.
_ADMITTED = web.RequestKey("mlgate_admitted", tuple)

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="mlflow"'}
_UNAUTHENTICATED = (
    "You are not authenticated. Please see "
    "https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to "
    "authenticate.")
# Verified against when the user does not exist, so an unknown name costs as much as a
# wrong password and the timing does not tell them apart.
_DUMMY_HASH = hashing.hash_password("mlgate-no-such-user")
_TOUCH_EVERY = 60.0  # seconds: a token's last-used time is written at most this often
# What caches key a credential by (the Authorization header is never kept): BLAKE2s, 256
# bits, 0.28 us a header against SHA-256's 0.45 (hashlib's OpenSSL object costs more to set
# up than the hashing of ~50 bytes); every metric-logging request computes one.
_digest = hashlib.blake2s

K = TypeVar("K")
V = TypeVar("V")


class _TTLCache(Generic[K, V]):
    """A bounded LRU whose entries expire; ``ttl`` 0 disables it, ``None`` never expires."""

    def __init__(self, ttl: float | None, size: int = 10_000) -> None:
        self._ttl, self._size = ttl, size
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def peek(self, key: K) -> tuple[float, V] | None:
        """(expiry on the monotonic clock, value) of a live entry, leaving its LRU place."""
        item = self._data.get(key)
        return None if item is None or item[0] < time.monotonic() else item

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        if self._ttl is not None and item[0] < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[1]

    def put(self, key: K, value: V) -> None:
        if self._ttl == 0:
            return
        expires = float("inf") if self._ttl is None else time.monotonic() + self._ttl
        self._data[key] = (expires, value)
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def drop(self, match: Callable[[K, V], bool]) -> None:
        for key in [k for k, (_, v) in self._data.items() if match(k, v)]:
            del self._data[key]

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class _FailureLimiter:
    """Counts failed logins per key (a user name, a client address) in a sliding window."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit, self._window = limit, window
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] <= now - self._window:
            q.popleft()
        return q

    def retry_after(self, *keys: str) -> int | None:
        if not any(key in self._fails for key in keys):
            return None  # the usual case: nobody has failed lately
        now = time.monotonic()
        waits = [q[0] + self._window - now for key in keys
                 if key in self._fails and len(q := self._recent(key, now)) >= self._limit]
        return max(1, int(max(waits)) + 1) if waits else None

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        if len(self._fails) > 100_000:  # bound memory under a spray of names
            self._fails = {k: q for k, q in self._fails.items() if q and q[-1] > now - self._window}
        for key in keys:
            self._recent(key, now).append(now)

    def reset(self, key: str) -> None:
        self._fails.pop(key, None)


class _Unauthenticated(Exception):
    def __init__(self, username: str | None = None) -> None:
        super().__init__("unauthenticated")
        self.username = username


@dataclass(frozen=True)
class _Resolved:
    resource: Resource | None  # None: unknown; the handler answers (404/400)
    resource_type: str | None = None
    resource_id: str | None = None
    foreign: bool = False  # lives in another workspace than the request's
    also: tuple[Resource | None, ...] = ()  # more runs named by a repeated run_id
    # (id of an identity, id of an action) -> (that identity, that action, allowed?): the
    # check's answer, kept with a cached resolution (a grant change drops both). Keyed by
    # the objects themselves (kept alive in the value, and compared with ``is``): the
    # credential cache hands out one Identity per credential until the user's holdings
    # change, and a changed user is a new Identity, so a stale answer is never reused.
    decisions: dict[tuple[int, int], tuple[Identity, Action, bool]] = field(
        default_factory=dict, compare=False, hash=False, repr=False)


# Who a request was admitted as: (identity or None, workspace, what it names).
_Admission = tuple[Identity | None, str, _Resolved]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_PASSES = 10_000
_PASS_BODY_MAX = 16 * 1024  # bytes: a log-metric body is ~100, a 100-metric log-batch ~10k


class Security:
    """The per-process state of authentication and authorization."""

    def __init__(self, store: MetadataStore, settings: Settings) -> None:
        self.store = store
        self.auth_on = settings.auth
        self.workspaces_on = settings.workspaces_enabled
        self.policy = Policy(Permission.parse(settings.auth_member_default))
        ttl = settings.auth_cache_seconds
        self._identities: _TTLCache[int, Identity] = _TTLCache(ttl)
        self._tokens: _TTLCache[str, Any] = _TTLCache(ttl)
        # digest of an Authorization header that recently proved valid -> who it names, so a
        # repeated credential costs one lookup (the header itself is never kept).
        self._credentials: _TTLCache[bytes, tuple[Identity, TokenRecord | None, int]] = \
            _TTLCache(ttl)
        self._generation = 0  # of identities: bumped when roles change what users hold
        self._verifying: dict[bytes, asyncio.Future[tuple[Identity, TokenRecord | None] | None]]
        self._verifying = {}
        self._grants: _TTLCache[tuple[str, str, str], tuple[Grant, ...]] = _TTLCache(ttl)
        self._workspaces: _TTLCache[str, bool] = _TTLCache(ttl)
        self._owners: _TTLCache[tuple[str, str], str] = _TTLCache(None, 100_000)
        self._exp_ws: _TTLCache[str, str] = _TTLCache(None, 100_000)
        # (kind, run or model id, request workspace) -> what it resolved to, grants included;
        # the hot path of metric logging. Any grant change clears it.
        self._resolved: _TTLCache[tuple[str, str, str], _Resolved] = _TTLCache(ttl, 100_000)
        self._limiter = _FailureLimiter(settings.auth_max_failures, settings.auth_failure_window)
        self._touch_due: dict[str, float] = {}  # token id -> next write of its last use
        self._tasks: set[asyncio.Task[None]] = set()
        # The audit's JSON lines and rows are written by a process of its own (one per
        # worker), off the serving thread; the store options keep its connections few.
        self.audit = AuditLog(store, AuditHelper(
            settings.backend_store_uri,
            {**settings.metadata_store_options(one_connection=True), "max_overflow": 1},
        )) if self.auth_on else None
        self.plans: dict[web.AbstractRoute, _Plan] = {}  # filled by _plan
        # Admissions of metric-logging requests (see passed): (plan, credential digest,
        # workspace header, run or logged model id) -> ((identity, workspace, resolution),
        # token, expiry, epoch). Every invalidation bumps the epoch.
        self._passes: dict[tuple[Any, ...], tuple[_Admission, TokenRecord | None, float, int]]
        self._passes = {}
        self._epoch = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.audit is not None:
            self.audit.start()

    async def close(self) -> None:
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
        self._epoch += 1
        if user_id is None:
            self._identities.clear()
            self._tokens.clear()
            self._credentials.clear()
            return
        self._identities.drop(lambda k, v: k == user_id)
        self._tokens.drop(lambda k, v: v.user_id == user_id)
        self._credentials.drop(lambda k, v: v[0].user_id == user_id)

    def invalidate_token(self, token_id: str) -> None:
        self._epoch += 1
        self._tokens.drop(lambda k, v: k == token_id)
        self._credentials.drop(lambda k, v: v[1] is not None and v[1].token_id == token_id)

    def invalidate_grants(self, resource_type: str, workspace: str, resource_id: str) -> None:
        self._epoch += 1
        self._grants.drop(lambda k, v: k == (resource_type, workspace, resource_id))
        self._resolved.clear()

    def invalidate_workspaces(self) -> None:
        self._epoch += 1
        self._workspaces.clear()

    def invalidate_roles(self) -> None:
        """A role, its users or its permissions changed: who holds what may change for any
        user and any resource of its workspace, so every derived entry goes (role changes
        are rare administration)."""
        self._epoch += 1
        self._identities.clear()
        self._generation += 1  # cached credentials stay valid; their identity is reloaded
        self._grants.clear()
        self._resolved.clear()

    # -- authentication ------------------------------------------------------------------

    async def identity_for(self, user_id: int) -> Identity:
        ident = self._identities.get(user_id)
        if ident is None:
            try:
                user = await self.store.get_user_by_id(user_id)
            except be.NotFound:
                raise _Unauthenticated() from None
            teams = {ws: TeamRole(r) for ws, r in (await self.store.memberships(user_id)).items()}
            roles = set()
            for role_id, ws, on_workspace in await self.store.role_memberships(user_id):
                roles.add(role_id)
                # A role's workspace permission: USE makes a member, MANAGE a manager.
                if on_workspace == Permission.MANAGE.name:
                    teams[ws] = TeamRole.MANAGER
                elif on_workspace == Permission.USE.name and ws not in teams:
                    teams[ws] = TeamRole.MEMBER
            ident = Identity(user.user_id, user.username, user.is_admin,
                             MappingProxyType(teams), roles=frozenset(roles))
            self._identities.put(user_id, ident)
        return ident

    def _login_failed(self, request: web.Request, username: str | None, keys: list[str],
                      workspace: str) -> None:
        self._limiter.fail(*keys)
        self._audit(request, username, workspace, "login", None, None, "failed", 401)

    def known_identity(self, request: web.Request) -> Identity | None:
        """Who a credential verified recently names, with nothing to wait for; None when
        :meth:`authenticate` has work to do (never seen, expired from the cache, a token
        past its expiry, the user's holdings changed)."""
        hit = self._credentials.get(
            _digest(request.headers.get("Authorization", "").encode()).digest())
        if hit is None:
            return None
        identity, token, generation = hit
        if generation != self._generation or (token is not None and not self._usable(token)):
            return None
        return identity

    def _usable(self, token: TokenRecord) -> bool:
        """Not revoked nor expired (since it was cached); a usable token's use is noted."""
        try:
            token.check_usable()
        except InvalidToken:
            return False
        self._touch(token.token_id)
        return True

    async def authenticate(self, request: web.Request, workspace: str) -> Identity:
        header = request.headers.get("Authorization", "")
        cache_key = _digest(header.encode()).digest()
        hit = self._credentials.get(cache_key)
        if hit is not None:
            identity, token, generation = hit
            if generation != self._generation:  # roles changed: same user, new holdings
                identity = await self.identity_for(identity.user_id)
                if token is not None:
                    identity = identity.with_scope(token.scope)
                self._credentials.put(cache_key, (identity, token, self._generation))
            if token is None or self._usable(token):
                return identity
            self._credentials.discard(cache_key)  # expired since: the slow path refuses it
        # One verification per credential at a time: when a cached credential expires under
        # load, every concurrent request with it would otherwise run Argon2 at once (seen:
        # p99 0.7 s every --auth-cache-seconds at 64 clients).
        pending = self._verifying.get(cache_key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                return shared[0]
            # The first request was refused: this one is checked (and counted) on its own.
            return (await self._authenticate(request, header, workspace))[0]
        future: asyncio.Future[tuple[Identity, TokenRecord | None] | None] = \
            asyncio.get_running_loop().create_future()
        self._verifying[cache_key] = future
        try:
            identity, token = await self._authenticate(request, header, workspace)
            self._credentials.put(cache_key, (identity, token, self._generation))
            future.set_result((identity, token))
        finally:
            if not future.done():
                future.set_result(None)
            del self._verifying[cache_key]
        return identity

    async def _authenticate(self, request: web.Request, header: str, workspace: str,
                            ) -> tuple[Identity, TokenRecord | None]:
        scheme, _, credentials = header.partition(" ")
        address = f"addr:{request.remote}"
        if scheme.lower() == "basic":
            try:
                username, sep, password = base64.b64decode(
                    credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _Unauthenticated() from None
            if not sep or not username:
                raise _Unauthenticated()
            keys = [f"user:{username}", address]
            self._check_limit(keys)
            try:
                user = await self.store.get_user(username)
                stored = user.password_hash
            except be.NotFound:
                user, stored = None, _DUMMY_HASH
            ok = await asyncio.get_running_loop().run_in_executor(
                None, hashing.verify_password, stored, password)
            if not ok or user is None:
                self._login_failed(request, username, keys, workspace)
                raise _Unauthenticated(username)
            self._limiter.reset(keys[0])
            return await self.identity_for(user.user_id), None
        if scheme.lower() == "bearer":
            parsed = hashing.parse_token(credentials)
            keys = [address]
            self._check_limit(keys)
            if parsed is None:
                self._login_failed(request, None, keys, workspace)
                raise _Unauthenticated()
            token_id, secret = parsed
            row = self._tokens.get(token_id)
            if row is None:
                try:
                    row = await self.store.get_token(token_id)
                except be.NotFound:
                    self._login_failed(request, None, keys, workspace)
                    raise _Unauthenticated() from None
                self._tokens.put(token_id, row)
            record = TokenRecord(row.token_id, row.user_id, row.digest,
                                 TokenScope(row.read_only, row.workspace), row.expires_at,
                                 row.revoked_at is not None)
            try:
                if not hashing.token_matches(record.digest, secret):
                    raise InvalidToken("wrong secret")
                record.check_usable()
            except InvalidToken:
                self._login_failed(request, f"token:{token_id}", keys, workspace)
                raise _Unauthenticated() from None
            self._touch(token_id)
            ident = await self.identity_for(record.user_id)
            return ident.with_scope(record.scope), record
        raise _Unauthenticated()

    def _check_limit(self, keys: list[str]) -> None:
        wait = self._limiter.retry_after(*keys)
        if wait is not None:
            raise _RateLimited(wait)

    def _touch(self, token_id: str) -> None:
        """Record the token's use as its last-used time, at most once per _TOUCH_EVERY."""
        now = time.monotonic()
        if now < self._touch_due.get(token_id, 0.0):
            return
        self._touch_due[token_id] = now + _TOUCH_EVERY
        self._spawn(self.store.touch_token(token_id, int(time.time() * 1000)))

    # -- workspaces ----------------------------------------------------------------------

    def known_workspace(self, request: web.Request) -> str | None:
        """The request's workspace when nothing needs looking up; else None."""
        if not self.workspaces_on:
            return DEFAULT_WORKSPACE
        name = request.headers.get(WORKSPACE_HEADER, "").strip() or DEFAULT_WORKSPACE
        if name == DEFAULT_WORKSPACE or self._workspaces.get(name) is not None:
            return name
        return None

    async def request_workspace(self, request: web.Request) -> str:
        known = self.known_workspace(request)
        if known is not None:
            return known
        name = request.headers.get(WORKSPACE_HEADER, "").strip()
        try:
            await self.store.get_workspace(name)
        except be.NotFound:
            raise MlflowError(f"Workspace '{name}' not found.",
                              "RESOURCE_DOES_NOT_EXIST") from None
        self._workspaces.put(name, True)
        return name

    # -- resolving what a request touches ------------------------------------------------

    async def grants(self, resource_type: str, workspace: str,
                     resource_id: str) -> tuple[Grant, ...]:
        key = (resource_type, workspace, resource_id)
        found = self._grants.get(key)
        if found is None:
            rows = await self.store.grants_on(resource_type, workspace, resource_id)
            found = tuple(Grant(Principal(r.principal_type, r.principal),
                                Permission.parse(r.permission)) for r in rows)
            self._grants.put(key, found)
        return found

    async def _experiment_workspace(self, experiment_id: str) -> str | None:
        ws = self._exp_ws.get(experiment_id)
        if ws is None:
            ws = await self.store.experiment_workspace(experiment_id)
            if ws is not None:
                self._exp_ws.put(experiment_id, ws)
        return ws

    async def _owner(self, kind: str, key: str) -> str | None:
        exp = self._owners.get((kind, key))
        if exp is None:
            exp = await (self.store.run_experiment(key) if kind == "run"
                         else self.store.logged_model_experiment(key))
            if exp is not None:
                self._owners.put((kind, key), exp)
        return exp

    async def _experiment(self, experiment_id: str | None, workspace: str) -> _Resolved:
        if experiment_id is None:
            return _Resolved(None)
        ws = await self._experiment_workspace(experiment_id)
        if ws is None:
            return _Resolved(None, "experiment", experiment_id)
        grants = await self.grants("experiment", ws, experiment_id)
        return _Resolved(Resource(ResourceKind.EXPERIMENT, ws, grants), "experiment",
                         experiment_id, foreign=ws != workspace)

    async def _registered_model(self, name: str | None, workspace: str) -> _Resolved:
        if not name:
            return _Resolved(None)
        grants = await self.grants("registered_model", workspace, name)
        return _Resolved(Resource(ResourceKind.REGISTERED_MODEL, workspace, grants),
                         "registered_model", name)

    async def resolve(self, access: Access, request: web.Request, workspace: str) -> _Resolved:
        kind = access.resource
        if kind in (ResourceKind.PUBLIC, ResourceKind.SERVER):
            return _Resolved(Resource(kind, workspace))
        if kind is ResourceKind.WORKSPACE:
            ws = request.match_info.get(access.locator or "", workspace)
            return _Resolved(Resource(kind, ws), "workspace", ws)
        if kind is ResourceKind.EXPERIMENT:
            if access.locator == "experiment_name":
                name = await _field(request, "experiment_name")
                exp = None if name is None else await self.store.experiment_id_by_name(
                    workspace, name)
                return await self._experiment(exp, workspace)
            # runs/create and logged-models create default to the Default experiment "0".
            return await self._experiment(await _field(request, "experiment_id") or "0",
                                          workspace)
        if kind is ResourceKind.RUN or kind is ResourceKind.LOGGED_MODEL:
            # The hot path of metric logging: plain strings, not the enum's (slow) value.
            kname, field = (("logged_model", "model_id") if kind is ResourceKind.LOGGED_MODEL
                            else ("run", "run_id"))
            key = await _field(request, field)
            if key is None and kname == "run":
                key = await _field(request, "run_uuid")
            if key is None:
                return _Resolved(None)
            several = request.method == "GET" and len(request.query.getall(field, [])) > 1
            if not several:
                hit = self._resolved.get((kname, key, workspace))
                if hit is not None:
                    return hit
            exp = await self._owner(kname, key)
            resolved = await self._experiment(exp, workspace)
            also: list[Resource | None] = []
            foreign = resolved.foreign
            if several:
                # get-history-bulk names several runs: every one of them must pass.
                for other in request.query.getall(field)[:-1]:
                    more = await self._experiment(await self._owner(kname, other),
                                                  workspace)
                    also.append(more.resource)
                    foreign = foreign or more.foreign
            named = _Resolved(resolved.resource, kname, key, foreign, tuple(also))
            if not several and named.resource is not None:
                self._resolved.put((kname, key, workspace), named)
            return named
        if kind is ResourceKind.REGISTERED_MODEL:
            return await self._registered_model(await _field(request, "name"), workspace)
        if kind is ResourceKind.ARTIFACT_PATH:
            path = request.match_info.get("path")
            if path is None:
                path = request.query.get("path", "")
            head = path.lstrip("/").split("/", 1)[0]
            found = await self._experiment(head, workspace) if head.isdigit() else None
            if found is None or found.resource is None:
                # The destination root, or a folder of no experiment: administrators only.
                return _Resolved(Resource(ResourceKind.SERVER, workspace), "artifact", path)
            return _Resolved(found.resource, "artifact", path, found.foreign)
        if kind is ResourceKind.GRANT_TARGET:
            rtype = await _field(request, "resource_type")
            rid = await _field(request, "resource_id")
            if rtype == "experiment":
                return await self._experiment(rid, workspace)
            if rtype == "registered_model":
                return await self._registered_model(rid, workspace)
            return _Resolved(None)
        return _Resolved(Resource(ResourceKind.SERVER, workspace))  # unknown kind: admins

    def known_resolution(self, kind: ResourceKind, key: str | None,
                         workspace: str) -> _Resolved | None:
        """:meth:`resolve`'s cached answer for the run or logged model (``kind``, one of
        ``_ID_FIELD``'s) whose id ``key`` a POST to a route without URL parameters names
        in its JSON body (:func:`_named_in_body`: the metric-logging routes); else None."""
        kname = "run" if kind is ResourceKind.RUN else "logged_model"
        return None if key is None else self._resolved.get((kname, key, workspace))

    # -- admissions of metric-logging requests -------------------------------------------

    def passed(self, key: tuple[Any, ...]) -> _Admission | None:
        """What :func:`enforce` admitted a request with this key (route plan, digest of the
        Authorization header, workspace header, run or logged model id) as, if nothing it
        relied on changed since: no invalidation, and none of the cached credential,
        resolution and workspace it came from, nor the token, expired. One lookup instead of
        the credential, workspace and resolution caches' three and the decision's (the
        metric-logging routes carry most of a busy server's requests)."""
        found = self._passes.get(key)
        if found is None:
            return None
        admission, token, expires, epoch = found
        now = time.monotonic()
        if epoch != self._epoch or expires <= now:
            del self._passes[key]
            return None
        if token is not None and now >= self._touch_due.get(token.token_id, 0.0):
            self._touch(token.token_id)  # its last-used time, once a minute
        return admission

    def remember_pass(self, key: tuple[Any, ...], admission: _Admission) -> None:
        """Keep an admission for :meth:`passed` until the first of the entries it came from
        expires; not at all when any of them is not cached (``--auth-cache-seconds 0``)."""
        identity, workspace, resolved = admission
        credential = self._credentials.peek(key[1])
        resolution = self._resolved.peek((resolved.resource_type or "", key[3], workspace))
        if (credential is None or resolution is None or resolution[1] is not resolved
                or credential[1][0] is not identity
                or credential[1][2] != self._generation):
            return
        expires = min(credential[0], resolution[0])
        token = credential[1][1]
        # A revoked token was refused, and revoking it later invalidates: only its expiry
        # remains to be kept (on the monotonic clock, as the rest).
        if token is not None and token.expires_at is not None:
            expires = min(expires, time.monotonic()
                          + (token.expires_at - time.time() * 1000) / 1000)
        if self.workspaces_on and workspace != DEFAULT_WORKSPACE:
            known = self._workspaces.peek(workspace)
            if known is None:
                return
            expires = min(expires, known[0])
        if len(self._passes) >= _MAX_PASSES:
            self._passes.clear()
        self._passes[key] = (admission, token, expires, self._epoch)

    async def may_read(self, request: web.Request, kind: ResourceKind, key: str) -> bool:
        """May the caller read a second resource the handler names (model-versions/create's
        source run, logged model or registered model)? A missing run or logged model, or one
        of another workspace, is unreadable: 403 like stock, so the answer does not tell which
        ids exist."""
        if not self.auth_on:
            return True
        identity, workspace = _admitted_as(request)
        if kind is ResourceKind.REGISTERED_MODEL:
            resolved = await self._registered_model(key, workspace)
        elif kind in (ResourceKind.RUN, ResourceKind.LOGGED_MODEL):
            resolved = await self._experiment(
                await self._owner(kind.value, key) if key else None, workspace)
        else:
            return False
        return resolved.resource is not None and not resolved.foreign and is_allowed(
            identity, Action.READ, resolved.resource, self.policy)

    # -- searches ------------------------------------------------------------------------

    def visibility(self, identity: Identity | None, workspace: str) -> Visibility | None:
        if not self.auth_on:
            return Visibility(workspace) if self.workspaces_on else None
        if identity is None:
            return Visibility(workspace, ())
        role = identity.role_in(workspace)
        if identity.is_admin or role is TeamRole.MANAGER:
            return Visibility(workspace)
        principals = tuple((p.kind, p.name) for p in principals_of(identity))
        readable = role is not None and self.policy.member_default.rank >= Permission.READ.rank
        return Visibility(workspace, principals, readable)

    # -- audit ---------------------------------------------------------------------------

    def _audit(self, request: web.Request, username: str | None, workspace: str | None,
               action: str, resource_type: str | None, resource_id: str | None,
               outcome: str, status: int | None) -> None:
        if self.audit is None:
            return
        self.audit.record((int(time.time() * 1000), username, workspace, action,
                           resource_type, resource_id, outcome, status, request.remote))

    # -- grants maintained by the gateway ------------------------------------------------

    async def set_grant(self, row: GrantRow) -> None:
        await self.store.set_grant(row)
        self.invalidate_grants(row.resource_type, row.workspace, row.resource_id)


SECURITY = web.AppKey("security", Security)


class _RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object body, ``{}`` when there is none or it is not one (the handler says
    why). Parsed once: what :func:`_read_body` parsed is kept as the handler's
    ``PARSED_BODY``, and read-only here (the handler parses into fresh objects)."""
    data = request.get(PARSED_BODY)
    return await _read_body(request) if data is None else _json_object(data)


async def _read_body(request: web.Request) -> dict[str, Any]:
    """:func:`_body` when nothing read it yet (:func:`enforce` reads first: a miss of the
    request's mapping costs an exception inside aiohttp's ``get``)."""
    if request.method == "GET" or not request.body_exists:
        return {}
    ctype = request.headers.get("Content-Type", "application/json")
    if ctype != "application/json" and (
            ctype.split(";", 1)[0].strip().lower() != "application/json"):
        return {}
    try:
        data = orjson.loads(await request.read() or b"{}")
    except (orjson.JSONDecodeError, web.HTTPException):
        return {}  # the handler reads it again and answers 400 (413)
    request[PARSED_BODY] = data  # the handler's read_json_body reuses it
    return data if type(data) is dict else _json_object(data)


def _json_object(data: Any) -> dict[str, Any]:
    """A parsed body as the object it holds; a legacy client's string is JSON again."""
    if isinstance(data, str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return {}
    return data if isinstance(data, dict) else {}


@functools.cache
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


async def _field(request: web.Request, name: str) -> str | None:
    """A request field as the handlers read it: the URL, the query string of a GET, or the
    JSON body. None when absent."""
    camel = _camel(name)
    match = request.match_info
    if match:  # most routes have no path variables: skip the lookups
        for key in (name, camel):
            if key in match:
                return match[key]
    if request.method == "GET" and request.query_string:
        for key in (name, camel):
            if key in request.query:
                return request.query.getall(key)[-1]
        return None
    return _body_value(await _body(request), name, camel)


def _named_in_body(kind: ResourceKind, body: dict[str, Any]) -> str | None:
    """The run (``kind`` RUN) or logged model id a JSON body names, read as :meth:`resolve`
    reads it through :func:`_field`."""
    if kind is ResourceKind.RUN:
        return (_body_value(body, "run_id", "runId")
                or _body_value(body, "run_uuid", "runUuid"))
    return _body_value(body, "model_id", "modelId")


def _body_value(body: dict[str, Any], name: str, camel: str) -> str | None:
    for key in (name, camel):
        value = body.get(key)
        if value is not None and value != "":
            return str(value)
    return None


# -- what the handlers read --------------------------------------------------------------


def _admitted_as(request: web.Request) -> tuple[Identity | None, str]:
    """Who (None: auth off or a public route) and in which workspace enforce admitted the
    request (nobody, ``default``: not admitted by it)."""
    admitted = request.get(_ADMITTED)
    return (None, DEFAULT_WORKSPACE) if admitted is None else (admitted[0], admitted[1])


def workspace_of(request: web.Request) -> str:
    """The request's workspace (``default`` when workspaces are off or none was sent)."""
    return _admitted_as(request)[1]


def identity_of(request: web.Request) -> Identity | None:
    return _admitted_as(request)[0]


def security_of(request: web.Request) -> Security | None:
    return request.app.get(SECURITY)


def visibility_of(request: web.Request) -> Visibility | None:
    """What a search in this request may return; None when auth and workspaces are off."""
    sec = security_of(request)
    if sec is None:
        return None
    return sec.visibility(identity_of(request), workspace_of(request))


# -- the enforcement point ---------------------------------------------------------------

_CREATOR_ROUTES = {"/experiments/create": "experiment", "/registered-models/create":
                   "registered_model"}


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    """What :func:`enforce` needs to know of a route, computed once per route. One per
    route and Security, compared and hashed by identity (a part of the passes' keys)."""

    access: Access | None  # as the route table declares it
    suffix: str  # the path without the 2.0 API prefixes
    label: str  # "METHOD suffix", the audit record's action
    public: bool  # no authentication
    exempt: bool  # no workspace selection (public routes, workspace CRUD)
    audited: bool  # and this Security keeps an audit log (auth on)
    after: bool  # _after_success has work: creator grants, renames, deletes
    # "run_id" or "model_id": a POST without URL parameters naming a run or logged model in
    # its body, whose resolution enforce looks up with nothing to wait for (the
    # metric-logging routes); None on other routes
    id_field: str | None


# The kinds a metric-logging body names, and the field it names them by first (the other
# spellings are _named_in_body's).
_ID_FIELD = {ResourceKind.RUN: "run_id", ResourceKind.LOGGED_MODEL: "model_id"}
_AFTER_ROUTES = frozenset({*_CREATOR_ROUTES, "/registered-models/rename",
                           "/registered-models/delete"})


def _plan(sec: Security, request: web.Request) -> _Plan:
    """The route's plan, made and kept in ``sec.plans`` on the route's first request."""
    route = request.match_info.route
    found = sec.plans.get(route)
    if found is None:
        access = declared_access(request)
        suffix = _compute_suffix(route)
        public = access is not None and access.resource is ResourceKind.PUBLIC
        audited = sec.audit is not None and access is not None and (
            access.action is not Action.READ or access.writes
            or (access.resource is ResourceKind.ARTIFACT_PATH and request.method == "GET"
                and "path" in request.match_info))
        id_field = (_ID_FIELD.get(access.resource) if access is not None
                    and request.method == "POST" and not request.match_info else None)
        found = sec.plans[route] = _Plan(
            access, suffix, f"{request.method} {suffix}", public,
            public or suffix.startswith(("/api/3.0/mlflow/workspaces",
                                         "/ajax-api/3.0/mlflow/workspaces")),
            audited, suffix in _AFTER_ROUTES, id_field)
    return found


def _compute_suffix(route: web.AbstractRoute) -> str:
    resource = route.resource
    canonical = resource.canonical if resource is not None else ""
    for prefix in ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"):
        if canonical.startswith(prefix):
            return canonical[len(prefix) - 1:]
    return canonical


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, MlflowError):
        return exc.status
    if isinstance(exc, be.BackendError):
        return from_backend(exc).status
    if isinstance(exc, web.HTTPException):
        return exc.status
    return 500


def _unauthenticated() -> web.Response:
    return web.json_response(
        {"error_code": "UNAUTHENTICATED", "message": _UNAUTHENTICATED}, status=401,
        headers=_CHALLENGE)


def enforcer() -> Middleware:
    """The middleware of an app with auth or workspaces on, in place of
    :func:`gateway.routing.access_middleware`: one per app, as it keeps the app's Security
    after the first request (``request.app[SECURITY]`` is three Python calls a request)."""
    security: Security | None = None

    @web.middleware
    async def enforce(request: web.Request, handler: _Handler) -> web.StreamResponse:
        nonlocal security
        sec = security
        if sec is None:
            sec = security = request.app[SECURITY]
        plan = sec.plans.get(request.match_info.route)
        if plan is None:
            if request.match_info.http_exception is not None:  # 404/405: no route to check
                return await handler(request)
            plan = _plan(sec, request)
        admitted: _Admission | None = None
        pass_key: tuple[Any, ...] | None = None
        # Only a small body is read before the caller is authenticated (an unknown caller's
        # big one waits for the 401 unread, as on every other route).
        if plan.id_field is not None and sec.auth_on:
            length = request.content_length
            if length is not None and length <= _PASS_BODY_MAX:
                body = await _read_body(request)
                named = body.get(plan.id_field)
                if type(named) is not str or not named:  # the other spellings resolve reads
                    assert plan.access is not None  # id_field says so
                    named = _named_in_body(plan.access.resource, body)
                if named is not None:
                    headers = request.headers
                    pass_key = (plan, _digest(headers.get("Authorization", "").encode())
                                .digest(), headers.get(WORKSPACE_HEADER), named)
                    admitted = sec.passed(pass_key)
        if admitted is None:
            outcome = await _admit(sec, request, plan, pass_key)
            if isinstance(outcome, web.StreamResponse):
                return outcome
            admitted = outcome
        request[_ADMITTED] = admitted
        if not plan.audited:
            return await handler(request)
        identity, workspace, resolved = admitted
        username = identity.username if identity else None
        try:
            response = await handler(request)
        except BaseException as exc:
            sec._audit(request, username, workspace, plan.label, resolved.resource_type,
                       resolved.resource_id, "error", _status_of(exc))
            raise
        status = response.status
        resource_id = resolved.resource_id
        if plan.after and status < 400 and identity is not None:
            resource_id = await _after_success(sec, request, plan.suffix, identity, workspace,
                                               response) or resource_id
        sec._audit(request, username, workspace, plan.label, resolved.resource_type, resource_id,
                   "ok" if status < 400 else "error", status)
        return response

    return enforce


async def _admit(sec: Security, request: web.Request, plan: _Plan,
                 pass_key: tuple[Any, ...] | None) -> _Admission | web.StreamResponse:
    """Select the workspace, authenticate, resolve what the request names and check the
    route's declared access: the admission, or the answer to give instead (401, 429);
    raises MlflowError (403, 404). A metric-logging request's admission is kept under
    ``pass_key`` (see :meth:`Security.passed`)."""
    access = plan.access
    # The known_* lookups answer the common case without a coroutine each.
    workspace = DEFAULT_WORKSPACE if plan.exempt else (
        sec.known_workspace(request) or await sec.request_workspace(request))
    identity: Identity | None = None
    if sec.auth_on and not plan.public:
        try:
            identity = (sec.known_identity(request)
                        or await sec.authenticate(request, workspace))
        except _Unauthenticated:
            return _unauthenticated()
        except _RateLimited as exc:
            return _rate_limited(exc.retry_after)
    if access is None:  # a route nobody declared: administrators only
        if identity is None or not identity.is_admin:
            raise MlflowError("Permission denied: the route declares no access rule.",
                              "PERMISSION_DENIED")
        return identity, workspace, _Resolved(None)
    resolved: _Resolved | None = None
    if plan.id_field is not None:
        resolved = sec.known_resolution(
            access.resource, _named_in_body(access.resource, await _body(request)), workspace)
    if resolved is None:
        resolved = await sec.resolve(access, request, workspace)
    if resolved.foreign:
        raise MlflowError(
            f"Could not find {resolved.resource_type} '{resolved.resource_id}' in workspace "
            f"'{workspace}'", "RESOURCE_DOES_NOT_EXIST")
    if sec.auth_on and not _allowed(sec, identity, access.action, resolved):
        username = identity.username if identity else None
        if plan.audited:
            sec._audit(request, username, workspace, plan.label, resolved.resource_type,
                       resolved.resource_id, "denied", 403)
        raise MlflowError(
            f"Permission denied: {username} may not {access.action.value} this "
            f"{(resolved.resource_type or access.resource.value).replace('_', ' ')}.",
            "PERMISSION_DENIED")
    admission = (identity, workspace, resolved)
    if pass_key is not None and resolved.resource is not None and not resolved.also:
        sec.remember_pass(pass_key, admission)
    return admission


_MAX_DECISIONS = 64  # answers kept per cached resolution (identities x actions)


def _allowed(sec: Security, identity: Identity | None, action: Action,
             resolved: _Resolved) -> bool:
    """Every resource the request names passes (none named: the handler answers 404)."""
    if identity is None or resolved.also:
        return _check(sec, identity, action, resolved)
    key = (id(identity), id(action))
    known = resolved.decisions.get(key)
    if known is not None and known[0] is identity and known[1] is action:
        return known[2]
    allowed = _check(sec, identity, action, resolved)
    if len(resolved.decisions) >= _MAX_DECISIONS:
        resolved.decisions.clear()
    resolved.decisions[key] = (identity, action, allowed)
    return allowed


def _check(sec: Security, identity: Identity | None, action: Action,
           resolved: _Resolved) -> bool:
    if resolved.resource is not None and not is_allowed(identity, action, resolved.resource,
                                                        sec.policy):
        return False
    return not resolved.also or all(
        r is None or is_allowed(identity, action, r, sec.policy) for r in resolved.also)


def _rate_limited(retry_after: int) -> web.Response:
    return web.json_response(
        {"error_code": "REQUEST_LIMIT_EXCEEDED",
         "message": "Too many failed logins; try again later."},
        status=429, headers={"Retry-After": str(retry_after)})


async def _after_success(sec: Security, request: web.Request, suffix: str,
                         identity: Identity, workspace: str,
                         response: web.StreamResponse) -> str | None:
    """Creators get MANAGE; a renamed model keeps its grants; a deleted model loses them.
    Returns the id of a created resource (for the audit record)."""
    rtype = _CREATOR_ROUTES.get(suffix)
    if rtype is not None:
        if rtype == "experiment":
            body = response.body if isinstance(response, web.Response) else None
            data = orjson.loads(body) if isinstance(body, bytes) else {}
            rid = str(data.get("experiment_id", ""))
        else:
            rid = await _field(request, "name") or ""
        if rid:
            await sec.set_grant(GrantRow(rtype, workspace, rid, USER, str(identity.user_id),
                                         Permission.MANAGE.name))
        return rid or None
    if suffix == "/registered-models/rename":
        old, new = await _field(request, "name"), await _field(request, "new_name")
        if old and new:
            await sec.store.move_grants("registered_model", workspace, old, new)
            sec.invalidate_grants("registered_model", workspace, old)
            sec.invalidate_grants("registered_model", workspace, new)
    elif suffix == "/registered-models/delete":
        name = await _field(request, "name")
        if name:
            await sec.store.delete_grants_on("registered_model", workspace, name)
            sec.invalidate_grants("registered_model", workspace, name)
    return None
