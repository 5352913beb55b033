"""Logged-model routes through a real socket: JSON shapes, listing, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts/artifacts"


async def _client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    settings = Settings(backend_store_uri=f"sqlite:///{tmp_path}/lm.db",
                        artifacts_destination=str(tmp_path / "art"))
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


async def test_logged_model_round_trip(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path)
    exp = (await (await client.post(f"{API}/experiments/create", json={"name": "e"})).json())
    exp_id = exp["experiment_id"]
    run = (await (await client.post(f"{API}/runs/create", json={"experiment_id": exp_id}))
           .json())["run"]["info"]["run_id"]
    resp = await client.post(f"{API}/logged-models", json={
        "experiment_id": exp_id, "name": "model", "source_run_id": run,
        "params": [{"key": "C", "value": "1"}], "tags": [{"key": "t", "value": "v"}]})
    assert resp.status == 200, await resp.text()
    info = (await resp.json())["model"]["info"]
    model_id = info["model_id"]
    assert info["status"] == "LOGGED_MODEL_PENDING"
    assert info["model_type"] == ""
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/models/{model_id}/artifacts"

    for name in ("MLmodel", "sub/model.pkl"):
        put = await client.put(f"{ART}/{exp_id}/models/{model_id}/artifacts/{name}", data=b"x")
        assert put.status == 200
    listing = await (await client.get(
        f"{API}/logged-models/{model_id}/artifacts/directories")).json()
    assert listing["root_uri"] == info["artifact_uri"]
    assert {f["path"]: f["is_dir"] for f in listing["files"]} == {"MLmodel": False, "sub": True}

    resp = await client.patch(f"{API}/logged-models/{model_id}",
                              json={"model_id": model_id, "status": "LOGGED_MODEL_READY"})
    assert (await resp.json())["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    resp = await client.post(f"{API}/runs/log-batch", json={"run_id": run, "metrics": [
        {"key": "acc", "value": 0.5, "timestamp": 3, "step": 0, "model_id": model_id}]})
    assert resp.status == 200
    found = await (await client.post(f"{API}/logged-models/search", json={
        "experiment_ids": [exp_id], "filter": "name = 'model'"})).json()
    model = found["models"][0]
    assert model["data"]["metrics"] == [{"key": "acc", "value": 0.5, "timestamp": 3, "step": 0,
                                         "model_id": model_id, "run_id": run}]
    assert model["data"]["params"] == [{"key": "C", "value": "1"}]

    assert (await client.delete(f"{API}/logged-models/{model_id}/tags/t")).status == 200
    resp = await client.delete(f"{API}/logged-models/{model_id}/tags/t")
    assert resp.status == 404
    assert (await client.delete(f"{API}/logged-models/{model_id}")).status == 200
    resp = await client.get(f"{API}/logged-models/{model_id}")
    assert resp.status == 404
    assert (await resp.json())["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    resp = await client.get(f"{API}/logged-models/{model_id}", params={"allow_deleted": "true"})
    assert resp.status == 200


async def test_logged_model_bad_input(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path)
    resp = await client.post(f"{API}/logged-models", json={"experiment_id": "0", "name": "a/b"})
    assert resp.status == 400
    resp = await client.post(f"{API}/logged-models", json={"name": "x"})
    assert resp.status == 400
    resp = await client.post(f"{API}/logged-models", json={"experiment_id": "77"})
    assert resp.status == 404
    resp = await client.post(f"{API}/logged-models/search", json={"experiment_ids": []})
    assert resp.status == 400
    resp = await client.get(f"{API}/logged-models/m-{'0' * 32}/artifacts/directories")
    assert resp.status == 404
