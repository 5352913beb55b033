"""SQLite metadata store on aiosqlite: ``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``.

WAL mode; one writer connection (SQLite has one writer at a time anyway) guarded by an
asyncio lock, and a few read-only connections that see every committed write. Each write
is one ``BEGIN IMMEDIATE`` transaction. Migrations run at open under that same write lock,
so two processes starting at once apply them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import aiosqlite

from backends import errors
from backends.metadata._migrations import load_migrations
from backends.metadata.sql_store import Cursor, SqlMetadataStore, UniqueViolation

__all__ = ["SqliteMetadataStore"]


class _Conn:
    """An aiosqlite connection speaking :class:`backends.metadata.sql_store.Connection`:
    unique violations become :class:`UniqueViolation`."""

    __slots__ = ("raw",)

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        try:
            return await self.raw.execute(sql, parameters)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise UniqueViolation(str(exc)) from exc
            raise

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        try:
            await self.raw.executemany(sql, parameters)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise UniqueViolation(str(exc)) from exc
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


class SqliteMetadataStore(SqlMetadataStore):
    def __init__(
        self, path: str, *, readers: int = 4, artifact_root: str = "mlflow-artifacts:"
    ) -> None:
        self._path = path
        self._n_readers = max(1, readers)
        self._artifact_root = artifact_root
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
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
        known = {"readers", "artifact_root"}
        return cls(path, **{k: v for k, v in options.items() if k in known})

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._path, isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        for pragma in (
            "PRAGMA busy_timeout = 30000",
            "PRAGMA foreign_keys = ON",
            "PRAGMA case_sensitive_like = ON",
            "PRAGMA synchronous = FULL",
        ):
            await conn.execute(pragma)
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
        return conn

    async def open(self) -> None:
        try:
            self._writer = await self._connect(readonly=False)
            await self._enable_wal(self._writer)
            await self._migrate()
            for _ in range(self._n_readers):
                conn = await self._connect(readonly=True)
                self._all_readers.append(conn)
                self._readers.put_nowait(conn)
        except BaseException:
            await self.aclose()
            raise

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
        conns = [c for c in [self._writer, *self._all_readers] if c is not None]
        self._writer = None
        self._all_readers = []
        self._readers = asyncio.Queue()
        for conn in conns:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()

    async def _migrate(self) -> None:
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name IN "
                "('alembic_version', 'mlgate_schema')"
            )
            tables = {row[0] for row in await cur.fetchall()}
            if "alembic_version" in tables:
                raise errors.InvalidArgument(
                    f"{self._path} is a stock MLflow database; mlgate keeps its own schema. "
                    "Point --backend-store-uri at a new file."
                )
            if "mlgate_schema" not in tables:
                await db.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL)")
                await db.execute("INSERT INTO mlgate_schema (version) VALUES (0)")
            row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
            current = int(row[0]) if row else 0
            for version, script in load_migrations("sqlite"):
                if version <= current:
                    continue
                for statement in _split_statements(script):
                    await db.execute(statement)
                await db.execute("UPDATE mlgate_schema SET version = ?", (version,))
            await self._ensure_default_experiment(db)

    async def schema_version(self) -> int:
        async with self._read() as db:
            row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
            return int(row[0]) if row else 0

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Conn]:
        """One write transaction on the writer connection."""
        if self._writer is None:
            raise errors.Unavailable("the metadata store is closed")
        async with self._write_lock:
            db = self._writer
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

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[_Conn]:
        """A read connection holding one snapshot (a deferred transaction) while in use."""
        if not self._all_readers:
            raise errors.Unavailable("the metadata store is closed")
        db = await self._readers.get()
        try:
            await db.execute("BEGIN")
            try:
                yield _Conn(db)
            finally:
                await db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._readers.put_nowait(db)

