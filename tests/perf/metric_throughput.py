"""Metric write throughput: mlgate's batcher vs stock ``mlflow server`` vs a bare aiohttp
"hello" server (the ceiling of the HTTP stack), on SQLite, PostgreSQL and MariaDB. The hello
server runs on the event loop mlgate runs on by default (uvloop where installed), so that the
ratio to it compares the gateway's own work only.

Run by hand (not collected by pytest); needs ``wrk`` (Debian package ``wrk``)::

    python tests/perf/metric_throughput.py [--duration 10] [--stores sqlite,postgres,mariadb]
        [--servers hello,mlgate,stock] [--pg-dsn postgresql://postgres@127.0.0.1:5432/postgres]
        [--my-dsn mysql://root@127.0.0.1:3306] [--mlflow-bin PATH]

Each server runs as its own process on a fresh database (a throwaway one on the PostgreSQL
or MariaDB server, dropped afterwards; stock reaches MariaDB through ``mysql+pymysql://``). log-metric is driven by wrk (C, two
threads, so the load generator is not the bottleneck) with a Lua script that sends distinct
metric rows over 64 runs; log-batch (1000 metrics per request) by an aiohttp client, since
its request rate is low. All servers run at once and each round goes through them in turn;
every figure is the median over ``--repeat`` rounds; latencies are wrk's own percentiles.
"fail" counts non-2xx answers and socket errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson

ROOT = Path(__file__).resolve().parents[2]
API = "/api/2.0/mlflow"
sys.path.insert(0, str(ROOT / "tests"))
from conftest import free_port
from mytools import MyDatabases

HELLO = """
import sys
from aiohttp import web
try:
    import uvloop
except ImportError:
    uvloop = None
async def hello(request):
    await request.read()
    return web.json_response({})
app = web.Application()
app.router.add_post("/{tail:.*}", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            loop=uvloop.new_event_loop() if uvloop else None)
"""

LUA = """
local runs = {%s}
local counter = 0
local base = 0
local headers = {["Content-Type"] = "application/json"}
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  base = tid * 1000000000
end
function request()
  counter = counter + 1
  local run = runs[(counter %% #runs) + 1]
  local body = string.format(
    '{"run_id":"%%s","key":"loss","value":%%d,"timestamp":%%d,"step":%%d}',
    run, counter, base + counter, counter)
  return wrk.format("POST", "%s", headers, body)
end
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    fail: int


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except OSError:
            try:  # the hello server has no /health; any answer means it listens
                urllib.request.urlopen(urllib.request.Request(url + "/x", data=b"{}"), timeout=1)
                return
            except OSError:
                time.sleep(0.2)
    raise RuntimeError(f"{url} not up after {timeout} s")


class Server:
    def __init__(self, kind: str, store: str, workdir: Path, dsn: str | None,
                 mlflow_bin: str, wrap: Sequence[str] = ()) -> None:
        """``wrap``: a command the server runs under (instructions_per_request.py's
        valgrind)."""
        self.kind, self.store, self.workdir, self.dsn = kind, store, workdir, dsn
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MLFLOW_", "MLGATE_"))}
        env.update(MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        if kind == "hello":
            cmd = [sys.executable, "-c", HELLO, str(port)]
        elif kind == "mlgate":
            uri = dsn or f"sqlite:///{workdir / 'mlgate.db'}"
            cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(port),
                   "--backend-store-uri", uri, "--artifacts-destination", str(workdir / "a")]
        else:
            uri = dsn or f"sqlite:///{workdir / 'mlflow.db'}"
            if uri.startswith("postgresql://"):  # stock's default driver would be psycopg 3
                uri = "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
            elif uri.startswith("mysql://"):  # and for MySQL, mysqlclient (not installed)
                uri = "mysql+pymysql://" + uri.removeprefix("mysql://")
            cmd = [mlflow_bin, "server", "--port", str(port), "--backend-store-uri", uri,
                   "--artifacts-destination", str(workdir / "a")]
        self.log = open(workdir / f"{kind}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([*wrap, *cmd], cwd=workdir, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _wait_healthy(self.url, self.proc, 600 if wrap else 180)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url + API + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        out: dict[str, Any] = json.load(resp)
        return out


def _make_runs(server: Server, n: int) -> list[str]:
    if server.kind == "hello":
        return [uuid.uuid4().hex for _ in range(n)]
    exp = _post(server.url, "/experiments/create", {"name": f"perf{time.time_ns()}"})
    return [_post(server.url, "/runs/create",
                  {"experiment_id": exp["experiment_id"], "start_time": 1})["run"]["info"]
            ["run_id"] for _ in range(n)]


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m[1]) * _UNIT[m[2]]


def wrk_log_metric(server: Server, runs: list[str], clients: int, duration: float) -> Result:
    script = server.workdir / "log_metric.lua"
    script.write_text(LUA % (",".join(f'"{r}"' for r in runs), API + "/runs/log-metric"))
    threads = min(2, clients)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{max(1, round(duration))}s", "--latency",
         "--timeout", "30s", "-s", str(script), server.url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    fail = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    fail += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Result(rps, p50, p99, fail)


async def _batch_load(server: Server, runs: list[str], clients: int, duration: float,
                      size: int) -> Result:
    latencies: list[float] = []
    fail = 0
    metrics_done = 0
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=timeout) as http:
        started = time.monotonic()
        stop_at = started + duration

        async def client(c: int) -> None:
            nonlocal fail, metrics_done
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                run = runs[(c * 7919 + n) % len(runs)]
                base = (c * 1_000_000 + n) * size
                body = orjson.dumps({"run_id": run, "metrics": [
                    {"key": f"k{i % 10}", "value": i, "timestamp": base + i, "step": i}
                    for i in range(size)]})
                t0 = time.perf_counter()
                try:
                    async with http.post(server.url + API + "/runs/log-batch", data=body,
                                         headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append((time.perf_counter() - t0) * 1000)
                if ok:
                    metrics_done += size
                else:
                    fail += 1

        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return Result(metrics_done / elapsed, latencies[len(latencies) // 2],
                  latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], fail)


async def _fresh_pg(dsn: str) -> str:
    name = f"mlgate_perf_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def _drop_pg(dsn: str, db_dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(db_dsn).path[1:]}" WITH (FORCE)')
    finally:
        await conn.close()


MY_DATABASES = MyDatabases()

SCENARIOS = [
    ("log-metric  1 client", "metric", 1),
    ("log-metric  8 clients", "metric", 8),
    ("log-metric 64 clients", "metric", 64),
    ("log-batch×1000  8 clients", "batch", 8),
    ("log-batch×1000 64 clients", "batch", 64),
]


@dataclass
class Target:
    """One server under test, with its database and runs."""

    kind: str
    store: str
    server: Server
    dsn: str | None
    workdir: Path
    runs: list[str]
    results: dict[str, list[Result]]


def start_target(kind: str, store: str, args: argparse.Namespace,
                 wrap: Sequence[str] = ()) -> Target:
    workdir = Path(tempfile.mkdtemp(prefix=f"mlgate-perf-{kind}-{store}-"))
    dsn = None
    if kind != "hello" and store == "postgres":
        dsn = asyncio.run(_fresh_pg(args.pg_dsn))
    elif kind != "hello" and store == "mariadb":
        os.environ["MLGATE_TEST_MYSQL_DSN"] = args.my_dsn
        dsn = MY_DATABASES.create(f"perf_{kind}", migrated=False)
    server = Server(kind, store, workdir, dsn, args.mlflow_bin, wrap)
    return Target(kind, store, server, dsn, workdir, _make_runs(server, 64), {})


def stop_target(target: Target, args: argparse.Namespace) -> None:
    target.server.stop()
    if target.dsn and target.store == "postgres":
        asyncio.run(_drop_pg(args.pg_dsn, target.dsn))
    elif target.dsn:
        MY_DATABASES.drop(target.dsn)
    shutil.rmtree(target.workdir, ignore_errors=True)


def run_round(target: Target, name: str, what: str, clients: int,
              args: argparse.Namespace) -> None:
    if what == "metric":
        res = wrk_log_metric(target.server, target.runs, clients, args.duration)
    else:
        res = asyncio.run(_batch_load(target.server, target.runs, clients, args.duration, 1000))
    target.results.setdefault(name, []).append(res)
    print(f"  {target.kind:6} {target.store:8} {name:26} {res.rps:10.0f}/s p50 {res.p50_ms:8.1f}"
          f" ms p99 {res.p99_ms:8.1f} ms fail {res.fail}", flush=True)


def _median(results: list[Result]) -> Result:
    return Result(statistics.median(r.rps for r in results),
                  statistics.median(r.p50_ms for r in results),
                  statistics.median(r.p99_ms for r in results),
                  sum(r.fail for r in results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--servers", default="hello,mlgate,stock")
    ap.add_argument("--only", choices=("metric", "batch"),
                    help="run only the log-metric or only the log-batch scenarios")
    ap.add_argument("--pg-dsn", default=os.environ.get(
        "MLGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--my-dsn", default=os.environ.get(
        "MLGATE_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306"))
    ap.add_argument("--mlflow-bin", default=str(Path(sys.executable).parent / "mlflow"))
    args = ap.parse_args()
    unknown = set(args.stores.split(",")) - {"sqlite", "postgres", "mariadb"}
    if unknown:  # any other name would have run on SQLite under that label
        ap.error(f"unknown store(s) {', '.join(sorted(unknown))}: sqlite, postgres, mariadb")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    # Every server runs at once and each scenario's rounds go through them in turn, so that
    # the machine's drift (its speed changes by 15% within minutes) falls on all alike and
    # the ratio to hello is taken within a round.
    targets: list[Target] = []
    try:
        for store in args.stores.split(","):
            for kind in args.servers.split(","):
                if kind == "hello" and store != args.stores.split(",")[0]:
                    continue  # the ceiling has no store
                print(f"== starting {kind} on {store}", flush=True)
                targets.append(start_target(kind, "-" if kind == "hello" else store, args))
        for _ in range(args.repeat):
            for name, what, clients in SCENARIOS:
                if args.only and args.only != what:
                    continue
                for target in targets:
                    if target.kind != "hello" or what == "metric":
                        run_round(target, name, what, clients, args)
    finally:
        for target in targets:
            stop_target(target, args)
    print(f"\nmedians of {args.repeat} round(s) of {args.duration:.0f} s; rate is requests/s "
          "for log-metric, metrics/s for log-batch; / hello: the median of the rounds' ratios")
    print(f"{'scenario':27} {'server':7} {'store':9} {'rate':>10} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'fail':>6} {'/ hello':>8}")
    hello = next((t for t in targets if t.kind == "hello"), None)
    for name, _, _ in SCENARIOS:
        for target in targets:
            rounds = target.results.get(name)
            if not rounds:
                continue
            r = _median(rounds)
            ratio = ""
            if hello is not None and target is not hello and name in hello.results:
                ratio = f"{statistics.median(a.rps / b.rps for a, b in zip(rounds, hello.results[name], strict=True)):8.2f}"
            print(f"{name:27} {target.kind:7} {target.store:9} {r.rps:10.0f} {r.p50_ms:8.2f}"
                  f" {r.p99_ms:8.1f} {r.fail:6d} {ratio}")

if __name__ == "__main__":
    main()
