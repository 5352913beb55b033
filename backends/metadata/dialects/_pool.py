"""A small connection pool with SQLAlchemy's QueuePool semantics, for the network stores
(PostgreSQL, MySQL/MariaDB).

The drivers' own pools (asyncpg's, aiomysql's) keep a fixed number of connections, have no
notion of overflow connections that are closed as soon as they are returned, recycle by
query count or idle time rather than by age, and count none of the figures operators ask
for. So this pool is a thin layer over a driver's ``connect``:

- ``pool_size`` connections are kept; up to ``max_overflow`` more are opened under a burst
  and closed once more than ``pool_size`` have been idle for ``overflow_idle`` seconds
  (SQLAlchemy closes them as soon as they are returned, which ``0`` keeps: under a steady
  load whose concurrency wavers around ``pool_size`` that opened and closed a connection
  every few milliseconds, each paying for a server process and fresh prepared statements);
- a connection older than ``pool_recycle`` seconds (``-1``: never) is closed instead of
  being handed out again;
- ``acquire`` waits at most ``pool_timeout`` seconds (opening a connection included) and
  then raises :class:`backends.errors.Unavailable`;
- ``invalidate()`` (called when a connection is found dead) retires every connection opened
  before that moment, as SQLAlchemy does on a disconnect, so the pool heals in one step.

Waiters are served first come, first served: a returned connection goes straight to the
oldest waiter.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends import errors

__all__ = ["Pool", "PooledConnection", "RawConnection"]

_CLOSE_TIMEOUT = 2.0


class RawConnection(Protocol):
    """What the pool needs of a driver's connection (asyncpg's has it; others are wrapped)."""

    def is_closed(self) -> bool: ...

    def terminate(self) -> None: ...

    async def close(self, *, timeout: float | None = None) -> None: ...


@dataclass(eq=False)
class PooledConnection:
    raw: Any  # the driver's connection, a RawConnection
    created: float = field(default_factory=time.monotonic)
    idle_since: float = 0.0


class Pool:
    def __init__(
        self,
        connect: Callable[[float], Awaitable[RawConnection]],
        *,
        pool_size: int,
        max_overflow: int,
        pool_recycle: float,
        pool_timeout: float,
        overflow_idle: float,
    ) -> None:
        self._connect = connect  # takes a timeout in seconds
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.pool_recycle = pool_recycle
        self.pool_timeout = pool_timeout
        self.overflow_idle = overflow_idle
        # A stack: the most recently used on top, so the bottom ones are idle longest.
        self._idle: list[PooledConnection] = []
        self._trim_timer: asyncio.TimerHandle | None = None
        self._open = 0  # open or being opened
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[PooledConnection | None]] = (
            collections.deque()
        )
        self._epoch = 0.0  # connections created before this are retired
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._counts = dict.fromkeys(
            ("opened", "closed", "recycled", "invalidated", "timeouts", "connect_errors"), 0
        )

    @property
    def _limit(self) -> int:
        return self.pool_size + self.max_overflow if self.max_overflow >= 0 else 1 << 30

    def _stale(self, conn: PooledConnection) -> bool:
        if conn.raw.is_closed() or conn.created < self._epoch:
            return True
        return 0 <= self.pool_recycle <= time.monotonic() - conn.created

    async def fill(self) -> None:
        """Open ``pool_size`` connections now, so a bad DSN fails at start."""
        conns = [await self.acquire() for _ in range(self.pool_size)]
        for conn in conns:
            self.release(conn)

    async def acquire(self) -> PooledConnection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pool_timeout
        while True:
            if self._closed:
                raise errors.Unavailable("the metadata store is closed")
            while self._idle:
                conn = self._idle.pop()
                if self._stale(conn):
                    self._retire(conn)
                    continue
                self._in_use += 1
                return conn
            if self._open < self._limit:
                return await self._open_one(deadline - loop.time())
            waiter: asyncio.Future[PooledConnection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    got = await waiter
            except BaseException as exc:
                handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if isinstance(exc, TimeoutError) and handed is not None:
                    got = handed  # handed over just as the timeout fired
                else:
                    if handed is not None:  # cancelled after a hand-over: give it back
                        self.release(handed)
                    if not isinstance(exc, TimeoutError):
                        raise
                    self._counts["timeouts"] += 1
                    raise errors.Unavailable(
                        f"No database connection became free within {self.pool_timeout:g} s "
                        f"(pool_size={self.pool_size}, max_overflow={self.max_overflow})."
                    ) from None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if got is not None:
                return got  # _in_use was counted by release()
            # None: a slot was freed; go round again.

    async def _open_one(self, timeout: float) -> PooledConnection:
        self._open += 1
        try:
            raw = await self._connect(max(timeout, 0.001))
        except BaseException:
            self._open -= 1
            self._counts["connect_errors"] += 1
            self._wake()
            raise
        self._counts["opened"] += 1
        self._in_use += 1
        return PooledConnection(raw)

    def release(self, conn: PooledConnection, *, discard: bool = False) -> None:
        """Give ``conn`` back. ``discard``: it is broken or in an unknown state; close it."""
        self._in_use -= 1
        if discard or self._closed or self._stale(conn):
            self._retire(conn, broken=discard)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(conn)
                return
        if len(self._idle) >= self.pool_size and self.overflow_idle <= 0:
            self._retire(conn, overflow=True)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        if len(self._idle) > self.pool_size and self._trim_timer is None:
            self._trim_timer = asyncio.get_running_loop().call_later(
                self.overflow_idle, self._trim)

    def _trim(self) -> None:
        """Close the connections beyond ``pool_size`` that have been idle ``overflow_idle``
        seconds; look again when the next one will have been."""
        self._trim_timer = None
        now = time.monotonic()
        while len(self._idle) > self.pool_size and (
                now - self._idle[0].idle_since >= self.overflow_idle):
            self._retire(self._idle.pop(0), overflow=True)
        if len(self._idle) > self.pool_size and not self._closed:
            self._trim_timer = asyncio.get_running_loop().call_later(
                self._idle[0].idle_since + self.overflow_idle - now, self._trim)

    def invalidate(self) -> None:
        """A connection was found dead: retire every connection opened before now."""
        self._epoch = time.monotonic()
        idle, self._idle = self._idle, []
        for conn in idle:
            self._retire(conn)

    def _retire(
        self, conn: PooledConnection, *, broken: bool = False, overflow: bool = False
    ) -> None:
        self._open -= 1
        if broken or conn.raw.is_closed() or conn.created < self._epoch:
            self._counts["invalidated"] += 1
        elif not overflow and not self._closed:
            self._counts["recycled"] += 1
        task = asyncio.ensure_future(self._close_raw(conn.raw, terminate=broken))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _close_raw(self, raw: RawConnection, *, terminate: bool) -> None:
        self._counts["closed"] += 1
        if terminate or raw.is_closed():
            raw.terminate()
            return
        try:
            await raw.close(timeout=_CLOSE_TIMEOUT)
        except BaseException:  # noqa: BLE001 - a graceful close failed; force it
            raw.terminate()

    async def aclose(self) -> None:
        self._closed = True
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        idle, self._idle = self._idle, []
        for conn in idle:
            self._retire(conn)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_recycle": self.pool_recycle,
            "pool_timeout": self.pool_timeout,
            "open": self._open,
            "in_use": self._in_use,
            "idle": len(self._idle),
            "waiting": sum(1 for w in self._waiters if not w.done()),
            **self._counts,
        }
