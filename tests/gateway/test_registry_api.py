"""Model-registry routes through a real socket: JSON shapes as stock renders them, the
register_model request sequence, and a bad-input table (MLflow's code and status, never a
500, nothing stored)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"


@dataclass
class World:
    client: TestClient
    db: Path
    exp: str
    run: str
    model_id: str

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, str] | None = None, prefix: str = API) -> tuple[int, Any]:
        resp = await self.client.request(method, prefix + path, json=body, params=query)
        return resp.status, await resp.json()

    async def ok(self, method: str, path: str, body: dict[str, Any] | None = None,
                 query: dict[str, str] | None = None) -> Any:
        status, data = await self.call(method, path, body, query)
        assert status == 200, data
        return data


@pytest.fixture
async def world(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(backend_store_uri=f"sqlite:///{tmp_path}/reg.db",
                        artifacts_destination=str(tmp_path / "art"))
    client: TestClient = await aiohttp_client(create_app(settings))
    w = World(client, tmp_path / "reg.db", "", "", "")
    w.exp = (await w.ok("POST", "/experiments/create", {"name": "e"}))["experiment_id"]
    w.run = (await w.ok("POST", "/runs/create", {"experiment_id": w.exp}))["run"]["info"]["run_id"]
    w.model_id = (await w.ok("POST", "/logged-models", {
        "experiment_id": w.exp, "name": "model", "source_run_id": w.run}))["model"]["info"][
        "model_id"]
    await w.ok("POST", "/registered-models/create", {"name": "existing"})
    await w.ok("POST", "/model-versions/create", {
        "name": "existing", "source": f"runs:/{w.run}/model", "run_id": w.run})
    yield w


async def test_register_model_sequence_and_shapes(world: World) -> None:
    w = world
    # What mlflow.register_model(f"models:/{model_id}", "demo") sends.
    created = await w.ok("POST", "/registered-models/create", {"name": "demo"})
    assert created == {"registered_model": {
        "name": "demo", "creation_timestamp": created["registered_model"]["creation_timestamp"],
        "last_updated_timestamp": created["registered_model"]["creation_timestamp"]}}
    status, dup = await w.call("POST", "/registered-models/create", {"name": "demo"})
    assert (status, dup["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    mv = (await w.ok("POST", "/model-versions/create", {
        "name": "demo", "source": f"models:/{w.model_id}", "model_id": w.model_id}))[
        "model_version"]
    assert {k: v for k, v in mv.items() if "timestamp" not in k} == {
        "name": "demo", "version": "1", "current_stage": "None", "description": "",
        "source": f"models:/{w.model_id}", "run_id": w.run, "status": "READY", "run_link": ""}
    model = (await w.ok("GET", f"/logged-models/{w.model_id}"))["model"]
    assert {"key": "mlflow.modelVersions", "value": '[{"name": "demo", "version": 1}]'} in \
        model["info"]["tags"]
    # What load_model("models:/demo@champion") reads.
    await w.ok("POST", "/registered-models/alias",
               {"name": "demo", "alias": "champion", "version": "1"})
    by_alias = await w.ok("GET", "/registered-models/alias",
                          query={"name": "demo", "alias": "champion"})
    assert by_alias["model_version"]["aliases"] == ["champion"]
    uri = await w.ok("GET", "/model-versions/get-download-uri",
                     query={"name": "demo", "version": "1"})
    assert uri == {"artifact_uri": f"mlflow-artifacts:/{w.exp}/models/{w.model_id}/artifacts"}
    rm = (await w.ok("GET", "/registered-models/get", query={"name": "demo"}))[
        "registered_model"]
    assert rm["aliases"] == [{"alias": "champion", "version": "1"}]
    assert [v["version"] for v in rm["latest_versions"]] == ["1"]
    assert "aliases" not in rm["latest_versions"][0]  # stock leaves them out here
    # The ajax prefix serves the same routes.
    status, _ = await w.call("GET", "/registered-models/get", query={"name": "demo"},
                             prefix=AJAX)
    assert status == 200


async def test_update_transition_search_delete(world: World) -> None:
    w = world
    await w.ok("PATCH", "/registered-models/update", {"name": "existing", "description": "x"})
    mv = await w.ok("PATCH", "/model-versions/update",
                    {"name": "existing", "version": "1", "description": "v"})
    assert mv["model_version"]["description"] == "v"
    moved = await w.ok("POST", "/model-versions/transition-stage", {
        "name": "existing", "version": "1", "stage": "production",
        "archive_existing_versions": True})
    assert moved["model_version"]["current_stage"] == "Production"
    latest = await w.ok("POST", "/registered-models/get-latest-versions",
                        {"name": "existing", "stages": ["Production"]})
    assert [v["version"] for v in latest["model_versions"]] == ["1"]
    found = await w.ok("GET", "/model-versions/search",
                       query={"filter": f"run_id = '{w.run}'"})
    assert [v["name"] for v in found["model_versions"]] == ["existing"]
    assert await w.ok("GET", "/registered-models/search",
                      query={"filter": "name = 'nothing'"}) == {}
    await w.ok("POST", "/model-versions/set-tag",
               {"name": "existing", "version": "1", "key": "k", "value": "v"})
    await w.ok("DELETE", "/model-versions/delete-tag",
               {"name": "existing", "version": "1", "key": "k"})
    await w.ok("DELETE", "/model-versions/delete", {"name": "existing", "version": "1"})
    status, err = await w.call("GET", "/model-versions/get",
                               query={"name": "existing", "version": "1"})
    assert (status, err["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    await w.ok("DELETE", "/registered-models/delete", {"name": "existing"})
    assert await w.ok("GET", "/registered-models/search") == {}


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    query: dict[str, str] | None = None
    status: int = 400
    code: str = "INVALID_PARAMETER_VALUE"


RUN = "<run>"
CASES = [
    Case("duplicate registered model", "POST", "/registered-models/create",
         {"name": "existing"}, code="RESOURCE_ALREADY_EXISTS"),
    Case("model without name", "POST", "/registered-models/create", {}),
    Case("model name with slash", "POST", "/registered-models/create", {"name": "a/b"}),
    Case("model name of wrong type", "POST", "/registered-models/create", {"name": 5}),
    Case("reserved alias latest", "POST", "/registered-models/alias",
         {"name": "existing", "alias": "latest", "version": "1"}),
    Case("reserved alias v1", "POST", "/registered-models/alias",
         {"name": "existing", "alias": "V1", "version": "1"}),
    Case("alias with bad characters", "POST", "/registered-models/alias",
         {"name": "existing", "alias": "a b", "version": "1"}),
    Case("alias to unknown version", "POST", "/registered-models/alias",
         {"name": "existing", "alias": "x", "version": "7"}, status=404,
         code="RESOURCE_DOES_NOT_EXIST"),
    Case("unknown version", "GET", "/model-versions/get",
         query={"name": "existing", "version": "99"}, status=404,
         code="RESOURCE_DOES_NOT_EXIST"),
    Case("non-integer version", "GET", "/model-versions/get",
         query={"name": "existing", "version": "one"}),
    Case("unknown model", "GET", "/registered-models/get", query={"name": "nope"},
         status=404, code="RESOURCE_DOES_NOT_EXIST"),
    Case("source outside the run's artifact root", "POST", "/model-versions/create",
         {"name": "existing", "source": "mlflow-artifacts:/0/other/artifacts/m",
          "run_id": RUN}),
    Case("runs source of another run", "POST", "/model-versions/create",
         {"name": "existing", "source": "runs:/" + "f" * 32 + "/m", "run_id": RUN}),
    Case("local source", "POST", "/model-versions/create",
         {"name": "existing", "source": "/etc/passwd", "run_id": RUN}),
    Case("source with traversal", "POST", "/model-versions/create",
         {"name": "existing", "source": "mlflow-artifacts:/1/x/../../../etc", "run_id": RUN}),
    Case("version of unknown model", "POST", "/model-versions/create",
         {"name": "nope", "source": f"runs:/{RUN}/m", "run_id": RUN}, status=404,
         code="RESOURCE_DOES_NOT_EXIST"),
    Case("bad stage", "POST", "/model-versions/transition-stage",
         {"name": "existing", "version": "1", "stage": "Live"}),
    Case("archive from a non-active stage", "POST", "/model-versions/transition-stage",
         {"name": "existing", "version": "1", "stage": "None",
          "archive_existing_versions": True}),
    Case("search with OR", "GET", "/registered-models/search",
         query={"filter": "name = 'a' OR name = 'b'"}),
    Case("search with too many results", "GET", "/registered-models/search",
         query={"max_results": "1001"}),
    Case("version search on unknown attribute", "GET", "/model-versions/search",
         query={"filter": "stage = 'x'"}),
    Case("version search with bad page token", "GET", "/model-versions/search",
         query={"page_token": "!!"}),
    Case("tag key too long", "POST", "/registered-models/set-tag",
         {"name": "existing", "key": "k" * 251, "value": "v"}),
    Case("rename an unknown model", "POST", "/registered-models/rename",
         {"name": "nope", "new_name": "other"}, status=404, code="RESOURCE_DOES_NOT_EXIST"),
    Case("rename to a bad name", "POST", "/registered-models/rename",
         {"name": "existing", "new_name": "a:b"}),
]


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_registry_input(world: World, case: Case) -> None:
    before = _dump(world.db)
    body = {k: (v.replace(RUN, world.run) if isinstance(v, str) else v)
            for k, v in (case.body or {}).items()} if case.body is not None else None
    status, data = await world.call(case.method, case.path, body, case.query)
    assert (status, data.get("error_code")) == (case.status, case.code), data
    assert isinstance(data["message"], str) and data["message"]
    assert _dump(world.db) == before
