"""metrics/get-history through a real socket, on SQLite and PostgreSQL: the lean rendering
(rows, no Metric per point) gives byte for byte what rendering each Metric gives."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway import render
from gateway.app import create_app
from gateway.keys import METADATA
from gateway.settings import Settings

API = "/api/2.0/mlflow"

POINTS = [  # (value, timestamp, step), logged out of order
    (0.25, 5, 2), (math.nan, 1, 1), (math.inf, 2, 0), (-math.inf, 2, 0), (-0.0, 3, 7),
    (1e-07, 4, 3), (1e16, 4, 2), (123456789.125, 9, 2**40), (0.1, 1, -3),
]


@pytest.fixture(params=["sqlite", "postgres"])
async def client(request: pytest.FixtureRequest, aiohttp_client: Any,
                 tmp_path: Path) -> TestClient:
    uri = (request.getfixturevalue("pg_database") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/history.db")
    settings = Settings(backend_store_uri=uri, artifacts_destination=str(tmp_path / "art"))
    c: TestClient = await aiohttp_client(create_app(settings))
    return c


def _json_value(v: float) -> Any:
    """As protobuf's JSON (the mlflow client) spells it."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


async def test_history_bytes_match_metric_rendering(client: TestClient) -> None:
    exp = (await (await client.post(f"{API}/experiments/create", json={"name": "h"})).json())
    run = (await (await client.post(f"{API}/runs/create", json={
        "experiment_id": exp["experiment_id"]})).json())["run"]["info"]["run_id"]
    resp = await client.post(f"{API}/runs/log-batch", json={"run_id": run, "metrics": [
        {"key": "h", "value": _json_value(v), "timestamp": ts, "step": step}
        for v, ts, step in POINTS]})
    assert resp.status == 200, await resp.text()

    store = client.app[METADATA]
    expected = (await store.get_metric_history(run, "h")).items
    body = await (await client.get(f"{API}/metrics/get-history",
                                   params={"run_id": run, "metric_key": "h"})).read()
    assert body == orjson.dumps({"metrics": [render.metric(m) for m in expected]})
    metrics = orjson.loads(body)["metrics"]
    assert [m["value"] for m in metrics[:2]] == [0.1, "NaN"]  # (1, -3) then (1, 1)
    assert len(metrics) == len(POINTS)

    # Pages: the same bytes page by page, and the same token.
    token: str | None = None
    seen: list[Any] = []
    while True:
        params = {"run_id": run, "metric_key": "h", "max_results": "4"}
        if token:
            params["page_token"] = token
        body = await (await client.get(f"{API}/metrics/get-history", params=params)).read()
        page = await store.get_metric_history(run, "h", max_results=4, page_token=token)
        want: dict[str, Any] = {"metrics": [render.metric(m) for m in page.items]}
        if page.next_page_token:
            want["next_page_token"] = page.next_page_token
        assert body == orjson.dumps(want)
        seen += orjson.loads(body)["metrics"]
        token = page.next_page_token
        if not token:
            break
    assert seen == metrics

    absent = await client.get(f"{API}/metrics/get-history",
                              params={"run_id": run, "metric_key": "absent"})
    assert await absent.read() == b"{}"
