"""A fair share of the metadata store's connections between workspaces: :class:`PoolShares`.

The pool (PostgreSQL's, or SQLite's readers) serves whoever asks first, so a team with many
concurrent searches would hold every connection and queue another team's single request
behind all of its own. Here, while one workspace alone has requests in flight it may have
any number (the pool decides, as before). Once several do, each may have at most
``capacity / workspaces`` in flight; the rest of its requests wait here, in its own queue,
and a request of a workspace under its share goes straight to the pool, where it waits only
for the next connection to come free. Waiters are let in one workspace at a time in turn.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["PoolShares"]


class PoolShares:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._busy: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    def _share(self, key: str) -> float:
        others = (self._busy.keys() | self._waiting.keys()) - {key}
        return float("inf") if not others else max(1, self._capacity // (len(others) + 1))

    @asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        """Hold one of ``key``'s in-flight places for the block's duration."""
        if key in self._waiting or self._busy.get(key, 0) >= self._share(key):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(key, collections.deque()).append(future)
            try:
                await future  # the releaser counted this request in before waking it
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release(key)  # woken, then cancelled before it ran
                else:
                    self._drop(key, future)
                raise
        else:
            self._busy[key] = self._busy.get(key, 0) + 1
        try:
            yield
        finally:
            self._release(key)

    def _release(self, key: str) -> None:
        left = self._busy[key] - 1
        if left:
            self._busy[key] = left
        else:
            del self._busy[key]
        self._wake()

    def _drop(self, key: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self._waiting[key]
        self._wake()  # its leaving may have widened the others' shares

    def _wake(self) -> None:
        woke = True
        while woke:  # rounds: one waiter of each workspace under its share
            woke = False
            for key in list(self._waiting):
                queue = self._waiting[key]
                if self._busy.get(key, 0) >= self._share(key):
                    continue
                future = queue.popleft()
                del self._waiting[key]  # its next turn comes after the others'
                if queue:
                    self._waiting[key] = queue
                if not future.done():
                    self._busy[key] = self._busy.get(key, 0) + 1
                    future.set_result(None)
                woke = True
