"""SQLite's reads run on the event loop, not on the readers' threads (a trip per statement
there waits for the GIL behind the busy loop), and a long one gives the loop turns."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.metadata.dialects.sqlite import SqliteMetadataStore
from backends.metadata.interface.entities import Metric, RunWrite

POINTS = 60_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[SqliteMetadataStore, str]]:
    # One reader: every read below takes the same connection, so one left in a
    # transaction would fail the next.
    store = SqliteMetadataStore.from_uri(f"sqlite:///{tmp_path / 'r.db'}", readers=1)
    await store.open()
    exp = await store.create_experiment("e", artifact_root="mlflow-artifacts:")
    run_id = (await store.create_run(exp, user_id="u", run_name="r", start_time=1)).info.run_id
    yield store, run_id
    await store.aclose()


async def _log_points(store: SqliteMetadataStore, run_id: str, n: int) -> None:
    for start in range(0, n, 5000):
        writes = [RunWrite(run_id, tuple(Metric("m", float(i), i, i)
                                         for i in range(start, min(n, start + 5000))))]
        assert await store.log_batches(writes) == [None]


async def test_reads_run_on_the_event_loop(store: tuple[SqliteMetadataStore, str]) -> None:
    s, run_id = store
    await s.log_batches([RunWrite(run_id, (Metric("m", 1.0, 1, 1),))])
    loop_thread = threading.get_ident()
    seen: list[bool] = []
    for reader in s._all_readers:
        reader._conn.set_trace_callback(
            lambda sql: seen.append(threading.get_ident() == loop_thread)
            if sql.startswith("SELECT") else None)
    run = await s.get_run(run_id)
    page = await s.search_runs([run.info.experiment_id], filter_string="metrics.m > 0")
    assert [r.info.run_id for r in page.items] == [run_id]
    assert seen and all(seen)


async def test_a_long_read_gives_the_loop_turns(store: tuple[SqliteMetadataStore, str]) -> None:
    s, run_id = store
    await _log_points(s, run_id, POINTS)
    ticks = 0
    reading = True

    async def tick() -> None:
        nonlocal ticks
        while reading:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    ticks = 0
    history = await s.get_metric_history_points(run_id, "m")
    reading = False
    await ticker
    assert [p[1] for p in history.items] == list(range(POINTS))
    assert ticks >= 2, "the whole history was read in one turn of the event loop"


async def test_a_read_cancelled_between_slices_leaves_its_reader_usable(
    store: tuple[SqliteMetadataStore, str],
) -> None:
    s, run_id = store
    await _log_points(s, run_id, POINTS)
    reading = asyncio.create_task(s.get_metric_history_points(run_id, "m"))
    for _ in range(3):  # into the read, past its first slice
        await asyncio.sleep(0)
    assert not reading.done()
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert not s._all_readers[0]._conn.in_transaction
    await s.log_batches([RunWrite(run_id, (Metric("m", -1.0, POINTS, POINTS),))])
    history = await s.get_metric_history_points(run_id, "m")  # sees the new point
    assert len(history.items) == POINTS + 1
