"""The audit writer over a real metadata store: every queued record stored once, in order,
in slices; a failed slice keeps itself and what follows for the next attempt."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import orjson
import pytest

from backends.metadata.auth_entities import AUDIT_FIELDS, AuditRow
from backends.metadata.base import MetadataStore
from backends.registry import open_metadata_store
from gateway import audit
from gateway.audit import AuditHelper, AuditHelperGone, AuditLog, AuditNotStored


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return (request.getfixturevalue("pg_database") if request.param == "postgres"
            else f"sqlite:///{tmp_path}/audit.db")


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[MetadataStore]:
    s = open_metadata_store(store_uri, artifact_root="mlflow-artifacts:")
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


def _row(i: int) -> AuditRow:
    return (1_000 + i, "alice", "default", "POST /runs/log-metric", "run", f"r{i}", "ok", 200,
            "127.0.0.1")


class _Flaky:
    """Forwards append_audit to a real store, records slice sizes, and fails one call."""

    def __init__(self, inner: MetadataStore, fail_call: int | None = None) -> None:
        self.inner, self.fail_call, self.slices = inner, fail_call, []

    async def append_audit(self, rows: Sequence[AuditRow]) -> None:
        self.slices.append(len(rows))
        if len(self.slices) == self.fail_call:
            raise RuntimeError("database went away")
        await self.inner.append_audit(rows)


async def test_flush_writes_every_record_in_order_in_slices(
        store: MetadataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "_SLICE", 4)
    flaky = _Flaky(store)
    log = AuditLog(flaky)  # type: ignore[arg-type]
    for i in range(10):
        log.record(_row(i))
    await log.flush()
    assert flaky.slices == [4, 4, 2]
    stored = await store.query_audit(username="alice")
    assert [r.resource_id for r in stored] == [f"r{i}" for i in range(10)]


async def test_a_failed_slice_and_the_rest_wait_for_the_next_flush(
        store: MetadataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "_SLICE", 4)
    flaky = _Flaky(store, fail_call=2)
    log = AuditLog(flaky)  # type: ignore[arg-type]
    for i in range(10):
        log.record(_row(i))
    with pytest.raises(RuntimeError, match="went away"):
        await log.flush()
    assert [r.resource_id for r in await store.query_audit(username="alice")] == [
        f"r{i}" for i in range(4)]
    log.record(_row(10))
    await log.flush()
    stored = await store.query_audit(username="alice")
    assert [r.resource_id for r in stored] == [f"r{i}" for i in range(11)]
    assert flaky.slices == [4, 4, 4, 3]


async def test_every_field_comes_back_as_recorded(store: MetadataStore) -> None:
    """Rows reach the database as a batch (on SQLite multi-row INSERTs): integers stay
    integers, absent fields stay NULL, text comes back unchanged, in order."""
    rows: list[AuditRow] = [
        (1_764_412_345_123, "bob", "team-a", "POST /experiments/create", "experiment", "17",
         "ok", 200, "10.0.0.1"),
        (2**53 + 1, "bob", None, "login", None, None, "failed", 401, None),
        (5, 'é "quoted" },{"ts": 1 \n\\', "ü", "GET /x", "artifact", "a/b c.txt", "denied",
         None, "::1"),
        # control characters, a lone backslash, and \N and \. (NULL and end of data in
        # COPY's text format)
        (6, "tab\there", "cr\rlf\r\n", "\\N", "\\.", "\\", "", 0, "\\\\N\t\\."),
    ]
    await store.append_audit(rows)
    got = await store.query_audit(username=None)
    assert [(r.ts, r.username, r.workspace, r.action, r.resource_type, r.resource_id,
             r.outcome, r.status, r.client_address) for r in got] == rows
    assert [r.audit_id for r in got] == sorted(r.audit_id for r in got)
    assert [r.ts for r in await store.query_audit(resource_type="artifact",
                                                   resource_id="a/b c.txt")] == [5]


@pytest.mark.parametrize("level", ["INFO", "WARNING"])  # JSON lines written, or not
async def test_a_lone_surrogate_is_stored_replaced(
        store: MetadataStore, caplog: pytest.LogCaptureFixture, level: str) -> None:
    """Text that is not Unicode (a lone surrogate) can be stored neither as JSON nor in the
    database; it is replaced, so the record and those after it are not held up."""
    log = AuditLog(store)
    log.record((1, "eve\ud800", "default", "login", None, None, "failed", 401, None))
    log.record(_row(1))
    with caplog.at_level(level, logger="mlgate.audit"):
        await log.flush()
    stored = await store.query_audit()
    assert [r.username for r in stored] == ["eve\ufffd", "alice"]
    lines = "\n".join(r.getMessage() for r in caplog.records).splitlines()
    assert [orjson.loads(line)["username"] for line in lines] == (
        ["eve\ufffd", "alice"] if level == "INFO" else [])


async def test_json_lines_are_one_object_per_record() -> None:
    rows = [_row(0), (2, 'x},{"ts":3', None, "a", None, "line\nbreak", "ok", None, None)]
    lines = audit._json_lines(rows).split("\n")
    assert [orjson.loads(line) for line in lines] == [
        dict(zip(AUDIT_FIELDS, row, strict=True)) for row in rows]


def test_json_lines_from_cached_parts_match_a_fresh_encoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated and new rests, past the parts cache's size (it starts over), give the same
    lines as encoding every record on its own."""
    monkeypatch.setattr(audit, "_PARTS_MAX", 3)
    monkeypatch.setattr(audit, "_rests", {})
    rows: list[AuditRow] = [
        (1_700_000_000_000 + i, f"user{i % 4}", "team-ä" if i % 3 else None,
         "POST /runs/log-metric", "run", f'r"{i % 5}\\', "ok" if i % 2 else "denied",
         200 if i % 2 else 403, "127.0.0.1" if i % 7 else None) for i in range(40)]
    for _ in range(2):
        assert audit._json_lines(rows).split("\n") == [
            orjson.dumps(dict(zip(AUDIT_FIELDS, row, strict=True))).decode() for row in rows]
    assert 0 < len(audit._rests) <= 3


async def test_a_nul_character_does_not_hold_up_the_log(store: MetadataStore) -> None:
    """A failed login's user name is whatever the client sent, NUL included, which
    PostgreSQL's text refuses: that record is stored with U+FFFD in its place there (as is on
    SQLite), and the records after it are stored too instead of waiting behind it."""
    log = AuditLog(store)
    log.record((1, "eve\x00x", "default", "login", None, "r\x00", "failed", 401, None))
    log.record(_row(2))
    await log.flush()
    stored = await store.query_audit()
    first = (("eve\ufffdx", "r\ufffd") if "Postgres" in type(store).__name__
             else ("eve\x00x", "r\x00"))
    assert [(r.username, r.resource_id) for r in stored] == [first, ("alice", "r2")]


# -- through the writer process (gateway.audit_helper), as a gateway with auth writes ------


def _lines_for(err: str, username: str) -> list[dict[str, object]]:
    """The JSON lines of this user's records among what the processes wrote to stderr."""
    found = [orjson.loads(line) for line in err.splitlines() if line.startswith('{"ts":')]
    return [r for r in found if r["username"] == username]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_the_writer_process_writes_the_lines_and_rows(
        store: MetadataStore, store_uri: str, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Every record's JSON line and row, written by the process, which exits on close; a
    lone surrogate is replaced in both, a NUL as the store needs (see the NUL test)."""
    helper = AuditHelper(store_uri, {})
    log = AuditLog(store, helper)
    rows = [_row(i) for i in range(5)]
    rows[1] = (2, "alice", "default", "login", None, "x\ud800", "failed", 401, None)
    rows[2] = (3, "alice", "default", "login", None, "y\x00", "failed", 401, None)
    try:
        with caplog.at_level("INFO", logger="mlgate.audit"):
            for row in rows[:2]:  # two batches: a surrogate cleans its batch's NULs too
                log.record(row)
            await log.flush()
            pid = helper.pid
            assert pid is not None and pid != os.getpid()
            os.kill(pid, signal.SIGTERM)  # as to the gateway's process group: ignored
            for row in rows[2:]:
                log.record(row)
            await log.flush()
        assert helper.pid == pid and _alive(pid)
    finally:
        await log.close()
    assert not _alive(pid)
    nul = "y\ufffd" if "Postgres" in type(store).__name__ else "y\x00"
    stored = await store.query_audit()
    assert [r.resource_id for r in stored] == ["r0", "x\ufffd", nul, "r3", "r4"]
    assert [r["resource_id"] for r in _lines_for(capfd.readouterr().err, "alice")] == [
        "r0", "x\ufffd", "y\x00", "r3", "r4"]


async def test_a_stuck_or_killed_writer_process_loses_no_record(
        store: MetadataStore, store_uri: str) -> None:
    """A process that stops answering is killed after the timeout and one that died is
    replaced; its batch waits and is stored by the next one, once."""
    helper = AuditHelper(store_uri, {}, timeout=2)
    log = AuditLog(store, helper)
    try:
        log.record(_row(0))
        await log.flush()
        first = helper.pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)
        for i in (1, 2):
            log.record(_row(i))
        with pytest.raises(AuditHelperGone):
            await log.flush()
        assert not _alive(first) and helper.pid is None
        log.record(_row(3))
        await log.flush()
        second = helper.pid
        assert second is not None and second != first
        os.kill(second, signal.SIGKILL)
        log.record(_row(4))
        with contextlib.suppress(AuditHelperGone):  # unless its exit was noticed already
            await log.flush()
        await log.flush()
        assert helper.pid not in (None, first, second)
    finally:
        await log.close()
    assert [r.resource_id for r in await store.query_audit()] == [f"r{i}" for i in range(5)]


async def _rename_audit_table(store: MetadataStore, store_uri: str, old: str, new: str) -> None:
    sql = f"ALTER TABLE {old} RENAME TO {new}"
    if store_uri.startswith("postgresql"):
        conn = await asyncpg.connect(store_uri)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    else:
        with contextlib.closing(sqlite3.connect(store.audit_path)) as conn:  # type: ignore[attr-defined]
            conn.execute(sql)


async def test_a_failed_store_in_the_writer_process_keeps_the_rows_and_logs_once(
        store: MetadataStore, store_uri: str, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """The process's insert fails: the rows stay queued and are stored by a later flush;
    their JSON lines, already written, are not written again."""
    log = AuditLog(store, AuditHelper(store_uri, {}))
    try:
        with caplog.at_level("INFO", logger="mlgate.audit"):
            log.record(_row(0))
            await log.flush()
            await _rename_audit_table(store, store_uri, "audit_log", "audit_log_away")
            for i in (1, 2, 3):
                log.record(_row(i))
            with pytest.raises(AuditNotStored, match="audit_log"):
                await log.flush()
            # while those wait for the database, newer records' lines are written at once
            log.record(_row(4))
            with pytest.raises(AuditNotStored, match="audit_log"):
                await log.flush()
            assert [r["resource_id"] for r in _lines_for(capfd.readouterr().err, "alice")] == [
                f"r{i}" for i in range(5)]
            await _rename_audit_table(store, store_uri, "audit_log_away", "audit_log")
            log.record(_row(5))
            await log.flush()
    finally:
        await log.close()
    assert [r.resource_id for r in await store.query_audit()] == [f"r{i}" for i in range(6)]
    assert [r["resource_id"] for r in _lines_for(capfd.readouterr().err, "alice")] == ["r5"]


async def test_records_the_writer_process_never_got_are_logged_at_shutdown(
        store: MetadataStore, store_uri: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No writer process at shutdown (it cannot be started): the queued records' JSON lines
    are written by the gateway itself, with an error, so the log still has them."""
    helper = AuditHelper(store_uri, {})

    async def cannot_start() -> None:
        raise OSError("no such program")

    monkeypatch.setattr(helper, "_start", cannot_start)
    log = AuditLog(store, helper)
    log.record(_row(0))
    log.record(_row(1))
    with caplog.at_level("INFO", logger="mlgate.audit"):
        await log.close()
    messages = [r.getMessage() for r in caplog.records]
    assert [orjson.loads(line)["resource_id"] for m in messages for line in m.splitlines()
            if line.startswith('{"ts":')] == ["r0", "r1"]
    assert any("2 audit records not stored at shutdown" in m for m in messages)


async def test_the_writer_process_opens_the_store_again_after_it_failed(
        tmp_path: Path, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A store the writer process cannot open (its database is not there yet) is tried again
    with the next batch; the records wait meanwhile and their lines are written once."""
    folder = tmp_path / "later"
    uri = f"sqlite:///{folder}/m.db"
    log = AuditLog(None, AuditHelper(uri, {}))  # type: ignore[arg-type]
    try:
        with caplog.at_level("INFO", logger="mlgate.audit"):
            log.record(_row(0))
            with pytest.raises(AuditNotStored, match="open"):
                await log.flush()
            folder.mkdir()
            log.record(_row(1))
            await log.flush()
    finally:
        await log.close()
    store = open_metadata_store(uri, artifact_root="mlflow-artifacts:")
    await store.open()
    try:
        assert [r.resource_id for r in await store.query_audit()] == ["r0", "r1"]
    finally:
        await store.aclose()
    assert [r["resource_id"] for r in _lines_for(capfd.readouterr().err, "alice")] == [
        "r0", "r1"]
