"""PostgreSQL metadata store on asyncpg.

URI: ``postgresql://user[:password]@host[:port]/database[?sslmode=require&...]``; the
spellings ``postgres://``, ``postgresql+psycopg2://`` and ``postgresql+asyncpg://`` that MLflow
configurations carry are accepted too. Query options go to asyncpg (``sslmode``,
``sslrootcert``, ``connect_timeout``, ...; unknown ones become server settings), and
``application_name`` names the connections in ``pg_stat_activity`` (default ``mlgate``). A
password may also come from ``PGPASSWORD`` or a ``.pgpass`` file; it never appears in
messages (:func:`backends.registry.redact_uri`).

Connections come from :class:`backends.metadata.dialects._pool.Pool` (SQLAlchemy's pool settings).
Writes run in READ COMMITTED transactions, reads in a REPEATABLE READ READ ONLY snapshot; a
batch of metrics alone (log-metric traffic) is one statement, committed on its own. The
schema lives in ``migrations/postgres``; it is applied at open under a transaction-level
advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from backends import errors
from backends.metadata._migrations import load_migrations
from backends.metadata.dialects._pooled import PooledSqlStore, store_options
from backends.metadata.interface.auth_entities import AUDIT_FIELDS, AuditRow
from backends.metadata.interface.entities import LifecycleStage, Metric, Param, RunWrite, Tag
from backends.metadata.sql.connection import Connection, Cursor, FetchedCursor, UniqueViolation
from backends.metadata.sql.dialect import OnConflict, Returning
from backends.metadata.sql.tracking import (
    RUN_INFO_COLUMNS,
    RunCore,
    _run_unwritable,
    loaded_value,
    run_info,
    stored_value,
)
from backends.registry import POSTGRES_SCHEMES, redact_uri

__all__ = ["POSTGRES", "PostgresDialect", "PostgresMetadataStore"]

log = logging.getLogger("mlgate.postgres")
T = TypeVar("T")

# pg_advisory_xact_lock key for migrations: "mlgate" in ASCII.
_MIGRATION_LOCK = 0x6D6C67617465
_BEGIN_WRITE = "BEGIN"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

# The tables runs/search plans over, and which of them need fresh statistics: never
# analyzed (by anyone: a new or restored database, or autovacuum off or not come round
# yet) and not empty, or changed by more than their size since an ANALYZE that is over
# _STATS_AGE old. Autovacuum, where it runs, analyzes long before the second. With each,
# whether this role may analyze it (owner of the table or of the database; superusers
# are members of every role), and the time the check ran.
_STATS_TABLES = ("runs", "run_params", "run_tags", "metric_series")
_STALE_STATISTICS = (
    "SELECT s.relname, pg_has_role(c.relowner, 'MEMBER') OR pg_has_role(d.datdba, 'MEMBER'),"
    " clock_timestamp()"
    " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
    " JOIN pg_database d ON d.datname = current_database()"
    " WHERE s.relid = ANY($1::text[]::regclass[]) AND pg_relation_size(s.relid) > 0"
    # Without track_counts nothing records an ANALYZE, and every check would run one.
    " AND current_setting('track_counts')::boolean"
    " AND (COALESCE(s.last_analyze, s.last_autoanalyze) IS NULL"
    "  OR (s.n_mod_since_analyze > GREATEST(1000, c.reltuples)"
    "   AND GREATEST(s.last_analyze, s.last_autoanalyze) < now() - make_interval(secs => $2)))"
    " ORDER BY s.relname")
_ANALYZED_SINCE = ("SELECT relname FROM pg_stat_user_tables"
                   " WHERE relid = ANY($1::text[]::regclass[]) AND last_analyze >= $2"
                   " ORDER BY relname")
_STATS_CHECK_EVERY = 10.0  # seconds between a process's checks, at a search
_STATS_AGE = 600.0  # and after it has analyzed
# SQLSTATE classes meaning "the database cannot serve this now; retry": connection
# exceptions, transaction rollback (serialization failure, deadlock), insufficient
# resources, operator intervention (admin shutdown, starting up, query cancelled), lock
# not available.
_UNAVAILABLE_CLASSES = ("08", "40", "53", "57", "55P03", "58")
_INVALID_CLASSES = ("22", "23")


# -- SQL translation -------------------------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?")


@functools.lru_cache(maxsize=4096)
def _translate_sql(sql: str) -> tuple[str, bool]:
    """(``sql`` with ``?`` placeholders as ``$1, $2, ...``, whether it returns rows)."""
    n = 0

    def number(match: re.Match[str]) -> str:
        nonlocal n
        if match.group(0) != "?":
            return match.group(0)  # a quoted literal or identifier: left alone
        n += 1
        return f"${n}"

    text = _TOKENS.sub(number, sql)
    head = text.lstrip().split(None, 1)[0].upper() if text.strip() else ""
    returns_rows = head in ("SELECT", "WITH", "VALUES", "SHOW") or " RETURNING " in (
        f" {text.upper()} ")
    return text, returns_rows


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class _Conn:
    """An asyncpg connection speaking :class:`backends.metadata.sql.tracking.Connection`."""

    __slots__ = ("raw",)

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        text, returns_rows = _translate_sql(sql)
        try:
            if returns_rows:
                rows = await self.raw.fetch(text, *parameters)
                return FetchedCursor(rows, len(rows))
            return FetchedCursor([], _rowcount(await self.raw.execute(text, *parameters)))
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from exc

    async def fetch_rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        rows: list[Any] = await self.raw.fetch(_translate_sql(sql)[0], *parameters)
        return rows

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        rows = list(parameters)
        if not rows:
            return
        text, _ = _translate_sql(sql)
        try:
            await self.raw.executemany(text, rows)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from exc


# -- errors --------------------------------------------------------------------------------


def _is_disconnect(exc: BaseException, raw: asyncpg.Connection | None = None) -> bool:
    """Whether ``exc`` means the connection (or the server behind it) is gone, or left in a
    state no statement can follow."""
    if isinstance(exc, asyncpg.exceptions.DataError):  # a client-side encoding error
        return False
    # InternalClientError: the protocol is not idle where asyncpg expected it to be, as when
    # a server shutting down sends FATAL 57P01 between two statements of a transaction:
    # the next one fails with "cannot switch to state 12; another operation (2) is in
    # progress" before asyncpg has seen the socket close.
    if isinstance(exc, (OSError, TimeoutError, asyncpg.ConnectionDoesNotExistError,
                        asyncpg.exceptions.ConnectionFailureError,
                        asyncpg.exceptions.InternalClientError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "").startswith(("08", "57P"))
    if isinstance(exc, asyncpg.InterfaceError):
        return raw is None or raw.is_closed()
    return False


# deadlock_detected, serialization_failure, unique_violation.
_RACE_STATES = frozenset({"40P01", "40001", "23505"})


def _lost_race(exc: BaseException | None) -> bool:
    """Whether ``exc`` means the transaction lost a race with a concurrent one, so that
    trying it again (it was rolled back) would succeed."""
    return isinstance(exc, UniqueViolation) or (
        isinstance(exc, asyncpg.PostgresError) and exc.sqlstate in _RACE_STATES)


def _translate(exc: BaseException, raw: asyncpg.Connection | None = None) -> BaseException:
    """The :mod:`backends.errors` exception for a driver error; others are returned as is."""
    if isinstance(exc, errors.BackendError):
        return exc
    if isinstance(exc, UniqueViolation):
        # The store checks before it inserts; losing that race to a concurrent writer is
        # worth a retry, which sees the other write.
        return errors.Unavailable("A concurrent write to the same item won; retry the request.")
    if _is_disconnect(exc, raw):
        return errors.Unavailable(
            f"The database connection was lost ({type(exc).__name__}); retry the request.")
    if isinstance(exc, asyncpg.exceptions.DataError):
        return errors.InvalidArgument(f"The request could not be stored: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        state = str(exc.sqlstate or "")
        if state.startswith(_UNAVAILABLE_CLASSES):
            return errors.Unavailable(
                f"The database is temporarily unavailable ({type(exc).__name__}); retry.")
        if state.startswith(_INVALID_CLASSES):
            return errors.InvalidArgument(f"The request could not be stored: {exc}")
    return exc


# -- the store -----------------------------------------------------------------------------


def _text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted (backslash and quote escaped)."""
    return "{" + ",".join(
        '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _number_array(values: Iterable[float]) -> str:
    """A PostgreSQL array literal of ints or finite floats (repr round-trips exactly)."""
    return "{" + ",".join(map(repr, values)) + "}"


def _metric_arrays(rows: Sequence[tuple[str, Metric]]) -> tuple[str, ...]:
    """(run id, metric) rows as six PostgreSQL array literals, one per column of
    :data:`_POINTS`: run id, key, value, is NaN, timestamp, step.

    Each column goes as one array literal in a text parameter, cast by the server:
    asyncpg's own array encoder checks every element against abstract base classes, which
    was a third of the gateway's CPU time under log-batch."""
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for run_id, m in rows:
        value, is_nan = stored_value(m.value)
        for col, v in zip(cols, (run_id, m.key, value, is_nan, m.timestamp, m.step),
                          strict=True):
            col.append(v)
    return (_text_array(cols[0]), _text_array(cols[1]),
            *(_number_array(c) for c in cols[2:]))


def _any_of(placeholder: str) -> str:
    """``= ANY`` of a text parameter holding a text-array literal, parsed once per
    statement (a scalar subquery: an InitPlan). Under a generic plan a bare cast of the
    parameter is evaluated per row a scan filters, and a sequential scan of 264 runs
    parsed a 50-id literal 264 times: 5.7 ms of a 6.6 ms page load."""
    return f"= ANY((SELECT {placeholder}::text::text[])::text[])"


# The rows of a metric batch, from the six arrays of _metric_arrays.
_POINTS = ("unnest($1::text::text[], $2::text::text[], $3::text::float8[],"
           " $4::text::int[], $5::text::int8[], $6::text::int8[])"
           " WITH ORDINALITY AS t(run_id, key, value, is_nan, ts, step, n)")
# Whether the excluded (new) latest point of a series comes after the stored one.
_NEWER = ("(excluded.latest_step, excluded.latest_timestamp, excluded.latest_value)"
          " > (metric_series.latest_step, metric_series.latest_timestamp,"
          " metric_series.latest_value)")
# Each series once, with the batch's latest point (max of step, timestamp, value; the
# earliest of equals), in (run, key) order so concurrent writers lock series alike.
_BATCH_LATEST = ("SELECT DISTINCT ON (run_id, key) run_id, key, value, is_nan, ts, step"
                 " FROM {points} ORDER BY run_id, key, step DESC, ts DESC, value DESC, n")
_SERIES_COLUMNS = ("INSERT INTO metric_series (run_id, key, latest_value, latest_is_nan,"
                   " latest_timestamp, latest_step) ")
_UPSERT_SERIES = (
    _SERIES_COLUMNS + _BATCH_LATEST.format(points=_POINTS)
    + " ON CONFLICT (run_id, key) DO UPDATE SET latest_value = excluded.latest_value,"
    " latest_is_nan = excluded.latest_is_nan, latest_timestamp = excluded.latest_timestamp,"
    f" latest_step = excluded.latest_step WHERE {_NEWER}")
_INSERT_POINTS = (
    "INSERT INTO metric_points (series_id, timestamp, step, value, is_nan)"
    f" SELECT s.series_id, t.ts, t.step, t.value, t.is_nan FROM {_POINTS}"
    " JOIN metric_series s ON s.run_id = t.run_id AND s.key = t.key ON CONFLICT DO NOTHING")
# A metric-only batch in one statement: the stage of each named run ($7) comes back, and
# only the points of active runs are stored. The series upsert updates every series it
# meets (keeping the stored latest point where that is newer), so that RETURNING yields
# every series id for the point insert: a CTE's rows are not visible to a sibling's scan.
_LOG_METRICS = (
    f"WITH t AS (SELECT * FROM {_POINTS}),"
    f" r AS (SELECT run_id, lifecycle_stage FROM runs WHERE run_id {_any_of('$7')}),"
    " a AS (SELECT t.* FROM t JOIN r ON r.run_id = t.run_id"
    f" WHERE r.lifecycle_stage = '{LifecycleStage.ACTIVE}'),"
    " s AS (" + _SERIES_COLUMNS + _BATCH_LATEST.format(points="a")
    + " ON CONFLICT (run_id, key) DO UPDATE SET "
    + ", ".join(f"{c} = CASE WHEN {_NEWER} THEN excluded.{c} ELSE metric_series.{c} END"
                for c in ("latest_value", "latest_is_nan", "latest_timestamp", "latest_step"))
    + " RETURNING series_id, run_id, key),"
    " p AS (INSERT INTO metric_points (series_id, timestamp, step, value, is_nan)"
    " SELECT s.series_id, a.ts, a.step, a.value, a.is_nan FROM a"
    " JOIN s ON s.run_id = a.run_id AND s.key = a.key ON CONFLICT DO NOTHING)"
    " SELECT run_id, lifecycle_stage FROM r")


async def _copy_imported_points(db: Connection, points: list[tuple[Any, ...]]) -> None:
    """COPY the points straight into metric_points (232k points/s against 162k through a
    staging table). COPY cannot skip rows already there, so when one is (a chunk whose
    progress record was lost, a point logged meanwhile), the savepoint is rolled back and
    the chunk goes through a staging table and ``INSERT ... ON CONFLICT DO NOTHING``."""
    assert isinstance(db, _Conn)
    raw = db.raw
    columns = ("series_id", "timestamp", "step", "value", "is_nan")
    # The store began the chunk's transaction with a plain BEGIN, so asyncpg's nested
    # transaction() is not available; the savepoint is spelled out.
    await raw.execute("SAVEPOINT mlgate_import_copy")
    try:
        await raw.copy_records_to_table("metric_points", records=points, columns=columns)
    except asyncpg.UniqueViolationError:
        await raw.execute("ROLLBACK TO SAVEPOINT mlgate_import_copy")
    else:
        await raw.execute("RELEASE SAVEPOINT mlgate_import_copy")
        return
    await raw.execute(
        "CREATE TEMP TABLE IF NOT EXISTS mlgate_import_points"
        " (LIKE metric_points INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    await raw.copy_records_to_table("mlgate_import_points", records=points, columns=columns)
    await raw.execute("INSERT INTO metric_points SELECT * FROM mlgate_import_points"
                      " ON CONFLICT DO NOTHING")


# A page of runs in one statement, one row of arrays (each table's rows column by column:
# asyncpg decodes an array in one go, in binary, so doubles come back bit-exact), each
# table read off its run-id key as its own query would; the rows' insertion order (rowid,
# series_id) comes along, to sort by here rather than in one sort per aggregate. Then the
# ids of the runs that have inputs or outputs.
_IN_PAGE = f"run_id {_any_of('$1')}"
_LOAD_RUNS = (
    "SELECT * FROM (SELECT " + ", ".join(f"array_agg({c})" for c in RUN_INFO_COLUMNS.split(", "))
    + f" FROM runs r WHERE {_IN_PAGE}) r,"
    " (SELECT array_agg(rowid), array_agg(run_id), array_agg(key), array_agg(value)"
    f" FROM run_params WHERE {_IN_PAGE}) p,"
    " (SELECT array_agg(rowid), array_agg(run_id), array_agg(key), array_agg(value)"
    f" FROM run_tags WHERE {_IN_PAGE}) t,"
    " (SELECT array_agg(series_id), array_agg(run_id), array_agg(key), array_agg(latest_value),"
    " array_agg(latest_is_nan), array_agg(latest_timestamp), array_agg(latest_step)"
    f" FROM metric_series WHERE {_IN_PAGE}) m,"
    f" (SELECT array_agg(run_id) FROM (SELECT run_id FROM run_dataset_inputs WHERE {_IN_PAGE}"
    f" UNION SELECT run_id FROM run_model_inputs WHERE {_IN_PAGE}"
    f" UNION SELECT run_id FROM run_model_outputs WHERE {_IN_PAGE}) x) l")


def _by_run(columns: Sequence[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Rows given as arrays (order, run id, the rest...): by run id, each run's rows
    (the rest) in order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    if columns[0] is not None:  # array_agg of no rows is NULL
        for row in sorted(zip(*columns, strict=True)):
            out.setdefault(row[1], []).append(row[2:])
    return out


class PostgresDialect(OnConflict, Returning):
    name = "postgres"
    insertion_order = "rowid"  # an identity column of that name in each key/value table

    def among(self, values: Sequence[str]) -> tuple[str, Sequence[object]]:
        # One array parameter: one statement (and one cached plan) whatever the count.
        return _any_of("?"), [_text_array(values)]

    def placeholder(self, n: int) -> str:
        return f"${n}"

    def parameter(self, n: int, value: object) -> str:
        if isinstance(value, float):
            # asyncpg infers a placeholder's type from its column; a float compared with
            # a BIGINT column would be refused, so say what it is.
            return f"CAST(${n} AS DOUBLE PRECISION)"
        return f"${n}"

    def ilike(self, column: str, placeholder: str) -> str:
        return f"{column} ILIKE {placeholder}"

    def nulls_as_smallest(self, ascending: bool) -> str:
        return " NULLS FIRST" if ascending else " NULLS LAST"

    def delete_first_points(self, first_points: str) -> str:
        # By the rows' physical addresses, which saves a second probe of the primary key
        # (2,000 points: 12 ms, then 4 ms).
        return f"DELETE FROM metric_points WHERE ctid = ANY(ARRAY(SELECT ctid {first_points}))"


POSTGRES = PostgresDialect()


class PostgresMetadataStore(PooledSqlStore):
    _dialect = POSTGRES
    _store_label = "postgresql"
    _begin_write = _BEGIN_WRITE
    _begin_read = _BEGIN_READ
    _connect_errors = (asyncpg.PostgresError, asyncpg.InterfaceError)
    _log = log
    backup_format = "postgresql"
    _numbers_first_search = True
    # Measured with log-batch of 1,000 metrics from 8 clients on 2 cores: one writer kept
    # one server process 83% busy and the rest idle (107k-110k metrics/s); two, 125k-160k.
    batch_writers = 2
    _stats_next = 0.0  # monotonic time of the next statistics check
    _stats_task: asyncio.Task[None] | None = None
    _stats_warn_next = 0.0  # monotonic time from which a failure is logged as a warning
    _stats_not_owner_told = False

    def __init__(
        self,
        dsn: str,
        *,
        artifact_root: str = "mlflow-artifacts:",
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_recycle: float = -1,
        pool_timeout: float = 30.0,
        overflow_idle: float = 10.0,
        pgbouncer: bool = False,
        application_name: str = "mlgate",
        command_timeout: float = 60.0,
    ) -> None:
        self._dsn = dsn
        self._password = urlsplit(dsn).password
        self._artifact_root = artifact_root
        self._application_name = application_name
        self._pgbouncer = pgbouncer
        self._command_timeout = command_timeout
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._pool_recycle = pool_recycle
        self._pool_timeout = pool_timeout
        self._overflow_idle = overflow_idle

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme not in POSTGRES_SCHEMES:
            raise ValueError(f"not a postgresql URI: {redact_uri(uri)!r}")
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError(f"postgresql URI {redact_uri(uri)!r} names no host")
        query = parse_qsl(parts.query, keep_blank_values=True)
        kwargs: dict[str, Any] = {}
        for key, value in query:
            if key == "application_name":
                kwargs["application_name"] = value
        query = [(k, v) for k, v in query if k != "application_name"]
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
        kwargs.update(store_options(options, "pgbouncer", "application_name"))
        return cls(dsn, **kwargs)

    @property
    def dsn(self) -> str:
        """The connection string (``mlgate backup`` opens its own connection with it)."""
        return self._dsn

    async def _open_raw(self, timeout: float) -> asyncpg.Connection:
        raw: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=timeout,
            command_timeout=self._command_timeout,
            # PgBouncer in transaction mode cannot keep named prepared statements.
            statement_cache_size=0 if self._pgbouncer else 100,
            server_settings={"application_name": self._application_name},
        )
        return raw

    # -- schema ------------------------------------------------------------------------------

    async def _migrate(self) -> None:
        async with self._tx() as db:
            await db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            cur = await db.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
                " AND table_name IN ('alembic_version', 'mlgate_schema')"
            )
            tables = {row[0] for row in await cur.fetchall()}
            if "alembic_version" in tables:
                raise errors.InvalidArgument(
                    f"{redact_uri(self._dsn)} is a stock MLflow database; mlgate keeps its own "
                    "schema. Point --backend-store-uri at a new database."
                )
            if "mlgate_schema" not in tables:
                await db.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL)")
                await db.execute("INSERT INTO mlgate_schema (version) VALUES (0)")
            row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
            current = int(row[0]) if row else 0
            for version, script in load_migrations("postgres"):
                if version <= current:
                    continue
                assert isinstance(db, _Conn)
                await db.raw.execute(script)  # no arguments: the simple protocol runs it all
                await db.execute("UPDATE mlgate_schema SET version = ?", (version,))
                log.info("migrated %s to schema version %d", redact_uri(self._dsn), version)
            await self._ensure_default_experiment(db)

    async def open(self) -> None:
        await super().open()
        async with self._read() as db:
            [[autovacuum]] = await db.fetch_rows(
                "SELECT current_setting('autovacuum')::boolean"
                " AND current_setting('track_counts')::boolean")
        if not autovacuum:
            # Every new latest point leaves a dead metric_series row (and index entries)
            # behind: only a VACUUM reclaims them.
            log.warning("autovacuum is off on %s: dead rows of metric updates are never"
                        " reclaimed and tables grow; run VACUUM ANALYZE regularly or turn"
                        " autovacuum (and track_counts) on", redact_uri(self._dsn))

    async def schema_version(self) -> int:
        async with self._read() as db:
            row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
            return int(row[0]) if row else 0

    async def aclose(self) -> None:
        task, self._stats_task = self._stats_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().aclose()

    # -- planner statistics ------------------------------------------------------------------

    async def _maybe_refresh_statistics(self) -> None:
        """Without statistics PostgreSQL plans runs/search blind: over a never-analyzed
        264-run experiment it walked every low-loss metric for each matching param (10,401
        row visits, 16 ms) instead of joining them (0.5 ms). A search starts, at most
        every _STATS_CHECK_EVERY seconds and one at a time, a background check that
        analyzes the tables that need it (see _STALE_STATISTICS); the search itself never
        waits for it."""
        now = time.monotonic()
        running = self._stats_task is not None and not self._stats_task.done()
        if now < self._stats_next or running or self._pool is None:
            return
        self._stats_next = now + _STATS_CHECK_EVERY
        self._stats_task = asyncio.create_task(self._refresh_statistics())

    async def _refresh_statistics(self) -> None:
        pool = self._pool
        assert pool is not None
        try:
            conn, rows = await self._retrying(
                lambda c: c.raw.fetch(_STALE_STATISTICS, list(_STATS_TABLES), _STATS_AGE),
                keep_on_server_error=True)
            ok, analyzed = False, []
            try:
                stale = [r[0] for r in rows if r[0] in _STATS_TABLES and r[1]]
                if stale:
                    # SKIP_LOCKED: a table another session holds (a VACUUM, an index build,
                    # another replica's ANALYZE) is left to the next check, not waited for
                    # with a pool connection, and autovacuum is never cancelled for it.
                    # Sampled (300 rows per statistics target): bounded at any size.
                    await conn.raw.execute(f"ANALYZE (SKIP_LOCKED) {', '.join(stale)}")
                    analyzed = [r[0] for r in await conn.raw.fetch(
                        _ANALYZED_SINCE, stale, rows[0][2])]
                ok = True
            finally:
                pool.release(conn, discard=not ok)
        except Exception:  # statistics only steer plans; the next check tries again
            warn = time.monotonic() >= self._stats_warn_next
            if warn:
                self._stats_warn_next = time.monotonic() + _STATS_AGE
            log.log(logging.WARNING if warn else logging.DEBUG,
                    "refreshing the planner statistics runs/search needs failed (autovacuum's"
                    " ANALYZE keeps them where it runs)", exc_info=True)
            return
        if len(stale) < len(rows) and not self._stats_not_owner_told:
            self._stats_not_owner_told = True
            log.warning("cannot ANALYZE %s: the database role owns neither them nor the"
                        " database; runs/search relies on autovacuum for their statistics",
                        ", ".join(r[0] for r in rows if not r[1]))
        if analyzed:
            log.info("analyzed %s for runs/search's plans", ", ".join(analyzed))
        if stale and len(analyzed) == len(stale):
            self._stats_next = time.monotonic() + _STATS_AGE

    # -- driver hooks ----------------------------------------------------------------------

    def _adapter(self, raw: asyncpg.Connection) -> _Conn:
        return _Conn(raw)

    async def _raw_execute(self, raw: asyncpg.Connection, sql: str, timeout: float) -> None:
        await raw.execute(sql, timeout=timeout)

    def _is_disconnect(self, exc: BaseException, raw: Any = None) -> bool:
        return _is_disconnect(exc, raw)

    def _is_refusal(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncpg.PostgresError)

    def _translate(self, exc: BaseException, raw: Any = None) -> BaseException:
        return _translate(exc, raw)

    def _lost_race(self, exc: BaseException | None) -> bool:
        return _lost_race(exc)

    async def _insert_audit(self, db: Any, rows: Sequence[AuditRow]) -> None:
        """COPY: measured in the server process (1,500-row transactions, the log's three
        indexes), 7.8 us of CPU per row against 13.4 for executemany, whose every row is a
        statement of its own. The server shares the machine's cores with the gateway."""
        await db.raw.copy_records_to_table("audit_log", records=rows, columns=AUDIT_FIELDS)

    async def _plan_for_these_values(self, db: Connection) -> None:
        # asyncpg prepares every statement, and after five runs PostgreSQL may switch it to
        # a generic plan, blind to the LIMIT and the experiment's size: for the metric-ordered
        # search that meant a full sort (59 ms at 100k runs instead of 20 ms). A parallel
        # plan's workers take longer to start than a one-page search takes (46 ms instead
        # of 18 ms at 100k runs on 2 cores). Both only for this transaction.
        await db.execute(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
            " set_config('max_parallel_workers_per_gather', '0', true)")

    async def _plan_for_page_load(self, db: Connection) -> None:
        # The page's runs are loaded by run id (`= ANY(array)`), one generic plan per query:
        # planned for its 100 values each time, a load query took longer to plan than to run.
        # With the default random_page_cost (4, a spinning disk's) PostgreSQL reads whole
        # tables for a 100-run page of a 10k-run database (2-3 ms per query) instead of
        # probing the run-id index (under 1 ms): pages just found by the search are in
        # memory. Lowered to 1.1 (the usual setting for SSDs) for these queries, never raised.
        await db.execute(
            "SELECT set_config('plan_cache_mode', 'force_generic_plan', true),"
            " set_config('random_page_cost', least(current_setting('random_page_cost')"
            "::float8, 1.1)::text, true)")

    # -- writes ----------------------------------------------------------------------------

    async def _log_batches_once(
        self, writes: Sequence[RunWrite]
    ) -> list[errors.BackendError | None]:
        """Metric-only batches (the log-metric traffic) go to the database as one statement
        in its own implicit transaction: the run check, the series upsert and the point
        insert in one round trip instead of five (BEGIN, check, upsert, insert, COMMIT).
        Under load each round trip waited behind the HTTP work queued on the event loop,
        so a 30-request batch took ~4 ms to commit. Batches with params, tags or metrics
        naming a logged model take the general path."""
        if any(w.params or w.tags or any(m.model_id for m in w.metrics) for w in writes):
            return await super()._log_batches_once(writes)
        arrays = _metric_arrays([(w.run_id, m) for w in writes for m in w.metrics])
        rows = await self._fetch_idempotent(
            _LOG_METRICS, *arrays, _text_array(sorted({w.run_id for w in writes})))
        stages = {r[0]: r[1] for r in rows}
        return [_run_unwritable(w.run_id, stages.get(w.run_id)) for w in writes]

    async def _fetch_idempotent(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement outside any explicit transaction (PostgreSQL commits it on
        its own). Only for statements that may run twice with the same result: a
        connection lost on the way, before or after the statement reached the server, is
        retired and the statement sent again on another (up to three tries)."""
        conn, rows = await self._retrying(lambda c: c.raw.fetch(sql, *args),
                                          keep_on_server_error=True)
        assert self._pool is not None
        self._pool.release(conn)
        records: list[asyncpg.Record] = rows
        return records

    _copy_imported_points = staticmethod(_copy_imported_points)

    async def _follow_explicit_ids(self, db: Connection) -> None:
        # The identity's sequence does not move past explicit ids by itself.
        await db.execute(
            "SELECT setval(pg_get_serial_sequence('experiments', 'experiment_id'),"
            " GREATEST(m, 1), m >= 1) FROM (SELECT MAX(experiment_id) AS m FROM experiments) e")

    async def _insert_metrics(
        self, db: Connection, rows: Sequence[tuple[str, Metric]]
    ) -> None:
        """The same upsert-then-insert as :meth:`SqlMetadataStore._insert_metrics`, in two
        statements over arrays instead of two statements per point: asyncpg's executemany
        still pays a server round of work per row, which capped log-batch at ~8k metrics/s.
        Each series' new latest point is the batch's max of (step, timestamp, value),
        earliest on ties, then compared with the stored one exactly as row by row."""
        if not rows:
            return
        assert isinstance(db, _Conn)
        arrays = _metric_arrays(rows)
        await db.raw.execute(_UPSERT_SERIES, *arrays)
        await db.raw.execute(_INSERT_POINTS, *arrays)

    # -- reads -----------------------------------------------------------------------------

    async def _load_run_cores(self, db: Connection, run_ids: Sequence[str]) -> dict[str, RunCore]:
        assert isinstance(db, _Conn)
        row = await db.raw.fetchrow(_LOAD_RUNS, _text_array(run_ids))
        if row is None or row[0] is None:
            return {}
        params, tags = _by_run(row[9:13]), _by_run(row[13:17])
        metrics, linked = _by_run(row[17:24]), set(row[24] or ())
        return {
            info[0]: (
                run_info(info),
                tuple(Param(k, v) for k, v in params.get(info[0], ())),
                tuple(Tag(k, v) for k, v in tags.get(info[0], ())),
                tuple(Metric(k, loaded_value(v, n), ts, step)
                      for k, v, n, ts, step in metrics.get(info[0], ())),
                info[0] in linked,
            )
            for info in zip(*row[:9], strict=True)
        }

    async def _history_rows(
        self, db: Connection, run_id: str, key: str, limit: int, offset: int
    ) -> list[Any]:
        # Three arrays instead of a record per point: asyncpg decodes an array in one go,
        # about half the time of 100k records. The aggregates read the page's rows in its
        # ORDER BY order: the subquery has a LIMIT, so it is neither flattened nor
        # reordered, and an aggregate above a Limit node runs in one process. (ORDER BY
        # inside each array_agg would sort the page three times before PostgreSQL 16.)
        row = await db.fetch_rows(
            "SELECT array_agg(timestamp), array_agg(step),"
            " array_agg(CASE WHEN is_nan <> 0 THEN NULL ELSE value END)"
            f" FROM (SELECT *{self._HISTORY_POINTS} LIMIT ? OFFSET ?) page",
            (run_id, key, limit, offset),
        )
        if not row or row[0][0] is None:  # no points: array_agg of nothing is NULL
            return []
        return list(zip(row[0][0], row[0][1], row[0][2], strict=True))

