"""``mlgate gc`` and ``serve --gc-interval``: what goes, what stays, and the artifacts, on
a local folder, S3 (moto) and Azure (Azurite)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner
from object_stores import AZURITE_ACCOUNT, ObjectServer, new_bucket, new_container

from backends.artifacts.base import ArtifactStore
from backends.metadata.interface.entities import Metric
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_artifact_store, open_metadata_store
from gateway.app import create_app
from gateway.cli import main
from gateway.gc import GcError, Pace, collect, plan
from gateway.keys import ARTIFACTS, METADATA
from gateway.settings import Settings

Client = TestClient[Any, Any]
API = "/api/2.0/mlflow"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture(params=["local", "s3", "azure"])
async def destination(request: pytest.FixtureRequest, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Settings]:
    """Settings with an artifacts destination of each kind, credentials in the
    environment as a user would set them (the CLI reads them there too)."""
    db = f"sqlite:///{tmp_path}/m.db"
    if request.param == "local":
        yield Settings(backend_store_uri=db, artifacts_destination=str(tmp_path / "art"))
        return
    if request.param == "s3":
        server: ObjectServer = request.getfixturevalue("moto_s3_server")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, server.env[name])
        async for bucket in new_bucket(server):
            yield Settings(backend_store_uri=db, artifacts_destination=f"s3://{bucket}/art",
                           s3_endpoint_url=server.endpoint)
        return
    azurite: ObjectServer = request.getfixturevalue("azurite_server")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    async for container in new_container(azurite):
        yield Settings(backend_store_uri=db, artifacts_destination=(
            f"wasbs://{container}@{AZURITE_ACCOUNT}.blob.core.windows.net/art"))


@pytest.fixture
async def local(tmp_path: Path) -> Settings:
    return Settings(backend_store_uri=f"sqlite:///{tmp_path}/m.db",
                    artifacts_destination=str(tmp_path / "art"))


class World:
    """Open stores on ``settings`` and helpers to fill them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: MetadataStore = open_metadata_store(
            settings.backend_store_uri, **settings.metadata_store_options())
        self.artifacts: ArtifactStore = open_artifact_store(
            settings.artifacts_destination, **settings.artifact_store_options())

    async def run(self, exp_id: str = "0", *, points: int = 20, deleted: bool = False) -> str:
        run = await self.store.create_run(exp_id, user_id="u", run_name="r", start_time=1)
        run_id = run.info.run_id
        await self.store.log_batch(run_id, metrics=[
            Metric(k, float(i), i, i) for k in ("a", "b") for i in range(points)])
        for name in ("model/MLmodel", "report.txt"):
            await self.artifacts.put(f"{exp_id}/{run_id}/artifacts/{name}", _chunks(b"x"))
        if deleted:
            await self.store.delete_run(run_id)
        return run_id

    async def has_files(self, exp_id: str, run_id: str) -> bool:
        return await self.artifacts.stat(f"{exp_id}/{run_id}") is not None

    async def exists(self, run_id: str) -> bool:
        return bool(await self.store.gc_runs(run_ids=[run_id]))

    async def gc(self, **kw: Any) -> dict[str, Any]:
        todo = await plan(self.store, **kw)
        return (await collect(self.store, self.artifacts, self.settings, todo)).as_dict()


@pytest.fixture
async def world(local: Settings) -> AsyncIterator[World]:
    w = World(local)
    await w.store.open()
    await w.artifacts.open()
    try:
        yield w
    finally:
        await w.artifacts.aclose()
        await w.store.aclose()


async def _age(store: MetadataStore, run_id: str, ms_ago: int) -> None:
    """Pretend ``run_id`` was deleted ``ms_ago`` ago."""
    async with store._tx() as db:  # type: ignore[attr-defined]
        await db.execute("UPDATE runs SET deleted_time = ? WHERE run_id = ?",
                         (int(time.time() * 1000) - ms_ago, run_id))


# -- what goes ---------------------------------------------------------------------------


async def test_deleted_runs_and_their_artifacts_go_on_every_store(
        destination: Settings) -> None:
    w = World(destination)
    await w.store.open()
    await w.artifacts.open()
    try:
        doomed = await w.run(deleted=True)
        live = await w.run()
        neighbour = await w.run()
        await w.artifacts.put(f"0/{doomed}x/artifacts/f", _chunks(b"y"))  # a prefix sibling
        report = await w.gc()
        assert report["runs"] == [doomed]
        assert report["metric_points"] == 40 and report["artifact_folders"] == 1
        assert not await w.exists(doomed) and not await w.has_files("0", doomed)
        for run_id in (live, neighbour):
            assert await w.exists(run_id) and await w.has_files("0", run_id)
        assert await w.artifacts.stat(f"0/{doomed}x/artifacts/f") is not None
        assert (await w.gc())["runs"] == []
    finally:
        await w.artifacts.aclose()
        await w.store.aclose()


async def test_older_than_counts_from_the_deletion(world: World) -> None:
    old = await world.run(deleted=True)
    young = await world.run(deleted=True)
    await _age(world.store, old, 2 * 86_400_000)
    assert (await world.gc(older_than_ms=86_400_000))["runs"] == [old]
    assert await world.exists(young) and await world.has_files("0", young)
    with pytest.raises(GcError, match="not older than"):
        await plan(world.store, older_than_ms=86_400_000, run_ids=[young])


async def test_run_ids_narrow_and_refuse_active_runs(world: World) -> None:
    first, second = await world.run(deleted=True), await world.run(deleted=True)
    live = await world.run()
    with pytest.raises(GcError, match="not in the deleted lifecycle stage"):
        await plan(world.store, run_ids=[first, live])
    with pytest.raises(GcError, match="not found"):
        await plan(world.store, run_ids=["nope"])
    assert await world.exists(first)
    assert (await world.gc(run_ids=[second]))["runs"] == [second]
    assert await world.exists(first) and await world.exists(live)


async def test_experiment_goes_with_its_runs_and_models(world: World) -> None:
    s = world.store
    doomed_exp = await s.create_experiment("doomed", artifact_root="mlflow-artifacts:")
    other_exp = await s.create_experiment("other", artifact_root="mlflow-artifacts:")
    runs = [await world.run(doomed_exp) for _ in range(2)]
    stray = await world.run(other_exp, deleted=True)
    model = await s.create_logged_model(doomed_exp, name="m")
    await world.artifacts.put(f"{doomed_exp}/models/{model.model_id}/artifacts/MLmodel",
                              _chunks(b"m"))
    live_exp = await s.create_experiment("live", artifact_root="mlflow-artifacts:")
    with pytest.raises(GcError, match="not in the deleted lifecycle stage"):
        await plan(s, experiment_ids=[live_exp])
    await s.delete_experiment(doomed_exp)
    report = await world.gc(experiment_ids=[doomed_exp])
    assert sorted(report["runs"]) == sorted(runs)
    assert report["experiments"] == [doomed_exp]
    assert report["logged_models"] == [model.model_id]
    assert await world.artifacts.stat(f"{doomed_exp}/models/{model.model_id}") is None
    assert not any([await world.has_files(doomed_exp, r) for r in runs])
    assert await world.exists(stray)  # narrowed to the experiment named
    assert (await s.get_experiment(live_exp)).lifecycle_stage == "active"


async def test_logged_model_files_stay_while_a_version_names_them(world: World) -> None:
    s = world.store
    model = await s.create_logged_model("0", name="m")
    folder = f"0/models/{model.model_id}"
    await world.artifacts.put(f"{folder}/artifacts/MLmodel", _chunks(b"m"))
    await s.create_registered_model("reg")
    version = await s.create_model_version("reg", f"models:/{model.model_id}",
                                           model_id=model.model_id)
    await s.delete_logged_model(model.model_id)
    report = await world.gc()
    assert report["logged_models"] == [] and "names it" in report["warnings"][0]
    assert await world.artifacts.stat(folder) is not None
    await s.delete_model_version("reg", version.version)
    assert (await world.gc())["logged_models"] == [model.model_id]
    assert await world.artifacts.stat(folder) is None


async def test_an_interrupted_gc_is_finished_by_the_next(world: World) -> None:
    runs = [await world.run(points=300, deleted=True) for _ in range(3)]
    real = world.store.purge_run_points
    calls = 0

    async def crash_on_fourth(run_id: str, limit: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("killed")
        return await real(run_id, limit)

    world.store.purge_run_points = crash_on_fourth  # type: ignore[method-assign]
    todo = await plan(world.store)
    with pytest.raises(RuntimeError):
        await collect(world.store, world.artifacts, world.settings, todo, pace=Pace(points=250))
    world.store.purge_run_points = real  # type: ignore[method-assign]
    # Half done: the second run lost its files and some points, and still reads as deleted.
    half = await world.store.get_run(runs[1])
    assert half.info.lifecycle_stage == "deleted"
    assert not await world.has_files("0", runs[1]) and await world.has_files("0", runs[2])
    # The lease of the process that died is its own; a new one waits for it to expire.
    async with world.store._tx() as db:  # type: ignore[attr-defined]
        await db.execute("UPDATE mlgate_leases SET until_ms = 0")
    report = await world.gc()
    assert sorted(report["runs"]) == sorted(runs)
    assert not any([await world.exists(r) for r in runs])


async def test_one_gc_at_a_time(world: World) -> None:
    await world.run(deleted=True)
    assert await world.store.take_lease("gc", "another process", int(time.time() * 1000) + 60_000)
    with pytest.raises(GcError, match="another gc is running"):
        await world.gc()


# -- the command -------------------------------------------------------------------------


def test_cli_dry_run_lists_and_deletes_nothing_then_gc_deletes(local: Settings) -> None:
    w = World(local)

    async def seed() -> tuple[str, str]:
        await w.store.open()
        await w.artifacts.open()
        try:
            return await w.run(deleted=True), await w.run()
        finally:
            await w.artifacts.aclose()
            await w.store.aclose()

    doomed, live = asyncio.run(seed())
    args = ["gc", "--backend-store-uri", local.backend_store_uri,
            "--artifacts-destination", local.artifacts_destination]
    runner = CliRunner()
    result = runner.invoke(main, [*args, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == [doomed]
    result = runner.invoke(main, [*args, "--dry-run"])
    assert f"would delete run {doomed}" in result.stdout
    assert (Path(local.artifacts_destination) / "0" / doomed).is_dir()
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["runs"] == [doomed] and out["artifact_folders"] == 1
    assert not (Path(local.artifacts_destination) / "0" / doomed).exists()
    assert (Path(local.artifacts_destination) / "0" / live).is_dir()
    result = runner.invoke(main, [*args, "--run-ids", live])
    assert result.exit_code == 1 and "not in the deleted lifecycle stage" in result.output
    result = runner.invoke(main, [*args, "--older-than", "3x"])
    assert result.exit_code == 2 and "Could not parse" in result.output


# -- with a running server ---------------------------------------------------------------


async def test_gc_run_is_not_found_by_the_server(
        local: Settings, aiohttp_client: Callable[..., Awaitable[Client]]) -> None:
    client = await aiohttp_client(create_app(local))
    resp = await client.post(f"{API}/runs/create", json={"experiment_id": "0"})
    run_id = (await resp.json())["run"]["info"]["run_id"]
    await client.post(f"{API}/runs/log-metric", json={
        "run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0})
    await client.post(f"{API}/runs/delete", json={"run_id": run_id})
    assert (await client.get(f"{API}/runs/get", params={"run_id": run_id})).status == 200
    store = client.app[METADATA]
    await collect(store, client.app[ARTIFACTS], local, await plan(store))
    resp = await client.get(f"{API}/runs/get", params={"run_id": run_id})
    assert resp.status == 404
    assert (await resp.json())["error_code"] == "RESOURCE_DOES_NOT_EXIST"


async def test_serve_sweeps_on_its_interval(
        tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> None:
    settings = Settings(backend_store_uri=f"sqlite:///{tmp_path}/m.db",
                        artifacts_destination=str(tmp_path / "art"), gc_interval=0.1,
                        gc_older_than="0s")
    client = await aiohttp_client(create_app(settings))
    resp = await client.post(f"{API}/runs/create", json={"experiment_id": "0"})
    run_id = (await resp.json())["run"]["info"]["run_id"]
    resp = await client.put(f"/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/f.txt",
                            data=b"x")
    assert resp.status == 200
    await client.post(f"{API}/runs/delete", json={"run_id": run_id})
    for _ in range(100):
        resp = await client.get(f"{API}/runs/get", params={"run_id": run_id})
        if resp.status == 404:
            break
        await asyncio.sleep(0.05)
    assert resp.status == 404
    assert not (tmp_path / "art" / "0" / run_id).exists()
