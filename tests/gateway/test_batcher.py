"""The metric batcher over a real metadata store: group commit, isolation of failures,
backpressure, draining on close, read-your-writes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from conftest import database_uri

from backends import errors
from backends.metadata.interface.entities import Metric, Param, RunWrite, Tag
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_metadata_store
from gateway.batcher import Batcher, QueueFull

ROOT = "mlflow-artifacts:"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    uri = database_uri(request, tmp_path, "batcher")
    s = open_metadata_store(uri, artifact_root=ROOT)
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


async def _runs(store: MetadataStore, n: int) -> list[str]:
    exp = await store.create_experiment("batcher", artifact_root=ROOT)
    return [(await store.create_run(exp, user_id="u", run_name=f"r{i}", start_time=1,
                                    tags=[])).info.run_id for i in range(n)]


async def _history(store: MetadataStore, run_id: str, key: str) -> list[Metric]:
    return list((await store.get_metric_history(run_id, key)).items)


class _Counting:
    """Forwards log_batches to a real store; counts transactions and can break or block
    them."""

    def __init__(self, inner: MetadataStore) -> None:
        self._inner = inner
        self.calls: list[int] = []
        self.poison: str | None = None  # a metric key whose presence breaks the transaction
        self.gate: asyncio.Event | None = None

    async def log_batches(self, writes: Sequence[RunWrite]) -> list[errors.BackendError | None]:
        self.calls.append(len(writes))
        if self.gate is not None:
            await self.gate.wait()
        if self.poison and any(m.key == self.poison for w in writes for m in w.metrics):
            raise RuntimeError("poisoned transaction")
        return await self._inner.log_batches(writes)


async def test_concurrent_writes_share_transactions(store: MetadataStore) -> None:
    runs = await _runs(store, 8)
    counting = _Counting(store)
    batcher = Batcher(counting)
    batcher.start()
    try:
        await asyncio.gather(*(
            batcher.submit(RunWrite(runs[i % 8], metrics=[Metric("loss", float(i), 1000 + i, i)]))
            for i in range(400)
        ))
    finally:
        await batcher.close()
    assert sum(counting.calls) == 400
    assert len(counting.calls) < 400 / 4, counting.calls  # group commit happened
    for r, run_id in enumerate(runs):
        points = await _history(store, run_id, "loss")
        assert sorted(p.step for p in points) == list(range(r, 400, 8))
    stats = batcher.stats()
    assert stats["requests"] == 400 and stats["rows"] == 400
    assert stats["batches"] == len(counting.calls)


async def test_refused_write_fails_alone(store: MetadataStore) -> None:
    runs = await _runs(store, 3)
    await store.log_batch(runs[0], params=[Param("lr", "0.1")])
    await store.delete_run(runs[2])
    batcher = Batcher(store)
    batcher.start()
    good = [RunWrite(runs[i % 2], metrics=[Metric("m", 1.0, i, i)]) for i in range(100)]
    bad = [
        RunWrite(runs[0], params=[Param("lr", "0.2")]),  # changes a logged param
        RunWrite(runs[2], metrics=[Metric("m", 1.0, 1, 1)]),  # deleted run
        RunWrite("f" * 32, tags=[Tag("t", "v")]),  # unknown run
        RunWrite(runs[1], metrics=[Metric("m", 1.0, 5, 5, model_id="m-nope")]),  # unknown model
    ]
    writes = good[:50] + bad + good[50:]
    try:
        results = await asyncio.gather(*(batcher.submit(w) for w in writes),
                                       return_exceptions=True)
    finally:
        await batcher.close()
    verdicts = results[50:54]
    assert isinstance(verdicts[0], errors.Conflict)
    assert isinstance(verdicts[1], errors.InvalidArgument)
    assert isinstance(verdicts[2], errors.NotFound)
    assert isinstance(verdicts[3], errors.NotFound)
    assert all(r is None for r in results[:50] + results[54:])
    assert len(await _history(store, runs[0], "m")) == 50
    assert len(await _history(store, runs[1], "m")) == 50
    assert (await store.get_run(runs[0])).params == (Param("lr", "0.1"),)


async def test_params_within_one_group_commit_behave_as_in_sequence(
    store: MetadataStore,
) -> None:
    [run] = await _runs(store, 1)
    counting = _Counting(store)
    counting.gate = asyncio.Event()
    batcher = Batcher(counting)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(RunWrite(run, tags=[Tag("warm", "up")])))
        await asyncio.sleep(0.01)  # the writer holds this one; the next three queue together
        same = [
            asyncio.create_task(batcher.submit(RunWrite(run, params=[Param("p", "1")]))),
            asyncio.create_task(batcher.submit(RunWrite(run, params=[Param("p", "1")]))),
            asyncio.create_task(batcher.submit(RunWrite(run, params=[Param("p", "2")]))),
            asyncio.create_task(batcher.submit(RunWrite(run, tags=[Tag("t", "a")]))),
            asyncio.create_task(batcher.submit(RunWrite(run, tags=[Tag("t", "b")]))),
        ]
        await asyncio.sleep(0.01)
        counting.gate.set()
        await first
        results = await asyncio.gather(*same, return_exceptions=True)
    finally:
        await batcher.close()
    assert counting.calls == [1, 5]
    assert results[:2] == [None, None]
    assert isinstance(results[2], errors.Conflict)
    run_data = await store.get_run(run)
    assert run_data.params == (Param("p", "1"),)
    assert {t.key: t.value for t in run_data.tags}["t"] == "b"  # later writes win


async def test_broken_transaction_is_bisected_to_the_culprit(store: MetadataStore) -> None:
    runs = await _runs(store, 4)
    counting = _Counting(store)
    counting.poison = "poison"
    counting.gate = asyncio.Event()
    batcher = Batcher(counting)
    batcher.start()
    try:
        tasks = [asyncio.create_task(batcher.submit(
            RunWrite(runs[i % 4], metrics=[Metric("poison" if i == 37 else "ok", 1.0, i, i)])))
            for i in range(64)]
        await asyncio.sleep(0.05)
        counting.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await batcher.close()
    assert isinstance(results[37], RuntimeError)
    assert all(r is None for i, r in enumerate(results) if i != 37)
    assert sum([len(await _history(store, r, "ok")) for r in runs]) == 63
    assert await _history(store, runs[1], "poison") == []
    assert batcher.stats()["bisections"] >= 1


async def test_outage_fails_the_whole_batch_without_bisecting(store: MetadataStore) -> None:
    [run] = await _runs(store, 1)

    class Down(_Counting):
        async def log_batches(self, writes: Sequence[RunWrite]) -> list[errors.BackendError | None]:
            self.calls.append(len(writes))
            raise errors.Unavailable("database down")

    down = Down(store)
    down.gate = asyncio.Event()
    batcher = Batcher(down)
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.submit(RunWrite(run, metrics=[Metric("m", 1.0, i, i)])) for i in range(20)),
            return_exceptions=True)
    finally:
        await batcher.close()
    assert all(isinstance(r, errors.Unavailable) for r in results)
    assert sum(down.calls) == 20 and len(down.calls) <= 2  # no retry by halves


async def test_full_queue_waits_then_refuses(store: MetadataStore) -> None:
    [run] = await _runs(store, 1)
    counting = _Counting(store)
    counting.gate = asyncio.Event()
    batcher = Batcher(counting, max_rows=10, max_queue_rows=20, queue_timeout=0.2)
    batcher.start()
    try:
        held = asyncio.create_task(batcher.submit(
            RunWrite(run, metrics=[Metric("m", 1.0, i, i) for i in range(10)])))
        await asyncio.sleep(0.02)  # taken by the writer, which is now blocked
        queued = [asyncio.create_task(batcher.submit(
            RunWrite(run, metrics=[Metric("m", 2.0, 100 + i, i)]))) for i in range(20)]
        await asyncio.sleep(0.02)
        assert batcher.stats()["queued_rows"] == 20
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(QueueFull):
            await batcher.submit(RunWrite(run, metrics=[Metric("m", 3.0, 999, 0)]))
        assert 0.15 < loop.time() - started < 2.0
        # Room frees up once the writer moves on; a waiting request then gets in.
        late = asyncio.create_task(batcher.submit(RunWrite(run, metrics=[Metric("m", 4.0, 7, 7)])))
        await asyncio.sleep(0.02)
        counting.gate.set()
        await asyncio.gather(held, *queued, late)
    finally:
        await batcher.close()
    assert len(await _history(store, run, "m")) == 10 + 20 + 1
    assert batcher.stats()["queue_full_rejections"] == 1


async def test_a_flooding_share_leaves_room_and_turns_to_the_others(
        store: MetadataStore) -> None:
    """One workspace fills the queue: another's request still gets in (its fair part of
    the queue) and rides the very next batch instead of waiting behind the flood."""
    run_a, run_b = await _runs(store, 2)
    counting = _Counting(store)
    counting.gate = asyncio.Event()
    batcher = Batcher(counting, max_rows=10, max_queue_rows=40, queue_timeout=0.1)
    batcher.start()
    try:
        held = asyncio.create_task(batcher.submit(RunWrite(run_a, metrics=[
            Metric("a", 0.0, 0, i) for i in range(10)]), "team-a"))
        await asyncio.sleep(0.02)  # taken by the writer, which is now blocked
        flood = [asyncio.create_task(batcher.submit(RunWrite(run_a, metrics=[
            Metric("a", 1.0, 0, 100 + i) for i in range(2)]), "team-a")) for i in range(20)]
        await asyncio.sleep(0.02)
        assert batcher.stats()["queued_rows"] == 40  # full
        with pytest.raises(QueueFull):  # team-a is over its part of a full queue
            await batcher.submit(RunWrite(run_a, metrics=[Metric("a", 2.0, 0, 999)]), "team-a")
        other = asyncio.create_task(batcher.submit(
            RunWrite(run_b, metrics=[Metric("b", 1.0, 0, 0)]), "team-b"))
        await asyncio.sleep(0.02)
        assert batcher.stats()["queued_rows"] == 41 and not other.done()
        counting.gate.set()
        await other
        # Committed in the first batch after the blocked one, with 9 rows of the flood.
        assert counting.calls[:2] == [1, 5], counting.calls
        await asyncio.gather(held, *flood)
    finally:
        await batcher.close()
    assert len(await _history(store, run_b, "b")) == 1


async def test_close_drains_and_then_refuses(store: MetadataStore) -> None:
    [run] = await _runs(store, 1)
    counting = _Counting(store)
    counting.gate = asyncio.Event()
    batcher = Batcher(counting, max_rows=7)
    batcher.start()
    tasks = [asyncio.create_task(batcher.submit(RunWrite(run, metrics=[Metric("m", 1.0, i, i)])))
             for i in range(100)]
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0.01)
    with pytest.raises(errors.Unavailable):
        await batcher.submit(RunWrite(run, metrics=[Metric("m", 1.0, 1000, 0)]))
    counting.gate.set()
    await closing
    assert all(t.done() and t.exception() is None for t in tasks)
    assert len(await _history(store, run, "m")) == 100
    assert max(counting.calls) <= 7


async def test_linger_gathers_spaced_writes(store: MetadataStore) -> None:
    [run] = await _runs(store, 1)
    counting = _Counting(store)
    batcher = Batcher(counting, max_delay=0.3, max_rows=5)
    batcher.start()
    try:
        async def spaced(i: int) -> None:
            await asyncio.sleep(0.02 * i)
            await batcher.submit(RunWrite(run, metrics=[Metric("m", 1.0, i, i)]))

        await asyncio.gather(*(spaced(i) for i in range(3)))  # within the linger, no max_rows
        await asyncio.gather(*(spaced(i) for i in range(10, 15)))  # max_rows cuts it short
    finally:
        await batcher.close()
    assert counting.calls[0] == 3
    assert counting.calls[1:] == [5]


@pytest.mark.parametrize("writers", [1, 2])
async def test_writers_have_that_many_transactions_in_flight(
    store: MetadataStore, writers: int
) -> None:
    [run] = await _runs(store, 1)
    counting = _Counting(store)
    counting.gate = asyncio.Event()
    batcher = Batcher(counting, max_rows=10, writers=writers)
    batcher.start()
    try:
        tasks = [asyncio.create_task(batcher.submit(
            RunWrite(run, metrics=[Metric("m", 1.0, i, i)]))) for i in range(50)]
        await asyncio.sleep(0.05)
        assert counting.calls == [10] * writers  # each writer took a batch; all blocked
        counting.gate.set()
        await asyncio.gather(*tasks)
    finally:
        await batcher.close()
    assert sum(counting.calls) == 50
    assert sorted(p.step for p in await _history(store, run, "m")) == list(range(50))
    assert batcher.stats()["writers"] == writers


async def _beside_a_blocked_commit(store: MetadataStore, spare_after: float,
                                   phases: list[tuple[range, float]]) -> list[list[int]]:
    """Two writers, max_rows 50; step 0 is written first and its commit blocks. Each phase
    then submits writes of its steps and waits its seconds. Returns the sizes of the
    transactions started, as seen after each phase; checks every write was stored."""
    [run] = await _runs(store, 1)
    counting = _Counting(store)
    counting.gate = asyncio.Event()
    batcher = Batcher(counting, max_rows=50, writers=2, spare_after=spare_after)
    batcher.start()
    tasks: list[asyncio.Task[None]] = []
    seen = []
    try:
        for steps, wait in [(range(1), 0.02), *phases]:
            tasks += [asyncio.create_task(batcher.submit(
                RunWrite(run, metrics=[Metric("m", 1.0, i, i)]))) for i in steps]
            await asyncio.sleep(wait)
            seen.append(list(counting.calls))
    finally:
        counting.gate.set()
        await batcher.close()
    await asyncio.gather(*tasks)
    written = max(steps.stop for steps, _ in phases)
    assert sorted(p.step for p in await _history(store, run, "m")) == list(range(written))
    return seen[1:]


async def test_a_second_transaction_waits_for_a_fifth_of_a_batch(store: MetadataStore) -> None:
    """Beside a busy writer, a few queued rows wait for the next batch rather than pay for
    a transaction of their own; a fifth of ``max_rows`` starts one."""
    # 9 rows queued behind the busy writer: fewer than 10; then the tenth.
    seen = await _beside_a_blocked_commit(store, 60, [(range(1, 10), 0.05), (range(10, 11), 0.05)])
    assert seen == [[1], [1, 10]]


async def test_a_long_commit_holds_others_writes_only_briefly(store: MetadataStore) -> None:
    """A commit that takes long (a large log-batch, a lock wait) leaves the next writer to
    take a single queued write once it has waited ``spare_after``."""
    seen = await _beside_a_blocked_commit(store, 0.01, [(range(1, 2), 0.2)])
    assert seen == [[1, 1]]


async def test_lingering_writers_leave_each_other_nothing_to_take(
    store: MetadataStore,
) -> None:
    """Two writers linger for the same oldest write; the one that takes it leaves the
    other an empty queue, which it must simply wait on again."""
    [run] = await _runs(store, 1)
    batcher = Batcher(store, max_delay=0.02, writers=2)
    batcher.start()
    try:
        for i in range(5):
            await batcher.submit(RunWrite(run, metrics=[Metric("m", 1.0, i, i)]))
    finally:
        await batcher.close()
    assert len(await _history(store, run, "m")) == 5


async def test_a_200_means_readable(store: MetadataStore) -> None:
    [run] = await _runs(store, 1)
    batcher = Batcher(store)
    batcher.start()
    try:
        for i in range(20):
            await batcher.submit(RunWrite(run, metrics=[Metric("acc", i / 10, 10 + i, i)]))
            history = await _history(store, run, "acc")
            assert [p.step for p in history] == list(range(i + 1))
            latest = {m.key: m for m in (await store.get_run(run)).metrics}
            assert latest["acc"].step == i
    finally:
        await batcher.close()


async def test_identical_rows_are_stored_once(store: MetadataStore) -> None:
    [run] = await _runs(store, 1)
    batcher = Batcher(store)
    batcher.start()
    same = RunWrite(run, metrics=[Metric("m", 0.5, 1, 1), Metric("nan", math.nan, 1, 1)])
    try:
        await asyncio.gather(*(batcher.submit(same) for _ in range(10)))
        await batcher.submit(same)
    finally:
        await batcher.close()
    assert len(await _history(store, run, "m")) == 1
    assert len(await _history(store, run, "nan")) == 1


def test_limits_are_checked() -> None:
    for kwargs in ({"max_rows": 0}, {"max_rows": 10, "max_queue_rows": 5},
                   {"max_delay": -1.0}, {"queue_timeout": -1.0}, {"writers": 0},
                   {"spare_after": -1.0}):
        with pytest.raises(ValueError):
            Batcher(None, **kwargs)  # type: ignore[arg-type]


async def test_a_cancelled_request_is_still_committed(store: MetadataStore) -> None:
    [run] = await _runs(store, 1)
    counting = _Counting(store)
    counting.gate = asyncio.Event()
    batcher = Batcher(counting)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(RunWrite(run, metrics=[Metric("m", 1.0, 1, 1)])))
        gone = asyncio.create_task(batcher.submit(RunWrite(run, metrics=[Metric("m", 2.0, 2, 2)])))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client went away while its write was queued
        counting.gate.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await gone
        await batcher.submit(RunWrite(run, metrics=[Metric("m", 3.0, 3, 3)]))
    finally:
        await batcher.close()
    assert [p.step for p in await _history(store, run, "m")] == [1, 2, 3]
