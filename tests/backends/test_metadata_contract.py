"""The MetadataStore contract, run over every implementation.

A new backend joins by adding a branch to the ``metadata_store`` fixture.
"""

from __future__ import annotations

import asyncio
import math
import random
import string
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import database_uri
from pgtools import run_sync

from backends import errors
from backends.metadata.interface.entities import (
    Dataset,
    DatasetInput,
    DatasetSummary,
    Metric,
    ModelInput,
    ModelOutput,
    Param,
    RunWrite,
    Tag,
    UploadInFlight,
    ViewType,
)
from backends.metadata.interface.store import MetadataStore
from backends.metadata.sql.tracking import SqlMetadataStore
from backends.registry import open_metadata_store

ROOT = "mlflow-artifacts:"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
async def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = open_metadata_store(database_uri(request, tmp_path, "contract"),
                                artifact_root=ROOT)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def _run(store: MetadataStore, name: str = "exp", **kw: object) -> str:
    try:
        exp_id = await store.create_experiment(name, artifact_root=ROOT)
    except errors.AlreadyExists:
        exp_id = (await store.get_experiment_by_name(name)).experiment_id
    run = await store.create_run(exp_id, user_id="u", run_name="r", start_time=1, **kw)  # type: ignore[arg-type]
    return run.info.run_id


# -- experiments -------------------------------------------------------------------------


async def test_default_experiment_exists(metadata_store: MetadataStore) -> None:
    exp = await metadata_store.get_experiment("0")
    assert exp.name == "Default"
    assert exp.artifact_location == "mlflow-artifacts:/0"
    assert exp.lifecycle_stage == "active"
    assert exp.workspace == "default"


async def test_create_and_get_experiment(metadata_store: MetadataStore) -> None:
    exp_id = await metadata_store.create_experiment(
        "first", artifact_root=ROOT, tags=[Tag("a", "1")]
    )
    exp = await metadata_store.get_experiment(exp_id)
    assert exp.name == "first"
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert exp.tags == (Tag("a", "1"),)
    assert exp.creation_time and exp.last_update_time
    assert (await metadata_store.get_experiment_by_name("first")).experiment_id == exp_id


async def test_explicit_artifact_location(metadata_store: MetadataStore) -> None:
    exp_id = await metadata_store.create_experiment(
        "loc", artifact_root=ROOT, artifact_location="s3://bucket/x"
    )
    assert (await metadata_store.get_experiment(exp_id)).artifact_location == "s3://bucket/x"


async def test_experiment_names_unique_per_workspace(metadata_store: MetadataStore) -> None:
    await metadata_store.create_experiment("dup", artifact_root=ROOT)
    with pytest.raises(errors.AlreadyExists):
        await metadata_store.create_experiment("dup", artifact_root=ROOT)
    other = await metadata_store.create_experiment("dup", artifact_root=ROOT, workspace="team-a")
    assert (await metadata_store.get_experiment_by_name("dup", "team-a")).experiment_id == other


async def test_missing_and_malformed_experiment(metadata_store: MetadataStore) -> None:
    with pytest.raises(errors.NotFound):
        await metadata_store.get_experiment("12345")
    with pytest.raises(errors.InvalidArgument, match="must be a valid integer"):
        await metadata_store.get_experiment("abc")
    with pytest.raises(errors.NotFound):
        await metadata_store.get_experiment_by_name("nope")


async def test_rename_experiment(metadata_store: MetadataStore) -> None:
    a = await metadata_store.create_experiment("a", artifact_root=ROOT)
    await metadata_store.create_experiment("b", artifact_root=ROOT)
    await metadata_store.rename_experiment(a, "c")
    assert (await metadata_store.get_experiment(a)).name == "c"
    with pytest.raises(errors.AlreadyExists):
        await metadata_store.rename_experiment(a, "b")


async def test_delete_and_restore_experiment_cascades_to_runs(
    metadata_store: MetadataStore,
) -> None:
    run_id = await _run(metadata_store, "gone")
    exp_id = (await metadata_store.get_run(run_id)).info.experiment_id
    await metadata_store.delete_experiment(exp_id)
    assert (await metadata_store.get_experiment(exp_id)).lifecycle_stage == "deleted"
    assert (await metadata_store.get_run(run_id)).info.lifecycle_stage == "deleted"
    with pytest.raises(errors.InvalidArgument, match="active"):
        await metadata_store.create_run(exp_id, user_id="u", run_name="x", start_time=1)
    await metadata_store.restore_experiment(exp_id)
    assert (await metadata_store.get_run(run_id)).info.lifecycle_stage == "active"


async def test_experiment_tags(metadata_store: MetadataStore) -> None:
    exp_id = await metadata_store.create_experiment("tags", artifact_root=ROOT)
    await metadata_store.set_experiment_tag(exp_id, Tag("k", "v1"))
    await metadata_store.set_experiment_tag(exp_id, Tag("k", "v2"))
    assert (await metadata_store.get_experiment(exp_id)).tags == (Tag("k", "v2"),)
    await metadata_store.delete_experiment_tag(exp_id, "k")
    assert (await metadata_store.get_experiment(exp_id)).tags == ()
    with pytest.raises(errors.NotFound):
        await metadata_store.delete_experiment_tag(exp_id, "k")


async def test_search_experiments_pages(metadata_store: MetadataStore) -> None:
    for i in range(5):
        await metadata_store.create_experiment(f"s{i}", artifact_root=ROOT)
    seen: list[str] = []
    token = None
    while True:
        page = await metadata_store.search_experiments(max_results=2, page_token=token)
        seen += [e.name for e in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(["Default"] + [f"s{i}" for i in range(5)])
    assert len(seen) == len(set(seen))
    page = await metadata_store.search_experiments(filter_string="name LIKE 's%'",
                                                   order_by=["name DESC"])
    assert [e.name for e in page.items] == ["s4", "s3", "s2", "s1", "s0"]


async def test_search_experiments_view_type(metadata_store: MetadataStore) -> None:
    keep = await metadata_store.create_experiment("keep", artifact_root=ROOT)
    drop = await metadata_store.create_experiment("drop", artifact_root=ROOT)
    await metadata_store.delete_experiment(drop)
    active = {e.experiment_id for e in (await metadata_store.search_experiments()).items}
    deleted = {e.experiment_id for e in
               (await metadata_store.search_experiments(view_type=ViewType.DELETED_ONLY)).items}
    assert keep in active and drop not in active
    assert deleted == {drop}


# -- runs ----------------------------------------------------------------------------------


async def test_create_and_get_run(metadata_store: MetadataStore) -> None:
    exp_id = await metadata_store.create_experiment("runs", artifact_root=ROOT)
    run = await metadata_store.create_run(
        exp_id, user_id="alice", run_name="nice", start_time=123,
        tags=[Tag("mlflow.user", "alice")],
    )
    info = run.info
    assert len(info.run_id) == 32
    assert info.experiment_id == exp_id
    assert info.status == "RUNNING"
    assert info.start_time == 123 and info.end_time is None
    assert info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{info.run_id}/artifacts"
    assert set(run.tags) == {Tag("mlflow.user", "alice"), Tag("mlflow.runName", "nice")}
    fetched = await metadata_store.get_run(info.run_id)
    assert fetched == run
    with pytest.raises(errors.NotFound):
        await metadata_store.get_run("f" * 32)


async def test_update_run(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    info = await metadata_store.update_run(run_id, status="FINISHED", end_time=99)
    assert (info.status, info.end_time) == ("FINISHED", 99)
    info = await metadata_store.update_run(run_id, run_name="renamed")
    assert info.run_name == "renamed"
    assert Tag("mlflow.runName", "renamed") in (await metadata_store.get_run(run_id)).tags


async def test_params_and_tags_come_back_in_logged_order(
    metadata_store: MetadataStore,
) -> None:
    """As stock: the order of one batch, not the keys' order, whatever the store does to
    keep concurrent batches from deadlocking."""
    run_id = await _run(metadata_store)
    await metadata_store.log_batch(run_id, params=[Param("zeta", "1"), Param("alpha", "2")],
                                   tags=[Tag("zz", "1"), Tag("aa", "2")])
    run = await metadata_store.get_run(run_id)
    assert [p.key for p in run.params] == ["zeta", "alpha"]
    assert [t.key for t in run.tags if not t.key.startswith("mlflow.")] == ["zz", "aa"]


async def test_log_batch_and_latest_metrics(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.log_batch(
        run_id,
        metrics=[Metric("m", 1.0, 10, 0), Metric("m", 3.0, 5, 2), Metric("m", 2.0, 20, 1)],
        params=[Param("p", "1")],
        tags=[Tag("t", "x")],
    )
    run = await metadata_store.get_run(run_id)
    assert run.metrics == (Metric("m", 3.0, 5, 2),)  # latest = max (step, timestamp, value)
    assert run.params == (Param("p", "1"),)
    assert Tag("t", "x") in run.tags


# Metric-only batches of a few rows and of many take different paths on MariaDB.
_BATCH_SIZES = pytest.mark.parametrize("padding", [0, 300], ids=["small", "large"])


@_BATCH_SIZES
async def test_metric_batch_keeps_values_and_keys_exactly(
    metadata_store: MetadataStore, padding: int
) -> None:
    # Awkward keys and doubles at the edges of their range come back as logged, through
    # a metric-only batch (the path the batcher takes for log-metric).
    keys = ["it's", 'q"uote', "back\\slash", "per%cent", "%s", "é ﬀ 😀", "semi;colon",
            "Twin", "twin", "twin "]  # keys differ by case and trailing space
    values = [5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308,
              0.30000000000000004, 1 / 3, -2.5, 1e-300, 123456789.123456789]
    run_id = await _run(metadata_store)
    other = await _run(metadata_store, "other")
    pad = [Metric("pad", float(i), i, i) for i in range(padding)]
    # A batch per key (a few rows, or many with the padding); each key's own timestamps,
    # so that a point stored under another key's series would show.
    for j, k in enumerate(keys):
        verdicts = await metadata_store.log_batches(
            [RunWrite(run_id, [Metric(k, v, 2**62 + 16 * j + i, -(2**62) + i)
                               for i, v in enumerate(values)]),
             RunWrite("0" * 32, [Metric("m", 1.0, 1, 1)]),
             RunWrite(other, [Metric("m", 1.0, 1, 1), *pad])])
        assert verdicts[0] is None and verdicts[2] is None
        assert isinstance(verdicts[1], errors.NotFound)
    for j, k in enumerate(keys):
        history = (await metadata_store.get_metric_history(run_id, k)).items
        assert [(m.value, m.timestamp, m.step) for m in history] == [
            (v, 2**62 + 16 * j + i, -(2**62) + i) for i, v in enumerate(values)]
    latest = {m.key: m for m in (await metadata_store.get_run(run_id)).metrics}
    assert set(latest) == set(keys)
    assert {m.value for m in latest.values()} == {values[-1]}


async def test_one_batch_keeps_latest_as_points_one_by_one(
    metadata_store: MetadataStore,
) -> None:
    points = [
        Metric("a", 1.0, 10, 0), Metric("a", 3.0, 5, 2), Metric("a", 2.0, 20, 1),
        Metric("b", math.nan, 7, 4), Metric("b", 0.0, 7, 4),  # a tie: the first one wins
        Metric("c", 5.0, 1, 1), Metric("c", 5.0, 1, 1), Metric("c", -1.0, 9, 1),
        Metric("d", 0.0, 3, 3), Metric("d", math.nan, 3, 3),
    ]
    one_by_one = await _run(metadata_store, "seq")
    await metadata_store.log_batch(one_by_one, metrics=[Metric("c", 9.0, 0, 0)])
    for m in points:
        await metadata_store.log_batch(one_by_one, metrics=[m])
    together = await _run(metadata_store, "batch")
    await metadata_store.log_batch(together, metrics=[Metric("c", 9.0, 0, 0)])
    await metadata_store.log_batch(together, metrics=points)

    def shape(ms: object) -> list[tuple[object, ...]]:
        return sorted((m.key, repr(m.value), m.timestamp, m.step)  # type: ignore[attr-defined]
                      for m in ms)  # type: ignore[attr-defined]

    seq, batch = (await metadata_store.get_run(one_by_one)), (await metadata_store.get_run(together))
    assert shape(batch.metrics) == shape(seq.metrics)
    assert {m.key: m.timestamp for m in batch.metrics}["b"] == 7
    assert math.isnan({m.key: m.value for m in batch.metrics}["b"])
    for key in "abcd":
        h_seq = (await metadata_store.get_metric_history(one_by_one, key)).items
        h_batch = (await metadata_store.get_metric_history(together, key)).items
        assert shape(h_batch) == shape(h_seq)


async def test_log_batch_is_one_transaction(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.log_batch(run_id, params=[Param("p", "1")])
    with pytest.raises(errors.Conflict, match="Changing param values is not allowed"):
        await metadata_store.log_batch(
            run_id,
            metrics=[Metric("m", 1.0, 1, 0)],
            params=[Param("q", "2"), Param("p", "other")],
            tags=[Tag("t", "x")],
        )
    run = await metadata_store.get_run(run_id)
    assert run.metrics == ()
    assert run.params == (Param("p", "1"),)
    assert Tag("t", "x") not in run.tags
    # Same value again is accepted.
    await metadata_store.log_batch(run_id, params=[Param("p", "1")])


@_BATCH_SIZES
@pytest.mark.parametrize("with_param", [False, True], ids=["metrics-only", "with-param"])
async def test_log_batches_answers_each_write(
    metadata_store: MetadataStore, with_param: bool, padding: int
) -> None:
    """Many requests' writes in one call (the batcher's): an unknown or deleted run is
    refused alone, the others are stored. Metric-only batches and batches with a param
    take different paths on PostgreSQL and MariaDB (and small and large ones on MariaDB);
    all must agree."""
    live, other, deleted = [await _run(metadata_store, n) for n in ("a", "b", "c")]
    await metadata_store.log_batch(deleted, metrics=[Metric("m", 3.0, 0, 0)])
    await metadata_store.delete_run(deleted)
    params = (Param("p", "1"),) if with_param else ()
    writes = [
        RunWrite(live, (Metric("m", 1.0, 10, 1), Metric("m", 2.0, 11, 2)), params),
        RunWrite("f" * 32, (Metric("m", 5.0, 1, 1),)),
        RunWrite(deleted, (Metric("m", 6.0, 1, 1),)),
        RunWrite(other, (Metric("m", 7.0, 3, 0), Metric("n", 8.0, 3, 0),
                         *(Metric("pad", float(i), i, i) for i in range(padding)))),
        RunWrite(live, (Metric("m", 0.5, 9, 0),)),  # older than the batch's latest
    ]
    verdicts = await metadata_store.log_batches(writes)
    assert verdicts[0] is None and verdicts[3] is None and verdicts[4] is None
    assert isinstance(verdicts[1], errors.NotFound)
    assert isinstance(verdicts[2], errors.InvalidArgument)
    assert "must be in the 'active' state" in str(verdicts[2])

    def points(ms: object) -> list[tuple[object, ...]]:
        return sorted((m.value, m.timestamp, m.step) for m in ms)  # type: ignore[attr-defined]

    assert points((await metadata_store.get_metric_history(live, "m")).items) == [
        (0.5, 9, 0), (1.0, 10, 1), (2.0, 11, 2)]
    assert (await metadata_store.get_run(live)).metrics == (Metric("m", 2.0, 11, 2),)
    assert {m.key: m.value for m in (await metadata_store.get_run(other)).metrics} == {
        "m": 7.0, "n": 8.0} | ({"pad": padding - 1.0} if padding else {})
    # A deleted run's series takes no point and keeps its latest.
    assert points((await metadata_store.get_metric_history(deleted, "m")).items) == [
        (3.0, 0, 0)]
    assert points((await metadata_store.get_run(deleted)).metrics) == [(3.0, 0, 0)]
    assert (await metadata_store.get_run(live)).params == params
    # Sent again (a retried request), nothing is stored twice and the latest stays put.
    again = await metadata_store.log_batches([writes[4], writes[0]])
    assert again == [None, None]
    assert len((await metadata_store.get_metric_history(live, "m")).items) == 3
    assert (await metadata_store.get_run(live)).metrics == (Metric("m", 2.0, 11, 2),)


async def test_concurrent_log_batches_racing_for_the_same_rows(
    metadata_store: MetadataStore,
) -> None:
    """Concurrent calls (the batcher's writers, or several gateways) writing the same params,
    tags and series, each call naming the runs in a different order: every write is
    stored, none is refused or failed for having lost a race with another call."""
    runs = [await _run(metadata_store, f"race{i}") for i in range(4)]

    def batch(i: int) -> list[RunWrite]:
        order = runs[i % 4:] + runs[:i % 4]
        if i % 2:
            order.reverse()
        return [RunWrite(r, (Metric("m", float(i), 100 + i, i), Metric("n", 1.0, 5, 0)),
                         (Param(f"p{i % 5}", "same"),), (Tag("t", "x"), Tag(f"t{i % 3}", "y")))
                for r in order]

    for _ in range(3):  # rounds of 24 calls in flight at once
        verdicts = await asyncio.gather(*(metadata_store.log_batches(batch(i))
                                          for i in range(24)))
        assert verdicts == [[None] * 4] * 24
    for r in runs:
        run = await metadata_store.get_run(r)
        assert {p.key: p.value for p in run.params} == {f"p{k}": "same" for k in range(5)}
        assert {t.key for t in run.tags} >= {"t", "t0", "t1", "t2"}
        assert sorted(m.step for m in (await metadata_store.get_metric_history(r, "m")).items
                      ) == list(range(24))
        assert len((await metadata_store.get_metric_history(r, "n")).items) == 1
        assert {m.key: m.step for m in run.metrics} == {"m": 23, "n": 0}


async def test_duplicate_metric_points_stored_once(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    for _ in range(3):
        await metadata_store.log_batch(run_id, metrics=[Metric("m", 1.5, 7, 3)])
    await metadata_store.log_batch(run_id, metrics=[Metric("m", 2.5, 7, 3)])
    history = (await metadata_store.get_metric_history(run_id, "m")).items
    assert [(m.value, m.timestamp, m.step) for m in history] == [(1.5, 7, 3), (2.5, 7, 3)]


async def test_nan_and_infinity(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.log_batch(run_id, metrics=[
        Metric("nan", math.nan, 1, 0),
        Metric("zero", 0.0, 1, 0),
        Metric("inf", math.inf, 1, 0),
        Metric("ninf", -math.inf, 1, 0),
    ])
    latest = {m.key: m.value for m in (await metadata_store.get_run(run_id)).metrics}
    assert math.isnan(latest["nan"])
    assert latest["zero"] == 0.0
    assert latest["inf"] == 1.7976931348623157e308
    assert latest["ninf"] == -1.7976931348623157e308
    history = (await metadata_store.get_metric_history(run_id, "nan")).items
    assert len(history) == 1 and math.isnan(history[0].value)


async def test_metric_history_order_and_pages(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    points = [Metric("h", float(v), ts, step) for v, ts, step in
              [(5, 3, 0), (1, 1, 9), (2, 2, 0), (0, 2, 0), (7, 1, 1)]]
    await metadata_store.log_batch(run_id, metrics=points)
    full = (await metadata_store.get_metric_history(run_id, "h")).items
    assert [(m.timestamp, m.step, m.value) for m in full] == sorted(
        (m.timestamp, m.step, m.value) for m in points
    )
    paged: list[Metric] = []
    token = None
    while True:
        page = await metadata_store.get_metric_history(run_id, "h", max_results=2,
                                                       page_token=token)
        paged += page.items
        token = page.next_page_token
        if not token:
            break
    assert paged == full
    assert (await metadata_store.get_metric_history(run_id, "absent")).items == []
    with pytest.raises(errors.NotFound):
        await metadata_store.get_metric_history("0" * 32, "h")


def _chart_reference(points: list[Metric], buckets: int,
                     steps: tuple[int, int] | None) -> list[tuple[int, int, float, int]]:
    """Stock's chart sample, spelled out as its SQL does it: rows in (step, timestamp, value,
    is_nan) order with NaN stored as 0, NTILE(buckets) over them, the first row of each
    bucket, then the last row in place of the last pick when it is not already there."""
    rows = sorted({(m.step, m.timestamp, 0.0 if math.isnan(m.value) else m.value,
                    int(math.isnan(m.value))) for m in points
                   if steps is None or steps[0] <= m.step <= steps[1]})
    firsts, seen = [], set()
    for i, row in enumerate(rows):
        # NTILE: the first len(rows) % buckets buckets hold one row more than the others.
        size, larger = divmod(len(rows), buckets)
        bucket = (i // (size + 1) if i < larger * (size + 1)
                  else larger + (i - larger * (size + 1)) // max(size, 1))
        if bucket not in seen:
            seen.add(bucket)
            firsts.append(row)
    if rows and firsts[-1] != rows[-1]:
        if len(firsts) >= buckets:
            firsts[-1] = rows[-1]
        else:
            firsts.append(rows[-1])
    return [(ts, step, value, nan) for step, ts, value, nan in firsts]


def _chart_rows(sample: list[Metric]) -> list[tuple[int, int, float, int]]:
    return [(m.timestamp, m.step, 0.0 if math.isnan(m.value) else m.value,
             int(math.isnan(m.value))) for m in sample]


@pytest.mark.parametrize("shape", ["in_order", "steps_go_down", "one_step", "ties"])
async def test_sampled_history_matches_stocks_sample(metadata_store: MetadataStore,
                                                     shape: str) -> None:
    run_id, other = await _run(metadata_store), await _run(metadata_store)
    n = 1000
    if shape == "in_order":  # a training loop; also the fast path of SQLite's sample
        points = [Metric("m", i / 7, 10_000 + 3 * i, i) for i in range(n)]
    elif shape == "steps_go_down":  # steps logged out of time order
        points = [Metric("m", float(i), 10_000 + i, (i * 7919) % n) for i in range(n)]
    elif shape == "one_step":  # log_metric without a step
        points = [Metric("m", float(i % 13), 10_000 + i, 0) for i in range(n)]
    else:  # repeated steps and timestamps, NaN, ±inf, negative steps
        values = [math.nan, math.inf, -math.inf, 0.0, -1.5, 2.5]
        points = [Metric("m", values[i % 6], 10_000 + i // 5, i // 3 - 50) for i in range(n)]
    await metadata_store.log_batch(run_id, metrics=points)
    await metadata_store.log_batch(other, metrics=points[: n // 3])
    stored = (await metadata_store.get_metric_history(run_id, "m")).items
    for buckets in (1, 2, 7, 320, 999, 1000, 2500):
        for steps in (None, (0, 0), (-20, 400), (5000, 6000)):
            sample = await metadata_store.sample_metric_history(
                [run_id], "m", max_results=buckets, steps=steps)
            assert {m.run_id for m in sample} <= {run_id}
            assert _chart_rows(sample) == _chart_reference(stored, buckets, steps), \
                (buckets, steps)
    both = await metadata_store.sample_metric_history(
        [other, "0" * 32, run_id], "m", max_results=320)
    assert [m.run_id for m in both] == [other] * min(320, n // 3) + [run_id] * 320
    assert await metadata_store.sample_metric_history([run_id], "absent", max_results=5) == []


async def test_metric_history_points_match_history(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    points = [Metric("h", v, ts, step) for v, ts, step in
              [(5.0, 3, 0), (math.nan, 1, 9), (2.0, 2, 0), (-0.5, 2, 0), (math.inf, 1, 1),
               (0.5, 4, 4), (math.nan, 4, 4), (-0.5, 4, 4)]]
    await metadata_store.log_batch(run_id, metrics=points)
    full = (await metadata_store.get_metric_history(run_id, "h")).items
    rows = (await metadata_store.get_metric_history_points(run_id, "h")).items
    assert [tuple(r) for r in rows] == [
        (m.timestamp, m.step, None if math.isnan(m.value) else m.value) for m in full
    ]
    assert [tuple(r) for r in rows][:2] == [(1, 1, 1.7976931348623157e308), (1, 9, None)]
    # Ties on (timestamp, step) go by value, a NaN counting as the 0 it is stored as.
    assert [tuple(r) for r in rows][-3:] == [(4, 4, -0.5), (4, 4, None), (4, 4, 0.5)]
    for size in (1, 2, 5, 6):
        token, pages, paged_rows = None, [], []
        while True:
            page = await metadata_store.get_metric_history(run_id, "h", max_results=size,
                                                           page_token=token)
            rows_page = await metadata_store.get_metric_history_points(
                run_id, "h", max_results=size, page_token=token)
            assert rows_page.next_page_token == page.next_page_token
            pages += page.items
            paged_rows += [tuple(r) for r in rows_page.items]
            token = page.next_page_token
            if not token:
                break
        assert pages == full
        assert paged_rows == [tuple(r) for r in rows]
    assert (await metadata_store.get_metric_history_points(run_id, "absent")).items == []
    with pytest.raises(errors.NotFound):
        await metadata_store.get_metric_history_points("0" * 32, "h")


async def test_writes_to_deleted_run_rejected(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.delete_run(run_id)
    with pytest.raises(errors.InvalidArgument, match="must be in the 'active' state"):
        await metadata_store.log_batch(run_id, metrics=[Metric("m", 1.0, 1, 0)])
    assert (await metadata_store.get_run(run_id)).metrics == ()
    await metadata_store.restore_run(run_id)
    await metadata_store.log_batch(run_id, metrics=[Metric("m", 1.0, 1, 0)])


async def test_deleting_rows_deletes_their_metric_points(metadata_store: MetadataStore) -> None:
    """Deleting a run's row (as a permanent clean-up would) or a series deletes the metric
    points under it: by the foreign key's cascade on SQLite, by a trigger on PostgreSQL
    (migration 9 dropped the key there). No point is left without its series."""
    keep, gone = await _run(metadata_store), await _run(metadata_store)
    for run in (keep, gone):
        await metadata_store.log_batch(
            run, metrics=[Metric(k, float(i), i, i) for k in ("a", "b") for i in range(5)])
    assert isinstance(metadata_store, SqlMetadataStore)
    count = ("SELECT s.run_id, s.key, count(*) FROM metric_points p"
             " JOIN metric_series s ON s.series_id = p.series_id"
             " GROUP BY s.run_id, s.key ORDER BY s.run_id, s.key")
    orphans = ("SELECT count(*) FROM metric_points p WHERE NOT EXISTS"
               " (SELECT 1 FROM metric_series s WHERE s.series_id = p.series_id)")
    async with metadata_store._tx() as db:
        await db.execute("DELETE FROM runs WHERE run_id = ?", (gone,))
        await db.execute("DELETE FROM metric_series WHERE run_id = ? AND key = ?", (keep, "a"))
        assert [tuple(r) for r in await db.fetch_rows(count)] == [(keep, "b", 5)]
        assert (await db.fetch_rows(orphans))[0][0] == 0
    assert [m.key for m in (await metadata_store.get_run(keep)).metrics] == ["b"]


async def test_delete_tag(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.log_batch(run_id, tags=[Tag("a", "1")])
    await metadata_store.delete_tag(run_id, "a")
    assert Tag("a", "1") not in (await metadata_store.get_run(run_id)).tags
    with pytest.raises(errors.NotFound):
        await metadata_store.delete_tag(run_id, "a")


async def test_run_name_tag_renames_run(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.log_batch(run_id, tags=[Tag("mlflow.runName", "via-tag")])
    assert (await metadata_store.get_run(run_id)).info.run_name == "via-tag"


async def test_inputs_deduplicated_per_experiment(metadata_store: MetadataStore) -> None:
    run_a = await _run(metadata_store, "ds")
    run_b = await _run(metadata_store, "ds")
    ds = Dataset("train", "abc123", "local", '{"uri": "x"}', '{"s": 1}', '{"n": 3}')
    item = DatasetInput(ds, (Tag("mlflow.data.context", "training"),))
    for run_id in (run_a, run_a, run_b):
        await metadata_store.log_inputs(run_id, datasets=[item])
    for run_id in (run_a, run_b):
        assert (await metadata_store.get_run(run_id)).dataset_inputs == (item,)


async def test_search_datasets_lists_each_context_once(metadata_store: MetadataStore) -> None:
    run_a, run_b = await _run(metadata_store, "sd"), await _run(metadata_store, "sd")
    exp = (await metadata_store.get_run(run_a)).info.experiment_id
    train, test = Dataset("train", "d1", "local", "{}"), Dataset("test", "d2", "local", "{}")
    context = "mlflow.data.context"
    await metadata_store.log_inputs(run_a, datasets=[
        DatasetInput(train, (Tag(context, "training"),)), DatasetInput(test)])
    await metadata_store.log_inputs(run_b, datasets=[
        DatasetInput(train, (Tag(context, "training"),)),
        DatasetInput(test, (Tag(context, "eval"), Tag("other", "x")))])
    await metadata_store.log_inputs(await _run(metadata_store, "sd-other"),
                                    datasets=[DatasetInput(Dataset("elsewhere", "d3", "x", ""))])
    found = await metadata_store.search_datasets([exp, exp, "987654"])
    assert sorted(found, key=lambda s: (s.name, s.context or "")) == [
        DatasetSummary(exp, "test", "d2", None), DatasetSummary(exp, "test", "d2", "eval"),
        DatasetSummary(exp, "train", "d1", "training")]
    assert await metadata_store.search_datasets([]) == []
    with pytest.raises(errors.InvalidArgument, match="Invalid experiment ID 'abc'"):
        await metadata_store.search_datasets(["abc"])


async def test_outputs(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.log_outputs(run_id, [ModelOutput("m-" + "a" * 32, 3)])
    assert (await metadata_store.get_run(run_id)).model_outputs == (
        ModelOutput("m-" + "a" * 32, 3),
    )


async def test_search_runs_filter_order_and_pages(metadata_store: MetadataStore) -> None:
    exp_id = await metadata_store.create_experiment("search", artifact_root=ROOT)
    ids = []
    for i in range(5):
        run = await metadata_store.create_run(exp_id, user_id="u", run_name=f"r{i}",
                                              start_time=100 + i)
        await metadata_store.log_batch(run.info.run_id, metrics=[Metric("acc", i / 10, 1, 0)],
                                       params=[Param("kind", "odd" if i % 2 else "even")])
        ids.append(run.info.run_id)
    page = await metadata_store.search_runs([exp_id])
    assert [r.info.run_id for r in page.items] == ids[::-1]  # start_time DESC
    page = await metadata_store.search_runs(
        [exp_id], filter_string="metrics.acc > 0.15 and params.kind = 'even'",
        order_by=["metrics.acc ASC"])
    assert [r.info.run_id for r in page.items] == [ids[2], ids[4]]
    seen = []
    token = None
    while True:
        page = await metadata_store.search_runs([exp_id], max_results=2, page_token=token)
        seen += [r.info.run_id for r in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    with pytest.raises(errors.InvalidArgument):
        await metadata_store.search_runs([exp_id], filter_string="metrics.acc > 1 OR x")
    with pytest.raises(errors.InvalidArgument):
        await metadata_store.search_runs([exp_id], page_token="!!not-a-token")


async def test_search_page_loads_each_run_whole_and_exact(
    metadata_store: MetadataStore,
) -> None:
    """A page of runs comes back as logged: awkward text in params and tags, doubles
    bit-exact (±0 aside, which MariaDB does not keep) and still floats, in logged order,
    and inputs and outputs on exactly the runs that have them (the network stores load a
    page in one statement, through JSON or arrays)."""
    exp_id = await metadata_store.create_experiment("whole", artifact_root=ROOT)
    texts = ['q"uote', "back\\slash", "it's", "é ﬀ 😀", "line\nbreak\ttab", '{"a": [1]}',
             "%s", "", " trailing "]
    values = [0.1 + 0.2, 1e308, -0.0, 2.0, -3.0, 5e-324, 1e16, 123456789012345680.0,
              -1e-300, 1 / 3, math.inf, -math.inf, math.nan]
    run_ids = [(await metadata_store.create_run(exp_id, user_id="u", run_name=f"r{i}",
                                                start_time=i)).info.run_id for i in range(3)]
    rich, with_inputs, with_output = run_ids
    # Keys in the reverse of their sorted order: params and tags logged in two batches,
    # metrics one by one (a batch creates its new series in key order).
    params = [Param(f"p{9 - i}{t}", t) for i, t in enumerate(texts)]
    tags = [Tag(f"t{9 - i}{t}", t) for i, t in enumerate(texts)]
    # Then enough incompressible text to fill PostgreSQL's first page of the table.
    rnd = random.Random(7)
    tags += [Tag(f"fill{9 - i}", "".join(rnd.choices(string.ascii_letters, k=1500)))
             for i in range(10)]
    metrics = [Metric(f"m{99 - i}", v, 2**62 + i, -(2**40) - i) for i, v in enumerate(values)]
    for half in (slice(None, 4), slice(4, None)):
        await metadata_store.log_batch(rich, params=params[half], tags=tags[half])
    for m in metrics:
        await metadata_store.log_batch(rich, metrics=[m])
    # Setting a tag again keeps its place, though PostgreSQL moves its row to another page.
    await metadata_store.log_batch(rich, tags=[tags[0], tags[len(texts)]])
    ds = DatasetInput(Dataset("train", "d1", "local", '{"uri": "x"}'),
                      (Tag("mlflow.data.context", "training"),))
    model = await metadata_store.create_logged_model(exp_id, name="m")
    await metadata_store.log_inputs(with_inputs, datasets=[ds],
                                    models=[ModelInput(model.model_id)])
    await metadata_store.log_outputs(with_output, [ModelOutput(model.model_id, 7)])

    page = await metadata_store.search_runs([exp_id], order_by=["attributes.start_time ASC"])
    assert [r.info.run_id for r in page.items] == run_ids
    for run in page.items:
        assert run == await metadata_store.get_run(run.info.run_id)
    got = page.items[0]
    assert got.params == tuple(params)
    assert got.tags == (Tag("mlflow.runName", "r0"), *tags)
    assert [(m.key, m.timestamp, m.step) for m in got.metrics] == [
        (m.key, m.timestamp, m.step) for m in metrics]
    stored = [max(min(v, 1.7976931348623157e308), -1.7976931348623157e308) for v in values]
    for m, want in zip(got.metrics, stored, strict=True):
        assert type(m.value) is float, m
        assert m.value == want or (math.isnan(want) and math.isnan(m.value)), (m, want)
    assert (got.dataset_inputs, got.model_inputs, got.model_outputs) == ((), (), ())
    assert page.items[1].dataset_inputs == (ds,)
    assert page.items[1].model_inputs == (ModelInput(model.model_id),)
    assert page.items[1].model_outputs == ()
    assert page.items[2].model_outputs == (ModelOutput(model.model_id, 7),)
    assert (page.items[2].dataset_inputs, page.items[2].model_inputs) == ((), ())
    assert page.items[2].params == () and page.items[2].metrics == ()


@pytest.mark.parametrize("ascending", [True, False])
async def test_search_runs_by_metric_pages_across_nan_and_missing(
        metadata_store: MetadataStore, ascending: bool) -> None:
    """Ordering by a metric: numbers (ties by start_time DESC), then NaN, then runs without
    the metric, in either direction; every page size gives the same sequence, including
    pages that straddle numbers and NaN (PostgreSQL answers those two ways)."""
    exp_id = await metadata_store.create_experiment("by-metric", artifact_root=ROOT)
    values: list[float | None] = [3.0, math.nan, 1.0, None, 2.0, 1.0, math.nan, None, -4.0,
                                  2.0, 0.5]
    runs = []
    for i, value in enumerate(values):
        run = await metadata_store.create_run(exp_id, user_id="u", run_name=f"r{i}",
                                              start_time=1000 + i)
        metrics = [Metric("other", 1.0, 1, 0)]
        if value is not None:
            metrics.append(Metric("score", value, 1, 0))
        await metadata_store.log_batch(run.info.run_id, metrics=metrics,
                                       params=[Param("keep", "no" if i == 4 else "yes")])
        runs.append((run.info.run_id, 1000 + i, value))
    kept = [r for r in runs if r[0] != runs[4][0]]

    def rank(r: tuple[str, int, float | None]) -> tuple[object, ...]:
        _, start, value = r
        if value is None:
            return (2, 0.0, -start)
        if math.isnan(value):
            return (1, 0.0, -start)
        return (0, value if ascending else -value, -start)

    expected = [r[0] for r in sorted(kept, key=rank)]
    order = [f"metrics.score {'ASC' if ascending else 'DESC'}"]
    for size in (1, 2, 3, 4, 20):
        seen: list[str] = []
        token = None
        while True:
            page = await metadata_store.search_runs(
                [exp_id], filter_string="params.keep = 'yes' and metrics.other = 1",
                order_by=order, max_results=size, page_token=token)
            assert len(page.items) <= size
            seen += [r.info.run_id for r in page.items]
            token = page.next_page_token
            if not token:
                break
        assert seen == expected, size


async def test_reads_see_committed_writes_immediately(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)

    async def write_then_read(i: int) -> None:
        await metadata_store.log_batch(run_id, metrics=[Metric(f"k{i}", float(i), i, i)])
        history = (await metadata_store.get_metric_history(run_id, f"k{i}")).items
        assert [m.value for m in history] == [float(i)]

    await asyncio.gather(*(write_then_read(i) for i in range(20)))
    assert len((await metadata_store.get_run(run_id)).metrics) == 20


# -- schema ----------------------------------------------------------------------------------


async def test_schema_version_is_current(metadata_store: MetadataStore) -> None:
    from backends.metadata._migrations import load_migrations

    assert await metadata_store.schema_version() == len(load_migrations("sqlite"))


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URI of a database without any schema yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    databases = request.getfixturevalue(
        "my_databases" if request.param == "mariadb" else "pg_databases")
    dsn: str = databases.create("empty", migrated=False)
    yield dsn
    databases.drop(dsn)


def _create_alembic_table(uri: str) -> None:
    if uri.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(uri.removeprefix("sqlite:///")) as conn:
            conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        return
    if uri.startswith("mysql:"):
        import pymysql

        parts = urlsplit(uri)
        with pymysql.connect(host=parts.hostname, port=parts.port or 3306,
                             user=parts.username or "root", password=parts.password or "",
                             database=parts.path.lstrip("/")) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        return
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(uri)
        await conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        await conn.close()

    run_sync(create())


def test_concurrent_first_start_migrates_once(empty_database: str) -> None:
    """Several processes opening a fresh database at once must not race."""
    uri = empty_database
    script = (
        "import asyncio, sys\n"
        "from backends.registry import open_metadata_store\n"
        "async def main():\n"
        "    s = open_metadata_store(sys.argv[1])\n"
        "    await s.open()\n"
        "    print(await s.schema_version())\n"
        "    await s.aclose()\n"
        "asyncio.run(main())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, uri], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1


async def test_refuses_a_stock_mlflow_database(empty_database: str) -> None:
    _create_alembic_table(empty_database)
    store = open_metadata_store(empty_database)
    with pytest.raises(errors.InvalidArgument, match="stock MLflow database"):
        await store.open()
    store = open_metadata_store(empty_database)  # and nothing was created
    with pytest.raises(errors.InvalidArgument, match="stock MLflow database"):
        await store.open()


# -- logged models -------------------------------------------------------------------------


async def test_logged_model_lifecycle(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store, "models")
    exp_id = (await metadata_store.get_run(run_id)).info.experiment_id
    model = await metadata_store.create_logged_model(
        exp_id, name="model", source_run_id=run_id,
        params=[Param("C", "1.0")], tags=[Tag("mlflow.user", "u")],
    )
    assert model.model_id.startswith("m-") and len(model.model_id) == 34
    assert model.status == "LOGGED_MODEL_PENDING"
    assert model.artifact_uri == f"mlflow-artifacts:/{exp_id}/models/{model.model_id}/artifacts"
    assert model.params == (Param("C", "1.0"),)
    assert model.tags == (Tag("mlflow.user", "u"),)
    assert model.source_run_id == run_id

    ready = await metadata_store.finalize_logged_model(model.model_id, "LOGGED_MODEL_READY")
    assert ready.status == "LOGGED_MODEL_READY"
    assert ready.last_updated_timestamp_ms >= model.last_updated_timestamp_ms

    await metadata_store.set_logged_model_tags(model.model_id, [Tag("a", "1"), Tag("a", "2")])
    await metadata_store.log_logged_model_params(model.model_id, [Param("D", "x")])
    with pytest.raises(errors.Conflict):
        await metadata_store.log_logged_model_params(model.model_id, [Param("D", "y")])
    got = await metadata_store.get_logged_model(model.model_id)
    assert Tag("a", "2") in got.tags
    assert set(got.params) == {Param("C", "1.0"), Param("D", "x")}
    await metadata_store.delete_logged_model_tag(model.model_id, "a")
    with pytest.raises(errors.NotFound):
        await metadata_store.delete_logged_model_tag(model.model_id, "a")

    await metadata_store.delete_logged_model(model.model_id)
    with pytest.raises(errors.NotFound):
        await metadata_store.get_logged_model(model.model_id)
    deleted = await metadata_store.get_logged_model(model.model_id, allow_deleted=True)
    assert deleted.lifecycle_stage == "deleted"


async def test_metrics_with_model_id_link_run_and_model(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store, "linked")
    exp_id = (await metadata_store.get_run(run_id)).info.experiment_id
    model = await metadata_store.create_logged_model(exp_id, name="m", source_run_id=run_id)
    await metadata_store.log_outputs(run_id, [ModelOutput(model.model_id, 0)])
    await metadata_store.log_batch(run_id, metrics=[
        Metric("acc", 0.5, 3, 0, model_id=model.model_id, dataset_name="d",
               dataset_digest="x"),
    ])
    run = await metadata_store.get_run(run_id)
    assert run.metrics == (Metric("acc", 0.5, 3, 0),)
    assert run.model_outputs == (ModelOutput(model.model_id, 0),)
    got = await metadata_store.get_logged_model(model.model_id)
    assert got.metrics == (Metric("acc", 0.5, 3, 0, model_id=model.model_id, dataset_name="d",
                                  dataset_digest="x", run_id=run_id),)
    with pytest.raises(errors.NotFound):
        await metadata_store.log_batch(run_id, metrics=[Metric("acc", 1.0, 4, 0,
                                                               model_id="m-" + "0" * 32)])
    assert len((await metadata_store.get_metric_history(run_id, "acc")).items) == 1


async def test_logged_model_in_unknown_or_deleted_experiment(
    metadata_store: MetadataStore,
) -> None:
    with pytest.raises(errors.NotFound):
        await metadata_store.create_logged_model("4242", name="m")
    exp_id = await metadata_store.create_experiment("lm-deleted", artifact_root=ROOT)
    await metadata_store.delete_experiment(exp_id)
    with pytest.raises(errors.InvalidArgument):
        await metadata_store.create_logged_model(exp_id, name="m")


# A MariaDB database never was at version 5: the store arrived with migration 15.
@pytest.mark.parametrize("empty_database", ["sqlite", "postgres"], indirect=True)
async def test_migration_6_gives_existing_params_their_experiment(empty_database: str) -> None:
    """A database at version 5 with runs and params: opening it applies migration 6, which
    fills run_params.experiment_id, and param filters (which now use it) find those runs."""
    from backends.metadata._migrations import load_migrations

    sqlite = empty_database.startswith("sqlite:")
    scripts = [script for version, script in load_migrations("sqlite" if sqlite else "postgres")
               if version <= 5]
    setup = [
        "CREATE TABLE mlgate_schema (version INTEGER NOT NULL)",
        "INSERT INTO mlgate_schema (version) VALUES (5)",
        ("INSERT INTO experiments (experiment_id, workspace, name, artifact_location,"
         " lifecycle_stage, creation_time, last_update_time)"
         " VALUES (7, 'default', 'old', 'x', 'active', 1, 1)"),
        ("INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
         " artifact_uri, lifecycle_stage) VALUES"
         " ('0123456789abcdef0123456789abcdef', 7, 'r', 'u', 'FINISHED', 1, 'x', 'active')"),
        ("INSERT INTO run_params (run_id, key, value)"
         " VALUES ('0123456789abcdef0123456789abcdef', 'p', 'v')"),
    ]
    if sqlite:
        import sqlite3

        with sqlite3.connect(empty_database.removeprefix("sqlite:///")) as conn:
            for script in scripts:
                conn.executescript(script)
            for statement in setup:
                conn.execute(statement)
    else:
        import asyncpg

        conn = await asyncpg.connect(empty_database)
        try:
            for script in scripts:
                await conn.execute(script)
            for statement in setup:
                await conn.execute(statement)
        finally:
            await conn.close()
    store = open_metadata_store(empty_database)
    await store.open()
    try:
        assert await store.schema_version() == len(load_migrations("sqlite"))
        page = await store.search_runs(["7"], filter_string="params.p = 'v'")
        assert [r.info.run_id for r in page.items] == ["0123456789abcdef0123456789abcdef"]
        assert [(p.key, p.value) for p in (await store.get_run(page.items[0].info.run_id)).params] \
            == [("p", "v")]
    finally:
        await store.aclose()


async def test_password_hash_replaced_only_while_unchanged(
        metadata_store: MetadataStore) -> None:
    """A rehash at login replaces the hash it verified, never one changed meanwhile."""
    store = metadata_store
    await store.create_user("ann", "old")
    assert not await store.replace_password_hash("ann", "other", "new")
    assert (await store.get_user("ann")).password_hash == "old"
    assert await store.replace_password_hash("ann", "old", "new")
    assert (await store.get_user("ann")).password_hash == "new"
    assert not await store.replace_password_hash("nobody", "old", "new")


async def test_auth_changes_that_change_nothing_still_find_their_row(
        metadata_store: MetadataStore) -> None:
    """Setting what is already stored is not "not found" (MySQL counts such rows as
    unchanged); revoking twice keeps the first time."""
    from backends.metadata.interface.auth_entities import TokenRow

    store = metadata_store
    ann = await store.create_user("ann", "h")
    assert await store.update_user("ann", password_hash="h", is_admin=False) == ann
    assert await store.replace_password_hash("ann", "h", "h")
    await store.create_token(TokenRow("t1", ann.user_id, "", "d", False, None, 1, None, None,
                                      None))
    await store.revoke_token("t1", 5)
    await store.revoke_token("t1", 5)
    await store.revoke_token("t1", 9)
    assert (await store.get_token("t1")).revoked_at == 5
    with pytest.raises(errors.NotFound):
        await store.revoke_token("t2", 5)
    with pytest.raises(errors.AlreadyExists):
        await store.create_user("ann", "other")
    assert await store.get_user("ann") == ann


async def test_roles_permissions_and_assignments(metadata_store: MetadataStore) -> None:
    """MLflow 3.17's roles: a role of one workspace, its permissions (grants whose principal is
    the role, '*' for every resource of a type) and its users."""
    from backends.metadata.interface.auth_entities import GrantRow

    store = metadata_store
    await store.create_workspace("team-a")
    ann = await store.create_user("ann", "hash-a")
    bob = await store.create_user("bob", "hash-b")
    role = await store.create_role("readers", "team-a", "read everything")
    other = await store.create_role("leads", "team-a", None)
    with pytest.raises(errors.AlreadyExists):
        await store.create_role("readers", "team-a", None)
    with pytest.raises(errors.NotFound):
        await store.create_role("x", "no-such-team", None)
    every = await store.add_role_permission(role.role_id, "experiment", "*", "READ")
    one = await store.add_role_permission(role.role_id, "registered_model", "m1", "EDIT")
    await store.add_role_permission(other.role_id, "workspace", "*", "MANAGE")
    with pytest.raises(errors.AlreadyExists):
        await store.add_role_permission(role.role_id, "experiment", "*", "EDIT")
    assert (await store.get_role(role.role_id)).permissions == (every, one)
    assert [r.name for r in await store.list_roles(["team-a"])] == ["readers", "leads"]
    assert await store.list_roles(["default"]) == []

    # A '*' permission counts on every experiment of the workspace, not elsewhere.
    on_exp = await store.grants_on("experiment", "team-a", "42")
    assert [(g.principal_type, g.principal, g.resource_id, g.permission) for g in on_exp] \
        == [("role", str(role.role_id), "*", "READ")]
    assert await store.grants_on("experiment", "default", "42") == []
    # A user's grant on a model named '*' is a grant on that model only; renaming or deleting
    # that model leaves the roles' '*' permissions alone.
    await store.set_grant(GrantRow("registered_model", "team-a", "*", "user",
                                   str(ann.user_id), "READ"))
    await store.add_role_permission(role.role_id, "registered_model", "*", "READ")
    assert {(g.principal_type, g.resource_id)
            for g in await store.grants_on("registered_model", "team-a", "m2")} \
        == {("role", "*")}
    await store.move_grants("registered_model", "team-a", "*", "renamed")
    assert [(g.principal_type, g.resource_id)
            for g in await store.grants_on("registered_model", "team-a", "renamed")] \
        == [("user", "renamed"), ("role", "*")]
    await store.delete_grants_on("registered_model", "team-a", "*")
    assert len(await store.grants_on("registered_model", "team-a", "x")) == 1

    first = await store.assign_role(ann.user_id, role.role_id)
    assert await store.assign_role(ann.user_id, role.role_id) == first  # idempotent
    await store.assign_role(ann.user_id, other.role_id)
    await store.assign_role(bob.user_id, role.role_id)
    assert await store.role_memberships(ann.user_id) == [
        (role.role_id, "team-a", None), (other.role_id, "team-a", "MANAGE")]
    assert [a.user_id for a in await store.list_role_users(role.role_id)] \
        == [ann.user_id, bob.user_id]
    assert [r.role_id for r in await store.list_user_roles(ann.user_id)] \
        == [role.role_id, other.role_id]

    updated = await store.update_role_permission(one.permission_id, "DENY")
    assert updated.permission == "DENY"
    assert await store.remove_role_permission(one.permission_id) == updated
    with pytest.raises(errors.NotFound):
        await store.get_role_permission(one.permission_id)
    renamed = await store.update_role(role.role_id, name="viewers", description=None)
    assert (renamed.name, renamed.description) == ("viewers", "read everything")
    assert await store.unassign_role(bob.user_id, role.role_id)
    assert not await store.unassign_role(bob.user_id, role.role_id)

    await store.delete_user("ann")  # takes her assignments
    assert await store.list_role_users(role.role_id) == []
    await store.delete_role(role.role_id)  # takes its permissions
    with pytest.raises(errors.NotFound):
        await store.get_role(role.role_id)
    assert await store.grants_of("role", str(role.role_id)) == []
    await store.delete_workspace("team-a")  # takes its roles
    assert await store.list_roles() == []
    assert await store.grants_of("role", str(other.role_id)) == []


async def test_auth_changes_count_what_they_make_stale(metadata_store: MetadataStore) -> None:
    """Every change a server's caches could hold stale adds one to its counter, in its own
    transaction (servers poll them); creating a user or a token, a failed change, and a no-op
    leave them alone."""
    from backends.metadata.interface.auth_entities import AuthVersions, GrantRow, TokenRow

    store = metadata_store
    seen = await store.auth_versions()
    assert seen == AuthVersions(0, 0, 0, 0)

    async def bumped(change: Any) -> set[str]:
        nonlocal seen
        await change
        now = await store.auth_versions()
        moved = {f for f in ("credentials", "identities", "grants", "workspaces")
                 if getattr(now, f) != getattr(seen, f)}
        assert all(getattr(now, f) == getattr(seen, f) + 1 for f in moved), (seen, now)
        seen = now
        return moved

    async def fails(change: Any) -> set[str]:
        with pytest.raises(errors.BackendError):
            await change
        return await bumped(asyncio.sleep(0))

    ann = await store.create_user("ann", "h")
    assert seen == await store.auth_versions()  # a new user: nothing cached to contradict
    await store.create_token(TokenRow("t1", ann.user_id, "", "d", False, None, 1, None, None,
                                      None))
    await store.touch_token("t1", 2)
    assert seen == await store.auth_versions()
    assert await bumped(store.create_workspace("team-a")) == {"workspaces"}
    assert await fails(store.create_workspace("team-a")) == set()
    assert await bumped(store.set_member("team-a", ann.user_id, "member")) == {"identities"}
    assert await fails(store.set_member("no-team", ann.user_id, "member")) == set()
    assert await bumped(store.remove_member("team-a", ann.user_id)) == {"identities"}
    assert await bumped(store.remove_member("team-a", ann.user_id)) == set()
    assert await bumped(store.update_user("ann", is_admin=True)) == {"identities"}
    assert await bumped(store.update_user("ann", password_hash="h2")) == {"credentials"}
    assert await fails(store.update_user("nobody", is_admin=True)) == set()
    assert await bumped(store.revoke_token("t1", 3)) == {"credentials"}
    grant = GrantRow("experiment", "team-a", "7", "user", str(ann.user_id), "READ")
    assert await bumped(store.set_grant(grant)) == {"grants"}
    assert await bumped(store.move_grants("experiment", "team-a", "7", "8")) == {"grants"}
    assert await bumped(store.delete_grant("experiment", "team-a", "8", "user",
                                           str(ann.user_id))) == {"grants"}
    assert await bumped(store.delete_grant("experiment", "team-a", "8", "user",
                                           str(ann.user_id))) == set()
    assert await bumped(store.delete_grants_on("experiment", "team-a", "8")) == {"grants"}
    role = await store.create_role("r", "team-a", None)
    assert seen == await store.auth_versions()  # a role nobody holds changes nobody
    both = {"identities", "grants"}
    perm = await store.add_role_permission(role.role_id, "workspace", "*", "USE")
    assert await bumped(asyncio.sleep(0)) == both
    assert await bumped(store.update_role_permission(perm.permission_id, "MANAGE")) == both
    assert await bumped(store.assign_role(ann.user_id, role.role_id)) == {"identities"}
    assert await bumped(store.unassign_role(ann.user_id, role.role_id)) == {"identities"}
    assert await bumped(store.remove_role_permission(perm.permission_id)) == both
    assert await bumped(store.delete_role(role.role_id)) == both
    assert await bumped(store.delete_workspace("team-a")) == {"workspaces", *both}
    assert await bumped(store.delete_user("ann")) == {"credentials", "grants"}


# -- audit log ---------------------------------------------------------------------------


async def test_audit_queries_by_user_resource_and_time(metadata_store: MetadataStore) -> None:
    """Every filter of the admin query, alone and together, with paging: the rows of several
    appends, rare and common users and resources."""
    users = ["alice", "bob", "carol", None]
    rows = [(1000 + i, users[i % 4] if i % 997 else "dave", "default", "POST /runs/log-metric",
             "experiment" if i % 5 == 0 else "run", f"r{i % 7}" if i % 1009 else "rare",
             "ok", 200, "127.0.0.1", f"req-{i}") for i in range(24_000)]
    rows += [(30_000 + i, "erin", None, "GET /artifacts", None, "rare", "denied", 403, None,
              None) for i in range(5)]
    for start in range(0, len(rows), 3000):
        await metadata_store.append_audit(rows[start:start + 3000])

    async def ts_of(**query: Any) -> list[int]:
        return [r.ts for r in await metadata_store.query_audit(limit=100_000, **query)]

    def expected(keep: Callable[[tuple[Any, ...]], bool]) -> list[int]:
        return [r[0] for r in rows if keep(r)]

    assert await ts_of(username="dave") == expected(lambda r: r[1] == "dave")
    assert await ts_of(username="erin") == expected(lambda r: r[1] == "erin")
    assert await ts_of(username="nobody") == []
    assert await ts_of(resource_id="rare") == expected(lambda r: r[5] == "rare")
    assert await ts_of(resource_type="experiment", resource_id="rare") == expected(
        lambda r: r[4] == "experiment" and r[5] == "rare")
    assert await ts_of(resource_type="run", resource_id="r3", username="bob") == expected(
        lambda r: r[4] == "run" and r[5] == "r3" and r[1] == "bob")
    assert await ts_of(since=20_000, until=20_050) == list(range(20_000, 20_050))
    assert await ts_of(username="alice", since=5_000, until=6_000) == expected(
        lambda r: r[1] == "alice" and 5_000 <= r[0] < 6_000)
    assert await ts_of(since=40_000) == []
    page = await metadata_store.query_audit(resource_id="r2", limit=50, offset=100)
    assert [r.ts for r in page] == expected(lambda r: r[5] == "r2")[100:150]
    ids = [r.audit_id for r in page]
    assert ids == sorted(ids) and len(set(ids)) == 50
    first = (await metadata_store.query_audit(resource_id="rare", limit=1))[0]
    assert (first.ts, first.username, first.workspace, first.action, first.resource_type,
            first.outcome, first.status, first.client_address) == (
        1000, "dave", "default", "POST /runs/log-metric", "experiment", "ok", 200, "127.0.0.1")


# -- uploads in flight (the artifact sweep) -----------------------------------------------


async def test_heartbeats_are_kept_per_process_and_forgotten(
    metadata_store: MetadataStore,
) -> None:
    assert await metadata_store.heartbeats() == {}
    await metadata_store.heartbeat("a" * 32, "host-1", 10, 5_000)
    await metadata_store.heartbeat("b" * 32, "host-2", 11, 7_000)
    await metadata_store.heartbeat("a" * 32, "host-1", 10, 9_000)  # a later heartbeat
    assert await metadata_store.heartbeats() == {"a" * 32: 9_000, "b" * 32: 7_000}
    await metadata_store.forget_owners_before(8_000)
    assert await metadata_store.heartbeats() == {"a" * 32: 9_000}
    await metadata_store.forget_owner("a" * 32)
    await metadata_store.forget_owner("a" * 32)  # idempotent
    assert await metadata_store.heartbeats() == {}


async def test_uploads_in_flight_are_noted_until_they_end(
    metadata_store: MetadataStore,
) -> None:
    first = UploadInFlight("1" * 32, "1/run/artifacts/model.bin", "a" * 32, 2_000)
    second = UploadInFlight("2" * 32, "1/run/artifacts/model.bin", "b" * 32, 1_000)
    await metadata_store.begin_upload(first)
    await metadata_store.begin_upload(second)
    assert await metadata_store.uploads_in_flight() == [second, first]  # oldest first
    await metadata_store.end_upload(second.upload_id)
    await metadata_store.end_upload(second.upload_id)  # idempotent
    assert await metadata_store.uploads_in_flight() == [first]


async def test_rate_limits_and_live_processes(metadata_store: MetadataStore) -> None:
    """Limits are set whole per workspace, go with it, and bump their counter; the live
    process count forgets the silent and the departed."""
    from backends.metadata.interface.auth_entities import LimitRow

    store = metadata_store
    await store.create_workspace("team-a")
    seen = (await store.auth_versions()).limits
    await store.set_limits(LimitRow("team-a", 10.0, None, 2.5, 0.0))
    await store.set_limits(LimitRow("default", None, 500.0))
    assert await store.list_limits() == [LimitRow("default", None, 500.0),
                                         LimitRow("team-a", 10.0, None, 2.5, 0.0)]
    await store.set_limits(LimitRow("team-a", rows_per_second=7.0))  # replaces, not merges
    assert (await store.list_limits())[1] == LimitRow("team-a", None, 7.0)
    assert (await store.auth_versions()).limits == seen + 3
    with pytest.raises(errors.NotFound):
        await store.set_limits(LimitRow("no-team", 1.0))
    assert await store.delete_limits("default") is True
    assert await store.delete_limits("default") is False
    assert (await store.auth_versions()).limits == seen + 4
    await store.delete_workspace("team-a")
    assert await store.list_limits() == []
    assert (await store.auth_versions()).limits == seen + 5

    assert await store.live_processes("p1", 10_000, 3000) == 1
    assert await store.live_processes("p2", 11_000, 3000) == 2
    assert await store.live_processes("p1", 11_500, 3000) == 2
    assert await store.live_processes("p1", 14_500, 3000) == 1  # p2 silent for 3.5 s
    await store.live_processes("p3", 14_600, 3000)
    await store.leave_processes("p3")
    assert await store.live_processes("p1", 14_700, 3000) == 1
