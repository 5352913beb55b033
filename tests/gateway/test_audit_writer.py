"""The audit writer over a real metadata store: every queued record stored once, in order,
in slices; a failed slice keeps itself and what follows for the next attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
import pytest
from conftest import database_uri

from backends.metadata.interface.auth_entities import AUDIT_FIELDS, AuditRow
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_metadata_store
from gateway import audit
from gateway.audit import AuditLog


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_uri(request, tmp_path, "audit")


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
            "127.0.0.1", f"req-{i}")


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
         "ok", 200, "10.0.0.1", "8c1f0e9d2b3a4c5d6e7f8091a2b3c4d5"),
        (2**53 + 1, "bob", None, "login", None, None, "failed", 401, None, None),
        (5, 'é "quoted" },{"ts": 1 \n\\', "ü", "GET /x", "artifact", "a/b c.txt", "denied",
         None, "::1", "client-id:42/x=+@"),
        # control characters, a lone backslash, and \N and \. (NULL and end of data in
        # COPY's text format)
        (6, "tab\there", "cr\rlf\r\n", "\\N", "\\.", "\\", "", 0, "\\\\N\t\\.", "\\N"),
    ]
    await store.append_audit(rows)
    got = await store.query_audit(username=None)
    assert [(r.ts, r.username, r.workspace, r.action, r.resource_type, r.resource_id,
             r.outcome, r.status, r.client_address, r.request_id) for r in got] == rows
    assert [r.audit_id for r in got] == sorted(r.audit_id for r in got)
    assert [r.ts for r in await store.query_audit(resource_type="artifact",
                                                   resource_id="a/b c.txt")] == [5]


@pytest.mark.parametrize("level", ["INFO", "WARNING"])  # JSON lines written, or not
async def test_a_lone_surrogate_is_stored_replaced(
        store: MetadataStore, caplog: pytest.LogCaptureFixture, level: str) -> None:
    """Text that is not Unicode (a lone surrogate) can be stored neither as JSON nor in the
    database; it is replaced, so the record and those after it are not held up."""
    log = AuditLog(store)
    log.record((1, "eve\ud800", "default", "login", None, None, "failed", 401, None, "r1"))
    log.record(_row(1))
    with caplog.at_level(level, logger="mlgate.audit"):
        await log.flush()
    stored = await store.query_audit()
    assert [r.username for r in stored] == ["eve\ufffd", "alice"]
    lines = "\n".join(r.getMessage() for r in caplog.records).splitlines()
    assert [orjson.loads(line)["username"] for line in lines] == (
        ["eve\ufffd", "alice"] if level == "INFO" else [])


async def test_json_lines_are_one_object_per_record() -> None:
    rows = [_row(0), (2, 'x},{"ts":3', None, "a", None, "line\nbreak", "ok", None, None, None)]
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
         200 if i % 2 else 403, "127.0.0.1" if i % 7 else None,
         f"id-{i}" if i % 5 else None) for i in range(40)]
    for _ in range(2):
        assert audit._json_lines(rows).split("\n") == [
            orjson.dumps(dict(zip(AUDIT_FIELDS, row, strict=True))).decode() for row in rows]
    assert 0 < len(audit._rests) <= 3


async def test_a_nul_character_does_not_hold_up_the_log(store: MetadataStore) -> None:
    """A failed login's user name is whatever the client sent, NUL included, which
    PostgreSQL's text refuses: that record is stored with U+FFFD in its place there (as is on
    SQLite), and the records after it are stored too instead of waiting behind it."""
    log = AuditLog(store)
    log.record((1, "eve\x00x", "default", "login", None, "r\x00", "failed", 401, None, None))
    log.record(_row(2))
    await log.flush()
    stored = await store.query_audit()
    first = (("eve\ufffdx", "r\ufffd") if "Postgres" in type(store).__name__
             else ("eve\x00x", "r\x00"))
    assert [(r.username, r.resource_id) for r in stored] == [first, ("alice", "r2")]
