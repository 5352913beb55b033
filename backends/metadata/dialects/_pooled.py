"""What the network stores (PostgreSQL, MySQL/MariaDB) share: connections from a
:class:`~backends.metadata.dialects._pool.Pool`, transactions begun and ended with
statements, a connection found dead at BEGIN replaced, driver errors translated to
:mod:`backends.errors`, and batches that lost a race with a concurrent one tried again.

A subclass names its driver's behaviour through the hooks at the top of
:class:`PooledSqlStore`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from backends import errors
from backends.metadata.dialects._pool import Pool, PooledConnection, RawConnection
from backends.metadata.interface.entities import RunWrite
from backends.metadata.sql.connection import Connection
from backends.metadata.sql.tracking import SqlMetadataStore
from backends.registry import redact_uri

__all__ = ["ConnectFailed", "PooledSqlStore", "store_options"]

T = TypeVar("T")
# During an outage every request tries to connect; one log line per this many seconds.
_CONNECT_LOG_INTERVAL = 10.0
_RACE_TRIES = 5


class ConnectFailed(errors.Unavailable):
    """No connection could be opened. ``detail`` (the redacted URI and the driver's reason)
    is for the log and the start-up message, not for clients."""

    def __init__(self, detail: str) -> None:
        super().__init__("The metadata store is unavailable; retry the request.")
        self.detail = detail


def store_options(options: dict[str, Any], *extra: str) -> dict[str, Any]:
    """The options a network store takes (its own ``extra`` ones, the artifact root and the
    pool's), from those given to every store; the pool's checked."""
    known = {"artifact_root", "pool_size", "max_overflow", "pool_recycle", "pool_timeout",
             "overflow_idle", "command_timeout", *extra}
    kwargs = {k: v for k, v in options.items() if k in known and v is not None}
    if kwargs.get("pool_size", 5) < 1:
        raise ValueError("pool_size must be at least 1")
    if kwargs.get("pool_timeout", 30.0) <= 0:
        raise ValueError("pool_timeout must be positive")
    if kwargs.get("overflow_idle", 0.0) < 0:
        raise ValueError("overflow_idle must not be negative")
    return kwargs


class PooledSqlStore(SqlMetadataStore):
    _store_label: str  # for stats() and messages
    _begin_write: str
    _begin_read: str
    # The driver's errors that mean "could not connect" (the rest propagate as they are).
    _connect_errors: tuple[type[BaseException], ...]
    _log: logging.Logger

    _dsn: str
    _password: str | None
    # SQLAlchemy's pool settings, as the subclass's __init__ takes them.
    _pool_size: int
    _max_overflow: int
    _pool_recycle: float
    _pool_timeout: float
    _overflow_idle: float
    _pool: Pool | None = None
    _connect_failure_logged = -_CONNECT_LOG_INTERVAL

    # -- driver hooks ------------------------------------------------------------------

    @abstractmethod
    async def _open_raw(self, timeout: float) -> RawConnection:
        """A new driver connection, set up for the store's statements."""

    @abstractmethod
    def _adapter(self, raw: Any) -> Connection:
        """``raw`` speaking :class:`backends.metadata.sql.connection.Connection`."""

    @abstractmethod
    async def _raw_execute(self, raw: Any, sql: str, timeout: float) -> None:
        """Run one statement that returns no rows (BEGIN, COMMIT, ROLLBACK)."""

    @abstractmethod
    def _is_disconnect(self, exc: BaseException, raw: Any = None) -> bool:
        """Whether ``exc`` means the connection (or the server behind it) is gone, or left
        in a state no statement can follow."""

    @abstractmethod
    def _is_refusal(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the server refusing a statement on a healthy connection."""

    @abstractmethod
    def _translate(self, exc: BaseException, raw: Any = None) -> BaseException:
        """The :mod:`backends.errors` exception for a driver error; others as they are."""

    @abstractmethod
    def _lost_race(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` means the transaction lost a race with a concurrent one
        (deadlock, serialization failure, a unique key another transaction took), so that
        trying it again (it was rolled back) would succeed."""

    # -- connections ---------------------------------------------------------------------

    def _safe(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    async def _connect(self, timeout: float) -> RawConnection:
        try:
            return await self._open_raw(timeout)
        except Exception as exc:
            if not isinstance(exc, (OSError, TimeoutError, *self._connect_errors)):
                raise
            # Clients are told only that the store is down: the database's address and the
            # driver's reason (host, port, user, database) are for the operator.
            detail = f"{redact_uri(self._dsn)}: {self._safe(str(exc)) or type(exc).__name__}"
            now = time.monotonic()
            if now - self._connect_failure_logged >= _CONNECT_LOG_INTERVAL:
                self._connect_failure_logged = now
                self._log.warning("cannot connect to the database %s (further failures "
                                  "within %g s are not logged)", detail, _CONNECT_LOG_INTERVAL)
            raise ConnectFailed(detail) from None

    async def open(self) -> None:
        """Open the pool, migrate the schema and fill the pool; a connection failure is
        told with where and why (the operator reads it at start)."""
        pool = self._pool = Pool(self._connect, pool_size=self._pool_size,
                                 max_overflow=self._max_overflow,
                                 pool_recycle=self._pool_recycle,
                                 pool_timeout=self._pool_timeout,
                                 overflow_idle=self._overflow_idle)
        try:
            await self._migrate()
            await pool.fill()
        except ConnectFailed as exc:
            await self.aclose()
            raise errors.Unavailable(f"Cannot connect to the database {exc.detail}") from None
        except BaseException:
            await self.aclose()
            raise

    @abstractmethod
    async def _migrate(self) -> None:
        """Bring the schema to the newest version, once however many replicas start."""

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    def stats(self) -> dict[str, Any]:
        if self._pool is None:
            return {"store": self._store_label, "open": 0}
        return {"store": self._store_label, **self._pool.stats()}

    # -- transactions --------------------------------------------------------------------

    async def _begin(self, begin: str) -> PooledConnection:
        """A pooled connection inside a fresh transaction. A connection found dead at BEGIN
        (nothing sent yet, so retrying is safe) retires the pool's older connections and
        the next one is tried."""
        if self._pool is None:
            raise errors.Unavailable("the metadata store is closed")
        timeout = self._pool.pool_timeout
        conn, _ = await self._retrying(lambda c: self._raw_execute(c.raw, begin, timeout),
                                       keep_on_server_error=False)
        return conn

    async def _retrying(self, op: Callable[[PooledConnection], Awaitable[T]], *,
                        keep_on_server_error: bool) -> tuple[PooledConnection, T]:
        """``op`` on a pooled connection, which the caller then holds. Only for operations
        safe to repeat: a connection found dead retires the pool's older connections and
        ``op`` is tried on another (up to three tries). Any other failure gives the
        connection back (closed, unless ``keep_on_server_error`` and the server refused
        the statement: then nothing is left open on it) and raises."""
        pool = self._pool
        if pool is None:
            raise errors.Unavailable("the metadata store is closed")
        for attempt in range(3):
            conn = await pool.acquire()
            try:
                return conn, await op(conn)
            except BaseException as exc:
                lost = self._is_disconnect(exc, conn.raw) if isinstance(exc, Exception) else True
                refused = self._is_refusal(exc) and not lost
                pool.release(conn, discard=not (keep_on_server_error and refused))
                if not isinstance(exc, Exception):
                    raise
                if lost:
                    pool.invalidate()
                    if attempt < 2 and not isinstance(exc, TimeoutError):
                        continue
                raise self._translate(exc, conn.raw) from exc
        raise AssertionError("unreachable")

    async def _finish(self, conn: PooledConnection, sql: str) -> None:
        """COMMIT or ROLLBACK and return the connection; a failure retires it."""
        pool = self._pool
        assert pool is not None
        try:
            if conn.raw.is_closed():
                raise ConnectionResetError("the connection is closed")
            await self._raw_execute(conn.raw, sql, pool.pool_timeout)
        except BaseException as exc:
            pool.release(conn, discard=True)
            if isinstance(exc, Exception) and self._is_disconnect(exc, conn.raw):
                pool.invalidate()
            raise
        pool.release(conn)

    @asynccontextmanager
    async def _session(self, begin: str) -> AsyncIterator[Connection]:
        conn = await self._begin(begin)
        try:
            yield self._adapter(conn.raw)
        except BaseException as exc:
            try:
                await self._finish(conn, "ROLLBACK")
            except BaseException:  # noqa: BLE001 - the original error matters more
                self._log.debug("rollback failed; the connection was discarded", exc_info=True)
            if isinstance(exc, Exception):
                translated = self._translate(exc, conn.raw)
                if translated is not exc:
                    raise translated from exc
            raise
        try:
            await self._finish(conn, "COMMIT")
        except Exception as exc:
            raise self._translate(exc, conn.raw) from exc

    def _tx(self) -> AbstractAsyncContextManager[Connection]:
        """One READ COMMITTED write transaction."""
        return self._session(self._begin_write)

    def _read(self) -> AbstractAsyncContextManager[Connection]:
        """One consistent, read-only snapshot."""
        return self._session(self._begin_read)

    # -- writes ----------------------------------------------------------------------------

    async def log_batches(self, writes: Sequence[RunWrite]) -> list[errors.BackendError | None]:
        """One batch, tried again (up to five times in all) when its transaction lost a
        race with a concurrent one: a deadlock, a serialization failure, or a param that
        another transaction inserted after this one checked for it. The batch was rolled
        back, so trying again is safe, and the next try sees the other write. The batcher
        has several transactions in flight (``batch_writers``), and several gateways may
        share the database, so such races happen in normal operation; without this, the
        whole batch would get 503."""
        for attempt in range(_RACE_TRIES):
            try:
                return await self._log_batches_once(writes)
            except errors.Unavailable as exc:
                if attempt + 1 == _RACE_TRIES or not self._lost_race(exc.__cause__):
                    raise
                self._log.debug("a batch lost a race with a concurrent transaction; retrying")
                # A moment apart, so that the same racers do not meet again at once.
                await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def _log_batches_once(
        self, writes: Sequence[RunWrite]
    ) -> list[errors.BackendError | None]:
        return await super().log_batches(writes)
