"""SQLite metadata store on aiosqlite: ``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``.

WAL mode; one writer connection (SQLite has one writer at a time anyway) guarded by an
asyncio lock, and a few read-only connections that see every committed write. Each write
is one ``BEGIN IMMEDIATE`` transaction. Migrations run at open under that same write lock,
so two processes starting at once apply them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import operator
import re
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import quote, unquote, urlsplit

import aiosqlite

from backends import errors
from backends.metadata._migrations import load_migrations
from backends.metadata.interface.auth_entities import AuditRow
from backends.metadata.interface.store import sample_indices
from backends.metadata.sql.connection import Connection, Cursor, UniqueViolation
from backends.metadata.sql.dialect import OnConflict, Returning
from backends.metadata.sql.tracking import SqlMetadataStore, series_points

__all__ = ["SQLITE", "SqliteDialect", "SqliteMetadataStore"]

T = TypeVar("T")

# Statistics (see SqliteMetadataStore._refresh_statistics) are refreshed when runs has
# doubled since the last refresh, or after _STATS_EVERY seconds if it changed at all; a
# search checks at most every _STATS_CHECK_EVERY seconds.
_STATS_EVERY = 600.0
_STATS_CHECK_EVERY = 1.0
_STATS_MIN_RUNS = 1000


@contextlib.contextmanager
def _unique_violations() -> Iterator[None]:
    """sqlite3's unique and primary-key violations as :class:`UniqueViolation`."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
            raise UniqueViolation(str(exc)) from exc
        raise


class _Conn:
    """An aiosqlite connection speaking :class:`backends.metadata.sql.tracking.Connection`:
    unique violations become :class:`UniqueViolation`."""

    __slots__ = ("raw",)

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        with _unique_violations():
            return await self.raw.execute(sql, parameters)

    async def fetch_rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        # Plain tuples (sqlite3.Row costs twice the fetch), in one trip to the connection's
        # thread. The connection is ours alone meanwhile; a cursor takes the factory when
        # created.
        factory = self.raw.row_factory
        self.raw.row_factory = None
        try:
            return list(await self.raw.execute_fetchall(sql, parameters))
        finally:
            self.raw.row_factory = factory

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        with _unique_violations():
            await self.raw.executemany(sql, parameters)


class _SyncCursor:
    __slots__ = ("_cur", "rowcount")

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchall(self) -> Iterable[Any]:
        return self._cur.fetchall()


class _SyncConn:
    """The writer's own sqlite3 connection, for code that runs on the writer's thread: the
    awaitables it returns are already complete, so a coroutine using it never suspends and
    :func:`_run_to_completion` can drive it there."""

    __slots__ = ("raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        with _unique_violations():
            return _SyncCursor(self.raw.execute(sql, parameters))

    async def fetch_rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        cur = self.raw.execute(sql, parameters)
        cur.row_factory = None
        return cur.fetchall()

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        """Many rows of an ``INSERT ... VALUES (?, ...)`` as a few multi-row statements.

        sqlite3's executemany steps once per row and gives up the GIL around every step;
        with the event loop busy on the other thread, each of those handoffs costs a
        context switch both ways (the audit log's rows alone took a third of the gateway's
        auth-on throughput). One statement per few hundred rows does the same inserts, in
        order (an upsert sees the rows before it, as row by row), with a few handoffs."""
        rows = parameters if isinstance(parameters, list) else list(parameters)
        found = _VALUES_GROUP.search(sql)
        with _unique_violations():
            if found is None or len(rows) < 2:
                self.raw.executemany(sql, rows)
                return
            group = found.group(1)
            width = group.count("?")
            per = max(1, min(_MAX_ROWS_PER_INSERT, self._variables // width))
            head, tail = sql[:found.start(1)], sql[found.end(1):]
            for start in range(0, len(rows), per):
                chunk = rows[start:start + per]
                self.raw.execute(head + ",".join([group] * len(chunk)) + tail,
                                 [value for row in chunk for value in row])

    @property
    def _variables(self) -> int:
        return self.raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


class _LoopConn(_SyncConn):
    """A reader's sqlite3 connection used on the event loop itself, inside a snapshot that
    :func:`_begin_snapshot` opened. A long result is read in slices, giving the loop a turn
    whenever a slice has taken ``_SLICE_SECONDS``, so a big read delays other requests by
    at most that much at a time."""

    __slots__ = ()

    async def fetch_rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        cur = self.raw.execute(sql, parameters)
        cur.row_factory = None
        rows = cur.fetchmany(_SLICE_ROWS)
        if len(rows) < _SLICE_ROWS:
            return rows
        turn = time.perf_counter() + _SLICE_SECONDS
        while part := cur.fetchmany(_SLICE_ROWS):
            rows += part
            if time.perf_counter() > turn:
                await asyncio.sleep(0)
                turn = time.perf_counter() + _SLICE_SECONDS
        return rows

# The VALUES list of a plain one-row INSERT ("INSERT INTO t (a, b) VALUES (?, ?)"), with
# nothing after it but an ON CONFLICT clause.
_VALUES_GROUP = re.compile(
    r"^\s*INSERT\s+INTO\s+\w+\s*\([\w\s,]*\)\s*VALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))"
    r"\s*(?:ON\s+CONFLICT\b.*)?$", re.IGNORECASE | re.DOTALL)
_MAX_ROWS_PER_INSERT = 500
# Whether a database is stock MLflow's (Alembic keeps its schema version there).
_IS_STOCK = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
_BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's write lock
# A read on the event loop reads a long result this many rows at a time, and lets other
# requests run after each _SLICE_SECONDS of it.
_SLICE_ROWS = 256
_SLICE_SECONDS = 0.005


def _run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (it only awaits :class:`_SyncConn`) to its end,
    synchronously, on the current thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a coroutine run on the SQLite writer thread tried to suspend")


# Any read starts the snapshot of a deferred transaction; in WAL mode it is the only step of
# a read that can wait for another connection (a WAL being recovered, an exclusive
# checkpoint), and nothing after it in the same transaction waits.
_START_SNAPSHOT = "SELECT 1 FROM sqlite_schema LIMIT 1"


def _start_snapshot_waiting(raw: sqlite3.Connection) -> None:
    """Begin a read snapshot on ``raw``, waiting up to the busy timeout: on its thread."""
    raw.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    try:
        raw.execute("BEGIN")
        try:
            raw.execute(_START_SNAPSHOT).fetchall()
        except BaseException:
            raw.execute("ROLLBACK")
            raise
    finally:
        raw.execute("PRAGMA busy_timeout = 0")


async def _begin_snapshot(db: aiosqlite.Connection) -> None:
    """Begin a read snapshot on reader ``db`` (whose busy timeout is 0): on the event loop,
    or, if the database makes it wait, on the reader's own thread."""
    raw = db._conn
    raw.execute("BEGIN")
    try:
        raw.execute(_START_SNAPSHOT).fetchall()
        return
    except sqlite3.OperationalError as exc:
        raw.execute("ROLLBACK")
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
    await _to_completion(db._execute(_start_snapshot_waiting, raw))  # type: ignore[no-untyped-call]


def _tx_on(raw: sqlite3.Connection, body: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
    """``body`` in one write transaction on ``raw``, run here on its thread to the end."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        result = _run_to_completion(body(_SyncConn(raw)))
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")
        raise
    return result


@asynccontextmanager
async def _write_tx(db: aiosqlite.Connection) -> AsyncIterator[_Conn]:
    """One BEGIN IMMEDIATE transaction on ``db``: committed when the block ends normally,
    rolled back otherwise; SQLite errors become backend errors."""
    try:
        await db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _translate(exc) from exc
    try:
        yield _Conn(db)
    except BaseException as exc:
        try:
            await db.execute("ROLLBACK")
        except sqlite3.Error:  # pragma: no cover
            pass
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc) from exc
        raise
    else:
        try:
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            await db.execute("ROLLBACK")
            raise _translate(exc) from exc


async def _apply_migrations(db: Connection, dialect: str) -> None:
    """Inside the caller's write transaction: create ``mlgate_schema`` if missing and run
    the dialect's scripts newer than the version it records."""
    await db.execute("CREATE TABLE IF NOT EXISTS mlgate_schema (version INTEGER NOT NULL)")
    row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
    if row is None:
        await db.execute("INSERT INTO mlgate_schema (version) VALUES (0)")
    current = int(row[0]) if row else 0
    for version, script in load_migrations(dialect):
        if version > current:
            for statement in _split_statements(script):
                await db.execute(statement)
            await db.execute("UPDATE mlgate_schema SET version = ?", (version,))


# How often a process brings audit_lookup up to date while appending (queries do first).
_AUDIT_INDEX_EVERY = 30.0
_AUDIT_LOOKUP_FILL = """
INSERT OR IGNORE INTO audit_lookup (k, audit_id)
SELECT k, audit_id FROM (
    SELECT 'u' || username AS k, audit_id FROM audit_log
     WHERE audit_id > ?1 AND audit_id <= ?2 AND username IS NOT NULL
    UNION ALL
    SELECT 'r' || resource_id, audit_id FROM audit_log
     WHERE audit_id > ?1 AND audit_id <= ?2 AND resource_id IS NOT NULL)
ORDER BY 1, 2"""


async def _index_audit(db: Connection) -> None:
    """Inside a write transaction on the audit database: add the rows past
    ``audit_indexed.upto`` to ``audit_lookup``, in key order, so that each key's new entries
    land together at the end of its range (a page per key and step, not per key and
    append). Audit ids only grow (rows are never deleted), so nothing committed later can
    fall below the new mark; several processes take turns through the write lock."""
    upto = (await db.fetch_rows("SELECT upto FROM audit_indexed"))[0][0]
    top = (await db.fetch_rows("SELECT max(audit_id) FROM audit_log"))[0][0]
    if top is None or top <= upto:
        return
    await db.execute(_AUDIT_LOOKUP_FILL, (upto, top))
    await db.execute("UPDATE audit_indexed SET upto = ?", (top,))


@asynccontextmanager
async def _snapshot(db: aiosqlite.Connection) -> AsyncIterator[_Conn]:
    """A read snapshot (a deferred transaction) on ``db`` while in use."""
    try:
        await db.execute("BEGIN")
        try:
            yield _Conn(db)
        finally:
            await db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise _translate(exc) from exc


def _begin_without_waiting(raw: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE on the calling thread if the database's write lock is free now;
    False (and no transaction) if another process holds it: waiting for it (up to the busy
    timeout) is for the writer's thread, never the event loop."""
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # extended codes included
            raise
        return False
    finally:
        raw.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return True


async def _to_completion(step: Awaitable[T]) -> T:
    """Await ``step`` (a statement on the writer's thread) even if the caller is cancelled
    meanwhile, then re-raise the cancellation: the write lock must not be released while
    the thread still uses the connection."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait([task])
        raise


def _split_statements(script: str) -> list[str]:
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise ValueError("migration ends with an incomplete statement")
    return statements


def _translate(exc: sqlite3.Error) -> errors.BackendError:
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if "locked" in text or "busy" in text or "disk I/O" in text:
            return errors.Unavailable(f"The database is temporarily unavailable: {text}")
    return errors.InvalidArgument(f"The request could not be stored: {exc}")


class SqliteDialect(OnConflict, Returning):
    name = "sqlite"
    # The implicit rowid, unary plus: ordering by the bare rowid, SQLite would scan the whole
    # table in rowid order rather than look the run ids up and sort the few rows found.
    insertion_order = "+rowid"

    def placeholder(self, n: int) -> str:
        return "?"

    def ilike(self, column: str, placeholder: str) -> str:
        return f"lower({column}) LIKE lower({placeholder})"

    def nulls_as_smallest(self, ascending: bool) -> str:
        return ""  # SQLite's own order

    def unindexed(self, column: str) -> str:
        # SQLite keeps no value statistics, so it would walk a metric's value range across
        # every experiment instead of the experiment's runs; "+column" stops that.
        return f"+{column}"

    def delete_first_points(self, first_points: str) -> str:
        # By the primary key's columns (DELETE ... LIMIT is not in every build).
        return ("DELETE FROM metric_points WHERE (series_id, timestamp, step, value, is_nan)"
                f" IN (SELECT series_id, timestamp, step, value, is_nan {first_points})")


SQLITE = SqliteDialect()


class SqliteMetadataStore(SqlMetadataStore):
    _dialect = SQLITE
    backup_format = "sqlite"
    _stats_at = 0.0  # time.monotonic() of the last statistics refresh
    _stats_runs = 0  # max(rowid) of runs then
    _stats_checked = 0.0  # time.monotonic() of the last check

    def __init__(
        self,
        path: str,
        *,
        readers: int = 4,
        artifact_root: str = "mlflow-artifacts:",
        synchronous: str = "full",
    ) -> None:
        if synchronous.lower() not in ("full", "normal"):
            raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
        self._synchronous = synchronous.upper()
        self._path = path
        self._n_readers = max(1, readers)
        self._artifact_root = artifact_root
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._audit: aiosqlite.Connection | None = None  # the audit log's own database
        self._audit_lock = asyncio.Lock()
        self._audit_indexed_at = time.monotonic()  # of the last bulk step of audit_lookup
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        parts = urlsplit(uri)
        if parts.scheme.lower() != "sqlite":
            raise ValueError(f"not a sqlite URI: {uri!r}")
        if parts.netloc:
            raise ValueError(
                f"sqlite URI {uri!r} has a host; use sqlite:///relative.db or sqlite:////abs.db"
            )
        path = unquote(parts.path)
        path = path.removeprefix("/")  # sqlite:///x.db → x.db ; sqlite:////abs → /abs
        if not path or path == ":memory:":
            raise ValueError(
                f"sqlite URI {uri!r} names no file; mlgate needs a database file "
                "(several connections share it)"
            )
        parent = Path(path).resolve().parent
        if not parent.is_dir():
            raise ValueError(f"sqlite URI {uri!r}: directory {parent} does not exist")
        known = {"readers", "artifact_root", "synchronous"}
        return cls(path, **{k: v for k, v in options.items() if k in known})

    # -- lifecycle -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The read connections in use and idle (a read waits for one, with no timeout),
        and whether the one writer connection is in a transaction."""
        readers = len(self._all_readers)
        idle = self._readers.qsize()
        return {"store": "sqlite", "readers": readers, "in_use": readers - idle, "idle": idle,
                "writer_busy": self._write_lock.locked()}

    @property
    def path(self) -> str:
        """The metadata database's file (``mlgate backup`` copies it)."""
        return self._path

    @property
    def audit_path(self) -> str:
        """The audit log's database file: ``<name>-audit<suffix>`` beside the metadata
        database (``mlgate.db`` -> ``mlgate-audit.db``)."""
        path = Path(self._path)
        return str(path.with_name(f"{path.stem}-audit{path.suffix}"))

    async def _connect(self, *, readonly: bool, path: str | None = None) -> aiosqlite.Connection:
        # Each connection is used from the event loop too (the writer by :meth:`_tx_inline`,
        # readers by :meth:`_read`), never at the same time as from its thread (the write
        # lock; a reader is taken from the pool); SQLite itself is built thread-safe.
        conn = await aiosqlite.connect(path or self._path, isolation_level=None,
                                       timeout=_BUSY_TIMEOUT_MS / 1000,
                                       check_same_thread=False)
        conn.row_factory = sqlite3.Row
        for pragma in (
            f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}",
            "PRAGMA foreign_keys = ON",
            "PRAGMA case_sensitive_like = ON",
            f"PRAGMA synchronous = {self._synchronous}",
        ):
            await conn.execute(pragma)
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
            await conn.execute("PRAGMA busy_timeout = 0")  # a reader waits on its thread only
        return conn

    async def _refuse_foreign(self) -> None:
        """Refuse a stock MLflow database before anything writes to it (``PRAGMA
        journal_mode = WAL`` would convert it and leave -wal and -shm files beside it): the
        file is inspected on a read-only connection. A file that does not exist yet is
        created by the writer afterwards. :meth:`_migrate` checks again under the write
        lock, for a database made stock in between."""
        if not Path(self._path).is_file():
            return
        uri = f"file:{quote(str(Path(self._path).resolve()))}?mode=ro"
        try:
            async with aiosqlite.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_MS / 1000) as db:
                stock = await (await db.execute(_IS_STOCK)).fetchone() is not None
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        if stock:
            raise self._stock_refused()

    def _stock_refused(self) -> errors.InvalidArgument:
        return errors.InvalidArgument(
            f"{self._path} is a stock MLflow database; mlgate keeps its own schema. "
            "Point --backend-store-uri at a new file.")

    async def open(self) -> None:
        try:
            await self._refuse_foreign()
            self._writer = await self._connect(readonly=False)
            await self._enable_wal(self._writer)
            await self._migrate()
            self._audit = await self._connect(readonly=False, path=self.audit_path)
            await self._enable_wal(self._audit)
            await self._migrate_audit(self._audit)
            async with self._write_lock:
                await self._refresh_statistics()
            for _ in range(self._n_readers):
                conn = await self._connect(readonly=True)
                self._all_readers.append(conn)
                self._readers.put_nowait(conn)
        except BaseException:
            await self.aclose()
            raise

    async def _after_purge(self) -> None:
        """Copy the WAL back after each chunk gc deletes (a passive checkpoint: it waits for
        no one). Otherwise the commit of a request's write that crosses the autocheckpoint
        threshold copies gc's pages, and requests wait behind it."""
        if self._writer is None:
            return
        async with self._write_lock:
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")

    async def _maybe_refresh_statistics(self) -> None:
        now = time.monotonic()
        if now - self._stats_checked < _STATS_CHECK_EVERY:
            return
        self._stats_checked = now
        async with self._read() as db:
            row = await (await db.execute("SELECT max(rowid) FROM runs")).fetchone()
        runs = int(row[0] or 0) if row else 0
        doubled = runs >= _STATS_MIN_RUNS and runs >= 2 * self._stats_runs
        if doubled or (runs != self._stats_runs and now - self._stats_at > _STATS_EVERY):
            async with self._write_lock:
                await self._refresh_statistics()

    async def _refresh_statistics(self) -> None:
        """A sampled ANALYZE (about a thousand rows per index: milliseconds at any size), at
        open and when runs/search finds the runs table grown (:meth:`_maybe_refresh_statistics`).
        Call with the write lock held.

        Without statistics SQLite's planner cannot tell that a param or tag equality is
        more selective than an experiment, and runs/search walks every run of it. Other
        connections load statistics with the schema, and an ANALYZE into an existing
        sqlite_stat1 does not change the schema; recreating the table does, so every
        reader (and other process) picks the new numbers up. Statistics only steer plans:
        a failure is ignored."""
        db = self._writer
        assert db is not None
        self._stats_at = time.monotonic()
        try:
            await db.execute("PRAGMA analysis_limit = 1000")
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute("DROP TABLE IF EXISTS sqlite_stat1")
                await db.execute("ANALYZE")
                row = await (await db.execute("SELECT max(rowid) FROM runs")).fetchone()
                await db.execute("COMMIT")
                self._stats_runs = int(row[0] or 0) if row else 0
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            pass

    async def _enable_wal(self, db: aiosqlite.Connection) -> None:
        # Switching the journal mode can fail with SQLITE_BUSY without waiting on the busy
        # handler while another process is migrating the same file, so retry for a while.
        for attempt in range(100):
            try:
                mode = await (await db.execute("PRAGMA journal_mode = WAL")).fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise _translate(exc) from exc
                await asyncio.sleep(0.1)
                continue
            if mode is not None and str(mode[0]).lower() == "wal":
                return
            break
        raise errors.Unavailable(f"could not switch {self._path} to WAL mode")

    async def aclose(self) -> None:
        conns = [c for c in [self._writer, self._audit, *self._all_readers] if c is not None]
        self._writer = None
        self._audit = None
        self._all_readers = []
        self._readers = asyncio.Queue()
        for conn in conns:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()

    async def _migrate(self) -> None:
        async with self._tx() as db:
            if await (await db.execute(_IS_STOCK)).fetchone() is not None:
                raise self._stock_refused()
            await _apply_migrations(db, "sqlite")
            await self._ensure_default_experiment(db)

    async def _in_tx(self, body: Callable[[Connection], Coroutine[Any, Any, T]], *,
                     small: bool = False) -> T:
        """A write transaction whose ``body`` only awaits the connection it is given (the
        batcher's group commit and the audit log's appends), without a round trip to the
        connection's thread per statement.

        Through aiosqlite each statement is a round trip between the event loop and the
        connection's thread, and under load every one of them waits behind the HTTP work
        queued on the loop (measured: 20+ ms per 30-row commit at 64 clients), holding the
        writer meanwhile. So ``body`` runs in one call: on the writer's thread (aiosqlite's
        ``_execute``, the hook its own methods use), or, when the caller says the
        transaction is ``small``, on the event loop itself, with only the COMMIT (the
        fsync) sent to the thread.

        Why both: on the thread, every statement gives up the GIL around each SQLite call
        and waits to get it back from the busy loop, so a 30-row batch that takes 0.25 ms
        alone took ~1.8 ms under load, and the loop idled meanwhile (all clients waiting
        for that commit). Inline it takes the loop its 0.25 ms. A large batch (log-batch
        with thousands of points) stays on the thread, where SQLite's own work runs
        beside the loop's."""
        if self._writer is None:
            raise errors.Unavailable("the metadata store is closed")
        async with self._write_lock:
            try:
                if small:
                    return await self._tx_inline(self._writer, body)
                result: T = await self._writer._execute(  # type: ignore[no-untyped-call]
                    _tx_on, self._writer._conn, body)
                return result
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    async def _tx_inline(self, writer: aiosqlite.Connection,
                         body: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """``body`` on the event loop between a BEGIN IMMEDIATE and a COMMIT; only what can
        wait (a lock held by another process, the commit's fsync) goes to the writer's
        thread. Call with the write lock held."""
        raw = writer._conn
        try:
            if not _begin_without_waiting(raw):
                await _to_completion(writer._execute(raw.execute, "BEGIN IMMEDIATE"))  # type: ignore[no-untyped-call]
            result = _run_to_completion(body(_SyncConn(raw)))
            await _to_completion(writer._execute(raw.execute, "COMMIT"))  # type: ignore[no-untyped-call]
        except BaseException:
            if raw.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    raw.execute("ROLLBACK")
            raise
        return result

    # -- the audit log's own database ------------------------------------------------------

    async def _migrate_audit(self, db: aiosqlite.Connection) -> None:
        """Bring the audit database's schema up to date, then move in the records that
        earlier versions kept in the metadata database's audit_log (once: their ids come
        along, so a move cut short and redone stores none twice)."""
        async with _write_tx(db) as conn:
            await _apply_migrations(conn, "sqlite_audit")
        await db.execute("ATTACH DATABASE ? AS meta", (self._path,))  # not inside a transaction
        try:
            row = await (await db.execute(
                "SELECT EXISTS (SELECT 1 FROM meta.audit_log)")).fetchone()
            if row is not None and row[0]:
                async with _write_tx(db) as conn:
                    # Their ids may lie below what the lookup covers: look them up again.
                    await conn.execute(
                        "UPDATE main.audit_indexed SET upto = min(upto,"
                        " (SELECT min(audit_id) FROM meta.audit_log) - 1)")
                    # By name: the audit database has columns the old table lacks.
                    columns = ("audit_id, ts, username, workspace, action, resource_type,"
                               " resource_id, outcome, status, client_address")
                    await conn.execute(f"INSERT OR IGNORE INTO main.audit_log ({columns})"
                                       f" SELECT {columns} FROM meta.audit_log")
                    await conn.execute("DELETE FROM meta.audit_log")
        finally:
            await db.execute("DETACH DATABASE meta")

    async def append_audit(self, rows: Sequence[AuditRow]) -> None:
        await super().append_audit(rows)
        now = time.monotonic()
        if now - self._audit_indexed_at >= _AUDIT_INDEX_EVERY:
            self._audit_indexed_at = now
            await self._audit_tx(_index_audit)

    async def _audit_narrow(self, where: list[str], params: list[Any], username: str | None,
                            resource_id: str | None) -> None:
        """A resource's or a user's rows through audit_lookup, brought up to date first
        (the rows appended since the last bulk step). The column conditions stay."""
        key = (f"r{resource_id}" if resource_id is not None
               else f"u{username}" if username is not None else None)
        if key is None:
            return
        await self._audit_tx(_index_audit)
        where.append("audit_id IN (SELECT audit_id FROM audit_lookup WHERE k = ?)")
        params.append(key)

    async def _audit_tx(self, body: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        """An audit write: one call on the audit database's own thread. It takes neither
        the metadata writer nor its lock, so the metric batcher never waits for it (in the
        metadata database, a 300-row audit transaction held the writer for ~3.5 ms)."""
        if self._audit is None:
            raise errors.Unavailable("the metadata store is closed")
        async with self._audit_lock:
            try:
                await self._audit._execute(  # type: ignore[no-untyped-call]
                    _tx_on, self._audit._conn, body)
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    @asynccontextmanager
    async def _audit_read(self) -> AsyncIterator[_Conn]:
        if self._audit is None:
            raise errors.Unavailable("the metadata store is closed")
        async with self._audit_lock, _snapshot(self._audit) as db:
            yield db

    async def schema_version(self) -> int:
        async with self._read() as db:
            row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
            return int(row[0]) if row else 0

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Conn]:
        """One write transaction on the writer connection."""
        if self._writer is None:
            raise errors.Unavailable("the metadata store is closed")
        async with self._write_lock, _write_tx(self._writer) as db:
            yield db

    async def _sampled_points(self, db: Connection, series_id: int, buckets: int,
                              steps: tuple[int, int] | None) -> Sequence[Any]:
        """The base class's sample without its window and sort, which SQLite runs at
        ~2 µs a point (222 ms for 100k). Where steps never go down as timestamps go up
        (a training loop's history), the primary key's (timestamp, step, ...) order is the
        sample's (step, timestamp, ...) order, so each picked point is reached from the
        one before it along the key, skipping the points between (12 ms for 100k); the
        steps, read first in key order, tell whether that holds (30 ms). Otherwise the
        points are sorted here, still faster than SQLite's window."""
        where, params = series_points(series_id, steps)
        in_key_order = f" FROM metric_points WHERE {where} ORDER BY timestamp, step, value, is_nan"
        ordered = [row[0] for row in await db.fetch_rows("SELECT step" + in_key_order, params)]
        picks = sample_indices(len(ordered), buckets)
        if not picks:
            return []
        columns = "SELECT timestamp, step, value, is_nan"
        if not all(map(operator.le, ordered, ordered[1:])):
            rows = await db.fetch_rows(columns + in_key_order, params)
            rows.sort(key=lambda r: (r[1], r[0], r[2], r[3]))
            return [rows[i] for i in picks]
        after = (f"{columns} FROM metric_points WHERE {where} AND"
                 " (timestamp, step, value, is_nan) > (?, ?, ?, ?)"
                 " ORDER BY timestamp, step, value, is_nan LIMIT 1 OFFSET ?")
        found = await db.fetch_rows(columns + in_key_order + " LIMIT 1 OFFSET ?",
                                    (*params, picks[0]))
        for before, at in itertools.pairwise(picks):
            found += await db.fetch_rows(after, (*params, *found[-1], at - before - 1))
        return found

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[_LoopConn]:
        """A read connection holding one snapshot (a deferred transaction) while in use.

        Its statements run on the event loop, not on the reader's thread: under load, a trip
        to the thread and back waits for the GIL behind the busy loop, once per statement
        and again per row fetched (sqlite3 releases the GIL around each step), so a 50-run
        page took 7.8 ms of CPU instead of 2.7 and waited hundreds of milliseconds. Only
        the start of the snapshot may wait for another connection, and waits on the thread
        (:func:`_begin_snapshot`); long results give the loop turns (:class:`_LoopConn`)."""
        if not self._all_readers:
            raise errors.Unavailable("the metadata store is closed")
        db = await self._readers.get()
        try:
            try:
                await _begin_snapshot(db)
            except BaseException as exc:
                if db._conn.in_transaction:  # begun on the thread, then cancelled here
                    db._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc) from exc
                raise
            try:
                yield _LoopConn(db._conn)
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            finally:
                db._conn.execute("COMMIT")
        finally:
            self._readers.put_nowait(db)

