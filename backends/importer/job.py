"""One import of a stock MLflow database into an open mlgate metadata store.

The tables of :data:`backends.importer.tables.TABLES` are copied one after another. A
table is read in chunks; each chunk is written in one transaction of the destination that
also records, in ``mlgate_import_progress``, the source position it reached. An import cut
off at any point and run again starts each table after its last committed chunk, and
since every write ignores rows already present, nothing is written twice either way.

The source is read ahead of the writes (one chunk queued), so reading the source and
writing the destination overlap.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from backends import errors
from backends.importer.revisions import check_revision
from backends.importer.sources import StockReader
from backends.importer.tables import TABLES, Context, Rows, Table, select_list
from backends.metadata.sql.connection import Connection
from backends.metadata.sql.tracking import SqlMetadataStore

__all__ = ["CHUNK_ROWS", "Importer", "Progress", "check_source", "source_counts"]

CHUNK_ROWS = 50_000
# Import bookkeeping lives beside mlgate's own tables but outside its versioned schema:
# only `mlgate import` reads it, and it may be dropped once the import is done.
_PROGRESS_DDL = (
    "CREATE TABLE IF NOT EXISTS mlgate_import_progress ("
    " source TEXT NOT NULL, entity TEXT NOT NULL, position TEXT, copied BIGINT NOT NULL,"
    " done INTEGER NOT NULL, PRIMARY KEY (source, entity))")
_PROGRESS_UPSERT = (
    "INSERT INTO mlgate_import_progress (source, entity, position, copied, done)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, entity) DO UPDATE SET"
    " position = COALESCE(excluded.position, mlgate_import_progress.position),"
    " copied = mlgate_import_progress.copied + excluded.copied,"
    " done = excluded.done")


class Progress(Protocol):
    """Told how far each table has come (the CLI draws a bar per table)."""

    def table_started(self, entity: str, total: int, already: int) -> None: ...

    def rows_written(self, entity: str, n: int) -> None: ...

    def table_finished(self, entity: str) -> None: ...


class _Quiet:
    def table_started(self, entity: str, total: int, already: int) -> None:
        pass

    def rows_written(self, entity: str, n: int) -> None:
        pass

    def table_finished(self, entity: str) -> None:
        pass


@dataclass(frozen=True)
class _Mark:
    position: str | None
    rows: int
    done: bool


async def check_source(reader: StockReader) -> str:
    """The source's Alembic revision; ``InvalidArgument`` when it is not supported."""
    try:
        return check_revision(await reader.revision())
    except ValueError as exc:
        raise errors.InvalidArgument(str(exc)) from None


async def source_counts(reader: StockReader) -> dict[str, int]:
    """Rows per stock table the import reads (absent tables: 0)."""
    present = await reader.tables()
    out = {}
    for table in TABLES:
        if table.source in present:
            rows = await reader.fetch(f'SELECT COUNT(*) FROM "{table.source}"')
            out[table.entity] = int(rows[0][0])
        else:
            out[table.entity] = 0
    return out


class Importer:
    """Copies ``reader``'s stock database into ``store`` (both opened by the caller, who
    closes them). ``source_key`` names the source in the progress records."""

    def __init__(self, reader: StockReader, store: SqlMetadataStore, source_key: str, *,
                 chunk_rows: int = CHUNK_ROWS, progress: Progress | None = None) -> None:
        self.reader = reader
        self.store = store
        self.source_key = source_key
        self.chunk_rows = chunk_rows
        self.progress: Progress = progress or _Quiet()

    async def run(self) -> None:
        """Import every table not yet done. Raises ``Conflict`` when the destination holds
        data that did not come from this source."""
        await check_source(self.reader)
        await self.store._in_tx(self._start)
        present = await self.reader.tables()
        totals = await source_counts(self.reader)
        ctx = Context(reader=self.reader, copy_points=self.store._copy_imported_points)
        for table in TABLES:
            if table.source not in present:
                continue
            await self._table(ctx, table, totals[table.entity])
        await self.store._in_tx(self.store._follow_explicit_ids)

    async def _start(self, db: Connection) -> None:
        await db.execute(_PROGRESS_DDL)
        ours = await db.fetch_rows(
            "SELECT COUNT(*) FROM mlgate_import_progress WHERE source = ?", (self.source_key,))
        if ours[0][0]:
            return
        used = await db.fetch_rows(
            "SELECT (SELECT COUNT(*) FROM experiments WHERE experiment_id <> 0)"
            " + (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM registered_models)")
        if used[0][0]:
            raise errors.Conflict(
                "the destination store already holds experiments, runs or models that did not "
                "come from this source; import into a new store")

    async def marks(self) -> dict[str, _Mark]:
        async def read(db: Connection) -> dict[str, _Mark]:
            rows = await db.fetch_rows(
                "SELECT entity, position, copied, done FROM mlgate_import_progress"
                " WHERE source = ?", (self.source_key,))
            return {r[0]: _Mark(r[1], int(r[2]), bool(r[3])) for r in rows}

        return await self.store._in_tx(read)

    async def _table(self, ctx: Context, table: Table, total: int) -> None:
        mark = (await self.marks()).get(table.entity, _Mark(None, 0, False))
        self.progress.table_started(table.entity, total, mark.rows)
        if mark.done:
            self.progress.table_finished(table.entity)
            return
        if table.prepare is not None:
            await table.prepare(ctx, self.store._in_tx)
        columns = select_list(table, await self.reader.columns(table.source))
        # The reader ends the queue with None, or with the exception that stopped it.
        queue: asyncio.Queue[Rows | BaseException | None] = \
            asyncio.Queue(maxsize=1)

        async def read() -> None:
            try:
                async for rows in self.reader.scan(table.source, columns, mark.position,
                                                   self.chunk_rows):
                    await queue.put(rows)
            except Exception as exc:  # noqa: BLE001  (handed to the writer, which raises it)
                await queue.put(exc)
            else:
                await queue.put(None)

        reader = asyncio.create_task(read())
        try:
            while (rows := await queue.get()) is not None:
                if isinstance(rows, BaseException):
                    raise rows
                await self._write(ctx, table, rows)
                self.progress.rows_written(table.entity, len(rows))
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await self.store._in_tx(lambda db: db.execute(
            _PROGRESS_UPSERT, (self.source_key, table.entity, None, 0, 1)))
        self.progress.table_finished(table.entity)

    async def _write(self, ctx: Context, table: Table, rows: Rows) -> None:
        last = str(rows[-1][-1])

        async def body(db: Connection) -> None:
            await table.write(ctx, db, rows)
            await db.execute(_PROGRESS_UPSERT,
                             (self.source_key, table.entity, last, len(rows), 0))

        await self.store._in_tx(body)
