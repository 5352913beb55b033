"""The garbage collection part of the MetadataStore contract (backends/metadata/interface/gc.py),
run over every implementation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import database_uri

from backends import errors
from backends.metadata.interface.entities import Metric, Param, Tag
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_metadata_store

ROOT = "mlflow-artifacts:"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
async def metadata_store(request: pytest.FixtureRequest, tmp_path: Path
                         ) -> AsyncIterator[MetadataStore]:
    store = open_metadata_store(database_uri(request, tmp_path, "gc"), artifact_root=ROOT)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def _run(store: MetadataStore, exp_id: str, points: int = 0) -> str:
    run = await store.create_run(exp_id, user_id="u", run_name="r", start_time=1)
    run_id = run.info.run_id
    await store.log_batch(run_id, params=[Param("p", "1")], tags=[Tag("t", "v")])
    for key in ("a", "b"):
        await store.log_batch(run_id, metrics=[
            Metric(key, float(i), 1000 + i, i) for i in range(points)])
    return run_id


async def test_gc_runs_lists_deleted_runs_by_deletion(metadata_store: MetadataStore) -> None:
    s = metadata_store
    e1 = await s.create_experiment("e1", artifact_root=ROOT)
    e2 = await s.create_experiment("e2", artifact_root=ROOT)
    live, first, second, other = [await _run(s, e) for e in (e1, e1, e1, e2)]
    before = int(time.time() * 1000)
    for run_id in (first, second, other):
        await s.delete_run(run_id)
    runs = await s.gc_runs()
    assert {r.run_id for r in runs} == {first, second, other}
    assert all(r.lifecycle_stage == "deleted" and r.deleted_time is not None
               and r.deleted_time >= before for r in runs)
    got = {r.run_id: r for r in runs}
    assert got[first].experiment_id == e1
    assert got[first].artifact_uri == f"mlflow-artifacts:/{e1}/{first}/artifacts"
    assert {r.run_id for r in await s.gc_runs(experiment_ids=[e2])} == {other}
    # Named runs come back whatever their stage, so the caller can refuse an active one.
    named = await s.gc_runs(run_ids=[live, first, "nope"])
    assert {(r.run_id, r.lifecycle_stage) for r in named} == {
        (live, "active"), (first, "deleted")}
    await s.restore_run(second)
    assert second not in {r.run_id for r in await s.gc_runs()}
    assert (await s.gc_runs(run_ids=[second]))[0].deleted_time is None


async def test_purge_run_points_in_chunks_only_when_deleted(
        metadata_store: MetadataStore) -> None:
    s = metadata_store
    exp = await s.create_experiment("e", artifact_root=ROOT)
    doomed = await _run(s, exp, points=50)
    live = await _run(s, exp, points=50)
    assert await s.purge_run_points(live, 30) == 0  # active: untouched
    await s.delete_run(doomed)
    assert await s.purge_run_points(doomed, 30) == 30
    left = [len((await s.get_metric_history(doomed, k)).items) for k in "ab"]
    assert sum(left) == 70
    assert await s.purge_run_points(doomed, 100) == 70
    assert await s.purge_run_points(doomed, 100) == 0
    assert len((await s.get_metric_history(live, "a")).items) == 50
    assert await s.purge_run_points("unknown", 10) == 0


async def test_purge_runs_removes_deleted_runs_only(metadata_store: MetadataStore) -> None:
    s = metadata_store
    exp = await s.create_experiment("e", artifact_root=ROOT)
    doomed = await _run(s, exp, points=5)
    live = await _run(s, exp, points=5)
    await s.delete_run(doomed)
    # Points still there (a crash before they went): the rows take them along.
    assert await s.purge_runs([doomed, live, "unknown"]) == [doomed]
    with pytest.raises(errors.NotFound):
        await s.get_run(doomed)
    assert await s.gc_runs(run_ids=[doomed]) == []
    assert (await s.get_run(live)).params == (Param("p", "1"),)
    assert len((await s.get_metric_history(live, "b")).items) == 5
    assert await s.purge_runs([doomed]) == []


async def test_experiment_goes_once_its_runs_and_models_are_gone(
        metadata_store: MetadataStore) -> None:
    s = metadata_store
    exp = await s.create_experiment("e", artifact_root=ROOT, tags=[Tag("k", "v")])
    keep = await s.create_experiment("keep", artifact_root=ROOT)
    run_id = await _run(s, exp, points=3)
    model = await s.create_logged_model(exp, name="m")
    await s.delete_experiment(exp)
    found = await s.gc_experiments()
    assert [(e.experiment_id, e.lifecycle_stage) for e in found] == [(exp, "deleted")]
    assert found[0].last_update_time is not None
    assert [e.experiment_id for e in await s.gc_experiments([keep, "999"])] == [keep]
    with pytest.raises(errors.InvalidArgument):
        await s.gc_experiments(["x"])
    # Deleting an experiment deletes its runs; its models are listed by experiment.
    assert [r.run_id for r in await s.gc_runs(experiment_ids=[exp])] == [run_id]
    assert [m.model_id for m in await s.gc_logged_models(experiment_ids=[exp])] == [
        model.model_id]
    assert await s.purge_experiments([exp]) == []  # runs and a model left
    assert await s.purge_runs([run_id]) == [run_id]
    assert await s.purge_logged_models([model.model_id]) == [model.model_id]
    assert await s.purge_experiments([exp, keep]) == [exp]
    with pytest.raises(errors.NotFound):
        await s.get_experiment(exp)
    assert (await s.get_experiment(keep)).lifecycle_stage == "active"


async def test_logged_model_named_by_a_live_version_stays(
        metadata_store: MetadataStore) -> None:
    s = metadata_store
    exp = await s.create_experiment("e", artifact_root=ROOT)
    used = await s.create_logged_model(exp, name="used")
    unused = await s.create_logged_model(exp, name="unused")
    live = await s.create_logged_model(exp, name="live")
    await s.create_registered_model("reg")
    version = await s.create_model_version("reg", f"models:/{used.model_id}",
                                           model_id=used.model_id)
    for m in (used, unused):
        await s.delete_logged_model(m.model_id)
    found = {m.model_id: m for m in await s.gc_logged_models()}
    assert set(found) == {used.model_id, unused.model_id}
    assert found[used.model_id].referenced and not found[unused.model_id].referenced
    assert found[unused.model_id].artifact_location == unused.artifact_uri
    assert await s.purge_logged_models(
        [used.model_id, unused.model_id, live.model_id]) == [unused.model_id]
    await s.delete_model_version("reg", version.version)
    assert not (await s.gc_logged_models(model_ids=[used.model_id]))[0].referenced
    assert await s.purge_logged_models([used.model_id]) == [used.model_id]
    with pytest.raises(errors.NotFound):
        await s.get_logged_model(used.model_id, allow_deleted=True)


async def test_lease_is_held_by_one_holder_until_it_expires(
        metadata_store: MetadataStore) -> None:
    s = metadata_store
    now = int(time.time() * 1000)
    assert await s.take_lease("gc", "a", now + 60_000)
    assert not await s.take_lease("gc", "b", now + 60_000)
    assert await s.take_lease("gc", "a", now + 120_000)  # renewed
    assert await s.take_lease("gc", "a", now + 120_000)  # renewed to the time it had
    assert await s.take_lease("other", "b", now + 60_000)
    await s.release_lease("gc", "b")  # not b's: nothing happens
    assert not await s.take_lease("gc", "b", now + 60_000)
    await s.release_lease("gc", "a")
    assert await s.take_lease("gc", "b", now - 1)  # free; b's lease is already over
    assert await s.take_lease("gc", "a", now + 60_000)  # expired: taken over
