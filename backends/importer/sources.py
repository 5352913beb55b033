"""Read-only readers of a stock MLflow backend store, one per database kind.

URIs as stock takes them: ``sqlite:///relative.db``, ``sqlite:////abs.db``,
``postgresql://user@host/db``, ``mysql://user:password@host:3306/db`` (a driver suffix such
as ``postgresql+psycopg2://`` or ``mysql+pymysql://`` is dropped); a FileStore folder is read
through a SQLite copy (:mod:`backends.importer.filestore`); :mod:`backends.importer.readers`
chooses the reader for a URI.

Every table is read in one pass, in the order its rows lie in the database: SQLite's rowid,
PostgreSQL's ctid (MySQL: its primary key, the order InnoDB keeps rows in). That order is the one stock itself returns params, tags and latest
metrics in (its queries have no ORDER BY), so the importer writes them in it, and it is the
resume point: a scan continues after the last position the destination committed. The
source must not be written to meanwhile (stop the stock server first); PostgreSQL's
positions move when a row is updated.
"""

from __future__ import annotations

import asyncio
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from backends import errors
from backends.registry import redact_uri

__all__ = ["MysqlReader", "PostgresReader", "SqliteReader", "StockReader"]


class StockReader(ABC):
    """One stock database, opened read-only. ``open()`` connects; ``aclose()`` releases."""

    uri: str

    @abstractmethod
    async def open(self) -> None:
        """Connect. Raises ``Unavailable`` when the database cannot be reached."""

    @abstractmethod
    async def aclose(self) -> None:
        """Disconnect. Safe to call twice."""

    @abstractmethod
    async def tables(self) -> set[str]:
        """The names of the database's tables."""

    @abstractmethod
    async def columns(self, table: str) -> set[str]:
        """The column names of ``table`` (empty when there is no such table)."""

    @abstractmethod
    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row of a small query, as tuples."""

    @abstractmethod
    def scan(self, table: str, columns: Sequence[str], after: str | None,
             size: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """The rows of ``table`` after position ``after`` (``None``: from the start), in
        position order, ``size`` at a time. Each row holds ``columns`` and then its
        position, to pass back (as text) as ``after``. ``columns`` are SQL
        expressions over the table's columns."""

    async def revision(self) -> str | None:
        """The Alembic revision in ``alembic_version``, or ``None`` without one."""
        if "alembic_version" not in await self.tables():
            return None
        rows = await self.fetch("SELECT version_num FROM alembic_version")
        return str(rows[0][0]) if rows else None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SqliteReader(StockReader):
    def __init__(self, uri: str, path: str) -> None:
        self.uri = uri
        self._path = path
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        if not Path(self._path).is_file():
            raise errors.NotFound(f"{self._path}: no such database file")
        # mode=ro: the importer never writes to the source, not even a journal mode change.
        uri = f"file:{quote(str(Path(self._path).resolve()))}?mode=ro"
        self._db = await asyncio.to_thread(sqlite3.connect, uri, uri=True,
                                           check_same_thread=False)

    async def aclose(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise errors.Unavailable("the source database is closed")
        return self._db

    async def tables(self) -> set[str]:
        rows = await self.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows}

    async def columns(self, table: str) -> set[str]:
        rows = await self.fetch(f"PRAGMA table_info(\"{table}\")")
        return {r[1] for r in rows}

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        db = self._conn()
        return await asyncio.to_thread(lambda: db.execute(sql).fetchall())

    async def scan(self, table: str, columns: Sequence[str], after: str | None,
                   size: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        db = self._conn()
        cur = db.cursor()
        # rowid may be 0 or negative (experiments.experiment_id is the rowid, and stock's
        # Default experiment is 0), so a first scan has no lower bound.
        where, params = ("WHERE rowid > ?", (int(after),)) if after is not None else ("", ())
        sql = f"SELECT {', '.join(columns)}, rowid FROM \"{table}\" {where} ORDER BY rowid"
        await asyncio.to_thread(cur.execute, sql, params)
        try:
            while rows := await asyncio.to_thread(cur.fetchmany, size):
                yield rows
        finally:
            cur.close()


class PostgresReader(StockReader):
    def __init__(self, uri: str, dsn: str) -> None:
        self.uri = uri
        self._dsn = dsn
        self._conn: Any = None

    async def open(self) -> None:
        import asyncpg

        try:
            self._conn = await asyncpg.connect(self._dsn, timeout=30)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise errors.Unavailable(
                f"cannot connect to {redact_uri(self.uri)}: {type(exc).__name__}") from exc
        # A plain sequential scan returns rows in ctid order only when it starts at the
        # table's first page, not where another scan of the table happens to be.
        await self._conn.execute("SET synchronize_seqscans = off")

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def tables(self) -> set[str]:
        rows = await self.fetch("SELECT table_name FROM information_schema.tables"
                                " WHERE table_schema = current_schema()")
        return {r[0] for r in rows}

    async def columns(self, table: str) -> set[str]:
        rows = await self._conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1", table)
        return {r[0] for r in rows}

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._conn.fetch(sql)]

    async def scan(self, table: str, columns: Sequence[str], after: str | None,
                   size: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        # No ORDER BY: sorting by ctid would read the rest of the table for every chunk.
        # A cursor over one unsynchronized sequential (or TID range) scan yields ctid order.
        sql = (f"SELECT {', '.join(columns)}, ctid::text FROM \"{table}\""
               " WHERE ctid > $1::text::tid")
        async with self._conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await self._conn.cursor(sql, after or "(0,0)")
            while rows := await cursor.fetch(size):
                yield rows


class MysqlReader(StockReader):
    """MySQL or MariaDB through aiomysql (PyMySQL's protocol code on asyncio: pure Python,
    and the driver stock's own ``mysql+pymysql://`` URIs name). Rows are read in primary
    key order, on an unbuffered cursor; a row's position is its key as a JSON array."""

    def __init__(self, uri: str, host: str, port: int, user: str, password: str,
                 database: str) -> None:
        self.uri = uri
        self._params = {"host": host, "port": port, "user": user, "password": password,
                        "db": database}
        self._conn: Any = None

    async def open(self) -> None:
        try:
            import aiomysql
        except ImportError:
            raise errors.InvalidArgument(
                "reading a MySQL source needs aiomysql: pip install 'mlgate[mysql]'") from None
        try:
            self._conn = await aiomysql.connect(**self._params, autocommit=True,
                                                connect_timeout=30)
        except Exception as exc:  # PyMySQL raises several unrelated types
            raise errors.Unavailable(
                f"cannot connect to {redact_uri(self.uri)}: {type(exc).__name__}") from exc
        async with self._conn.cursor() as cur:
            # The importer's SQL quotes identifiers with double quotes, as the standard does.
            await cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def tables(self) -> set[str]:
        rows = await self.fetch("SELECT table_name FROM information_schema.tables"
                                " WHERE table_schema = DATABASE()")
        return {r[0] for r in rows}

    async def columns(self, table: str) -> set[str]:
        async with self._conn.cursor() as cur:
            await cur.execute("SELECT column_name FROM information_schema.columns"
                              " WHERE table_schema = DATABASE() AND table_name = %s", (table,))
            return {r[0] for r in await cur.fetchall()}

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        async with self._conn.cursor() as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())

    async def _key(self, table: str) -> list[str]:
        async with self._conn.cursor() as cur:
            await cur.execute(
                "SELECT column_name FROM information_schema.key_column_usage"
                " WHERE table_schema = DATABASE() AND table_name = %s"
                " AND constraint_name = 'PRIMARY' ORDER BY ordinal_position", (table,))
            return [r[0] for r in await cur.fetchall()]

    async def scan(self, table: str, columns: Sequence[str], after: str | None,
                   size: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        import json

        import aiomysql

        key = [f'"{c}"' for c in await self._key(table)]
        where, params = "", ()
        if after is not None:
            values = json.loads(after)
            where = f"WHERE ({', '.join(key)}) > ({', '.join(['%s'] * len(key))})"
            params = tuple(values)
        sql = (f"SELECT {', '.join(columns)}, JSON_ARRAY({', '.join(key)})"
               f" FROM \"{table}\" {where} ORDER BY {', '.join(key)}")
        async with self._conn.cursor(aiomysql.SSCursor) as cur:
            await cur.execute(sql, params or None)
            while rows := await cur.fetchmany(size):
                yield rows
