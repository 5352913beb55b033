"""Auth changes made elsewhere: :class:`AuthWatch` polls the store's change counters
(``auth_versions``) and reports which of them moved, so that a change made by another worker,
another replica or the ``mlgate`` CLI is dropped from this process's caches within a second.

Why a poll: it is one read of one row by primary key every :data:`POLL_INTERVAL` per
process, the same on SQLite and PostgreSQL, and it cannot miss a change: the counters
persist, so a read after an outage or a reconnect still sees what moved meanwhile.
PostgreSQL's LISTEN/NOTIFY would need a connection per process held outside the pool (which
PgBouncer's transaction mode does not carry), a reconnect path, and this poll anyway to
catch notifications sent while it was reconnecting; SQLite has nothing like it. The cache
lifetime stays long (``--auth-cache-seconds``): a short one would verify passwords again
(tens of milliseconds of Argon2 each) all the time, and still leave a window.

While the counters cannot be read, this process cannot know what changed: the caches are
then emptied every :data:`BLIND_TTL` seconds (a short lifetime) until a read succeeds. What
a cache spares (a lookup, a hash) needs the database anyway, so an outage costs little
more; a replica cut off from the database keeps no revoked token working for long on what
it can still serve without it (artifacts in an object store).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import fields

from backends import errors as be
from backends.metadata.interface.auth_entities import AuthVersions
from backends.metadata.interface.store import MetadataStore

__all__ = ["BLIND_TTL", "POLL_INTERVAL", "AuthWatch"]

log = logging.getLogger("mlgate.auth")

# Seconds between reads. A change is dropped from every cache at most this long after it
# commits, plus one read: well within the second we promise.
POLL_INTERVAL = 0.25
# Seconds an entry may live in the caches while the counters cannot be read.
BLIND_TTL = 1.0
SCOPES = frozenset(f.name for f in fields(AuthVersions))


class AuthWatch:
    """Calls ``changed(scopes)`` (names of :class:`AuthVersions` fields) on the event loop,
    with nothing awaited between the read that saw the change and the call, so the next
    request this process serves finds the caches already cleared. The first successful
    read reports every scope: anything cached before it may predate a change."""

    def __init__(self, store: MetadataStore, changed: Callable[[frozenset[str]], None],
                 interval: float = POLL_INTERVAL, blind_ttl: float = BLIND_TTL) -> None:
        self._store = store
        self._changed = changed
        self._interval = interval
        self._blind_ttl = blind_ttl
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mlgate-auth-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        seen: AuthVersions | None = None
        failing = False
        known_at = time.monotonic()  # when the caches were last known to be current
        while True:
            started = time.monotonic()
            read = asyncio.ensure_future(self._store.auth_versions())
            try:
                # A link that drops packets gives no error, only a read that waits (up to
                # the driver's timeout): as blind as a failed one once it is blind_ttl old.
                while not (await asyncio.wait({read}, timeout=max(
                        0.0, max(started, known_at) + self._blind_ttl - time.monotonic())))[0]:
                    self._changed(SCOPES)
                    known_at = time.monotonic()
                now = read.result()
            except asyncio.CancelledError:
                read.cancel()
                raise
            except Exception as exc:  # the watch must outlive any one failed read
                if not failing:
                    log.warning("cannot read auth changes made elsewhere (%s); caches are "
                                "kept at most %g s until the database answers", exc,
                                self._blind_ttl, exc_info=not isinstance(exc, be.BackendError))
                failing = True
                if time.monotonic() - known_at >= self._blind_ttl:
                    self._changed(SCOPES)
                    known_at = time.monotonic()
            else:
                if failing:
                    log.info("reading auth changes made elsewhere again")
                failing = False
                known_at = time.monotonic()
                if seen is None:
                    self._changed(SCOPES)
                elif now != seen:
                    self._changed(frozenset(s for s in SCOPES
                                            if getattr(now, s) != getattr(seen, s)))
                seen = now
            await asyncio.sleep(self._interval)
