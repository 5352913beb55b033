"""The audit writer over a real metadata store: every queued record stored once, in order,
in slices; a failed slice keeps itself and what follows for the next attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from backends.metadata.auth_entities import AuditRow
from backends.metadata.base import MetadataStore
from backends.registry import open_metadata_store
from gateway import audit
from gateway.audit import AuditLog


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    uri = (request.getfixturevalue("pg_database") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/audit.db")
    s = open_metadata_store(uri, artifact_root="mlflow-artifacts:")
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
