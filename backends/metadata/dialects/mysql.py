"""MariaDB (10.11+) metadata store on aiomysql; MySQL 8 is refused at open until it runs
the suites (its SQL differs in RETURNING and collations).

URI: ``mysql://user[:password]@host[:port]/database[?option=value&...]``; the spellings MLflow
configurations carry (``mysql+pymysql://``, ``mysql+mysqldb://``, ``mysql+asyncmy://``,
``mysql+aiomysql://``, ``mariadb://``, ``mariadb+mariadbconnector://``) are accepted too.
Options: ``ssl_ca``, ``ssl_cert``, ``ssl_key`` (else MLflow's ``MLFLOW_MYSQL_SSL_CA``,
``_CERT``, ``_KEY`` variables), ``ssl_check_hostname``, ``ssl_mode``
(``DISABLED``, ``PREFERRED``, ``REQUIRED``, ``VERIFY_CA``, ``VERIFY_IDENTITY``),
``unix_socket``, ``connect_timeout`` and ``charset`` (always utf8mb4: a stock URI's
``charset=utf8`` is MySQL's three-byte utf8, which cannot store an emoji). The password
never appears in messages.

Why aiomysql (over asyncmy) and every SQL detail below were measured first:
``docs/mysql-research.md``. Connections come from the same pool as PostgreSQL's
(:mod:`backends.metadata.dialects._pool`). Every connection runs with a binary, no-pad
collation (keys and names are case- and trailing-space-sensitive, as MLflow's), a strict
sql_mode, and READ COMMITTED for writes; reads take a REPEATABLE READ consistent snapshot.
The schema lives in ``migrations/mysql``, applied at open under ``GET_LOCK`` so that
replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import ssl
from collections.abc import Iterable, Sequence
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import aiomysql
import orjson
import pymysql

from backends import errors
from backends.metadata._migrations import load_migrations
from backends.metadata.dialects._pool import PooledConnection
from backends.metadata.dialects._pooled import PooledSqlStore, store_options
from backends.metadata.interface.entities import Metric, Param, RunWrite, Tag
from backends.metadata.sql.connection import Cursor, FetchedCursor, UniqueViolation
from backends.metadata.sql.dialect import Dialect, Returning
from backends.metadata.sql.tracking import (
    RUN_INFO_COLUMNS,
    PreparedMetric,
    RunCore,
    _chunks,
    _run_unwritable,
    loaded_value,
    prepared_metrics,
    run_info,
)
from backends.registry import MYSQL_SCHEMES, redact_uri

__all__ = ["MARIADB", "MariaDbDialect", "MysqlMetadataStore"]

log = logging.getLogger("mlgate.mysql")

_MIGRATION_LOCK = "mlgate_migrate"
_MIGRATION_LOCK_WAIT = 300  # seconds another replica may take to migrate
# Strict, plus: || concatenates (as in the shared SQL, on SQLite and PostgreSQL), and an
# explicit id 0 is stored as 0 (the Default experiment's).
_SQL_MODE = ("STRICT_TRANS_TABLES,STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
             "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,PIPES_AS_CONCAT,"
             "NO_AUTO_VALUE_ON_ZERO")
_COLLATION = "utf8mb4_nopad_bin"
# One round trip: the shared SQL has no statements of its own with ';', and aiomysql always
# allows several statements per query.
_BEGIN_WRITE = "START TRANSACTION"
_BEGIN_READ = ("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;"
               " START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT")
# A string parameter longer than this (characters) is measured against max_allowed_packet.
_LARGE_VALUE = 1 << 20
_SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")

# Error numbers (https://mariadb.com/kb/en/mariadb-error-code-reference/).
_DUPLICATE_KEY = 1062
_DEADLOCK = 1213
_LOCK_WAIT_TIMEOUT = 1205
# The server cannot serve this now: too many connections, out of resources, shutting down,
# a killed connection or query, read-only, lock timeouts, statement time limit.
_UNAVAILABLE = frozenset({1040, 1041, 1053, 1077, 1078, 1079, 1080, 1152, 1156, 1205,
                          1213, 1290, 1317, 1927, 1969, 3024, 4031})
# Client-side codes (2000-2999) for a lost or unusable connection.
_DISCONNECT = frozenset({2003, 2006, 2013, 2014, 2045, 2055, 4031, 1927, 1053})


# -- SQL translation -------------------------------------------------------------------

# '?' becomes %s; '%' is doubled everywhere, quoted literals included (aiomysql formats
# every statement with %); the column names that are reserved words are quoted, outside
# literals.
_TOKENS = re.compile(
    r"'(?:[^'\\]|\\.|'')*'|`[^`]*`|\?|%|\b(?:key|schema)\b")


@functools.lru_cache(maxsize=4096)
def _translate_sql(sql: str) -> str:
    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if text[0] in "'`":
            return text.replace("%", "%%")
        return f"`{text}`"

    return _TOKENS.sub(token, sql)


class _Row(tuple[Any, ...]):
    """A result row readable by position and by column name."""

    __slots__ = ()
    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[_Row]:
    return type("Row", (_Row,), {"__slots__": (), "_names": {n: i for i, n in enumerate(names)}})


class _Connection(aiomysql.Connection):  # type: ignore[misc]
    """An aiomysql connection whose statements wait at most ``command_timeout`` seconds for
    the server (None: no limit), as asyncpg's ``command_timeout`` does: on a stalled network
    path a statement would otherwise hold its request and connection until the kernel gives
    up on the socket. Every statement, and each further result of a multi-statement query,
    passes through these two methods."""

    command_timeout: float | None = None

    async def query(self, sql: Any, unbuffered: bool = False) -> int:
        async with asyncio.timeout(self.command_timeout):
            affected: int = await super().query(sql, unbuffered)
        return affected

    async def next_result(self) -> int:
        async with asyncio.timeout(self.command_timeout):
            affected: int = await super().next_result()
        return affected


class _QuietCursor(aiomysql.Cursor):  # type: ignore[misc]
    async def _show_warnings(self, conn: Any) -> None:
        # aiomysql asks for SHOW WARNINGS after each statement with warnings and raises
        # them as Python warnings: a round trip each, and strict sql_mode already turns the
        # ones that matter (truncation, bad values) into errors.
        return


def _unique_violation(exc: BaseException) -> bool:
    return isinstance(exc, pymysql.err.IntegrityError) and exc.args[:1] == (_DUPLICATE_KEY,)


class _Conn:
    """An aiomysql connection speaking :class:`backends.metadata.sql.connection.Connection`."""

    __slots__ = ("max_packet", "raw")

    def __init__(self, raw: _Raw) -> None:
        self.raw = raw.conn
        self.max_packet = raw.max_packet

    def _check_size(self, parameters: Sequence[Any]) -> None:
        """Refuse a statement the server would not take: over ``max_allowed_packet`` it
        closes the connection, which would look like an outage worth retrying."""
        large = [p for p in parameters if isinstance(p, str) and len(p) > _LARGE_VALUE]
        if large and sum(len(p.encode()) for p in large) * 2 > self.max_packet:  # escaping
            raise errors.InvalidArgument(
                "The request holds more than the database takes in one statement "
                f"(max_allowed_packet = {self.max_packet} bytes).")

    async def _run(self, sql: str, parameters: Sequence[Any]) -> tuple[Any, int]:
        self._check_size(parameters)
        cur = await self.raw.cursor()
        try:
            await cur.execute(_translate_sql(sql), tuple(parameters))
        except pymysql.err.IntegrityError as exc:
            if _unique_violation(exc):
                raise UniqueViolation(str(exc)) from exc
            raise
        return cur, cur.rowcount

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        cur, rowcount = await self._run(sql, parameters)
        if cur.description is None:
            return FetchedCursor((), rowcount)
        make = _row_class(tuple(d[0] for d in cur.description))
        return FetchedCursor([make(r) for r in await cur.fetchall()], rowcount)

    async def fetch_rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        cur, _ = await self._run(sql, parameters)
        return list(await cur.fetchall() or ())

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in parameters]
        if not rows:
            return
        for row in rows:
            self._check_size(row)
        cur = await self.raw.cursor()
        try:
            # An INSERT ... VALUES (%s, ...) [ON DUPLICATE KEY UPDATE ...] goes as multi-row
            # statements of up to ~1 MB each.
            await cur.executemany(_translate_sql(sql), rows)
        except pymysql.err.IntegrityError as exc:
            if _unique_violation(exc):
                raise UniqueViolation(str(exc)) from exc
            raise


class _Raw:
    """An aiomysql connection with what the pool asks of one, and the server's largest
    statement."""

    __slots__ = ("conn", "max_packet")

    def __init__(self, conn: aiomysql.Connection, max_packet: int) -> None:
        self.conn = conn
        self.max_packet = max_packet

    def is_closed(self) -> bool:
        conn = self.conn
        if conn.closed:
            return True
        # A connection the server closed or reset while idle (wait_timeout, KILL, restart):
        # aiomysql's own pool tests the same three things.
        reader = conn._reader
        return bool(reader is None or reader.at_eof() or reader.exception() is not None
                    or getattr(reader, "eof_received", False))

    def terminate(self) -> None:
        self.conn.close()

    async def close(self, *, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self.conn.ensure_closed()


# -- the dialect ---------------------------------------------------------------------------


class MariaDbDialect(Returning, Dialect):
    """MariaDB 10.5+: ``INSERT ... RETURNING`` and ``DELETE ... RETURNING`` exist;
    upserts are ``ON DUPLICATE KEY UPDATE``."""

    name = "mariadb"
    insertion_order = "rowid"  # an AUTO_INCREMENT column of that name in each key/value table

    def placeholder(self, n: int) -> str:
        return "?"

    def ilike(self, column: str, placeholder: str) -> str:
        return f"LOWER({column}) LIKE LOWER({placeholder})"

    def nulls_as_smallest(self, ascending: bool) -> str:
        return ""  # MySQL and MariaDB sort NULL first ascending, last descending

    def unindexed(self, column: str) -> str:
        return f"({column} + 0)"  # '+col' alone leaves the index usable to the optimizer

    def series_of_run(self, alias: str) -> str:
        # The rows are keyed by (run_id, key) and hold the latest value: a probe by run and
        # key reads nothing else. Named, as the optimizer may take (key, latest_value).
        return f"metric_series {alias} FORCE INDEX (PRIMARY)"

    def delete_first_points(self, first_points: str) -> str:
        # A single-table DELETE takes ORDER BY ... LIMIT; "IN (SELECT ... LIMIT)" does not.
        return f"DELETE {first_points}"

    def cast_text(self, expr: str) -> str:
        return f"CAST({expr} AS CHAR)"

    def cast_int(self, expr: str) -> str:
        return f"CAST({expr} AS SIGNED)"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str],
               update: Sequence[str], *, when: str = "") -> str:
        head = _insert(table, columns)
        if not when:
            sets = ", ".join(f"{c} = VALUES({c})" for c in update)
            return f"{head} ON DUPLICATE KEY UPDATE {sets}"
        # The SET list runs left to right and each term sees the columns already set, so a
        # condition repeated per column would tear the row: decide once, in the first term.
        cond = re.sub(r"\{new\}\.(\w+)", r"VALUES(\1)", when).format(old=table)
        first, *rest = update
        sets = ", ".join([f"{first} = IF(@mlgate_upd := ({cond}), VALUES({first}), {first})",
                          *(f"{c} = IF(@mlgate_upd, VALUES({c}), {c})" for c in rest)])
        return f"{head} ON DUPLICATE KEY UPDATE {sets}"

    def insert_ignore(self, table: str, columns: Sequence[str],
                      key: Sequence[str] = ()) -> str:
        # Not INSERT IGNORE: that also turns foreign-key violations and truncation into
        # warnings. A no-op update of a key column skips only the duplicate.
        first = (key or columns)[0]
        return f"{_insert(table, columns)} ON DUPLICATE KEY UPDATE {first} = {first}"


def _insert(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


MARIADB = MariaDbDialect()


# -- metric batches in one or two round trips -----------------------------------------------

# The dialect's series upsert, cut around its one row of placeholders.
_SERIES_INSERT, _, _rest = MARIADB.upsert(
    "metric_series",
    ("run_id", "`key`", "latest_value", "latest_is_nan", "latest_timestamp", "latest_step"),
    ("run_id", "`key`"), ("latest_value", "latest_is_nan", "latest_timestamp", "latest_step"),
    when="({new}.latest_step, {new}.latest_timestamp, {new}.latest_value)"
         " > ({old}.latest_step, {old}.latest_timestamp, {old}.latest_value)",
).partition(" VALUES (")
_SERIES_ON_DUPLICATE = _rest.partition(") ")[2]

# A batch of at most this many rows goes in one round trip (see _log_small_batch).
_ONE_TRIP_ROWS = 64
# A small batch's rows as a table of literals, named apart from every column they meet,
# joined to the runs that are active: the same test _run_unwritable applies to the stages
# the script reads (and locks) first, so the rows written are those of the requests
# answered 200.
_ACTIVE_ROWS = ("WITH v (v_run, v_key, v_value, v_nan, v_ts, v_step) AS (VALUES {rows})"
                " SELECT {columns} FROM v JOIN runs r FORCE INDEX (PRIMARY)"
                " ON r.run_id = v_run AND r.lifecycle_stage = 'active'")
_SERIES_FROM_ROWS = (
    f"{_SERIES_INSERT} "
    + _ACTIVE_ROWS.replace("{columns}", "v_run, v_key, v_value, v_nan, v_ts, v_step")
    + f" {_SERIES_ON_DUPLICATE}")
_POINTS_FROM_ROWS = (
    "INSERT INTO metric_points (series_id, timestamp, step, value, is_nan) "
    + _ACTIVE_ROWS.replace("{columns}", "s.series_id, v_ts, v_step, v_value, v_nan")
    + " JOIN metric_series s FORCE INDEX (PRIMARY)"
    " ON s.run_id = v_run AND s.`key` = v_key"
    " ON DUPLICATE KEY UPDATE series_id = metric_points.series_id")


def _stages(runs_in: str) -> str:
    """The runs' lifecycle stages, under a shared lock (so that the writes after see the
    same), as one row holding a JSON array: PyMySQL reads a row per packet in pure Python,
    which cost more than the rest of a batch. The index is named: weighing every index
    over each value of an IN list took the optimizer longer than the lookups."""
    return (f"SELECT JSON_ARRAYAGG(JSON_ARRAY(run_id, lifecycle_stage)) FROM runs"
            f" FORCE INDEX (PRIMARY) WHERE run_id IN ({runs_in}) LOCK IN SHARE MODE")


# A point's number columns as SQL literals, in one C-level format: %d and %e take numbers
# only (a string raises TypeError), so nothing but digits reaches the statement's text. A
# double has 17 significant digits in exponent form: a DOUBLE literal that reads back
# bit-exact (without the exponent the server would read a DECIMAL).
_POINT = "(%d, %d, %d, %.16e, %d)"  # series id, timestamp, step, value, is_nan
_LATEST = "%.16e, %d, %d, %d"  # value, is_nan, timestamp, step


def _point_literals(r: PreparedMetric) -> str:
    """A prepared metric row's value, is-NaN flag, timestamp and step as SQL literals."""
    return _LATEST % r[2:6]


# A page of runs in one statement: each run's params, tags and latest metrics as one JSON
# array each, parsed by orjson, instead of a query (a round trip) per table and a row per
# value through PyMySQL's decoding. The server prints a double in JSON with the shortest
# digits that read back to the same double (a whole one as an integer: "2").
_LOAD_RUNS = (
    f"SELECT {RUN_INFO_COLUMNS},"
    " (SELECT JSON_ARRAYAGG(JSON_ARRAY(`key`, value) ORDER BY rowid)"
    " FROM run_params x WHERE x.run_id = r.run_id),"
    " (SELECT JSON_ARRAYAGG(JSON_ARRAY(`key`, value) ORDER BY rowid)"
    " FROM run_tags x WHERE x.run_id = r.run_id),"
    " (SELECT JSON_ARRAYAGG(JSON_ARRAY(`key`, latest_value, latest_is_nan, latest_timestamp,"
    " latest_step) ORDER BY series_id) FROM metric_series x WHERE x.run_id = r.run_id),"
    # Whether the run may have dataset or model inputs or outputs: few runs have any, and
    # only for those are their queries made.
    " (EXISTS (SELECT 1 FROM run_dataset_inputs x WHERE x.run_id = r.run_id)"
    " OR EXISTS (SELECT 1 FROM run_model_inputs x WHERE x.run_id = r.run_id)"
    " OR EXISTS (SELECT 1 FROM run_model_outputs x WHERE x.run_id = r.run_id))"
    " FROM runs r WHERE r.run_id IN ({marks})")


def _json_rows(text: str | None) -> list[Any]:
    """The rows of a ``JSON_ARRAYAGG(JSON_ARRAY(...))`` (NULL: none)."""
    return [] if text is None else orjson.loads(text)


async def _script(raw: aiomysql.Connection, sql: str) -> list[list[Any]]:
    """Run ``sql`` (statements separated by ';', values inlined) in one round trip; the
    rows of each statement that returns some."""
    cur = await raw.cursor()
    await cur.execute(sql)
    out = []
    while True:
        if cur.description is not None:
            out.append(list(await cur.fetchall()))
        if not await cur.nextset():
            return out


# -- errors ------------------------------------------------------------------------------------


def _code(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _is_disconnect(exc: BaseException, raw: Any = None) -> bool:
    if isinstance(exc, (OSError, TimeoutError, asyncio.IncompleteReadError)):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):  # used after close, or cancelled mid-read
        return True
    code = _code(exc)
    if code in _DISCONNECT:
        return True
    if isinstance(exc, pymysql.err.OperationalError) and raw is not None:
        return bool(raw.is_closed())
    return False


def _translate(exc: BaseException, raw: Any = None) -> BaseException:
    if isinstance(exc, errors.BackendError):
        return exc
    if isinstance(exc, UniqueViolation):
        return errors.Unavailable("A concurrent write to the same item won; retry the request.")
    if _is_disconnect(exc, raw):
        return errors.Unavailable(
            f"The database connection was lost ({type(exc).__name__}); retry the request.")
    code = _code(exc)
    if code in _UNAVAILABLE:
        return errors.Unavailable(
            f"The database is temporarily unavailable (error {code}); retry.")
    if isinstance(exc, (pymysql.err.DataError, pymysql.err.IntegrityError)):
        # Not the server's text: it names the database, the table and the column.
        return errors.InvalidArgument(
            f"The request could not be stored: a value is too long or not valid for the "
            f"database (error {code}).")
    return exc


# -- the store -----------------------------------------------------------------------------


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class MysqlMetadataStore(PooledSqlStore):
    _dialect = MARIADB
    _store_label = "mysql"
    _begin_write = _BEGIN_WRITE
    _begin_read = _BEGIN_READ
    _connect_errors = (pymysql.err.MySQLError,)
    _log = log
    batch_writers = 2
    import_target = False  # the importer's SQL is not ported to MariaDB/MySQL

    def __init__(
        self,
        dsn: str,
        *,
        connect: dict[str, Any],
        tls_required: bool = False,
        artifact_root: str = "mlflow-artifacts:",
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_recycle: float = -1,
        pool_timeout: float = 30.0,
        overflow_idle: float = 10.0,
        command_timeout: float | None = 60.0,
    ) -> None:
        self._dsn = dsn
        self._password = connect.get("password") or None
        self._connect_args = connect
        self._tls_required = tls_required
        self._artifact_root = artifact_root
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._pool_recycle = pool_recycle
        self._pool_timeout = pool_timeout
        self._overflow_idle = overflow_idle
        self._command_timeout = command_timeout

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        parts = urlsplit(uri)
        if parts.scheme.lower() not in MYSQL_SCHEMES:
            raise ValueError(f"not a mysql URI: {redact_uri(uri)!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ValueError(f"mysql URI {redact_uri(uri)!r} names no database")
        connect: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 3306,
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "db": database,
        }
        if "unix_socket" in query:
            connect["unix_socket"] = query.pop("unix_socket")
        if "connect_timeout" in query:
            value = query.pop("connect_timeout")
            try:
                connect["connect_timeout"] = float(value)
            except ValueError:
                raise ValueError(f"connect_timeout must be a number of seconds, not {value!r}"
                                 ) from None
        charset = query.pop("charset", "utf8mb4")
        if charset.lower() != "utf8mb4":
            log.warning("charset=%s in the backend store URI is ignored: mlgate always "
                        "uses utf8mb4, which stores every character MLflow accepts", charset)
        connect["ssl"], tls_required = _ssl_context(query)
        query.pop("binary_prefix", None)  # a SQLAlchemy option of no use here
        for name in query:
            log.warning("option %r in the backend store URI is not known; ignored", name)
        return cls(uri, connect=connect, tls_required=tls_required, **store_options(options))

    async def _open_raw(self, timeout: float) -> _Raw:
        args = dict(self._connect_args)
        ctx: ssl.SSLContext | None = args.pop("ssl")
        args.setdefault("connect_timeout", timeout)
        async with asyncio.timeout(timeout):
            # What aiomysql.connect does, with the statement time limit's subclass.
            conn = _Connection(**args, ssl=ctx, charset="utf8mb4", autocommit=True,
                               local_infile=False, cursorclass=_QuietCursor)
            conn.command_timeout = self._command_timeout
            await conn._connect()
            try:
                # aiomysql goes on in plain text when the server offers no TLS.
                if self._tls_required and not _encrypted(conn):
                    raise pymysql.err.OperationalError(
                        2026, "the server does not offer TLS, which ssl_mode requires")
                cur = await conn.cursor()
                await cur.execute(
                    f"SET NAMES utf8mb4 COLLATE {_COLLATION}, SESSION sql_mode = '{_SQL_MODE}',"
                    " SESSION group_concat_max_len = 1073741824")
                await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                await cur.execute("SELECT @@max_allowed_packet")
                (max_packet,) = await cur.fetchone()
            except BaseException:
                conn.close()
                raise
        return _Raw(conn, int(max_packet))

    # -- driver hooks ----------------------------------------------------------------------

    def _adapter(self, raw: _Raw) -> _Conn:
        return _Conn(raw)

    async def _raw_execute(self, raw: _Raw, sql: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            cur = await raw.conn.cursor()
            await cur.execute(sql)
            while await cur.nextset():
                pass

    def _is_disconnect(self, exc: BaseException, raw: Any = None) -> bool:
        return _is_disconnect(exc, raw)

    def _is_refusal(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.MySQLError) and not isinstance(
            exc, pymysql.err.InterfaceError)

    def _translate(self, exc: BaseException, raw: Any = None) -> BaseException:
        return _translate(exc, raw)

    def _lost_race(self, exc: BaseException | None) -> bool:
        return isinstance(exc, UniqueViolation) or (
            exc is not None and _code(exc) in (_DEADLOCK, _LOCK_WAIT_TIMEOUT))

    # -- writes ----------------------------------------------------------------------------

    async def _log_batches_once(
        self, writes: Sequence[RunWrite]
    ) -> list[errors.BackendError | None]:
        """Metric-only batches (the log-metric and most log-batch traffic) in one or two
        round trips instead of seven. Values go inline, formatted here: PyMySQL's escaping
        of each parameter cost more than the server's insert. Strings pass through
        PyMySQL's escape_string (the session keeps backslash escapes and utf8mb4); numbers
        through int() and float(). Batches with params, tags or metrics naming a logged
        model, or empty ones, take the general path.

        A large batch takes two round trips, three when a series is new: (1) begin, the
        runs' stages and the series ids; (2) the series upsert, the points, commit."""
        if any(not w.metrics or w.params or w.tags or any(m.model_id for m in w.metrics)
               for w in writes):
            return await super()._log_batches_once(writes)
        pool = self._pool
        assert pool is not None
        escape = pymysql.converters.escape_string
        runs_in = ", ".join(f"'{escape(r)}'" for r in sorted({w.run_id for w in writes}))
        if sum(len(w.metrics) for w in writes) <= _ONE_TRIP_ROWS:
            return await self._log_small_batch(writes, runs_in)
        pairs = {(w.run_id, m.key) for w in writes for m in w.metrics}
        literal = {pair: f"'{escape(pair[0])}', '{escape(pair[1])}'" for pair in pairs}

        def series_ids(keys: Iterable[tuple[str, str]]) -> str:  # as _stages, one JSON row
            return (f"SELECT JSON_ARRAYAGG(JSON_ARRAY(run_id, `key`, series_id))"
                    f" FROM metric_series FORCE INDEX (PRIMARY)"
                    f" WHERE run_id IN ({runs_in}) AND (run_id, `key`) IN"
                    f" ({', '.join(f'({literal[k]})' for k in keys)})")

        # Reads only: safe to try again on another connection if this one was lost.
        conn, ([[stages]], [[known]]) = await self._retrying(
            lambda c: _script(c.raw.conn, (
                f"START TRANSACTION; {_stages(runs_in)}; {series_ids(pairs)}")),
            keep_on_server_error=False)
        try:
            verdicts = await self._write_metrics(conn, writes, dict(_json_rows(stages)),
                                                 _json_rows(known), literal, series_ids)
        except BaseException as exc:
            # A failure part-way leaves the transaction open: closing the connection rolls
            # it back.
            pool.release(conn, discard=True)
            if not isinstance(exc, Exception):
                raise
            if self._is_disconnect(exc, conn.raw):
                pool.invalidate()
            raise self._translate(exc, conn.raw) from exc
        pool.release(conn)
        return verdicts

    async def _log_small_batch(
        self, writes: Sequence[RunWrite], runs_in: str
    ) -> list[errors.BackendError | None]:
        """A metric-only batch of a few rows in one round trip: begin, the runs' stages,
        the series upsert and the points each from the batch's rows joined to the runs
        that are active, commit. It saves a fifth of the store's CPU per batch of 32
        writes; for thousands of rows the server's join of the literal rows costs more
        than the round trip saved (docs/performance.md)."""
        escape = pymysql.converters.escape_string
        prepared, latest = prepared_metrics((w.run_id, m) for w in writes for m in w.metrics)
        # Each distinct row formatted once: the latest points are rows of the batch, and a
        # point sent twice is stored once anyway. In key order, which the joins keep (the
        # literal rows drive them): the series are locked in key order, as every batch
        # does (see _upsert_tags); an ORDER BY cost the server more than the insert.
        text = {r: f"('{escape(r[0])}', '{escape(r[1])}', {_point_literals(r)})"
                for r in sorted(prepared)}
        series = ", ".join(text[r] for _, r in sorted(latest.items()))
        # One compound statement (MariaDB's anonymous block): the server answers with the
        # stages' rows and one OK, not an OK per statement, each of which PyMySQL reads in
        # Python (a third of the client's CPU per batch of 32; docs/performance.md).
        script = (f"BEGIN NOT ATOMIC START TRANSACTION; {_stages(runs_in)};"
                  f" {_SERIES_FROM_ROWS.format(rows=series)};"
                  f" {_POINTS_FROM_ROWS.format(rows=', '.join(text.values()))}; COMMIT; END")
        tries = 0

        async def run(conn: PooledConnection) -> list[list[Any]]:
            nonlocal tries
            tries += 1
            return await _script(conn.raw.conn, script)

        # Trying again on another connection is safe: the points are keyed by their whole
        # value and the series keep their latest point by value, so a batch that did
        # commit before its connection was lost writes nothing new the second time.
        conn, [[[stages]]] = await self._retrying(run, keep_on_server_error=False)
        assert self._pool is not None
        self._pool.release(conn)
        stage = dict(_json_rows(stages))
        verdicts = [_run_unwritable(w.run_id, stage.get(w.run_id)) for w in writes]
        if tries > 1:
            # The lost try may have committed before the run was deleted: its write must
            # not be answered as refused (a client does not retry a 400), only as
            # retryable; the next try gets the refusal.
            verdicts = [None if v is None else errors.Unavailable(
                "The database connection was lost during the write; retry the request.")
                for v in verdicts]
        return verdicts

    async def _write_metrics(
        self, conn: PooledConnection, writes: Sequence[RunWrite], stages: dict[str, str],
        known: list[Any], literal: dict[tuple[str, str], str], series_ids: Any,
    ) -> list[errors.BackendError | None]:
        """The rest of :meth:`_log_batches_once`, on its connection and transaction."""
        raw = conn.raw.conn
        verdicts = [_run_unwritable(w.run_id, stages.get(w.run_id)) for w in writes]
        prepared, latest = prepared_metrics(
            (w.run_id, m) for w, v in zip(writes, verdicts, strict=True) if v is None
            for m in w.metrics)
        if not prepared:
            await _script(raw, "COMMIT")
            return verdicts
        ids = {(r[0], r[1]): r[2] for r in known}
        new = sorted(k for k in latest if k not in ids)
        script = [f"{_SERIES_INSERT} VALUES " + ", ".join(  # key order: see _upsert_tags
            f"({literal[k]}, {_point_literals(r)})"
            for k, r in sorted(latest.items())) + f" {_SERIES_ON_DUPLICATE}"]
        if new:  # their ids are needed for the points
            script.append(series_ids(new))
            [[[rows]]] = await _script(raw, "; ".join(script))
            ids.update({(r[0], r[1]): r[2] for r in _json_rows(rows)})
            script = []
        points = sorted((ids[(r[0], r[1])], r[4], r[5], r[2], r[3]) for r in prepared)
        script.append(
            "INSERT INTO metric_points (series_id, timestamp, step, value, is_nan) VALUES "
            + ", ".join([_POINT % p for p in points])
            + " ON DUPLICATE KEY UPDATE series_id = series_id")
        script.append("COMMIT")
        await _script(raw, "; ".join(script))
        return verdicts

    # -- reads -----------------------------------------------------------------------------

    async def _load_run_cores(self, db: Any, run_ids: Sequence[str]) -> dict[str, RunCore]:
        cores: dict[str, RunCore] = {}
        for ids in _chunks(list(run_ids)):
            for r in await db.fetch_rows(
                    _LOAD_RUNS.format(marks=", ".join("?" * len(ids))), ids):
                cores[r[0]] = (
                    run_info(r),
                    tuple(Param(k, v) for k, v in _json_rows(r[9])),
                    tuple(Tag(k, v) for k, v in _json_rows(r[10])),
                    tuple(Metric(k, loaded_value(float(v), n), ts, step)
                          for k, v, n, ts, step in _json_rows(r[11])),
                    bool(r[12]),
                )
        return cores

    async def _history_rows(
        self, db: Any, run_id: str, key: str, limit: int, offset: int
    ) -> list[Any]:
        # Each column as one comma-separated list that the server builds (bounded by the
        # session's group_concat_max_len) and orjson parses as a JSON array, instead of a
        # row per point through PyMySQL's pure-Python decoding. A plain DOUBLE column is
        # printed with the digits that read back to the same double, but a CAST, IF or CASE
        # around it cuts some to 22 characters ("-1.7976931348623157e30"): NaN is marked by
        # its own list, sent only when the page has some. As on PostgreSQL, the aggregates
        # read the page in its ORDER BY order: a derived table with a LIMIT is materialized
        # in that order (an ORDER BY in each aggregate sorted the page once per list).
        rows = await db.fetch_rows(
            "SELECT GROUP_CONCAT(timestamp), GROUP_CONCAT(step), GROUP_CONCAT(value),"
            " IF(SUM(is_nan) > 0, GROUP_CONCAT(is_nan), NULL)"
            f" FROM (SELECT timestamp, step, value, is_nan{self._HISTORY_POINTS}"
            " LIMIT ? OFFSET ?) page",
            (run_id, key, limit, offset))
        if not rows or rows[0][0] is None:  # no points
            return []
        stamps, steps, numbers = (orjson.loads(f"[{text}]") for text in rows[0][:3])
        # A whole double comes back as an integer ("2"): made a float again.
        values: list[float | None] = list(map(float, numbers))
        if rows[0][3] is not None:
            values = [None if nan else v
                      for v, nan in zip(values, orjson.loads(f"[{rows[0][3]}]"), strict=True)]
        return list(zip(stamps, steps, values, strict=True))

    # -- schema ------------------------------------------------------------------------------

    async def _migrate(self) -> None:
        assert self._pool is not None
        conn = await self._pool.acquire()
        db = _Conn(conn.raw)
        # GET_LOCK waits up to _MIGRATION_LOCK_WAIT for another replica's migration, and
        # DDL on a large table takes as long as it takes.
        conn.raw.conn.command_timeout = None
        broken = True
        try:
            row = await (await db.execute(
                "SELECT GET_LOCK(?, ?)", (_MIGRATION_LOCK, _MIGRATION_LOCK_WAIT))).fetchone()
            if not row or row[0] != 1:
                raise errors.Unavailable("Another mlgate is migrating the database; retry.")
            try:
                await self._migrate_locked(db)
            finally:
                await db.execute("SELECT RELEASE_LOCK(?)", (_MIGRATION_LOCK,))
            broken = False
        except Exception as exc:
            raise _translate(exc, conn.raw) from exc
        finally:
            conn.raw.conn.command_timeout = self._command_timeout
            self._pool.release(conn, discard=broken)

    async def _migrate_locked(self, db: _Conn) -> None:
        row = await (await db.execute("SELECT VERSION()")).fetchone()
        if row is None or "mariadb" not in str(row[0]).lower():
            raise errors.InvalidArgument(
                f"{redact_uri(self._dsn)} is MySQL {row[0] if row else ''}: mlgate's "
                "MySQL-family store runs on MariaDB 10.11+ only for now (it relies on "
                "INSERT ... RETURNING and the utf8mb4_nopad_bin collation).")
        cur = await db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
            " AND table_name IN ('alembic_version', 'mlgate_schema')")
        tables = {row[0] for row in await cur.fetchall()}
        if "alembic_version" in tables:
            raise errors.InvalidArgument(
                f"{redact_uri(self._dsn)} is a stock MLflow database; mlgate keeps its own "
                "schema. Point --backend-store-uri at a new database.")
        if "mlgate_schema" not in tables:
            await db.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL)"
                             " ENGINE=InnoDB")
            await db.execute("INSERT INTO mlgate_schema (version) VALUES (0)")
        row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
        current = int(row[0]) if row else 0
        for version, script in load_migrations("mysql"):
            if version <= current:
                continue
            # DDL commits on its own in MySQL: a failure part-way (the server gone) leaves
            # this version's first tables behind, to be dropped by hand (as with MLflow's
            # alembic on MySQL); the version is recorded only when all of it ran.
            for statement in _statements(script):
                await db.fetch_rows(statement)
            await db.execute("UPDATE mlgate_schema SET version = ?", (version,))
            log.info("migrated %s to schema version %d", redact_uri(self._dsn), version)
        await db.execute("START TRANSACTION")
        await self._ensure_default_experiment(db)
        await db.execute("COMMIT")

    async def schema_version(self) -> int:
        async with self._read() as db:
            row = await (await db.execute("SELECT version FROM mlgate_schema")).fetchone()
            return int(row[0]) if row else 0


def _statements(script: str) -> list[str]:
    """A migration script's statements: split at ';' ending a line, comments dropped."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE) if s.strip()]


def _ssl_context(query: dict[str, str]) -> tuple[ssl.SSLContext | None, bool]:
    """The TLS settings of a URI's ``ssl_*`` options (removed from ``query``): an
    SSLContext (None for a plain connection), and whether a connection without TLS must
    be refused (every mode but PREFERRED)."""
    mode = query.pop("ssl_mode", "").upper()
    if mode and mode not in _SSL_MODES:
        raise ValueError(f"ssl_mode must be one of {', '.join(_SSL_MODES)}, not {mode!r}")
    # MLflow adds MLFLOW_MYSQL_SSL_CA/CERT/KEY to every mysql connection; the URI's own
    # options win.
    ca, cert, key = (query.pop(k, None) or os.environ.get(f"MLFLOW_MYSQL_{k.upper()}") or None
                     for k in ("ssl_ca", "ssl_cert", "ssl_key"))
    check_hostname = query.pop("ssl_check_hostname", None)
    wanted = _flag(query.pop("ssl", "false")) or any((ca, cert, key)) or mode not in (
        "", "DISABLED")
    if mode == "DISABLED" or not wanted:
        return None, False
    # A missing or malformed file is the URI's mistake: a ValueError, which the CLI reports
    # as a usage error rather than a traceback.
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except OSError as exc:  # ssl.SSLError included
        raise ValueError(f"ssl_ca {ca!r} cannot be loaded: {exc.strerror or exc}") from None
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except OSError as exc:
            raise ValueError(f"ssl_cert {cert!r} (ssl_key {key!r}) cannot be loaded: "
                             f"{exc.strerror or exc}") from None
    if mode in ("PREFERRED", "REQUIRED") or (not ca and mode != "VERIFY_IDENTITY"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE if not ca else ssl.CERT_REQUIRED
    if check_hostname is not None:
        ctx.check_hostname = _flag(check_hostname)
    return ctx, mode != "PREFERRED"


def _encrypted(conn: aiomysql.Connection) -> bool:
    writer = getattr(conn, "_writer", None)
    return bool(writer is not None and writer.get_extra_info("sslcontext") is not None)
