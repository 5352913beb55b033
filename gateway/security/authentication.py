"""Who a request comes from: HTTP Basic (Argon2id passwords) or an mlgate API token.

Verified credentials are cached for ``--auth-cache-seconds`` under a BLAKE2s digest of the
Authorization header (never the header or the password): a password costs tens of
milliseconds to verify, and clients send the same header with every request. Identities
(a user's teams and roles) and token records are cached the same way; the admin routes
invalidate what they change in this process at once, and every process drops what a change
made anywhere covers within a second (:class:`~gateway.security.watch.AuthWatch`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from aiohttp import web

from auth import hashing
from auth.identity import Identity, InvalidToken, TokenRecord, TokenScope
from auth.login_limits import LoginLimiter, Network, client_address
from auth.permissions import Permission, TeamRole
from backends import errors as be
from backends.metadata.interface.auth_entities import TokenRow, UserRecord
from backends.metadata.interface.entities import now_ms
from backends.metadata.interface.store import MetadataStore
from gateway.security.caches import TTLCache

__all__ = ["Authenticator", "RateLimited", "Unauthenticated", "load_identity"]

# Verified against when the user does not exist, so an unknown name costs as much as a
# wrong password and the timing does not tell them apart.
_DUMMY_HASH = hashing.hash_password("mlgate-no-such-user")
_TOUCH_EVERY = 60.0  # seconds: a token's last-used time is written at most this often


class Unauthenticated(Exception):
    def __init__(self, username: str | None = None) -> None:
        super().__init__("unauthenticated")
        self.username = username  # for the audit record of a failed login


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Verified:
    """What a cached credential proved: who, through which token, as of which roles."""

    identity: Identity
    token: TokenRecord | None
    generation: int

    @property
    def limiter_name(self) -> str:
        """The name its failed attempts are counted under."""
        if self.token is not None:
            return f"token:{self.token.token_id}"
        return self.identity.username


class Authenticator:
    def __init__(self, store: MetadataStore, *, ttl: float, max_failures: int,
                 failure_window: float, trusted_proxies: tuple[Network, ...],
                 on_failure: Callable[[web.Request, str | None], None],
                 spawn: Callable[..., None]) -> None:
        self.store = store
        self._identities: TTLCache[int, Identity] = TTLCache(ttl)
        self._tokens: TTLCache[str, TokenRow] = TTLCache(ttl)
        self._credentials: TTLCache[bytes, _Verified] = TTLCache(ttl)
        # Bumped when roles change what users hold: cached credentials stay valid, their
        # identity is reloaded.
        self._generation = 0
        # One verification per credential at a time: when a cached credential expires under
        # load, every concurrent request with it would otherwise run Argon2 at once.
        self._verifying: dict[bytes, asyncio.Future[_Verified | None]] = {}
        self._limiter = LoginLimiter(max_failures, failure_window)
        self._trusted = trusted_proxies
        self._on_failure = on_failure
        self._spawn = spawn
        self._touch_due: dict[str, float] = {}  # token id -> next write of its last use

    def client_address(self, request: web.Request) -> str:
        if not self._trusted:  # X-Forwarded-For is nobody's word: the peer as it is
            return request.remote or ""
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        return client_address(request.remote, forwarded, self._trusted)

    # -- invalidation --------------------------------------------------------------------

    def invalidate_user(self, user_id: int | None = None) -> None:
        if user_id is None:
            self._identities.clear()
            self._tokens.clear()
            self._credentials.clear()
            # A verification under way may have read what changed: requests from now on
            # verify afresh instead of waiting for its answer.
            self._verifying.clear()
            return
        self._identities.discard(user_id)
        self._tokens.drop(lambda _, row: row.user_id == user_id)
        self._credentials.drop(lambda _, v: v.identity.user_id == user_id)

    def invalidate_token(self, token_id: str) -> None:
        self._tokens.discard(token_id)
        self._credentials.drop(lambda _, v: v.token is not None and v.token.token_id == token_id)

    def invalidate_roles(self) -> None:
        self._identities.clear()
        self._generation += 1
        self._verifying.clear()  # their identities may predate the change

    # -- identities ----------------------------------------------------------------------

    async def identity_for(self, user_id: int) -> Identity:
        ident = self._identities.get(user_id)
        if ident is None:
            epoch = self._identities.epoch
            try:
                ident = await load_identity(self.store, user_id)
            except be.NotFound:
                raise Unauthenticated() from None
            self._identities.put(user_id, ident, epoch)
        return ident

    # -- credentials ---------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> Identity:
        """The caller's identity; raises :class:`Unauthenticated` or :class:`RateLimited`."""
        header = request.headers.get("Authorization", "")
        # Keyed as _verify reads it (scheme in any case, spaces around the credentials): one
        # entry per credential, so a token's holder cannot spell it thousands of ways to push
        # every other client's verified password out of the cache (each then costs a hash).
        scheme, _, credentials = header.partition(" ")
        spelled = f"{scheme.lower()} {credentials.strip()}"
        # surrogateescape: a header that is not UTF-8 (aiohttp keeps its bytes as
        # surrogates) gets a key too, and is then refused like any other bad credential.
        key = hashlib.blake2s(spelled.encode("utf-8", "surrogateescape")).digest()
        hit = self._credentials.get(key)
        # Taken before anything is read: what was read across an invalidation is not cached
        # (or, across a role change, is reloaded at its next use).
        epoch, generation = self._credentials.epoch, self._generation
        if hit is not None:
            # A cached credential is still a login attempt: while its name is locked out,
            # answering 200 to the right password and 429 to guesses would confirm it.
            wait = self._limiter.retry_after(self.client_address(request), hit.limiter_name,
                                             by_name=hit.token is None)
            if wait is not None:
                raise RateLimited(wait)
            if hit.generation != generation:
                identity = await self.identity_for(hit.identity.user_id)
                if hit.token is not None:
                    identity = identity.with_scope(hit.token.scope, hit.token.token_id)
                hit = _Verified(identity, hit.token, generation)
                self._credentials.put(key, hit, epoch)
            if hit.token is None or self._usable(hit.token):
                return hit.identity
            self._credentials.discard(key)  # expired since: the slow path refuses it
        pending = self._verifying.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                return shared.identity
            # The first request was refused: this one is checked (and counted) on its own.
            return (await self._verify(request, header, generation)).identity
        future: asyncio.Future[_Verified | None] = asyncio.get_running_loop().create_future()
        self._verifying[key] = future
        try:
            verified = await self._verify(request, header, generation)
            self._credentials.put(key, verified, epoch)
            future.set_result(verified)
        finally:
            if not future.done():
                future.set_result(None)
            if self._verifying.get(key) is future:  # not cleared and replaced meanwhile
                del self._verifying[key]
        return verified.identity

    async def _verify(self, request: web.Request, header: str, generation: int) -> _Verified:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            return await self._verify_password(request, credentials, generation)
        if scheme.lower() == "bearer":
            return await self._verify_token(request, credentials, generation)
        raise Unauthenticated()

    async def _verify_password(self, request: web.Request, credentials: str,
                               generation: int) -> _Verified:
        try:
            username, sep, password = base64.b64decode(
                credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthenticated() from None
        if not sep or not username:
            raise Unauthenticated()
        address = self.client_address(request)
        wait = self._limiter.reserve(address, username)
        if wait is not None:
            raise RateLimited(wait)
        try:
            user, stored = await self._check_password(request, address, username, password)
        finally:
            self._limiter.release(address, username)
        if hashing.needs_rehash(stored):  # imported from stock: Werkzeug's hash → Argon2id
            new_hash = await asyncio.get_running_loop().run_in_executor(
                None, hashing.hash_password, password)
            await self.store.replace_password_hash(username, stored, new_hash)
        return _Verified(await self.identity_for(user.user_id), None, generation)

    async def _check_password(self, request: web.Request, address: str, username: str,
                              password: str) -> tuple[UserRecord, str]:
        """The user and the stored hash that ``password`` matched; reported to the limiter."""
        user: UserRecord | None
        try:
            user = await self.store.get_user(username)
            stored = user.password_hash
        except be.NotFound:
            user, stored = None, _DUMMY_HASH
        ok = await asyncio.get_running_loop().run_in_executor(
            None, hashing.verify_password, stored, password)
        if not ok or user is None:
            self._limiter.failed(address, username)
            self._on_failure(request, username)
            raise Unauthenticated(username)
        self._limiter.succeeded(address, username)
        return user, stored

    async def _verify_token(self, request: web.Request, credentials: str,
                            generation: int) -> _Verified:
        parsed = hashing.parse_token(credentials)
        if parsed is None:
            self._on_failure(request, None)
            raise Unauthenticated()
        token_id, secret = parsed
        address, name = self.client_address(request), f"token:{token_id}"
        # Per address only: a token's secret is 256 random bits, so a lockout of its id
        # protects nothing and would let anyone who saw the id lock its holder out.
        wait = self._limiter.reserve(address, name, by_name=False)
        if wait is not None:
            raise RateLimited(wait)
        try:
            record = await self._check_token(request, address, name, token_id, secret)
        finally:
            self._limiter.release(address, name)
        self._touch(token_id)
        identity = await self.identity_for(record.user_id)
        return _Verified(identity.with_scope(record.scope, record.token_id), record,
                         generation)

    async def _check_token(self, request: web.Request, address: str, name: str,
                           token_id: str, secret: str) -> TokenRecord:
        """The token ``secret`` matched, usable; reported to the limiter."""
        row = self._tokens.get(token_id)
        if row is None:
            epoch = self._tokens.epoch
            try:
                row = await self.store.get_token(token_id)
            except be.NotFound:
                row = None
            if row is not None:
                self._tokens.put(token_id, row, epoch)
        if row is None:
            # Not counted: no account to protect, and such a failure costs no password hash,
            # so counting it let anyone evict a locked-out name's counter by filling the
            # limiter's table with made-up ids (a token id is 64 random bits: knowing which
            # exist tells nothing usable).
            self._on_failure(request, name)
            raise Unauthenticated()
        try:
            record = TokenRecord(row.token_id, row.user_id, row.digest,
                                 TokenScope(row.read_only, row.workspace), row.expires_at,
                                 row.revoked_at is not None)
            if not hashing.token_matches(record.digest, secret):
                raise InvalidToken("wrong secret")
            record.check_usable()
        except InvalidToken:
            self._limiter.failed(address, name)
            self._on_failure(request, name)
            raise Unauthenticated() from None
        self._limiter.succeeded(address, name)
        return record

    def _usable(self, token: TokenRecord) -> bool:
        """Not revoked nor expired (since it was cached); a usable token's use is noted."""
        try:
            token.check_usable()
        except InvalidToken:
            return False
        self._touch(token.token_id)
        return True

    def _touch(self, token_id: str) -> None:
        """Record the token's use as its last-used time, at most once per _TOUCH_EVERY."""
        now = time.monotonic()
        if now < self._touch_due.get(token_id, 0.0):
            return
        self._touch_due[token_id] = now + _TOUCH_EVERY
        self._spawn(self.store.touch_token(token_id, now_ms()))


async def load_identity(store: MetadataStore, user_id: int) -> Identity:
    """User ``user_id`` as stored now: their teams, with those their roles make them members
    or managers of, and their roles. Raises ``NotFound``."""
    user = await store.get_user_by_id(user_id)
    teams = {ws: TeamRole(r) for ws, r in (await store.memberships(user_id)).items()}
    roles = set()
    for role_id, ws, on_workspace in await store.role_memberships(user_id):
        roles.add(role_id)
        # A role's workspace permission: USE makes a member, MANAGE a manager.
        if on_workspace == Permission.MANAGE.name:
            teams[ws] = TeamRole.MANAGER
        elif on_workspace == Permission.USE.name and ws not in teams:
            teams[ws] = TeamRole.MEMBER
    return Identity(user.user_id, user.username, user.is_admin, MappingProxyType(teams),
                    roles=frozenset(roles))
