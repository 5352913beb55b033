"""A consistent snapshot of the metadata store while it serves, and its restore.

SQLite: ``sqlite3.Connection.backup`` in a thread, page by page from a read transaction
opened first, so every step reads the same WAL snapshot (writers go on; a backup
without that pinned transaction would restart whenever another connection commits). The
audit log's own database beside it is copied the same way, unless ``audit=False``: it is
the record of who did what, which an operator restoring after a loss wants back, and it
only grows by appends, so a snapshot taken a moment apart from the metadata's is still
a consistent prefix.

PostgreSQL: every mlgate table ``COPY … TO STDOUT (FORMAT binary)`` through asyncpg inside
one ``REPEATABLE READ READ ONLY`` transaction, parents before children. Restore creates the
schema at the backup's version from the migrations, copies the rows back in the same order,
moves identity sequences past the highest ids, and lets the store migrate the rest.

Both skip ``mlgate_processes`` and ``mlgate_uploads``: they describe the processes and
uploads of the server that was running, which the restored one never had. Restores go to
the same dialect only (the files are the dialect's own formats).
"""

from __future__ import annotations

import asyncio
import graphlib
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backends.backup.layout import Manifest, NotEmpty, Progress
from backends.errors import BackendError, InvalidArgument, Unavailable
from backends.metadata._migrations import load_migrations
from backends.registry import metadata_scheme, open_metadata_store, redact_uri

__all__ = ["Rows", "dialect_of", "dump", "holds_data", "is_empty", "load", "open_rows"]

_TRANSIENT = frozenset({"mlgate_processes", "mlgate_uploads"})
_AUDIT_TABLES = frozenset({"audit_log", "audit_lookup", "audit_indexed"})
_SQLITE_FILE = "mlgate.sqlite3"
_SQLITE_AUDIT = "audit.sqlite3"
_PAGES_PER_STEP = 4096  # 16 MiB of 4 KiB pages between progress updates
# A store holding only what opening an empty one creates (the Default experiment).
_EMPTY = (
    "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM logged_models)"
    " + (SELECT count(*) FROM registered_models) + (SELECT count(*) FROM auth_users)"
    " + (SELECT count(*) FROM experiments WHERE experiment_id <> 0)"
)


_SQLITE_HAS_RUNS = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
_HAS_RUNS_TABLE = ("SELECT count(*) FROM information_schema.tables"
                   " WHERE table_schema = current_schema() AND table_name = 'runs'")


def dialect_of(uri: str) -> str:
    """How the store at ``uri`` is backed up: ``sqlite`` or ``postgresql`` (also the
    manifest's ``dialect``). Raises ``InvalidArgument`` for a store backup cannot take."""
    found = getattr(open_metadata_store(uri), "backup_format", None)
    if found not in ("sqlite", "postgresql"):
        raise InvalidArgument(f"backup and restore take sqlite:// and postgresql:// stores,"
                              f" not {metadata_scheme(uri)}://")
    return str(found)


def _sqlite_paths(uri: str) -> tuple[Path, Path]:
    store: Any = open_metadata_store(uri)
    return Path(store.path), Path(store.audit_path)


def _dsn(uri: str) -> str:
    store: Any = open_metadata_store(uri)
    return str(store.dsn)


@asynccontextmanager
async def _translated(uri: str) -> AsyncIterator[None]:
    """The drivers' errors as :mod:`backends.errors`, naming the store (redacted)."""
    try:
        yield
    except BackendError:
        raise
    except (OSError, sqlite3.Error) as exc:
        raise Unavailable(f"{redact_uri(uri)}: {exc}") from exc
    except Exception as exc:
        # asyncpg's errors (imported only for PostgreSQL) share no base with the above.
        if type(exc).__module__.startswith("asyncpg"):
            raise Unavailable(f"{redact_uri(uri)}: {exc}") from exc
        raise


# -- reading rows, for the emptiness check and verify ------------------------------------


class Rows:
    """Read-only queries on one snapshot of the store (both dialects take the same SQL:
    no parameters, plain SELECTs)."""

    def __init__(self, run: Callable[[str], Any]) -> None:
        self._run = run

    async def all(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._run(sql)]

    async def scalar(self, sql: str) -> Any:
        rows = await self.all(sql)
        return rows[0][0] if rows else None


@asynccontextmanager
async def open_rows(uri: str) -> AsyncIterator[Rows]:
    """A :class:`Rows` on one read snapshot of the store at ``uri``."""
    async with _translated(uri), _open_rows(uri) as rows:
        yield rows


@asynccontextmanager
async def _open_rows(uri: str) -> AsyncIterator[Rows]:
    if dialect_of(uri) == "sqlite":
        path, _ = _sqlite_paths(uri)
        if not path.is_file():
            raise InvalidArgument(f"{path} does not exist")
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                               isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(conn.execute, "BEGIN")

            async def run(sql: str) -> list[Any]:
                return await asyncio.to_thread(lambda: conn.execute(sql).fetchall())

            yield Rows(run)
        finally:
            conn.close()
        return
    import asyncpg

    pg = await asyncpg.connect(_dsn(uri))
    try:
        async with pg.transaction(isolation="repeatable_read", readonly=True):
            yield Rows(pg.fetch)
    finally:
        await pg.close()


async def is_empty(rows: Rows) -> bool:
    return int(await rows.scalar(_EMPTY) or 0) == 0


async def holds_data(uri: str) -> bool:
    """Whether the store at ``uri`` exists and holds more than an empty store's rows."""
    if dialect_of(uri) == "sqlite" and not _sqlite_paths(uri)[0].is_file():
        return False
    async with open_rows(uri) as rows:
        has_runs = _SQLITE_HAS_RUNS if dialect_of(uri) == "sqlite" else _HAS_RUNS_TABLE
        if not await rows.scalar(has_runs):
            return False
        return not await is_empty(rows)


# -- SQLite ---------------------------------------------------------------------------


def _sqlite_copy(source: Path, target: Path, update: Callable[[int], None]) -> None:
    src = sqlite3.connect(f"file:{quote(str(source.resolve()))}?mode=ro", uri=True,
                          isolation_level=None)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # pins the snapshot
        done = [0]

        def step(status: int, remaining: int, total: int) -> None:
            update(total - remaining - done[0])
            done[0] = total - remaining

        src.backup(dst, pages=_PAGES_PER_STEP, progress=step)
        # One self-contained file: no -wal beside it to lose on the way.
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        src.close()
        dst.close()


def _sqlite_pages(path: Path) -> int:
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


def _sqlite_facts(path: Path, forget_transient: bool) -> tuple[int, dict[str, dict[str, Any]]]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        if forget_transient:
            for name in _TRANSIENT & set(names):
                conn.execute(f'DELETE FROM "{name}"')
        tables = {name: {"rows": conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]}
                  for name in names}
        row = conn.execute("SELECT version FROM mlgate_schema").fetchone()
        return (int(row[0]) if row else 0), tables
    finally:
        conn.close()


async def _dump_sqlite(uri: str, folder: Path, audit: bool, progress: Progress
                       ) -> tuple[int, dict[str, dict[str, Any]], list[Path]]:
    path, audit_path = _sqlite_paths(uri)
    if not path.is_file():
        raise InvalidArgument(f"{path} does not exist")
    files = [(path, folder / _SQLITE_FILE)]
    if audit and audit_path.is_file():
        files.append((audit_path, folder / _SQLITE_AUDIT))
    for source, target in files:
        pages = await asyncio.to_thread(_sqlite_pages, source)
        with progress(f"copying {source.name}", pages) as update:
            await asyncio.to_thread(_sqlite_copy, source, target, update)
    version, tables = await asyncio.to_thread(_sqlite_facts, folder / _SQLITE_FILE, True)
    return version, tables, [target for _, target in files]


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _load_sqlite(uri: str, folder: Path, manifest: Manifest, force: bool) -> None:
    path, audit_path = _sqlite_paths(uri)
    if not force and await holds_data(uri):
        raise NotEmpty(f"{path} holds data: restore into a new file, or pass --force "
                       "to replace it")
    # Moved in whole, the way a file is restored (a copy when the scratch folder is on
    # another filesystem); the store migrates it on open if the backup is older.
    _remove_sqlite(path)
    await asyncio.to_thread(shutil.move, folder / _SQLITE_FILE, path)
    if (folder / _SQLITE_AUDIT).is_file():
        _remove_sqlite(audit_path)
        await asyncio.to_thread(shutil.move, folder / _SQLITE_AUDIT, audit_path)


# -- PostgreSQL -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: list[str]


async def _pg_tables(conn: Any, audit: bool) -> list[_Table]:
    """mlgate's tables in the current schema, every table after those it references."""
    names = {r[0] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema ="
        " current_schema() AND table_type = 'BASE TABLE'")}
    names = (names & _mlgate_tables()) - _TRANSIENT  # a shared schema may hold others'
    if not audit:
        names -= _AUDIT_TABLES
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(
        {n: () for n in names})
    for child, parent in await conn.fetch(
            "SELECT c.relname, p.relname FROM pg_constraint k"
            " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid"
            " WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace"):
        if child in names and parent in names and child != parent:
            sorter.add(child, parent)
    tables = []
    for name in sorter.static_order():
        columns = [r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = $1 ORDER BY ordinal_position", name)]
        tables.append(_Table(name, columns))
    return tables


async def _dump_postgres(uri: str, folder: Path, audit: bool, progress: Progress
                         ) -> tuple[int, dict[str, dict[str, Any]], list[Path]]:
    import asyncpg

    conn = await asyncpg.connect(_dsn(uri))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            version = int(await conn.fetchval("SELECT version FROM mlgate_schema"))
            tables = await _pg_tables(conn, audit)
            facts: dict[str, dict[str, Any]] = {}
            files = []
            with progress("copying tables", len(tables)) as update:
                for table in tables:
                    target = folder / f"{table.name}.copy"
                    status = await conn.copy_from_table(
                        table.name, columns=table.columns, output=str(target),
                        format="binary")
                    facts[table.name] = {"rows": int(status.split()[-1]),
                                         "columns": table.columns}
                    files.append(target)
                    update(1)
    finally:
        await conn.close()
    return version, facts, files


def _mlgate_tables() -> set[str]:
    created = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
    names = {"mlgate_schema"}
    for _, script in load_migrations("postgres"):
        names.update(created.findall(script))
    return names


async def _load_postgres(uri: str, folder: Path, manifest: Manifest, force: bool,
                         progress: Progress) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(uri))
    try:
        present = {r[0] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema ="
            " current_schema()")} & _mlgate_tables()
        if "runs" in present and not force:
            rows = Rows(conn.fetch)
            if not await is_empty(rows):
                raise NotEmpty(f"{redact_uri(uri)} holds data: restore into a new database, "
                               "or pass --force to replace mlgate's tables in it")
        async with conn.transaction():
            for name in present:
                await conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
            # The schema as the backup knew it, so the rows fit; the store's own migrations
            # take it the rest of the way when it opens.
            await conn.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL)")
            for version, script in load_migrations("postgres"):
                if version <= manifest.schema_version:
                    await conn.execute(script)
            await conn.execute("INSERT INTO mlgate_schema (version) VALUES ($1)",
                               manifest.schema_version)
            # Migrations seed rows (the default workspace...) that the backup holds too.
            copied = [f'"{name}"' for name in manifest.tables if name != "mlgate_schema"]
            await conn.execute(f"TRUNCATE {', '.join(copied)}")
            with progress("restoring tables", len(manifest.tables)) as update:
                for name, facts in manifest.tables.items():
                    if name != "mlgate_schema":
                        await conn.copy_to_table(name, source=str(folder / f"{name}.copy"),
                                                 columns=facts["columns"], format="binary")
                    update(1)
            for table, column in await conn.fetch(
                    "SELECT table_name, column_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND is_identity = 'YES'"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence($1, $2),"
                    f' coalesce(max("{column}"), 0) + 1, false) FROM "{table}"',
                    f'"{table}"', column)
    finally:
        await conn.close()


# -- the two operations -----------------------------------------------------------------


async def dump(uri: str, folder: Path, *, audit: bool, progress: Progress
               ) -> tuple[int, dict[str, dict[str, Any]], list[Path]]:
    """Snapshot the store at ``uri`` into files in ``folder``: returns the schema version,
    each table's facts (rows; PostgreSQL: columns, in restore order) and the files."""
    async with _translated(uri):
        if dialect_of(uri) == "sqlite":
            return await _dump_sqlite(uri, folder, audit, progress)
        return await _dump_postgres(uri, folder, audit, progress)


async def load(uri: str, folder: Path, manifest: Manifest, *, force: bool,
               progress: Progress) -> None:
    """Restore the snapshot in ``folder`` into the store at ``uri``. Raises
    :class:`NotEmpty` when it holds data and not ``force``, ``InvalidArgument`` across
    dialects."""
    dialect = dialect_of(uri)
    if dialect != manifest.dialect:
        raise InvalidArgument(f"the backup is of a {manifest.dialect} store; restore it into "
                              f"a {manifest.dialect} one, not {dialect}")
    async with _translated(uri):
        if dialect == "sqlite":
            await _load_sqlite(uri, folder, manifest, force)
        else:
            await _load_postgres(uri, folder, manifest, force, progress)
