"""Artifact roots are the server's: an experiment's ``artifact_location`` is accepted only
under a root this server serves, run and logged-model roots are joined segment by segment,
and a listing through a run or a logged model never leaves that run's (model's) root.

Victims' files are planted on disk (another run's and model's roots, another experiment's
folder, the destination's top, a folder outside it); a caller's fresh run or model must list
exactly what the caller put there, whatever ``artifact_location`` it asked for.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.artifact_paths import (
    artifact_location,
    logged_model_root,
    parse_location,
    run_root,
    served_roots,
    under_root,
)
from gateway.errors import MlflowError
from gateway.keys import METADATA
from gateway.settings import Settings

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]

API = "/api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"
SECRET = b"SECRET"
RUN = "0123456789abcdef0123456789abcdef"


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(backend_store_uri=f"sqlite:///{tmp_path}/m.db",
                    artifacts_destination=str(tmp_path / "art"), **kw)


# -- the pure checks ---------------------------------------------------------------------


@pytest.mark.parametrize(("given_", "stored"), [
    ("mlflow-artifacts:/team-a/project", "mlflow-artifacts:/team-a/project"),
    ("mlflow-artifacts:team-a//project/./", "mlflow-artifacts:/team-a/project"),
    ("mlflow-artifacts:///x", "mlflow-artifacts:/x"),
    ("MLFLOW-ARTIFACTS:/x", "mlflow-artifacts:/x"),
    ("mlflow-artifacts:/", "mlflow-artifacts:/"),
])
def test_proxied_locations_are_accepted_normalized(tmp_path: Path, given_: str,
                                                   stored: str) -> None:
    assert artifact_location(given_, served_roots(_settings(tmp_path))) == stored


@pytest.mark.parametrize("bad", [
    "mlflow-artifacts:/1/0123/artifacts#",  # the issue's: '#' pushes the run id out
    "mlflow-artifacts:/1/0123/artifacts?",
    "mlflow-artifacts:/1/0123/artifacts#/2",
    "mlflow-artifacts:/1/0123/artifacts;x",
    "mlflow-artifacts:/1/%2e%2e/2",
    "mlflow-artifacts:/1%2F0123",
    "mlflow-artifacts:/1/../2",
    "mlflow-artifacts:/1\\..\\2",
    "mlflow-artifacts:/1/\x00",
    "mlflow-artifacts://evil.example/1",
    "mlflow-artifacts://localhost:5000/1",
    " mlflow-artifacts:/1",
    "file:///etc#",
    "file:///etc",
    "/etc",
    "relative/path",
    "./mlartifacts/1",
    "C:/mlartifacts",
    "s3://bucket/x",
    "http://127.0.0.1/api/2.0/mlflow-artifacts/artifacts/1",
    "runs:/0123/artifacts",
    "models:/m/1",
    "",
    "   ",
])
def test_other_locations_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(MlflowError) as err:
        artifact_location(bad, served_roots(_settings(tmp_path)))
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_staging_folder_is_no_location(tmp_path: Path) -> None:
    """The local store stages uploads in progress in <destination>/.mlgate-tmp, which the
    sweep empties: no experiment may keep its artifacts there."""
    roots = served_roots(_settings(tmp_path))
    destination = Path(_settings(tmp_path).artifacts_destination).resolve()
    for bad in ("mlflow-artifacts:/.mlgate-tmp", f"mlflow-artifacts:/.mlgate-tmp/{'0' * 32}",
                "mlflow-artifacts:/./.mlgate-tmp", f"{destination}/.mlgate-tmp",
                f"file://{destination}/.mlgate-tmp/{'0' * 32}/x"):
        with pytest.raises(MlflowError) as err:
            artifact_location(bad, roots)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE", bad
    assert artifact_location("mlflow-artifacts:/team/.mlgate-tmp", roots)  # deeper is fine


def test_local_roots_of_the_server_are_accepted(tmp_path: Path) -> None:
    art = (tmp_path / "art").resolve()
    for s in (_settings(tmp_path), _settings(tmp_path, serve_artifacts=False)):
        roots = served_roots(s)
        assert artifact_location(f"{art}/team//x/", roots) == f"{art}/team/x"
        assert artifact_location(f"file://{art}/team", roots) == f"file://{art}/team"
        assert artifact_location(f"file://localhost{art}/team", roots) == f"file://{art}/team"
        for bad in (f"{art}/../elsewhere", f"{art}-sibling/x", str(tmp_path),
                    f"file://otherhost{art}/x", f"{art}/x#", f"{art}/x?y"):
            with pytest.raises(MlflowError):
                artifact_location(bad, roots)
    roots = served_roots(_settings(tmp_path, serve_artifacts=False))
    with pytest.raises(MlflowError):
        artifact_location("mlflow-artifacts:/x", roots)  # not proxying: not served here
    roots = served_roots(_settings(tmp_path, default_artifact_root="s3://bucket/prefix"))
    assert artifact_location("s3://bucket/prefix/a/", roots) == "s3://bucket/prefix/a"
    for bad in ("s3://bucket/prefixed", "s3://bucket/other", "s3://other/prefix/a"):
        with pytest.raises(MlflowError):
            artifact_location(bad, roots)


def test_stored_roots_are_checked_at_use(tmp_path: Path) -> None:
    roots = served_roots(_settings(tmp_path))
    ok = run_root(f"mlflow-artifacts:/1/{RUN}/artifacts", roots, RUN)
    assert ok.segments == ("1", RUN, "artifacts")
    model = logged_model_root("mlflow-artifacts:/1/models/m-1/artifacts", roots, "m-1")
    assert model.uri == "mlflow-artifacts:/1/models/m-1/artifacts"
    for bad in (
        f"mlflow-artifacts:/1/victim/artifacts#/2/{RUN}/artifacts",  # a row from before
        f"mlflow-artifacts:/1/victim/artifacts?/2/{RUN}/artifacts",
        f"file:///etc#/2/{RUN}/artifacts",
        f"/etc/{RUN}/artifacts",
        f"mlflow-artifacts:/1/{RUN}/../victim/artifacts",
        "mlflow-artifacts:/1/victim/artifacts",  # not this run's folder
        f"mlflow-artifacts://evil.example/1/{RUN}/artifacts",
        f"s3://bucket/1/{RUN}/artifacts",
    ):
        with pytest.raises(MlflowError) as err:
            run_root(bad, roots, RUN)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowError):
        under_root(ok, "../victim")
    assert under_root(ok, "a//./b/").segments == ("1", RUN, "artifacts", "a", "b")
    assert parse_location("/x/y").uri == "/x/y"


# -- through HTTP ------------------------------------------------------------------------


_names = itertools.count()


@dataclass
class Victim:
    """Another team's experiment, run and logged model, with files in their roots."""

    experiment_id: str
    run_id: str
    run_root: str
    model_id: str
    model_root: str


def _disk(tmp_path: Path, root_uri: str) -> Path:
    """Where a root accepted by these settings lives on disk."""
    if root_uri.startswith("mlflow-artifacts:"):
        return tmp_path / "art" / root_uri.removeprefix("mlflow-artifacts:").lstrip("/")
    return Path(root_uri.removeprefix("file://"))


def _plant(path: Path, name: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / f"secret-{name}.txt").write_bytes(SECRET + name.encode())


async def _create_experiment(client: Client, location: str | None = None) -> Any:
    body: dict[str, Any] = {"name": f"e{next(_names)}"}
    if location is not None:
        body["artifact_location"] = location
    return await client.post(f"{API}/experiments/create", json=body)


async def _run_in(client: Client, exp_id: str) -> dict[str, Any]:
    resp = await client.post(f"{API}/runs/create", json={"experiment_id": exp_id})
    assert resp.status == 200, await resp.text()
    info: dict[str, Any] = (await resp.json())["run"]["info"]
    return info


async def _model_in(client: Client, exp_id: str) -> dict[str, Any]:
    resp = await client.post(f"{API}/logged-models", json={"experiment_id": exp_id})
    assert resp.status == 200, await resp.text()
    info: dict[str, Any] = (await resp.json())["model"]["info"]
    return info


async def _victim(client: Client, tmp_path: Path) -> Victim:
    resp = await _create_experiment(client)
    exp_id = (await resp.json())["experiment_id"]
    run, model = await _run_in(client, exp_id), await _model_in(client, exp_id)
    victim = Victim(exp_id, run["run_id"], run["artifact_uri"], model["model_id"],
                    model["artifact_uri"])
    _plant(_disk(tmp_path, victim.run_root), "run")
    _plant(_disk(tmp_path, victim.run_root) / "deep", "run-deep")
    _plant(_disk(tmp_path, victim.model_root), "model")
    _plant(tmp_path / "art" / exp_id, "experiment")
    _plant(tmp_path / "art", "destination")
    _plant(tmp_path / "outside", "outside")
    return victim


async def _list_run(client: Client, run_id: str, path: str = "") -> Any:
    params = {"run_id": run_id, **({"path": path} if path else {})}
    return await client.get(f"{API}/artifacts/list", params=params)


async def _walk(client: Client, url: str, key: str, params: dict[str, str],
                depth: int = 0) -> list[str]:
    """Every file below a listing, run-relative, following its directories."""
    resp = await client.get(url, params=params)
    assert resp.status == 200, await resp.text()
    found = []
    for entry in (await resp.json()).get("files", []):
        if entry["is_dir"] and depth < 4:
            found += await _walk(client, url, key, {**params, key: entry["path"]}, depth + 1)
        else:
            found.append(entry["path"])
    return found


async def test_hash_location_cannot_reach_another_run(aiohttp_client: MakeClient,
                                                      tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_settings(tmp_path)))
    victim = await _victim(client, tmp_path)
    for attack in (f"{victim.run_root}#", f"{victim.model_root}?x=",
                   f"file://{tmp_path / 'outside'}#", "file:///etc#"):
        resp = await _create_experiment(client, attack)
        assert resp.status == 400, (attack, await resp.text())
        body = await resp.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "artifact_location" in body["message"]


async def test_rows_from_before_are_refused_at_use(aiohttp_client: MakeClient,
                                                   tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_settings(tmp_path)))
    victim = await _victim(client, tmp_path)
    # An experiment stored before the check, with the location: the store now joins
    # segments, so a run created in it gets a root of its own.
    exp_id = await client.app[METADATA].create_experiment(
        "legacy", artifact_root="mlflow-artifacts:", artifact_location=f"{victim.run_root}#")
    run = await _run_in(client, exp_id)
    model = await _model_in(client, exp_id)
    assert run["artifact_uri"] == f"{victim.run_root}/{run['run_id']}/artifacts"
    resp = await _list_run(client, run["run_id"])
    assert resp.status == 200 and "files" not in await resp.json()
    # A run and a model that were created with concatenated roots, as today's main did.
    with closing(sqlite3.connect(tmp_path / "m.db")) as db, db:
        db.execute("UPDATE runs SET artifact_uri = ? WHERE run_id = ?",
                   (f"{victim.run_root}#/{exp_id}/{run['run_id']}/artifacts", run["run_id"]))
        db.execute("UPDATE logged_models SET artifact_location = ? WHERE model_id = ?",
                   (f"file://{tmp_path / 'outside'}#/{exp_id}/models/{model['model_id']}/"
                    + "artifacts", model["model_id"]))
    for resp in (await _list_run(client, run["run_id"]),
                 await _list_run(client, run["run_id"], "deep"),
                 await client.get(f"{API}/logged-models/{model['model_id']}"
                                  "/artifacts/directories")):
        text = await resp.text()
        assert resp.status == 400, text
        assert (await resp.json())["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "secret" not in text


async def test_ordinary_use_keeps_working(aiohttp_client: MakeClient, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_settings(tmp_path)))
    for location, stored in ((None, None), ("mlflow-artifacts:/team-a//proj/",
                                            "mlflow-artifacts:/team-a/proj")):
        resp = await _create_experiment(client, location)
        assert resp.status == 200, await resp.text()
        exp_id = (await resp.json())["experiment_id"]
        exp = (await (await client.get(f"{API}/experiments/get",
                                       params={"experiment_id": exp_id})).json())["experiment"]
        assert exp["artifact_location"] == (stored or f"mlflow-artifacts:/{exp_id}")
        run = await _run_in(client, exp_id)
        assert run["artifact_uri"] == f"{exp['artifact_location']}/{run['run_id']}/artifacts"
        path = run["artifact_uri"].removeprefix("mlflow-artifacts:").lstrip("/")
        assert (await client.put(f"{PROXY}/{path}/d/own.txt", data=b"own")).status == 200
        assert await _walk(client, f"{API}/artifacts/list", "path",
                           {"run_id": run["run_id"]}) == ["d/own.txt"]


# -- the property ------------------------------------------------------------------------


def _locations(tmp_path: Path, victim: Victim) -> st.SearchStrategy[str]:
    """artifact_location values: schemes and hosts, other experiments' and runs' roots,
    absolute paths inside and outside the destination, '#', '?', '..' and encodings. About
    a third are plausible locations under a served root, so listings get exercised too."""
    art, outside = str((tmp_path / "art").resolve()), str(tmp_path / "outside")
    served = ["mlflow-artifacts:", "mlflow-artifacts:/", "mlflow-artifacts:///",
              "MLFLOW-ARTIFACTS:/", f"{art}/", f"file://{art}/", f"file://localhost{art}/"]
    elsewhere = [
        "mlflow-artifacts://", "mlflow-artifacts://evil.example/", "file://", "file:",
        "file://evil.example", "", "/", "s3://bucket/", "runs:/", "C:",
        "http://127.0.0.1:1/api/2.0/mlflow-artifacts/artifacts/",
        f"file://{outside}/", f"{outside}/", f"{art}/../", f"{art}-sibling/",
    ]
    clean = [victim.experiment_id, victim.run_id, "artifacts", "models", victim.model_id,
             ".", "", "x", "deep", "art", tmp_path.name]
    hostile = ["..", "%2e%2e", "%252e%252e", "%2F", "%23", "..%2f", "\\..", "etc", "a#b",
               "a?b", "a;b", "\x7f"]
    benign = ["", "/", "/."]
    tails = [*benign, "#", "?", "#/x", "?x=1", ";p", "%23", "%3F", "/..", "#/../..", "\x00"]

    def joined(prefix: str, segments: list[str], tail: str) -> str:
        return prefix + "/".join(segments) + tail

    plausible = st.builds(joined, st.sampled_from(served),
                          st.lists(st.sampled_from(clean), max_size=5), st.sampled_from(benign))
    hostile_ = st.builds(joined, st.sampled_from(served + elsewhere),
                         st.lists(st.sampled_from(clean + hostile), max_size=6),
                         st.sampled_from(tails))
    others_roots = st.builds(
        lambda root, tail: root + tail,
        st.sampled_from([victim.run_root, victim.model_root, f"{art}/{victim.experiment_id}",
                         f"mlflow-artifacts:/{victim.experiment_id}", art, outside]),
        st.sampled_from(tails))
    return st.one_of(plausible, hostile_, others_roots, st.text(max_size=30))


async def _check_location(client: Client, tmp_path: Path, location: str) -> None:
    """Create an experiment at ``location`` and a run and a logged model in it. Both are
    fresh, so anything their listings show is someone else's. Then put a file in the run as
    a client would, and check that the run lists and downloads exactly that."""
    resp = await _create_experiment(client, location)
    if resp.status != 200:
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error_code"] == "INVALID_PARAMETER_VALUE"
        return
    exp_id = (await resp.json())["experiment_id"]
    run, model = await _run_in(client, exp_id), await _model_in(client, exp_id)
    run_list = f"{API}/artifacts/list"
    model_list = f"{API}/logged-models/{model['model_id']}/artifacts/directories"
    assert await _walk(client, run_list, "path", {"run_id": run["run_id"]}) == [], location
    assert await _walk(client, model_list, "artifact_directory_path", {}) == [], location
    for rel in ("..", "../..", "%2e%2e", "/etc", "x/../..", "deep"):
        listed = await _list_run(client, run["run_id"], rel)
        assert listed.status == 400 or "files" not in await listed.json(), (location, rel)

    root = run["artifact_uri"]
    assert root.endswith(f"/{run['run_id']}/artifacts") and not set("#?%;") & set(root)
    proxied = root.startswith("mlflow-artifacts:")
    path = root.removeprefix("mlflow-artifacts:").lstrip("/")
    if proxied:
        put = await client.put(f"{PROXY}/{path}/own.txt", data=b"own")
        assert put.status == 200, await put.text()
    else:
        disk = _disk(tmp_path, root)
        assert disk.resolve().is_relative_to((tmp_path / "art").resolve()), root
        disk.mkdir(parents=True, exist_ok=True)
        (disk / "own.txt").write_bytes(b"own")
    files = await _walk(client, run_list, "path", {"run_id": run["run_id"]})
    assert files == ["own.txt"], (location, root, files)
    if proxied:  # the client downloads what it lists from <root>/<path>
        for name in files:
            assert await (await client.get(f"{PROXY}/{path}/{name}")).read() == b"own"


@pytest.mark.parametrize("serve", [True, False], ids=["proxied", "direct"])
async def test_no_location_reaches_outside_the_callers_roots(
    aiohttp_client: MakeClient, tmp_path: Path, serve: bool
) -> None:
    client = await aiohttp_client(create_app(_settings(tmp_path, serve_artifacts=serve)))
    victim = await _victim(client, tmp_path)
    loop = asyncio.get_running_loop()

    # Hypothesis runs its examples synchronously: in a worker thread, each example's HTTP
    # calls go back to this loop, which serves them while the test awaits the thread.
    @example(f"{victim.run_root}#")
    @example(f"file://{tmp_path / 'outside'}#")
    @example(f"mlflow-artifacts:/{victim.experiment_id}/{victim.run_id}/artifacts")
    @example(f"{(tmp_path / 'art').resolve()}/{victim.experiment_id}")
    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_locations(tmp_path, victim))
    def property_(location: str) -> None:
        asyncio.run_coroutine_threadsafe(
            _check_location(client, tmp_path, location), loop).result(timeout=30)

    await loop.run_in_executor(None, property_)
