"""Values longer than a column, and characters that SQL or a driver treats specially, through
the HTTP API on SQLite, PostgreSQL and MariaDB.

A value the database cannot hold is the client's mistake: 400 INVALID_PARAMETER_VALUE, never
a 500 (SQLite, and PostgreSQL where its columns are TEXT, store it). Names and values
holding quotes, backslashes, ``%`` (which aiomysql formats with) and 4-byte characters come
back as they were sent.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from access_world import ADMIN, ADMIN_PASSWORD, seed_admin
from aiohttp.test_utils import TestClient
from conftest import database_uri

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
AUTH = {"Authorization": "Basic " + base64.b64encode(
    f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()}
ODD = "a%b%%c\\d'e`f\"g 😀 %s ?"
# Keys allow only letters, digits and "_-. :/" (as MLflow's); the odd characters are for
# values and names.
KEY = "k_1 -x: 50/50.1"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_uri(request, tmp_path, "limits")


@pytest.fixture
async def client(store_uri: str, tmp_path: Path, aiohttp_client: Any) -> TestClient:
    settings = Settings(backend_store_uri=store_uri, artifacts_destination=str(tmp_path / "art"))
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def auth_client(store_uri: str, tmp_path: Path, aiohttp_client: Any) -> TestClient:
    await seed_admin(store_uri)
    settings = Settings(backend_store_uri=store_uri, artifacts_destination=str(tmp_path / "art"),
                        auth=True, auth_max_failures=100_000)
    return await aiohttp_client(create_app(settings))


async def _call(client: TestClient, path: str, body: Any, prefix: str = API) -> tuple[int, Any]:
    resp = await client.post(prefix + path, json=body, headers=AUTH)
    return resp.status, await resp.json(content_type=None)


async def _get(client: TestClient, path: str, params: dict[str, str]) -> Any:
    resp = await client.get(API + path, params=params, headers=AUTH)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _refused(status: int, body: Any, store_uri: str) -> None:
    if status == 200 and not store_uri.startswith("mysql:"):
        return  # SQLite's and mlgate's PostgreSQL columns hold text of any length
    assert status == 400, (status, body)
    assert body["error_code"] == "INVALID_PARAMETER_VALUE", body


async def test_a_registered_model_name_too_long_is_refused(
        client: TestClient, store_uri: str) -> None:
    _refused(*await _call(client, "/registered-models/create", {"name": "m" * 300}), store_uri)


async def test_a_model_version_run_id_too_long_is_refused(
        client: TestClient, store_uri: str) -> None:
    status, body = await _call(client, "/registered-models/create", {"name": "model"})
    assert status == 200, body
    _refused(*await _call(client, "/model-versions/create", {
        "name": "model", "source": "mlflow-artifacts:/x", "run_id": "r" * 300}), store_uri)


async def test_a_role_name_too_long_is_refused(auth_client: TestClient, store_uri: str) -> None:
    _refused(*await _call(auth_client, "/roles/create",
                          {"name": "r" * 300, "workspace": "default"}, API3), store_uri)


async def test_special_characters_round_trip(client: TestClient) -> None:
    status, body = await _call(client, "/experiments/create", {"name": "exp " + ODD})
    assert status == 200, body
    exp_id = body["experiment_id"]
    got = await _get(client, "/experiments/get-by-name", {"experiment_name": "exp " + ODD})
    assert got["experiment"]["experiment_id"] == exp_id
    status, body = await _call(client, "/runs/create", {"experiment_id": exp_id,
                                                         "start_time": 1})
    run_id = body["run"]["info"]["run_id"]
    status, body = await _call(client, "/runs/log-batch", {
        "run_id": run_id, "params": [{"key": KEY, "value": "v" + ODD}],
        "tags": [{"key": KEY, "value": "v" + ODD}],
        "metrics": [{"key": KEY, "value": 1.5, "timestamp": 1, "step": 0}]})
    assert status == 200, body
    data = (await _get(client, "/runs/get", {"run_id": run_id}))["run"]["data"]
    assert {"key": KEY, "value": "v" + ODD} in data["params"]
    assert {"key": KEY, "value": "v" + ODD} in data["tags"]
    assert [m["key"] for m in data["metrics"]] == [KEY]
    history = await _get(client, "/metrics/get-history", {"run_id": run_id, "metric_key": KEY})
    assert [m["value"] for m in history["metrics"]] == [1.5]
    # LIKE patterns and quotes in a filter reach the database as values, not as SQL.
    for condition, found in (("= 'v%'", 0), ("LIKE 'va%b%%c%'", 1), ("LIKE '%😀 %s ?'", 1),
                             ("LIKE '%`f\"g%'", 1), ("LIKE 'x%'", 0)):
        status, body = await _call(client, "/runs/search", {
            "experiment_ids": [exp_id], "filter": f"params.`{KEY}` {condition}"})
        assert status == 200, body
        assert len(body.get("runs", [])) == found, (condition, body)
    status, body = await _call(client, "/runs/search", {
        "experiment_ids": [exp_id], "filter": f"params.`{KEY}` LIKE 'v%😀%'"})
    assert status == 200 and len(body.get("runs", [])) == 1, body
    status, body = await _call(client, "/registered-models/create", {"name": "model " + ODD})
    assert status == 200, body
    got = await _get(client, "/registered-models/get", {"name": "model " + ODD})
    assert got["registered_model"]["name"] == "model " + ODD
