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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import fields

from backends import errors as be
from backends.metadata.interface.auth_entities import AuthVersions
from backends.metadata.interface.store import MetadataStore

__all__ = ["POLL_INTERVAL", "AuthWatch"]

log = logging.getLogger("mlgate.auth")

# Seconds between reads. A change is dropped from every cache at most this long after it
# commits, plus one read: well within the second we promise.
POLL_INTERVAL = 0.25
SCOPES = frozenset(f.name for f in fields(AuthVersions))


class AuthWatch:
    """Calls ``changed(scopes)`` (names of :class:`AuthVersions` fields) on the event loop,
    with nothing awaited between the read that saw the change and the call, so the next
    request this process serves finds the caches already cleared. The first successful
    read reports every scope: anything cached before it may predate a change."""

    def __init__(self, store: MetadataStore, changed: Callable[[frozenset[str]], None],
                 interval: float = POLL_INTERVAL) -> None:
        self._store = store
        self._changed = changed
        self._interval = interval
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
        while True:
            try:
                now = await self._store.auth_versions()
            except Exception as exc:  # the watch must outlive any one failed read
                # The caches stay: dropping them would send every request to the database
                # it cannot reach. What changed meanwhile is seen once a read succeeds.
                if not failing:
                    log.warning("cannot read auth changes made elsewhere (%s); they take "
                                "effect here once the database answers", exc,
                                exc_info=not isinstance(exc, be.BackendError))
                failing = True
            else:
                if failing:
                    log.info("reading auth changes made elsewhere again")
                failing = False
                if seen is None:
                    self._changed(SCOPES)
                elif now != seen:
                    self._changed(frozenset(s for s in SCOPES
                                            if getattr(now, s) != getattr(seen, s)))
                seen = now
            await asyncio.sleep(self._interval)
