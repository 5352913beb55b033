"""Inputs at and beyond what the stores can hold (issue 21): each is a 400
``INVALID_PARAMETER_VALUE`` naming what is wrong, on SQLite and PostgreSQL alike, never a 500;
and every error under the API prefixes is MLflow JSON, unknown paths included."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import random
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts/artifacts"
BIG = 2**63  # one past the largest BIGINT
SMALL = -(2**63) - 1
# orjson reads an integer below -2**63 as a float; the nearest float below -2**63 is 2**11
# further down, and the band between rounds to -2**63 itself (SMALL does: see below).
SMALL_IN_JSON = -(2**63) - 2**11
EXP, RUN, MODEL = "<exp>", "<run>", "m"
JSON_DEPTH = 100  # docs/operations.md: request JSON nests at most 100 levels
PATH_DEPTH = 200  # docs/operations.md: artifact paths are at most 200 segments deep


@dataclass
class World:
    client: TestClient
    exp: str
    run: str
    artifacts: Path

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(EXP, self.exp).replace(RUN, self.run)
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value

    async def call(self, method: str, path: str, body: Any = None, *,
                   query: dict[str, str] | None = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        if body is not None:
            data = json.dumps(self.fill(body)).encode()  # orjson cannot write SMALL
        headers = {"Content-Type": "application/json", **(headers or {})}
        resp = await self.client.request(method, self.fill(path), data=data, headers=headers,
                                         params=self.fill(query))
        raw = await resp.read()
        if resp.status < 400 and not raw:
            return resp.status, None
        assert resp.content_type == "application/json", (resp.status, raw[:200])
        return resp.status, orjson.loads(raw)


async def _world(aiohttp_client: Any, tmp_path: Path, uri: str) -> World:
    settings = Settings(backend_store_uri=uri, artifacts_destination=str(tmp_path / "art"))
    client: TestClient = await aiohttp_client(create_app(settings))
    w = World(client, "", "", tmp_path / "art")
    status, exp = await w.call("POST", f"{API}/experiments/create", {"name": "limits"})
    assert status == 200, exp
    w.exp = exp["experiment_id"]
    status, run = await w.call("POST", f"{API}/runs/create", {"experiment_id": w.exp})
    assert status == 200, run
    w.run = run["run"]["info"]["run_id"]
    for path, body in (("/registered-models/create", {"name": MODEL}),
                       ("/model-versions/create", {"name": MODEL, "source": "s3://b/m"})):
        status, out = await w.call("POST", API + path, body)
        assert status == 200, out
    return w


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, aiohttp_client: Any,
                tmp_path: Path) -> AsyncIterator[World]:
    uri = (request.getfixturevalue("pg_database") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/limits.db")
    yield await _world(aiohttp_client, tmp_path, uri)


@pytest.fixture
async def sqlite_world(aiohttp_client: Any, tmp_path: Path) -> World:
    """For what no metadata store takes part in."""
    return await _world(aiohttp_client, tmp_path, f"sqlite:///{tmp_path}/limits.db")


def _token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


# (name, method, path, body or None, query or None)
BEYOND_INT64: list[tuple[str, str, str, Any, dict[str, str] | None]] = [
    *[(f"experiments/get id {n}", "GET", "/experiments/get", None,
       {"experiment_id": str(n)}) for n in (BIG, SMALL, 10**30)],
    ("runs/create experiment id", "POST", "/runs/create", {"experiment_id": str(BIG)}, None),
    ("runs/create start_time", "POST", "/runs/create",
     {"experiment_id": EXP, "start_time": BIG}, None),
    ("runs/create start_time as a float", "POST", "/runs/create",
     {"experiment_id": EXP, "start_time": 1e30}, None),
    ("runs/update end_time", "POST", "/runs/update", {"run_id": RUN, "end_time": BIG}, None),
    ("runs/update end_time below", "POST", "/runs/update",
     {"run_id": RUN, "end_time": SMALL_IN_JSON}, None),
    # Read as the float -2**63, which fits: it was stored as -2**63, changing the value.
    ("runs/update end_time one below", "POST", "/runs/update",
     {"run_id": RUN, "end_time": SMALL}, None),
    ("runs/log-metric step one below", "POST", "/runs/log-metric",
     {"run_id": RUN, "key": "m", "value": 1, "timestamp": 1, "step": SMALL}, None),
    ("runs/log-metric timestamp one below", "POST", "/runs/log-metric",
     {"run_id": RUN, "key": "m", "value": 1, "timestamp": SMALL, "step": 0}, None),
    ("runs/log-batch step one below", "POST", "/runs/log-batch",
     {"run_id": RUN, "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": SMALL}]},
     None),
    ("runs/search filter start_time", "POST", "/runs/search",
     {"experiment_ids": [EXP], "filter": f"attributes.start_time > {BIG}"}, None),
    ("runs/search filter end_time below", "POST", "/runs/search",
     {"experiment_ids": [EXP], "filter": f"attributes.end_time < {SMALL}"}, None),
    ("runs/search experiment id", "POST", "/runs/search", {"experiment_ids": [str(BIG)]},
     None),
    ("experiments/search filter experiment_id", "POST", "/experiments/search",
     {"max_results": 10, "filter": f"experiment_id = '{BIG}'"}, None),
    ("runs/search page token", "POST", "/runs/search",
     {"experiment_ids": [EXP], "page_token": _token(BIG)}, None),
    ("experiments/search filter creation_time", "POST", "/experiments/search",
     {"max_results": 10, "filter": f"creation_time > {BIG}"}, None),
    ("logged-models/search filter", "POST", "/logged-models/search",
     {"experiment_ids": [EXP], "filter": f"creation_timestamp > {BIG}"}, None),
    ("model-versions/search filter", "GET", "/model-versions/search", None,
     {"filter": f"version_number > {BIG}"}),
    ("metrics/get-history max_results", "GET", "/metrics/get-history", None,
     {"run_id": RUN, "metric_key": "m", "max_results": str(BIG)}),
    *[(f"model-versions/{what} version {n}", method, f"/model-versions/{what}",
       {"name": MODEL, "version": str(n)} if method != "GET" else None,
       {"name": MODEL, "version": str(n)} if method == "GET" else None)
      for what, method in (("get", "GET"), ("delete", "DELETE"), ("get-download-uri", "GET"))
      for n in (BIG, SMALL)],
]


@pytest.mark.parametrize("case", BEYOND_INT64, ids=[c[0] for c in BEYOND_INT64])
async def test_integers_beyond_64_bits_are_400(world: World, case: tuple[Any, ...]) -> None:
    _, method, path, body, query = case
    status, out = await world.call(method, API + path, body, query=query)
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out


@pytest.mark.parametrize("n", [BIG - 1, -(2**63)])
async def test_integers_at_the_edges_still_reach_the_store(world: World, n: int) -> None:
    status, out = await world.call("GET", f"{API}/experiments/get",
                                   query={"experiment_id": str(n)})
    assert (status, out["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), out
    status, out = await world.call("POST", f"{API}/runs/search", {
        "experiment_ids": [EXP], "filter": f"attributes.start_time < {n}"})
    assert status == 200, out


async def test_history_page_of_the_largest_size_is_answered(world: World) -> None:
    # The store asked for max_results + 1 rows (one more tells whether a page follows):
    # 2**63, past the 64-bit LIMIT, was a 500.
    status, out = await world.call("POST", f"{API}/runs/log-metric", {
        "run_id": RUN, "key": "m", "value": 1.5, "timestamp": 1, "step": 0})
    assert status == 200, out
    status, out = await world.call("GET", f"{API}/metrics/get-history", query={
        "run_id": RUN, "metric_key": "m", "max_results": str(BIG - 1)})
    assert status == 200, out
    assert [p["value"] for p in out["metrics"]] == [1.5] and "next_page_token" not in out


def _tag_filter(n: int) -> str:
    return " and ".join(f"tags.t{i} = 'x'" for i in range(n))


# Searches beyond the bounds in docs/operations.md: on PostgreSQL these were a 500 (40,000
# experiment ids, 1,000 sort keys) or held a connection for a minute (300 tag clauses).
SEARCH_BOUNDS: list[tuple[str, str, str, Any, dict[str, str] | None]] = [
    ("runs/search 40,000 experiments", "POST", "/runs/search",
     {"experiment_ids": [EXP] * 40_000}, None),
    ("runs/search 51 clauses", "POST", "/runs/search",
     {"experiment_ids": [EXP], "filter": _tag_filter(51)}, None),
    ("runs/search 21 sort keys", "POST", "/runs/search",
     {"experiment_ids": [EXP], "order_by": [f"metrics.m{i}" for i in range(21)]}, None),
    ("experiments/search 51 clauses", "POST", "/experiments/search",
     {"max_results": 10, "filter": _tag_filter(51)}, None),
    ("model-versions/search 300 clauses", "GET", "/model-versions/search", None,
     {"filter": _tag_filter(300)}),
    ("logged-models/search 40,000 experiments", "POST", "/logged-models/search",
     {"experiment_ids": [EXP] * 40_000}, None),
    ("logged-models/search 21 sort keys", "POST", "/logged-models/search",
     {"experiment_ids": [EXP],
      "order_by": [{"field_name": f"metrics.m{i}"} for i in range(21)]}, None),
]


@pytest.mark.parametrize("case", SEARCH_BOUNDS, ids=[c[0] for c in SEARCH_BOUNDS])
async def test_searches_beyond_their_bounds_are_400(world: World,
                                                    case: tuple[Any, ...]) -> None:
    _, method, path, body, query = case
    status, out = await world.call(method, API + path, body, query=query)
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out
    assert "at most" in out["message"]


async def test_searches_at_their_bounds_still_run(world: World) -> None:
    status, out = await world.call("POST", f"{API}/runs/search", {
        "experiment_ids": [EXP] * 10_000, "filter": _tag_filter(50),
        "order_by": [f"metrics.m{i}" for i in range(20)]})
    assert (status, out) == (200, {}), out


async def test_graphql_requests_are_bounded_before_their_variables_are_read(
        sqlite_world: World) -> None:
    """graphql-core coerces variables before any other limit looks at them: 12 million run
    ids (60 MB) held the event loop for 19 s."""
    query = ("query($r: [String]) { mlflowGetMetricHistoryBulkInterval("
             "input: {runIds: $r, metricKey: \"m\"}) { metrics { value } } }")
    status, out = await sqlite_world.call("POST", "/graphql", {
        "query": query, "variables": {"r": ["a"] * 60_000}})
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out
    status, out = await sqlite_world.call("POST", "/graphql", {
        "query": query, "variables": {"r": [RUN]}})
    assert status == 200 and out["errors"] is None, out


@pytest.mark.parametrize("field", ["timestamp", "step"])
async def test_metric_beyond_64_bits_names_its_field(world: World, field: str) -> None:
    metric = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0, field: BIG}
    status, out = await world.call("POST", f"{API}/runs/log-metric", {"run_id": RUN, **metric})
    assert status == 400, out
    assert f"'{field}'" in out["message"] and str(BIG) in out["message"], out
    status, out = await world.call("POST", f"{API}/runs/log-batch",
                                   {"run_id": RUN, "metrics": [metric]})
    assert status == 400, out
    assert f"'metrics[0].{field}'" in out["message"] and str(BIG) in out["message"], out


def _nested(depth: int, leaf: bytes = b"1") -> bytes:
    """A JSON value ``depth`` levels deep: lists, the innermost an object."""
    return b"[" * (depth - 1) + b'{"a": ' + leaf + b"}" + b"]" * (depth - 1)


@pytest.mark.parametrize("field", ["name", "tags", "ignored"])
async def test_json_nested_beyond_the_limit_is_400(sqlite_world: World, field: str) -> None:
    for depth in (JSON_DEPTH, 1000):  # the body adds a level
        body = b'{"name": "deep", "' + field.encode() + b'": ' + _nested(depth) + b"}"
        if field == "name":
            body = body.replace(b'"name": "deep", ', b"")
        status, out = await sqlite_world.call("POST", f"{API}/experiments/create", data=body)
        assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out
        assert str(JSON_DEPTH) in out["message"], out
    body = b'{"name": "deep", "ignored": ' + _nested(JSON_DEPTH - 1) + b"}"
    status, out = await sqlite_world.call("POST", f"{API}/experiments/create", data=body)
    assert status == 200, out


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def test_json_depth_is_exact_whatever_strings_hold() -> None:
    """The depth is read from the bytes; brackets, quotes and backslashes inside strings
    must neither hide a level nor add one."""
    from gateway.parsing import _nests_deeper

    rnd = random.Random(21)
    atoms: list[Any] = ["[x]", '\\"[', "\\\\", "}{", 1, None, 'a"]', '\n"', '\\\n"[', "\\",
                        '\\\\\\"]', "é[", 2.5, True, "", "]", "["]

    def value(depth: int) -> Any:
        if depth == 0 or rnd.random() < 0.2:
            return rnd.choice(atoms)
        if rnd.random() < 0.5:
            return [value(depth - 1) for _ in range(rnd.randint(0, 3))]
        return {f"{rnd.choice(atoms)}{i}": value(depth - 1) for i in range(rnd.randint(0, 3))}

    for _ in range(5000):
        v = value(rnd.randint(0, 9))
        for raw in (orjson.dumps(v), json.dumps(v, ensure_ascii=True, indent=1).encode()):
            for limit in (0, 1, 2, 3, 5, 8):
                assert _nests_deeper(raw, limit) == (_depth(v) > limit), (raw, limit)
    hidden: Any = 1  # string brackets that would cancel each level if strings were not skipped
    for _ in range(150):
        hidden = ["]", hidden, "["]
    assert _nests_deeper(orjson.dumps(hidden), JSON_DEPTH)


async def test_gzip_body_that_is_not_gzip_is_400(sqlite_world: World) -> None:
    w = sqlite_world
    status, out = await w.call("POST", f"{API}/experiments/create", data=b'{"name": "g"}',
                               headers={"Content-Encoding": "gzip"})
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out
    status, out = await w.call("PUT", f"{ART}/{w.exp}/x.bin", data=b"not gzip at all",
                               headers={"Content-Encoding": "gzip"})
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out
    assert not (w.artifacts / w.exp / "x.bin").exists()
    status, out = await w.call("POST", f"{API}/experiments/create",
                               data=gzip.compress(b'{"name": "g"}'),
                               headers={"Content-Encoding": "gzip"})
    assert status == 200, out


async def _one_packet(w: World, method: str, path: str, headers: dict[str, str],
                      body: bytes) -> tuple[int, bytes, bytes]:
    """Head and body written at once, as small requests arrive (aiohttp's client sends them
    apart, which hid aiohttp's own plain-text answer to an undecodable body)."""
    assert w.client.port is not None
    reader, writer = await asyncio.open_connection(w.client.host, w.client.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"{method} {w.fill(path)} HTTP/1.1\r\nHost: localhost\r\n{head}"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body)
        response = await asyncio.wait_for(reader.read(), 10)  # never a hang
    finally:
        writer.close()
    head_bytes, _, payload = response.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, head_bytes.lower(), payload


@pytest.mark.parametrize("coding, body", [
    ("gzip", b'{"name": "not gzip"}'),
    ("deflate", b'{"name": "not deflate"}'),
    ("deflate", b'{"' + b"a" * 200_000 + b'": 1}'),  # was never answered
    ("br", b'{"name": "brotli?"}'),
    ("zstd", b'{"name": "zstd?"}'),
    ("gzip", gzip.compress(b'{"name": "cut"}', mtime=0)[:-6]),  # cut short; mtime=0 keeps
    # the test id the same in every pytest-xdist worker
])
async def test_a_body_not_in_its_content_encoding_is_a_json_400(
    sqlite_world: World, coding: str, body: bytes,
) -> None:
    for method, path, ctype in (("POST", f"{API}/experiments/create", "application/json"),
                                ("PUT", f"{ART}/{EXP}/enc.bin", "application/octet-stream"),
                                ("GET", f"{API}/experiments/search", "application/json")):
        status, head, payload = await _one_packet(
            sqlite_world, method, path, {"Content-Type": ctype, "Content-Encoding": coding},
            body)
        assert status == 400 and b"application/json" in head, (method, status, payload[:200])
        assert orjson.loads(payload)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not (sqlite_world.artifacts / sqlite_world.exp / "enc.bin").exists()


async def test_compressed_bodies_are_decoded_with_bounded_memory(sqlite_world: World) -> None:
    w = sqlite_world
    status, out = await w.call("POST", f"{API}/experiments/create",
                               data=zlib.compress(b'{"name": "deflated"}'),
                               headers={"Content-Encoding": "deflate"})
    assert status == 200, out
    # 65 MiB of JSON in 65 KiB of gzip: over the decoded cap, refused without holding it.
    bomb = gzip.compress(b'{"name": "' + b" " * (65 * 1024**2) + b'"}')
    status, out = await w.call("POST", f"{API}/experiments/create", data=bomb,
                               headers={"Content-Encoding": "gzip"})
    assert (status, out["error_code"]) == (413, "INVALID_PARAMETER_VALUE"), out
    data = os.urandom(16) * (256 * 1024)  # 4 MiB from a few KiB: several decoded chunks
    status, out = await w.call("PUT", f"{ART}/{w.exp}/gz.bin", data=gzip.compress(data),
                               headers={"Content-Encoding": "gzip"})
    assert status == 200, out
    assert (w.artifacts / w.exp / "gz.bin").read_bytes() == data


async def test_a_gzip_body_of_several_members_is_decoded_whole(sqlite_world: World) -> None:
    """RFC 1952 lets a gzip body be members end to end (found by the attack on 55f687f,
    which stored only the first); anything else after the end is refused."""
    w = sqlite_world
    first, second = os.urandom(130), os.urandom(140)
    status, out = await w.call("PUT", f"{ART}/{w.exp}/two.bin",
                               data=gzip.compress(first) + gzip.compress(second),
                               headers={"Content-Encoding": "gzip"})
    assert status == 200, out
    assert (w.artifacts / w.exp / "two.bin").read_bytes() == first + second
    for junk in (gzip.compress(first) + b"GARBAGE",
                 zlib.compress(first) + zlib.compress(second)):
        coding = "gzip" if junk.startswith(b"\x1f\x8b") else "deflate"
        status, out = await w.call("PUT", f"{ART}/{w.exp}/junk.bin", data=junk,
                                   headers={"Content-Encoding": coding})
        assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), coding
        status, out = await w.call("POST", f"{API}/experiments/create", data=gzip.compress(
            b'{"name": "j"}') + b"GARBAGE", headers={"Content-Encoding": "gzip"})
        assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert not (w.artifacts / w.exp / "junk.bin").exists()


async def test_public_routes_never_decode_a_body(sqlite_world: World) -> None:
    """An anonymous caller's compressed body on /health is not decoded nor parsed: one that
    expands to 64 MiB held the event loop for a second (and late heartbeats made another
    replica sweep this one's live uploads)."""
    bomb = gzip.compress(b"[" + b"0," * (32 * 1024**2 - 1) + b"0]")
    started = asyncio.get_running_loop().time()
    for path in ("/health", "/version", "/api/3.0/mlflow/server-info"):
        status, _, _ = await _one_packet(sqlite_world, "GET", path,
                                            {"Content-Encoding": "gzip"}, bomb)
        assert status == 200, path
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_artifact_path_deeper_than_the_limit_is_400(sqlite_world: World) -> None:
    w = sqlite_world
    for depth in (PATH_DEPTH + 1, 1500):
        status, out = await w.call("PUT", f"{ART}/" + "d/" * (depth - 1) + "f", data=b"x")
        assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out
    assert not (w.artifacts / "d").exists()
    status, out = await w.call("PUT", f"{ART}/" + "d/" * (PATH_DEPTH - 1) + "f", data=b"x")
    assert status == 200, out
    # Empty and "." segments are not folders.
    status, out = await w.call("PUT", f"{ART}/e/" + "./" * PATH_DEPTH + "f", data=b"x")
    assert status == 200, out


@pytest.mark.parametrize("body,headers", [
    (b'{"name": "n"}', {"Content-Type": "text/plain"}),
    (b"{name:", {}),
    (b"[1, 2]", {}),
    (b'{"name": NaN}', {}),
], ids=["wrong content type", "not JSON", "a JSON array", "bare NaN"])
async def test_unreadable_body_is_invalid_parameter_value(sqlite_world: World, body: bytes,
                                                          headers: dict[str, str]) -> None:
    """Stock answers INVALID_PARAMETER_VALUE here, and that is the code clients test for."""
    status, out = await sqlite_world.call("POST", f"{API}/experiments/create", data=body,
                                          headers=headers)
    assert (status, out["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), out


@pytest.mark.parametrize("path", [
    f"{API}/nope", "/ajax-api/2.0/mlflow/nope", "/api/3.0/mlflow/nope",
    "/api/2.0/mlflow-artifacts/nope", "/ajax-api/2.0/mlflow-artifacts/nope",
    f"{API}/experiments/get/extra", "/api/9.9/anything", "/mlgate/v1/nope",
    f"{ART}/1/a%0D%0Ab.txt", f"{ART}/1/a%0Ab.txt",
])
async def test_unknown_api_path_is_mlflow_json(sqlite_world: World, path: str) -> None:
    resp = await sqlite_world.client.get(path)
    assert resp.status == 404
    assert resp.content_type == "application/json"
    out = await resp.json()
    assert out["error_code"] == "ENDPOINT_NOT_FOUND", out
    assert isinstance(out["message"], str) and out["message"]


async def test_wrong_method_is_mlflow_json(sqlite_world: World) -> None:
    resp = await sqlite_world.client.put(f"{API}/experiments/get")
    assert resp.status == 405
    assert resp.content_type == "application/json"
    assert "GET" in resp.headers["Allow"]
    out = await resp.json()
    assert out["error_code"] == "ENDPOINT_NOT_FOUND", out


async def test_paths_outside_the_api_keep_plain_answers(sqlite_world: World) -> None:
    resp = await sqlite_world.client.get("/no-such-page")
    assert resp.status == 404
    assert resp.content_type != "application/json"


def test_readme_states_the_limits() -> None:
    from gateway.artifact_paths import MAX_PATH_DEPTH
    from gateway.parsing import MAX_JSON_DEPTH

    assert (MAX_JSON_DEPTH, MAX_PATH_DEPTH) == (JSON_DEPTH, PATH_DEPTH)
    readme = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(
        encoding="utf-8")
    section = readme.split("## Request limits", 1)[1].split("\n## ", 1)[0]
    assert f"{MAX_JSON_DEPTH} levels" in section
    assert f"{MAX_PATH_DEPTH} segments" in section
    assert "ENDPOINT_NOT_FOUND" in section
