"""Malformed and hostile requests: each gets MLflow's error code and status, none a 500,
and none changes stored data (the database dump and the artifact tree are compared)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts/artifacts"
RUN = "<run>"  # an active run
DELETED = "<deleted>"  # a deleted run
EXP = "<exp>"


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: Any = None  # dict → JSON; bytes → raw
    status: int = 400
    code: str | None = "INVALID_PARAMETER_VALUE"
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    raw: bool = False  # send the path byte for byte (HTTP clients normalise "..")


def metric(**kw: Any) -> dict[str, Any]:
    return {"run_id": RUN, "key": "m", "value": 1.0, "timestamp": 1, "step": 0, **kw}


CASES = [
    Case("create experiment without name", "POST", "/experiments/create", {}),
    Case("experiment name of wrong type", "POST", "/experiments/create", {"name": 123}),
    Case("experiment name too long", "POST", "/experiments/create", {"name": "x" * 501}),
    Case("duplicate experiment", "POST", "/experiments/create", {"name": "exp"},
         code="RESOURCE_ALREADY_EXISTS"),
    Case("experiment tag with bad key", "POST", "/experiments/create",
         {"name": "new", "tags": [{"key": "a#b", "value": "1"}]}),
    Case("no content type", "POST", "/experiments/create", b'{"name": "n"}',
         headers={"Content-Type": ""}),
    Case("wrong content type", "POST", "/experiments/create", b'{"name": "n"}',
         headers={"Content-Type": "text/plain"}),
    Case("body is not JSON", "POST", "/experiments/create", b"{name:"),
    Case("body is a JSON array", "POST", "/experiments/create", b"[1, 2]"),
    Case("non-integer experiment id", "GET", "/experiments/get", query={"experiment_id": "abc"}),
    Case("unknown experiment id", "GET", "/experiments/get", query={"experiment_id": "999"},
         status=404, code="RESOURCE_DOES_NOT_EXIST"),
    Case("experiment id missing", "GET", "/experiments/get", query={"experiment_id": ""}),
    Case("unknown experiment name", "GET", "/experiments/get-by-name",
         query={"experiment_name": "nope"}, status=404, code="RESOURCE_DOES_NOT_EXIST"),
    Case("experiments search without max_results", "POST", "/experiments/search", {}),
    Case("experiments search max_results too big", "POST", "/experiments/search",
         {"max_results": 50001}),
    Case("experiments search bad filter", "POST", "/experiments/search",
         {"max_results": 10, "filter": "name = 'a' OR name = 'b'"}),
    Case("experiments search bad page token", "POST", "/experiments/search",
         {"max_results": 10, "page_token": "%%%"}),
    # base64 of {"offset": Infinity} and {"offset": 1e400}: a float no int holds.
    Case("experiments search page token offset Infinity", "POST", "/experiments/search",
         {"max_results": 10, "page_token": "eyJvZmZzZXQiOiBJbmZpbml0eX0="}),
    Case("runs search page token offset 1e400", "POST", "/runs/search",
         {"experiment_ids": [EXP], "page_token": "eyJvZmZzZXQiOiAxZTQwMH0="}),
    Case("experiments search bad view type", "POST", "/experiments/search",
         {"max_results": 10, "view_type": "SOMETIMES"}),
    Case("experiment tag value too long", "POST", "/experiments/set-experiment-tag",
         {"experiment_id": EXP, "key": "k", "value": "v" * 20001}),
    Case("rename to a taken name", "POST", "/experiments/update",
         {"experiment_id": EXP, "new_name": "Default"}, code="RESOURCE_ALREADY_EXISTS"),
    Case("run in unknown experiment", "POST", "/runs/create", {"experiment_id": "999"},
         status=404, code="RESOURCE_DOES_NOT_EXIST"),
    Case("run name and runName tag differ", "POST", "/runs/create",
         {"experiment_id": EXP, "run_name": "a", "tags": [{"key": "mlflow.runName",
                                                           "value": "b"}]}),
    Case("unknown run", "GET", "/runs/get", query={"run_id": "f" * 32}, status=404,
         code="RESOURCE_DOES_NOT_EXIST"),
    Case("run id missing", "GET", "/runs/get", query={"run_id": ""}),
    Case("metric without value", "POST", "/runs/log-metric",
         {"run_id": RUN, "key": "m", "timestamp": 1}),
    Case("metric value not a number", "POST", "/runs/log-metric", metric(value="abc")),
    Case("metric value is a bool", "POST", "/runs/log-metric", metric(value=True)),
    Case("metric timestamp negative", "POST", "/runs/log-metric", metric(timestamp=-1)),
    Case("metric timestamp not an integer", "POST", "/runs/log-metric",
         metric(timestamp="yesterday")),
    Case("metric key with #", "POST", "/runs/log-metric", metric(key="a#b")),
    Case("metric key escaping upwards", "POST", "/runs/log-metric", metric(key="../x")),
    Case("metric key absolute", "POST", "/runs/log-metric", metric(key="/x")),
    Case("metric key too long", "POST", "/runs/log-metric", metric(key="k" * 251)),
    Case("metric on deleted run", "POST", "/runs/log-metric", metric(run_id=DELETED)),
    Case("metric on unknown run", "POST", "/runs/log-metric", metric(run_id="e" * 32),
         status=404, code="RESOURCE_DOES_NOT_EXIST"),
    Case("bare NaN token", "POST", "/runs/log-metric",
         b'{"run_id": "<run>", "key": "m", "value": NaN, "timestamp": 1}'),
    Case("both run_id and runId", "POST", "/runs/log-metric", {**metric(), "runId": RUN}),
    Case("param value change", "POST", "/runs/log-parameter",
         {"run_id": RUN, "key": "p", "value": "different"}),
    Case("param value too long", "POST", "/runs/log-parameter",
         {"run_id": RUN, "key": "long", "value": "v" * 6001}),
    Case("param without key", "POST", "/runs/log-parameter", {"run_id": RUN, "value": "v"}),
    Case("batch of 1001 metrics", "POST", "/runs/log-batch",
         {"run_id": RUN, "metrics": [{"key": "b", "value": 1, "timestamp": i}
                                     for i in range(1001)]}),
    Case("batch of 101 params", "POST", "/runs/log-batch",
         {"run_id": RUN, "params": [{"key": f"p{i}", "value": "v"} for i in range(101)]}),
    Case("batch with conflicting duplicate params", "POST", "/runs/log-batch",
         {"run_id": RUN, "params": [{"key": "d", "value": "1"}, {"key": "d", "value": "2"}]}),
    Case("batch metric without timestamp", "POST", "/runs/log-batch",
         {"run_id": RUN, "metrics": [{"key": "b", "value": 1}]}),
    Case("batch metrics not a list", "POST", "/runs/log-batch",
         {"run_id": RUN, "metrics": {"key": "b"}}),
    Case("batch with one bad metric among good", "POST", "/runs/log-batch",
         {"run_id": RUN, "metrics": [{"key": "ok", "value": 1, "timestamp": 1},
                                     {"key": "bad key!", "value": 2, "timestamp": 1}]}),
    Case("batch on a deleted run", "POST", "/runs/log-batch",
         {"run_id": DELETED, "params": [{"key": "x", "value": "1"}]}),
    Case("batch with a param change and new metrics", "POST", "/runs/log-batch",
         {"run_id": RUN, "params": [{"key": "p", "value": "changed"}],
          "metrics": [{"key": "fresh", "value": 1, "timestamp": 1}]}),
    Case("tag on deleted run", "POST", "/runs/set-tag",
         {"run_id": DELETED, "key": "t", "value": "v"}),
    Case("tag value too long", "POST", "/runs/set-tag",
         {"run_id": RUN, "key": "t", "value": "v" * 8001}),
    Case("delete missing tag", "POST", "/runs/delete-tag", {"run_id": RUN, "key": "nope"},
         status=404, code="RESOURCE_DOES_NOT_EXIST"),
    Case("run update with bad status", "POST", "/runs/update",
         {"run_id": RUN, "status": "PAUSED"}),
    Case("runs search max_results too big", "POST", "/runs/search",
         {"experiment_ids": [EXP], "max_results": 50001}),
    Case("runs search with OR", "POST", "/runs/search",
         {"experiment_ids": [EXP], "filter": "metrics.a > 1 OR metrics.b > 1"}),
    Case("runs search unquoted param", "POST", "/runs/search",
         {"experiment_ids": [EXP], "filter": "params.p = 1"}),
    Case("runs search IN on a non-id attribute", "POST", "/runs/search",
         {"experiment_ids": [EXP], "filter": "attributes.status IN ('FINISHED')"}),
    Case("runs search bad order_by", "POST", "/runs/search",
         {"experiment_ids": [EXP], "order_by": ["nonsense.key ASC"]}),
    Case("runs search bad page token", "POST", "/runs/search",
         {"experiment_ids": [EXP], "page_token": "not base64 !"}),
    Case("history max_results zero", "GET", "/metrics/get-history",
         query={"run_id": RUN, "metric_key": "m", "max_results": "0"}),
    Case("history without metric key", "GET", "/metrics/get-history", query={"run_id": RUN}),
    Case("history for unknown run", "GET", "/metrics/get-history",
         query={"run_id": "d" * 32, "metric_key": "m"}, status=404,
         code="RESOURCE_DOES_NOT_EXIST"),
    Case("dataset digest too long", "POST", "/runs/log-inputs",
         {"run_id": RUN, "datasets": [{"dataset": {"name": "d", "digest": "x" * 37,
                                                   "source_type": "local", "source": "s"}}]}),
    Case("dataset without source", "POST", "/runs/log-inputs",
         {"run_id": RUN, "datasets": [{"dataset": {"name": "d", "digest": "x",
                                                   "source_type": "local"}}]}),
    Case("artifact upload escaping upwards", "PUT", ART + "/1/../../etc/passwd", b"x",
         code="INVALID_PARAMETER_VALUE", raw=True),
    Case("artifact download escaping upwards", "GET", ART + "/1/../../../bad.db",
         code="INVALID_PARAMETER_VALUE", raw=True),
    Case("artifact delete escaping upwards", "DELETE", ART + "/../bad.db",
         code="INVALID_PARAMETER_VALUE", raw=True),
    Case("artifact download with encoded dots", "GET", ART + "/1/%2e%2e/%2e%2e/secret",
         code="INVALID_PARAMETER_VALUE", raw=True),
    Case("artifact download double-encoded dots", "GET", ART + "/1/%252e%252e/secret",
         code="INVALID_PARAMETER_VALUE"),
    Case("artifact upload with backslash", "PUT", ART + "/1/a%5C..%5Cb", b"x",
         code="INVALID_PARAMETER_VALUE"),
    Case("artifact missing", "GET", ART + "/1/nothing/here.txt", status=404,
         code="RESOURCE_DOES_NOT_EXIST"),
    Case("artifact path with CR/LF", "GET", ART + "/1/a%0D%0Ab.txt", status=404,
         code="ENDPOINT_NOT_FOUND"),
    Case("unknown endpoint", "GET", "/experiments/nope", status=404, code="ENDPOINT_NOT_FOUND"),
    Case("experiment id beyond 64 bits", "GET", "/experiments/get",
         query={"experiment_id": str(2**63)}),
    Case("run start time beyond 64 bits", "POST", "/runs/create",
         {"experiment_id": EXP, "start_time": 2**63}),
    Case("runs search filter beyond 64 bits", "POST", "/runs/search",
         {"experiment_ids": [EXP], "filter": f"attributes.start_time > {2**63}"}),
    Case("JSON nested 1000 deep in a field", "POST", "/experiments/create",
         b'{"name": ' + b"[" * 999 + b"1" + b"]" * 999 + b"}"),
    Case("body that claims gzip", "POST", "/experiments/create", b'{"name": "n"}',
         headers={"Content-Encoding": "gzip"}),
    Case("artifact upload 1500 folders deep", "PUT", ART + "/1/" + "d/" * 1500 + "f", b"x"),
]


def _substitute(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in ids.items():
            value = value.replace(k, v)
        return value
    if isinstance(value, bytes):
        return _substitute(value.decode(), ids).encode()
    if isinstance(value, list):
        return [_substitute(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, ids) for k, v in value.items()}
    return value


def _snapshot(db: Path, artifacts: Path) -> tuple[list[str], list[tuple[str, int]]]:
    with sqlite3.connect(db) as conn:
        dump = list(conn.iterdump())
    files = sorted(
        (str(Path(root, f).relative_to(artifacts)), os.path.getsize(Path(root, f)))
        for root, _, names in os.walk(artifacts)
        for f in names
    )
    return dump, files


@pytest.fixture
async def seeded(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[tuple[TestClient, dict[str, str], Path]]:
    settings = Settings(
        backend_store_uri=f"sqlite:///{tmp_path}/bad.db",
        artifacts_destination=str(tmp_path / "art"),
    )
    client: TestClient = await aiohttp_client(create_app(settings))

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await client.post(API + path, json=body)
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    exp = (await post("/experiments/create", {"name": "exp"}))["experiment_id"]
    run = (await post("/runs/create", {"experiment_id": exp}))["run"]["info"]["run_id"]
    deleted = (await post("/runs/create", {"experiment_id": exp}))["run"]["info"]["run_id"]
    await post("/runs/log-batch", {"run_id": run, "params": [{"key": "p", "value": "v"}],
                                   "metrics": [{"key": "m", "value": 1, "timestamp": 1}]})
    await post("/runs/delete", {"run_id": deleted})
    resp = await client.put(f"{ART}/{exp}/{run}/artifacts/a.txt", data=b"hello")
    assert resp.status == 200
    yield client, {RUN: run, DELETED: deleted, EXP: exp}, tmp_path


async def _raw_request(client: TestClient, method: str, path: str, body: bytes) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        payload = b"".join(payload.split(b"\r\n")[1::2])
    return status, payload.decode()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input(seeded: tuple[TestClient, dict[str, str], Path], case: Case) -> None:
    client, ids, tmp_path = seeded
    before = _snapshot(tmp_path / "bad.db", tmp_path / "art")
    path = case.path if case.path.startswith("/api/2.0/mlflow-") else API + case.path
    kwargs: dict[str, Any] = {"headers": dict(case.headers)}
    if case.query is not None:
        kwargs["params"] = _substitute(case.query, ids)
    body = _substitute(case.body, ids)
    if isinstance(body, (dict, list)):
        kwargs["data"] = orjson.dumps(body)
        kwargs["headers"].setdefault("Content-Type", "application/json")
    elif isinstance(body, bytes):
        kwargs["data"] = body
        kwargs["headers"].setdefault("Content-Type", "application/json")
    if kwargs["headers"].get("Content-Type") == "":
        del kwargs["headers"]["Content-Type"]
        kwargs["skip_auto_headers"] = ["Content-Type"]
    if case.raw:
        status, text = await _raw_request(client, case.method, _substitute(path, ids),
                                          kwargs.get("data", b""))
    else:
        resp = await client.request(case.method, _substitute(path, ids), **kwargs)
        status, text = resp.status, await resp.text()
    assert status == case.status, text
    assert status < 500
    if case.code is not None:
        payload = orjson.loads(text)
        assert payload["error_code"] == case.code, payload
        assert isinstance(payload["message"], str) and payload["message"]
    assert _snapshot(tmp_path / "bad.db", tmp_path / "art") == before


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
