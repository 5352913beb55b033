"""The audit log: one record per write, permission change, failed login and artifact
download, stored in the database and written as one JSON log line.

A request only appends its record to a list. A background task, at most ``_LINGER`` after
the first pending record, has the batch's JSON lines written in one logging call and its
rows in transactions of at most ``_SLICE`` rows, so an audited request waits for neither;
:meth:`AuditLog.flush` writes what is pending (the admin query endpoint calls it first, and
shutdown drains it). Both are done in the gateway's own process: a writer process of their
own measured no better (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import orjson

from backends.metadata.interface.auth import AuthStore
from backends.metadata.interface.auth_entities import AUDIT_FIELDS, AuditRow

__all__ = ["AuditLog"]

log = logging.getLogger("mlgate.audit")
_MAX_PENDING = 100_000  # beyond this the database is down for long; keep the log lines
# The writer lingers this long after the first pending record, so audit inserts cost a few
# transactions a second however many requests are audited.
_LINGER = 0.25
# Rows per audit transaction, so that a backlog (after a database outage) is not one huge
# transaction. Each transaction costs a page write per distinct resource it names (the
# resource index): 300-row transactions cost 10.7 us of CPU per row on SQLite, 3,000-row
# ones 4.6 us. On SQLite the log has its own database file, so a transaction of it does not
# hold the metric batcher back; in the shared file, slices of 300 had been needed for that.
_SLICE = 3000


# Characters a text column may refuse: lone surrogates (not Unicode text: JSON and both
# databases refuse them) and NUL (PostgreSQL's text refuses it; a failed login's user name
# is whatever the client sent).
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
# A JSON line is '{"ts":<ts>,<rest>,"request_id":<id>}'. The rest (who, where, what, how it
# ended, from where) repeats across a busy server's records, so each distinct one is encoded
# once and kept (up to _PARTS_MAX; then the cache starts over); the request id differs on
# every row and is encoded alone.
_REST = AUDIT_FIELDS[1:-1]
_PARTS_MAX = 4096
_rests: dict[tuple[Any, ...], str] = {}


def _rest(values: tuple[Any, ...]) -> str:
    """``"name":value,...`` for the fields after ``ts``, encoded by orjson (which raises
    ``orjson.JSONEncodeError`` for a lone surrogate) and kept."""
    text = orjson.dumps(dict(zip(_REST, values, strict=True))).decode()[1:-1]
    if len(_rests) >= _PARTS_MAX:
        _rests.clear()
    _rests[values] = text
    return text


def _json_lines(rows: list[AuditRow]) -> str:
    """One JSON object per row, a line each, keys in AUDIT_FIELDS' order
    (tests/gateway/test_audit_writer.py checks). Raises ``orjson.JSONEncodeError`` for a
    string that is not Unicode text (a lone surrogate): see :func:`_clean`.

    Instructions per row on the serving thread under load (callgrind, log-metric with Basic
    auth): one orjson call over the batch's dicts, split into lines, 10.6k; cached head and
    tail parts 5.5k. One cached rest in their place: 0.29 us a row in a hot loop against
    0.42 for head and tail (3,000 log-metric rows)."""
    rests = _rests
    dumps = orjson.dumps
    return "\n".join([f'{{"ts":{row[0]},{rests.get(row[1:-1]) or _rest(row[1:-1])},'
                      f'"request_id":{dumps(row[-1]).decode()}}}' for row in rows])


def _clean(rows: list[AuditRow]) -> list[AuditRow]:
    """The rows with every lone surrogate and NUL replaced by U+FFFD (see _UNSTORABLE): a
    record that failed every insert would hold up all later ones."""
    return [tuple(_UNSTORABLE.sub("\ufffd", v) if isinstance(v, str) else v  # type: ignore[misc]
                  for v in row) for row in rows]


def add_json_lines_handler() -> None:
    """Give this logger a bare "%(message)s" handler on stderr, outside the root handler's
    prefix: each line it writes is a JSON record of its own (gateway.cli, the writer
    process)."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False


def log_json_lines(rows: list[AuditRow]) -> list[AuditRow]:
    """Write the rows' JSON lines in one logging call (cli gives this logger a bare
    "%(message)s" handler, so each line is a JSON record of its own). Returns the rows, with
    lone surrogates replaced if there were any (JSON cannot carry them)."""
    try:
        lines = _json_lines(rows)
    except orjson.JSONEncodeError:
        rows = _clean(rows)
        lines = _json_lines(rows)
    log.info("%s", lines)
    return rows


async def store_rows(store: AuthStore, rows: list[AuditRow]) -> None:
    """Insert the rows in one transaction; if that fails and they hold a lone surrogate or
    a NUL (PostgreSQL), insert them cleaned instead: such a record must not fail every
    insert and so hold up the ones after it."""
    try:
        await store.append_audit(rows)
    except Exception:
        clean = _clean(rows)
        if clean == rows:
            raise
        await store.append_audit(clean)


class AuditLog:
    def __init__(self, store: AuthStore) -> None:
        self._store = store
        self._unlogged: list[AuditRow] = []  # not yet written as JSON lines
        self._unstored: list[AuditRow] = []  # logged, not yet in the database
        self._wake = asyncio.Event()
        self._woken = False  # _wake was set since _run last cleared it (set() is a call)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0  # records never stored: the queue was full (their lines may remain)

    @property
    def pending(self) -> int:
        """Records queued and not yet in the database (their JSON lines may be written)."""
        return len(self._unlogged) + len(self._unstored)

    def record(self, row: AuditRow) -> None:
        """Queue the record for the next batch (its JSON line and its row).

        This is on every audited request's path, so it only appends the tuple: formatting
        and writing happen once per batch in :meth:`flush`."""
        if len(self._unlogged) < _MAX_PENDING:
            self._unlogged.append(row)
        else:
            self.dropped += 1
            log.error("audit queue full; record dropped: %s", _json_lines(_clean([row])))
        if not self._woken:
            self._woken = True
            self._wake.set()

    def _log_pending(self) -> None:
        batch, self._unlogged = self._unlogged, []
        if batch and log.isEnabledFor(logging.INFO):
            batch = log_json_lines(batch)
        self._keep_unstored(batch)

    def _keep_unstored(self, batch: list[AuditRow]) -> None:
        """Queue rows whose JSON lines are written for the database, up to _MAX_PENDING."""
        room = _MAX_PENDING - len(self._unstored)
        if len(batch) > room:
            self.dropped += len(batch) - max(room, 0)
            log.error("database behind: %d audit records kept in the log only",
                      len(batch) - max(room, 0))
            batch = batch[:max(room, 0)]
        self._unstored.extend(batch)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mlgate-audit")

    async def flush(self) -> None:
        """Write every record queued before the call: its JSON lines, then its rows, in
        transactions of at most ``_SLICE`` rows. Records queued meanwhile wait for the next
        batch: looping until none were left made a busy server write a batch of a few
        records per transaction, with no lingering in between (a commit per handful of
        audited requests)."""
        async with self._lock:
            self._log_pending()
            if not self._unstored:
                return
            batch, self._unstored = self._unstored, []
            for start in range(0, len(batch), _SLICE):
                try:
                    await store_rows(self._store, batch[start:start + _SLICE])
                except Exception:
                    self._unstored[:0] = batch[start:]  # keep order; retried on the next wake
                    raise

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(_LINGER)
            self._wake.clear()
            self._woken = False
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any failure
                if self._closing:
                    log.error("audit records not stored at shutdown: %s", exc)
                    return
                log.warning("audit records not stored yet (%s); retrying", exc)
                await asyncio.sleep(1.0)
                self._wake.set()
            if self._closing:
                return

    async def close(self) -> None:
        """Write what is pending and stop. The writer is never cancelled mid-transaction."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        try:
            while self._unlogged or self._unstored:
                await self.flush()
        except Exception as exc:  # noqa: BLE001 - shutdown goes on; the JSON lines remain
            log.error("%d audit records not stored at shutdown: %s",
                      len(self._unstored) + len(self._unlogged), exc)
