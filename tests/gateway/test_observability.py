"""Prometheus metrics, the access log and request ids, through a real socket.

``/metrics`` is scraped from a running app and read with prometheus-client's own parser;
the figures are checked to move by what the test did (N requests, N metrics logged, one
run collected). The access log's lines are the ones aiohttp's server hands to
:class:`~gateway.observability.access_log.AccessLog`, as ``mlgate serve`` sets it up; one
test runs ``python -m gateway serve`` itself for the start-up lines, the metrics port of
each worker and the JSON lines on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from access_world import ADMIN_PASSWORD, PASSWORD, basic, seed_admin, settings_for, store_uris
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient
from conftest import GatewayTestServer, free_port, mlgate_command, start_server, stop_server
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.observability.access_log import AccessLog
from gateway.observability.metrics import METRICS_SITE
from gateway.observability.startup import startup_lines
from gateway.settings import ConfigError, Settings

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
HEX32 = re.compile(r"[0-9a-f]{32}")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


def _plain(tmp_path: Path, **extra: Any) -> Settings:
    """Auth off, SQLite, in tmp_path."""
    return Settings(**{"backend_store_uri": f"sqlite:///{tmp_path}/m.db",
                       "artifacts_destination": str(tmp_path / "art"), **extra})


def parse(text: str) -> tuple[set[str], Samples]:
    """Family names and every sample (name and labels → value) of a scrape."""
    families, samples = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: TestClient, headers: dict[str, str] | None = None
                 ) -> tuple[set[str], Samples]:
    resp = await client.get("/metrics", headers=headers or {})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    return parse(await resp.text())


async def _run_id(client: TestClient, headers: dict[str, str] | None = None) -> str:
    resp = await client.post(f"{API}/experiments/create", json={"name": "obs"},
                             headers=headers or {})
    exp = (await resp.json())["experiment_id"]
    resp = await client.post(f"{API}/runs/create", json={"experiment_id": exp},
                             headers=headers or {})
    return str((await resp.json())["run"]["info"]["run_id"])


# -- /metrics ------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template(aiohttp_client: Any,
                                                      tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_plain(tmp_path)))
    route = f"{API}/runs/get"
    _, before = await scrape(client)
    for i in range(7):
        resp = await client.get(route, params={"run_id": f"secret-{i}"})
        assert resp.status == 404
    blob = b"0123456789" * 1000
    for i in range(3):
        resp = await client.put(f"{ARTIFACTS}/1/run{i}/secret-file.bin", data=blob)
        assert resp.status == 200
    resp = await client.get(f"{ARTIFACTS}/1/run0/secret-file.bin")
    assert await resp.read() == blob
    text = await (await client.get("/metrics")).text()
    assert "secret" not in text  # raw paths and ids never become labels
    families, after = parse(text)
    assert {"mlgate_http_requests", "mlgate_http_request_duration_seconds",
            "mlgate_artifact_bytes"} <= families

    def rose(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert rose("mlgate_http_requests_total", route=route, method="GET", status="404") == 7
    assert rose("mlgate_http_request_duration_seconds_count", route=route, method="GET") == 7
    assert rose("mlgate_http_request_duration_seconds_bucket", route=route, method="GET",
                le="+Inf") == 7
    upload = f"{ARTIFACTS}/{{path}}"
    assert value(after, "mlgate_http_requests_total", route=upload, method="PUT",
                 status="200") == 3
    assert value(after, "mlgate_artifact_bytes_total", store="file", direction="in") == 3 * len(blob)
    assert value(after, "mlgate_artifact_bytes_total", store="file", direction="out") == len(blob)
    # The scrape before this one was counted too.
    assert value(after, "mlgate_http_requests_total", route="/metrics", method="GET",
                 status="200") >= 1


async def test_unmatched_paths_and_methods_make_no_new_series(aiohttp_client: Any,
                                                              tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_plain(tmp_path)))
    for i in range(5):
        assert (await client.get(f"/api/2.0/mlflow/no-such-{i}")).status == 404
        assert (await client.request("PROPFIND", f"/x{i}")).status in (404, 405)
    _, samples = await scrape(client)
    assert value(samples, "mlgate_http_requests_total", route="(unmatched)", method="GET",
                 status="404") == 5
    assert value(samples, "mlgate_http_requests_total", route="(unmatched)", method="OTHER",
                 status="404") + value(samples, "mlgate_http_requests_total",
                                       route="(unmatched)", method="OTHER", status="405") == 5


async def test_batcher_and_store_figures_move(aiohttp_client: Any, store_uri: str,
                                              tmp_path: Path) -> None:
    settings = Settings(backend_store_uri=store_uri, artifacts_destination=str(tmp_path / "a"))
    client = await aiohttp_client(create_app(settings))
    run_id = await _run_id(client)
    _, before = await scrape(client)
    for step in range(5):
        resp = await client.post(f"{API}/runs/log-metric", json={
            "run_id": run_id, "key": "loss", "value": step, "timestamp": 1, "step": step})
        assert resp.status == 200
    resp = await client.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": [
        {"key": "acc", "value": i, "timestamp": 1, "step": i} for i in range(40)]})
    assert resp.status == 200
    families, after = await scrape(client)

    def rose(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert rose("mlgate_batcher_requests_total") == 6
    assert rose("mlgate_batcher_rows_total") == 45
    assert rose("mlgate_batcher_batch_rows_sum") == 45
    assert 1 <= rose("mlgate_batcher_batch_rows_count") <= 6
    assert rose("mlgate_batcher_batch_rows_count") == rose("mlgate_batcher_batches_total")
    assert rose("mlgate_batcher_commit_seconds_count") >= 1
    assert rose("mlgate_batcher_wait_seconds_bucket", le="+Inf") >= 1
    assert value(after, "mlgate_batcher_queued_requests") == 0
    assert value(after, "mlgate_batcher_queue_capacity_rows") == settings.batch_queue_rows
    idle = value(after, "mlgate_metadata_connections", state="idle")
    in_use = value(after, "mlgate_metadata_connections", state="in_use")
    assert idle >= 1 and in_use >= 0
    assert {"mlgate_sweep_runs", "mlgate_sweep_errors", "mlgate_build_info", "process_cpu_seconds",
            "mlgate_batcher_wait_seconds", "mlgate_batcher_commit_seconds"} <= families
    if store_uri.startswith("postgresql"):
        assert {"mlgate_metadata_waiting", "mlgate_metadata_pool_timeouts",
                "mlgate_metadata_pool_opened"} <= families
        assert value(after, "mlgate_metadata_pool_opened_total") >= idle + in_use
    else:
        assert "mlgate_metadata_writer_busy" in families


async def test_gc_counts_what_it_deletes(aiohttp_client: Any, tmp_path: Path) -> None:
    app = create_app(_plain(tmp_path, gc_interval=0.1, gc_older_than="0s"))
    client = await aiohttp_client(app)
    run_id = await _run_id(client)
    resp = await client.post(f"{API}/runs/delete", json={"run_id": run_id})
    assert resp.status == 200
    deadline = time.monotonic() + 20
    while True:
        _, samples = await scrape(client)
        if value(samples, "mlgate_gc_deleted_total", what="runs") >= 1:
            break
        assert time.monotonic() < deadline, "the run was never collected"
        await asyncio.sleep(0.1)
    assert value(samples, "mlgate_gc_runs_total") >= 1
    assert value(samples, "mlgate_gc_errors_total") == 0


async def test_metrics_are_for_administrators(aiohttp_client: Any, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/auth.db"
    await seed_admin(uri)
    client = await aiohttp_client(create_app(settings_for(uri, tmp_path, auth_max_failures=2)))
    root = basic("root", ADMIN_PASSWORD)
    resp = await client.post(f"{API}/users/create", headers=root,
                             json={"username": "alice", "password": PASSWORD})
    assert resp.status == 200
    resp = await client.get("/metrics")
    assert resp.status == 401
    assert (await resp.json())["error_code"] == "UNAUTHENTICATED"
    resp = await client.get("/metrics", headers=basic("alice"))
    assert resp.status == 403
    assert (await resp.json())["error_code"] == "PERMISSION_DENIED"
    # What the docs tell operators to give Prometheus: an administrator's read-only token.
    resp = await client.post("/mlgate/v1/tokens", headers=root,
                             json={"name": "prometheus", "read_only": True})
    token = (await resp.json())["token"]
    await scrape(client, {"Authorization": f"Bearer {token}"})
    families, before = await scrape(client, root)
    assert {"mlgate_auth_failed_logins", "mlgate_auth_rate_limited",
            "mlgate_audit_pending_records", "mlgate_audit_dropped_records"} <= families
    statuses = [(await client.get(f"{API}/experiments/search",
                                  headers=basic("alice", "wrong"))).status for _ in range(3)]
    assert statuses == [401, 401, 429]
    _, after = await scrape(client, root)
    assert value(after, "mlgate_auth_failed_logins_total") - value(
        before, "mlgate_auth_failed_logins_total") == 2
    assert value(after, "mlgate_auth_rate_limited_total") - value(
        before, "mlgate_auth_rate_limited_total") == 1
    assert value(after, "mlgate_http_requests_total", route=f"{API}/experiments/search",
                 method="GET", status="429") == 1


def _outward_address() -> str | None:
    """This machine's address on its default route, if it has one besides loopback (a UDP
    connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_the_metrics_port_is_loopback_and_needs_no_credentials(
        aiohttp_client: Any, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/auth.db"
    await seed_admin(uri)
    port = free_port()
    app = create_app(settings_for(uri, tmp_path, metrics_port=port))
    client = await aiohttp_client(app)
    assert {a[0] for a in app[METRICS_SITE].addresses} == {"127.0.0.1"}
    assert (await client.get("/metrics")).status == 401  # the API port still asks
    async with ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            families, _ = parse(await resp.text())
        assert "mlgate_http_requests" in families
        async with http.get(f"http://127.0.0.1:{port}{API}/experiments/search") as resp:
            assert resp.status == 404  # nothing but /metrics there
    outward = _outward_address()
    if outward is not None:
        with pytest.raises(OSError):
            socket.create_connection((outward, port), timeout=2).close()


async def test_metrics_can_be_turned_off(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_plain(tmp_path, metrics=False)))
    resp = await client.get("/metrics")
    assert resp.status == 404
    assert (await resp.json())["error_code"] == "ENDPOINT_NOT_FOUND"
    with pytest.raises(ConfigError, match="--metrics-port"):
        Settings.from_sources({"metrics": False, "metrics_port": 9100}, env={})
    with pytest.raises(ConfigError, match="--access-log"):
        Settings.from_sources({"access_log": "xml"}, env={})
    with pytest.raises(ConfigError, match="--metrics-port"):
        Settings.from_sources({"metrics_port": 65535, "workers": 2}, env={})


# -- request ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("sent, kept", [
    ("abc-123", True),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),  # a traceparent
    ("x" * 128, True),
    ("x" * 129, False),
    ("has space", False),
    ('quote"d', False),
    ("new\\nline", False),
    ("é", False),
    ("", False),
])
async def test_request_ids_are_echoed_when_plain_and_replaced_otherwise(
        aiohttp_client: Any, tmp_path: Path, sent: str, kept: bool) -> None:
    client = await aiohttp_client(create_app(_plain(tmp_path)))
    resp = await client.get("/health", headers={"X-Request-Id": sent.encode().decode("latin-1")})
    got = resp.headers["X-Request-Id"]
    assert got == sent if kept else HEX32.fullmatch(got)


async def test_every_response_carries_a_request_id(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_plain(tmp_path)))
    assert (await client.put(f"{ARTIFACTS}/1/r/f.txt", data=b"hello")).status == 200
    answers = [
        await client.get("/health"),  # created
        await client.get(f"{API}/runs/get", params={"run_id": "nope"}),  # MLflow JSON error
        await client.get("/no/such/page"),  # aiohttp's own 404
        await client.post("/health"),  # 405
        await client.get(f"{ARTIFACTS}/1/r/f.txt"),  # a streamed download
        await client.head(f"{ARTIFACTS}/1/r/f.txt"),
    ]
    ids = [resp.headers.get("X-Request-Id") for resp in answers]
    assert all(rid is not None and HEX32.fullmatch(rid) for rid in ids), ids
    assert len(set(ids)) == len(ids)
    resp = await client.get(f"{ARTIFACTS}/1/r/f.txt", headers={"X-Request-Id": "dl-1"})
    assert resp.headers["X-Request-Id"] == "dl-1" and await resp.read() == b"hello"


async def test_the_audit_record_holds_the_request_id(aiohttp_client: Any, store_uri: str,
                                                     tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    await seed_admin(store_uri)
    client = await aiohttp_client(create_app(settings_for(store_uri, tmp_path)))
    root = basic("root", ADMIN_PASSWORD)
    with caplog.at_level(logging.INFO, logger="mlgate.audit"):
        resp = await client.post(f"{API}/experiments/create", json={"name": "traced"},
                                 headers={**root, "X-Request-Id": "trace-42"})
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "trace-42"
        resp = await client.get(f"{API}/experiments/search",
                                headers=basic("root", "wrong-password"))
        assert resp.status == 401
        failed_id = resp.headers["X-Request-Id"]
        resp = await client.get("/mlgate/v1/audit", headers=root)
    records = (await resp.json())["records"]
    created = [r for r in records if r["action"] == "POST /experiments/create"]
    assert [r["request_id"] for r in created] == ["trace-42"]
    logins = [r for r in records if r["action"] == "login"]
    assert [r["request_id"] for r in logins] == [failed_id]
    lines = [orjson.loads(line) for r in caplog.records if r.name == "mlgate.audit"
             for line in r.getMessage().splitlines()]
    assert {"trace-42", failed_id} <= {line["request_id"] for line in lines}


# -- the access log ------------------------------------------------------------------------


class _LoggedServer(GatewayTestServer):
    """The test server with the access log ``mlgate serve`` gives aiohttp's server."""

    def __init__(self, app: web.Application, access: AccessLog) -> None:
        super().__init__(app)
        self.access = access

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        await super().start_server(loop=loop, access_log_class=self.access.logger_class(),
                                   access_log=logging.getLogger("mlgate.access"), **kwargs)


async def _logged_client(aiohttp_client: Any, app: web.Application, fmt: str
                         ) -> tuple[TestClient, AccessLog]:
    access = AccessLog(app, fmt)
    client = await aiohttp_client(_LoggedServer(app, access))
    return client, access


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line for r in caplog.records if r.name == "mlgate.access"
            for line in r.getMessage().splitlines()]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_access_log_lines(aiohttp_client: Any, tmp_path: Path, fmt: str,
                                caplog: pytest.LogCaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path}/auth.db"
    await seed_admin(uri)
    client, access = await _logged_client(
        aiohttp_client, create_app(settings_for(uri, tmp_path)), fmt)
    root = basic("root", ADMIN_PASSWORD)
    # aiohttp asks whether the log is on when a connection opens: set the level first.
    with caplog.at_level(logging.INFO, logger="mlgate.access"):
        resp = await client.post(f"{API}/users/create", headers=root,
                                 json={"username": 'eve "the" admin', "password": PASSWORD})
        assert resp.status == 200
        ok = await client.post(f"{API}/experiments/create", json={"name": "logged"},
                               headers={**root, "X-Request-Id": "acc-1"})
        missing = await client.get(f"{API}/runs/get", params={"run_id": "secret-run"},
                                   headers=basic('eve "the" admin'))
        anonymous = await client.get(f"{API}/experiments/search")
        await asyncio.sleep(0.3)  # written every FLUSH_EVERY seconds
        access.flush()
    lines = _access_lines(caplog)[1:]  # after users/create's
    assert len(lines) == 3, lines
    assert not any("secret-run" in line for line in lines)
    if fmt == "json":
        records = [orjson.loads(line) for line in lines]
        assert [(r["method"], r["route"], r["status"], r["user"], r["workspace"],
                 r["request_id"]) for r in records] == [
            ("POST", f"{API}/experiments/create", 200, "root", "default", "acc-1"),
            ("GET", f"{API}/runs/get", 404, 'eve "the" admin', "default",
             missing.headers["X-Request-Id"]),
            ("GET", f"{API}/experiments/search", 401, None, None,
             anonymous.headers["X-Request-Id"]),
        ]
        for r in records:
            assert r["client"] == "127.0.0.1" and r["bytes"] > 0 and r["us"] >= 0
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"])
        assert ok.status == 200
    else:
        prefix = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mlgate\.access \[\d+\] 127\.0\.0\.1 "
        tail = r" bytes=\d+ us=\d+ user={} workspace={} request_id={}"
        expected = [
            f'"POST {API}/experiments/create" 200' + tail.format("root", "default", "acc-1"),
            f'"GET {API}/runs/get" 404' + tail.format(
                re.escape('"eve \\"the\\" admin"'), "default",
                missing.headers["X-Request-Id"]),
            f'"GET {API}/experiments/search" 401' + tail.format(
                "-", "-", anonymous.headers["X-Request-Id"]),
        ]
        for line, pattern in zip(lines, expected, strict=True):
            assert re.fullmatch(prefix + pattern, line), line


async def test_access_lines_wait_at_most_a_moment(aiohttp_client: Any, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    client, _ = await _logged_client(aiohttp_client, create_app(_plain(tmp_path)), "json")
    with caplog.at_level(logging.INFO, logger="mlgate.access"):
        for _ in range(20):
            assert (await client.get("/health")).status == 200
        deadline = time.monotonic() + 5
        while len(_access_lines(caplog)) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    records = [orjson.loads(line) for line in _access_lines(caplog)]
    assert [(r["route"], r["status"], r["user"]) for r in records] == [("/health", 200, None)] * 20
    # Batched: fewer logging calls than lines.
    assert len([r for r in caplog.records if r.name == "mlgate.access"]) < 20


# -- mlgate serve ---------------------------------------------------------------------------


def _two_free_ports() -> int:
    """A port P such that P and P + 1 are free right now."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _scrape_when_up(url: str) -> set[str]:
    """The families of ``url``, once it answers (the other worker may still be starting)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return parse(resp.read().decode())[0]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_reports_where_it_listens_and_logs_json_lines(tmp_path: Path) -> None:
    port, metrics_port = free_port(), _two_free_ports()
    server = start_server(
        mlgate_command(port, tmp_path, "--workers", "2", "--metrics-port", str(metrics_port),
                       "--access-log", "json"),
        f"http://127.0.0.1:{port}", tmp_path, timeout=60, name="mlgate")
    try:
        request = urllib.request.Request(f"{server.url}{API}/runs/get?run_id=r-1",
                                         headers={"X-Request-Id": "serve-1"})
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and exc.headers["X-Request-Id"] == "serve-1"
        for worker in range(2):  # each worker's own listener, each with its own figures
            families = _scrape_when_up(f"http://127.0.0.1:{metrics_port + worker}/metrics")
            assert "mlgate_batcher_requests" in families
        deadline = time.monotonic() + 10
        while '"serve-1"' not in server.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_server(server)
    output = server.output()
    banner = [line for line in output.splitlines() if " listening on " in line]
    assert len(banner) == 1, output  # once, not once per worker
    assert f"http://127.0.0.1:{port}/api/2.0/mlflow" in banner[0]
    assert f"without credentials, at http://127.0.0.1:{metrics_port}/metrics" in banner[0]
    assert f"port {metrics_port}+i, 2 workers" in banner[0]
    stores = [line for line in output.splitlines() if "metadata store sqlite:///" in line]
    assert len(stores) == 1 and "authentication OFF" in stores[0], output
    assert "access log json, 2 workers" in stores[0]
    records = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    mine = [r for r in records if r["request_id"] == "serve-1"]
    assert [(r["route"], r["status"]) for r in mine] == [(f"{API}/runs/get", 404)], output


def test_startup_lines_redact_the_password_and_name_the_metrics() -> None:
    settings = Settings(backend_store_uri="postgresql://mlgate:s3cret@db:5432/mlgate",
                        artifacts_destination="s3://bucket/prefix", auth=True,
                        static_prefix="/mlflow", metrics_port=9100, host="0.0.0.0")
    where, what = startup_lines(settings, [("0.0.0.0", 5000)], ui_installed=False,
                                metrics_addresses=[("127.0.0.1", 9100)])
    assert "s3cret" not in where + what
    assert "postgresql://mlgate:***@db:5432/mlgate" in what
    assert "artifacts proxied to s3://bucket/prefix" in what
    assert "authentication on" in what
    assert "http://0.0.0.0:5000/mlflow (all interfaces)" in where
    assert "the API at http://0.0.0.0:5000/mlflow/api/2.0/mlflow" in where
    assert "no UI" in where
    assert "metrics at http://0.0.0.0:5000/mlflow/metrics (administrators)" in where
    assert "http://127.0.0.1:9100/metrics" in where
    six = startup_lines(Settings(host="::1"), [("::1", 5000, 0, 0)], ui_installed=True)
    assert "http://[::1]:5000" in six[0] and "the UI at http://[::1]:5000/" in six[0]


def test_the_command_line_lists_the_settings() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway", "serve", "--help"], check=True,
                         capture_output=True, text=True).stdout
    for flag in ("--access-log", "--metrics / --no-metrics", "--metrics-port", "--metrics-host"):
        assert flag in out


def test_malformed_requests_are_one_access_line_not_an_error_traceback(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(mlgate_command(port, tmp_path), f"http://127.0.0.1:{port}", tmp_path,
                          timeout=60, name="mlgate")
    try:
        for raw in (b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n",
                    b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(raw)
                assert conn.recv(100).startswith(b"HTTP/1.0 400 ")
        server.wait_for('"UNKNOWN (unmatched)" 400', count=2)
    finally:
        stop_server(server)
    output = server.output()
    assert "Traceback" not in output and " ERROR " not in output, output


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_access_log_durations_are_in_microseconds_on_either_loop(tmp_path: Path,
                                                                 loop: str) -> None:
    """uvloop's clock ticks in milliseconds; a line's ``us`` must still be the request's
    own time, not a multiple of 1,000."""
    port = free_port()
    server = start_server(mlgate_command(port, tmp_path, "--access-log", "json",
                                         "--event-loop", loop),
                          f"http://127.0.0.1:{port}", tmp_path, timeout=60, name="mlgate")
    try:
        for i in range(40):
            request = urllib.request.Request(f"{server.url}/health",
                                             headers={"X-Request-Id": f"us-{i}"})
            urllib.request.urlopen(request, timeout=10).read()
        server.wait_for('"us-39"')
    finally:
        stop_server(server)
    records = [orjson.loads(line) for line in server.output().splitlines()
               if line.startswith("{")]
    micros = [r["us"] for r in records if r["request_id"].startswith("us-")]
    assert len(micros) == 40
    # Within a microsecond or two of a whole millisecond: a difference of two millisecond
    # readings (float rounding makes 1,000 µs 999 at times).
    assert not all(min(us % 1000, 1000 - us % 1000) <= 2 for us in micros), micros


def test_a_client_that_cuts_its_body_is_not_a_server_error(tmp_path: Path) -> None:
    """A client that closes its connection in the middle of a JSON body or an upload is
    logged as a refused request (400), never as an unhandled error and a 500: otherwise
    any client could inflate the 5xx figures."""
    port = free_port()
    server = start_server(mlgate_command(port, tmp_path, "--access-log", "json"),
                          f"http://127.0.0.1:{port}", tmp_path, timeout=60, name="mlgate")
    heads = [
        f"POST {API}/runs/log-metric HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: cut-json\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + '{"run_id": "',
        "PUT /api/2.0/mlflow-artifacts/artifacts/0/cut/file.bin HTTP/1.1\r\nHost: localhost\r\n"
        "X-Request-Id: cut-upload\r\nContent-Length: 100000\r\n\r\n" + "x" * 1000,
    ]
    try:
        for head in heads:
            for how in ("half-close", "close"):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                    conn.sendall(head.encode())
                    time.sleep(0.2)  # the handler is waiting for the rest of the body
                    if how == "half-close":
                        conn.shutdown(socket.SHUT_WR)
                        conn.recv(1000)
        server.wait_for('"cut-', count=4)
    finally:
        stop_server(server)
    output = server.output()
    assert " ERROR " not in output and "Traceback" not in output, output
    records = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    statuses = [r["status"] for r in records if r["request_id"].startswith("cut-")]
    assert statuses and all(s == 400 for s in statuses), statuses


def test_a_cut_off_request_is_audited_as_the_400_it_is_answered(tmp_path: Path) -> None:
    """With auth on, the audit record of a request whose client closed the connection
    mid-body says what the access log and the figures say (400), not a server error."""
    port = free_port()
    server = start_server(
        mlgate_command(port, tmp_path, "--auth"), f"http://127.0.0.1:{port}", tmp_path,
        timeout=60, name="mlgate",
        env={"MLGATE_ADMIN_USERNAME": "root", "MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    root = basic("root", ADMIN_PASSWORD)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall((f"POST {API}/runs/log-metric HTTP/1.1\r\nHost: localhost\r\n"
                          f"Authorization: {root['Authorization']}\r\n"
                          "X-Request-Id: cut-audit\r\nContent-Type: application/json\r\n"
                          'Content-Length: 1000\r\n\r\n{"run_id": "').encode())
            time.sleep(0.2)  # the body is being read
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not records:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
            request = urllib.request.Request(f"{server.url}/mlgate/v1/audit", headers=root)
            with urllib.request.urlopen(request, timeout=10) as resp:
                records = [r for r in orjson.loads(resp.read())["records"]
                           if r["request_id"] == "cut-audit"]
    finally:
        stop_server(server)
    assert [(r["outcome"], r["status"]) for r in records] == [("error", 400)], records
    assert " ERROR " not in server.output(), server.output()
