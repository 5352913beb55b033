"""The REST calls the MLflow web UI makes (issue 22), through a real socket on SQLite and
PostgreSQL: file previews (get-artifact), and the answers an empty server gives to the UI's
other calls; with auth, a caller of another team reads none of it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from access_world import (
    KNOWN_FILE,
    Api,
    World,
    build_world,
    seed_admin,
    settings_for,
    store_uris,
)
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
HINT = " See the API docs for more information about request parameters."


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


@pytest.fixture
async def client(aiohttp_client: Any, store_uri: str, tmp_path: Path) -> TestClient:
    settings = Settings(backend_store_uri=store_uri, artifacts_destination=str(tmp_path / "art"))
    c: TestClient = await aiohttp_client(create_app(settings))
    return c


@pytest.fixture
async def world(aiohttp_client: Any, store_uri: str, tmp_path: Path) -> AsyncIterator[World]:
    await seed_admin(store_uri)
    api = Api(await aiohttp_client(create_app(settings_for(store_uri, tmp_path))))
    try:
        yield await build_world(api)
    finally:
        await api.client.close()  # shut the app down before its database is dropped


async def _run(client: TestClient, name: str = "ui") -> str:
    exp = await (await client.post(f"{API}/experiments/create", json={"name": name})).json()
    run = await (await client.post(f"{API}/runs/create", json={
        "experiment_id": exp["experiment_id"]})).json()
    run_id: str = run["run"]["info"]["run_id"]
    return run_id


async def _log_steps(client: TestClient, run_id: str, key: str, steps: range) -> None:
    resp = await client.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": [
        {"key": key, "value": float(s), "timestamp": 1000 + s, "step": s} for s in steps]})
    assert resp.status == 200, await resp.text()


# -- file previews: get-artifact, model-versions/get-artifact, logged-model files --------

PROXY = "/api/2.0/mlflow-artifacts/artifacts"


async def _put(client: TestClient, path: str, data: bytes) -> None:
    resp = await client.put(f"{PROXY}/{path}", data=data)
    assert resp.status == 200, await resp.text()


async def _run_root(client: TestClient, run_id: str) -> str:
    run = await (await client.get(f"{API}/runs/get", params={"run_id": run_id})).json()
    uri: str = run["run"]["info"]["artifact_uri"]
    return uri.removeprefix("mlflow-artifacts:").lstrip("/")


async def test_get_artifact_as_stock(client: TestClient) -> None:
    run_id = await _run(client)
    root = await _run_root(client, run_id)
    await _put(client, f"{root}/notes.txt", b"hello\n")
    await _put(client, f"{root}/plot.png", b"\x89PNG....")
    await _put(client, f"{root}/sub/conf.json", b"{}")
    await _put(client, f"{root}/model/MLmodel", b"flavors: {}\n")

    resp = await client.get("/get-artifact", params={"path": "notes.txt", "run_uuid": run_id})
    assert resp.status == 200 and await resp.read() == b"hello\n"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Content-Disposition"] == "attachment; filename=notes.txt"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["Accept-Ranges"] == "bytes"
    for path, kind in (("plot.png", "image/png"), ("sub/conf.json", "text/plain"),
                       ("model/MLmodel", "text/plain")):
        resp = await client.get("/get-artifact", params={"path": path, "run_id": run_id})
        assert (resp.status, resp.headers["Content-Type"]) == (200, kind), path
    ranged = await client.get("/get-artifact", params={"path": "notes.txt", "run_uuid": run_id},
                              headers={"Range": "bytes=1-3"})
    assert ranged.status == 206 and await ranged.read() == b"ell"
    assert ranged.headers["Content-Range"] == "bytes 1-3/6"
    past = await client.get("/get-artifact", params={"path": "notes.txt", "run_uuid": run_id},
                            headers={"Range": "bytes=10-"})
    assert past.status == 416 and past.headers["Content-Range"] == "bytes */6"
    head = await client.head("/get-artifact", params={"path": "notes.txt", "run_id": run_id})
    assert (head.status, head.headers["Content-Length"], await head.read()) == (200, "6", b"")

    async def error(params: dict[str, str]) -> tuple[int, str, str]:
        resp = await client.get("/get-artifact", params=params)
        body = await resp.json()
        return resp.status, body["error_code"], body["message"]

    assert await error({"path": "nope.txt", "run_uuid": run_id}) == (
        404, "RESOURCE_DOES_NOT_EXIST", f"No such artifact: '{root}/nope.txt'")
    assert await error({"path": "sub", "run_uuid": run_id}) == (
        400, "INVALID_PARAMETER_VALUE",
        f"Artifact path refers to a directory, not a file: '{root}/sub'")
    for bad in ("../../other/x", "sub/../../x", "/etc/passwd", "%2e%2e/x", "a\\b"):
        status, code, message = await error({"path": bad, "run_uuid": run_id})
        assert (status, code, message) == (400, "INVALID_PARAMETER_VALUE", "Invalid path"), bad
    status, _, _ = await error({"path": "notes.txt", "run_uuid": "0" * 32})
    assert status == 404
    # What the artifacts tab asks before the preview: a file path lists as its root only.
    listing = await (await client.get(f"{AJAX}/artifacts/list", params={
        "run_uuid": run_id, "path": "notes.txt"})).json()
    assert listing == {"root_uri": f"mlflow-artifacts:/{root}"}


async def test_model_version_and_logged_model_files(client: TestClient) -> None:
    run_id = await _run(client)
    root = await _run_root(client, run_id)
    await _put(client, f"{root}/model/MLmodel", b"flavors: {}\n")
    assert (await client.post(f"{API}/registered-models/create", json={"name": "clf"})).status == 200
    resp = await client.post(f"{API}/model-versions/create", json={
        "name": "clf", "source": f"runs:/{run_id}/model", "run_id": run_id})
    assert resp.status == 200, await resp.text()
    got = await client.get("/model-versions/get-artifact",
                           params={"path": "MLmodel", "name": "clf", "version": "1"})
    assert got.status == 200 and await got.read() == b"flavors: {}\n"
    assert got.headers["Content-Type"] == "text/plain"
    assert got.headers["Content-Disposition"] == "attachment; filename=MLmodel"
    up = await client.get("/model-versions/get-artifact",
                          params={"path": "../notes.txt", "name": "clf", "version": "1"})
    assert up.status == 400
    missing = await client.get("/model-versions/get-artifact",
                               params={"path": "MLmodel", "name": "clf", "version": "9"})
    assert missing.status == 404

    exp = (await (await client.get(f"{API}/runs/get", params={"run_id": run_id})).json()
           )["run"]["info"]["experiment_id"]
    model = (await (await client.post(f"{API}/logged-models", json={
        "experiment_id": exp, "name": "m"})).json())["model"]
    model_root = model["info"]["artifact_uri"].removeprefix("mlflow-artifacts:").lstrip("/")
    await _put(client, f"{model_root}/MLmodel", b"model: yes\n")
    files = f"{AJAX}/logged-models/{model['info']['model_id']}/artifacts/files"
    got = await client.get(files, params={"artifact_file_path": "MLmodel"})
    assert got.status == 200 and await got.read() == b"model: yes\n"
    no_path = await client.get(files)
    assert no_path.status == 400
    assert (await no_path.json())["message"] == (
        'Request must include the "artifact_file_path" query parameter.')
    assert (await client.get(files, params={"artifact_file_path": "../../x"})).status == 400
    assert (await client.get(API + f"/logged-models/{model['info']['model_id']}"
                             "/artifacts/files", params={"artifact_file_path": "MLmodel"})
            ).status == 404  # ajax only, as stock


async def test_previews_need_read_and_are_audited(world: World) -> None:
    api, v = world.api, world.victim
    query = {"run_uuid": v.run_id, "path": KNOWN_FILE}
    version = {"name": v.rm_name, "version": "1", "path": "MLmodel"}
    for who, workspace in (("b1", "team-b"), ("b1", "team-a"), ("a2", "team-a"),
                           ("loner", None), ("anonymous", None)):
        for path, params in (("/get-artifact", query),
                             ("/model-versions/get-artifact", version)):
            reply = await api.send("GET", path, who, query=params, workspace=workspace)
            assert reply.status in (401, 403, 404), (who, path, str(reply))
            assert not reply.holds(v.secrets), (who, path)
    before = len((await api.ok("GET", "/mlgate/v1/audit"))["records"])
    reply = await api.send("GET", "/get-artifact", "a1", query=query, workspace="team-a")
    assert reply.status == 200 and reply.holds(v.secrets)
    reply = await api.send("GET", "/model-versions/get-artifact", "rd", query=version,
                           workspace="team-a")
    assert reply.status == 200 and reply.body == b"flavors: {}\n"
    records = (await api.ok("GET", "/mlgate/v1/audit"))["records"][before:]
    got = [(r["username"], r["action"], r["outcome"]) for r in records]
    assert ("a1", "GET /get-artifact", "ok") in got, got
    assert ("rd", "GET /model-versions/get-artifact", "ok") in got, got


# -- the UI's other calls, on an empty server --------------------------------------------

AJAX3 = "/ajax-api/3.0/mlflow"
EMPTY_ANSWERS: list[tuple[str, str, Any, Any]] = [
    ("GET", f"{AJAX3}/ui-telemetry", None,
     {"disable_ui_events": [], "disable_ui_telemetry": True, "ui_rollout_percentage": 0}),
    ("POST", f"{AJAX3}/ui-telemetry", {"records": [{"event": "x"}]}, {"status": "disabled"}),
    ("GET", f"{AJAX3}/assistant/config", None,
     {"providers": {}, "projects": {}, "remote_access_allowed": False}),
    ("POST", f"{AJAX}/experiments/search-datasets", {"experiment_ids": ["0"]}, {}),
    ("GET", f"{AJAX}/gateway-proxy?gateway_path=api%2F2.0%2Fendpoints%2F", None,
     {"endpoints": []}),
    ("POST", f"{AJAX3}/traces/search", {"locations": []}, {}),
    ("POST", f"{AJAX3}/traces/metrics", {
        "experiment_ids": ["0"], "view_type": "TRACES", "metric_name": "latency",
        "aggregations": [{"aggregation_type": "PERCENTILE", "percentile_value": 50}],
        "time_interval_seconds": 86400}, {}),
    ("POST", f"{AJAX3}/traces/metrics", {
        "experiment_ids": ["0"], "metric_name": "trace_count",
        "aggregations": [{"aggregation_type": "COUNT"}], "time_interval_seconds": 86400,
        "dimensions": ["trace_status"]}, {}),
    ("POST", f"{AJAX3}/traces/metrics", {
        "experiment_ids": ["0"], "view_type": "TRACES", "metric_name": "trace_count",
        "aggregations": [{"aggregation_type": "COUNT"}], "start_time_ms": 1},
     {"data_points": [{"metric_name": "trace_count", "values": {"COUNT": 0.0}}]}),
    ("POST", f"{AJAX3}/datasets/search", {"experiment_ids": ["0"], "max_results": 50}, {}),
    ("GET", f"{AJAX3}/scorers/list?experiment_id=0", None, {}),
    ("GET", f"{AJAX3}/gateway/endpoints/list", None, {}),
    ("GET", f"{AJAX3}/gateway/endpoints/bindings/list", None, {}),
    ("GET", f"{AJAX3}/mcp-servers?max_results=25", None,
     {"mcp_servers": [], "next_page_token": None}),
    ("POST", "/ajax-api/3.0/jobs/search", {}, {"jobs": []}),
]


async def test_empty_answers_as_stock(client: TestClient) -> None:
    for method, path, body, want in EMPTY_ANSWERS:
        resp = await client.request(method, path, json=body)
        assert resp.status == 200, (path, await resp.text())
        assert await resp.json() == want, path
    providers = await (await client.get(f"{AJAX3}/assistant/providers")).json()
    assert [p["name"] for p in providers["providers"]] == [
        "claude_code", "codex", "mlflow_gateway", "ollama"]
    assert not any(p["available"] for p in providers["providers"])
    assert providers["resolved"] is None
    # Without auth there is no current user, as stock (a 404 there is what the UI expects).
    assert (await client.get(f"{AJAX}/users/current")).status == 404
    for prefix in (API, AJAX):  # the settings page's webhooks: none
        resp = await client.get(f"{prefix}/webhooks")
        assert (resp.status, await resp.json()) == (200, {}), prefix


async def test_search_datasets_lists_what_the_runs_used(client: TestClient) -> None:
    run_id = await _run(client, "datasets")
    run = await (await client.get(f"{API}/runs/get", params={"run_id": run_id})).json()
    exp = run["run"]["info"]["experiment_id"]
    resp = await client.post(f"{API}/runs/log-inputs", json={"run_id": run_id, "datasets": [
        {"tags": [{"key": "mlflow.data.context", "value": "training"}],
         "dataset": {"name": "ds1", "digest": "d1", "source_type": "code", "source": "{}"}},
        {"dataset": {"name": "ds2", "digest": "d2", "source_type": "code", "source": "{}"}}]})
    assert resp.status == 200, await resp.text()

    async def search(ids: list[str]) -> tuple[int, Any]:
        resp = await client.post(f"{AJAX}/experiments/search-datasets",
                                 json={"experiment_ids": ids})
        return resp.status, await resp.json()

    status, body = await search([exp, "987654"])
    assert status == 200 and sorted(body["dataset_summaries"], key=lambda d: d["name"]) == [
        {"experiment_id": exp, "name": "ds1", "digest": "d1", "context": "training"},
        {"experiment_id": exp, "name": "ds2", "digest": "d2"}]  # no context: none, as stock
    for ids, message in (  # stock's messages
            ([], "SearchDatasets request must specify at least one experiment_id."),
            ([exp] * 21, ("SearchDatasets request cannot specify more than 20 experiment_ids."
                          " Received 21 experiment_ids.")),
            (["abc"], "Invalid experiment ID 'abc'. Experiment ID must be a valid integer.")):
        status, body = await search(ids)
        assert (status, body["error_code"], body["message"]) == (
            400, "INVALID_PARAMETER_VALUE", message), ids


async def test_empty_answers_need_a_caller_with_auth(world: World) -> None:
    api = world.api
    for method, path, body, want in EMPTY_ANSWERS:
        data = None if body is None else json.dumps(body).encode()
        anonymous = await api.send(method, path, "anonymous", body=data,
                                   content_type="application/json")
        assert anonymous.status == 401, (path, str(anonymous))
        if "search-datasets" in path:
            continue
        reply = await api.send(method, path, "loner", body=data,
                               content_type="application/json")
        assert (reply.status, reply.json()) == (200, want), (path, str(reply))
    # Webhooks are for administrators, as on stock.
    assert (await api.call("GET", f"{AJAX}/webhooks", "b-mgr")).status == 403
    assert (await api.call("GET", f"{AJAX}/webhooks")).json() == {}
    current = await api.call("GET", f"{AJAX}/users/current", "b1")
    assert current.status == 200
    assert current.json()["is_basic_auth"] is True
    assert current.json()["user"]["username"] == "b1"
    # search-datasets names experiments: READ on each, as stock.
    v = world.victim
    for who, status in (("b1", (403, 404)), ("a1", (200,))):
        reply = await api.call("POST", f"{AJAX}/experiments/search-datasets", who,
                               {"experiment_ids": [v.experiment_id]}, workspace="team-a")
        assert reply.status in status, (who, str(reply))
