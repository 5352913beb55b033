"""Reads and writes together, as a shared endpoint sees them: mlgate against stock
``mlflow server`` on the same machine, in the same run.

Run by hand (not collected by pytest)::

    .venv/bin/python tests/perf/mixed_workload.py [--clients 64] [--duration 10] [--repeat 3]
        [--stores sqlite,postgres] [--servers mlgate,stock]
        [--mix log-metric=50,log-batch=20,runs-get=20,runs-search=10]

Each server runs as its own process on a fresh database (on PostgreSQL, a database made on
the server ``--pg-dsn`` names, dropped afterwards), with one experiment of ``--runs`` runs
(264), each with params, tags and a few metrics, as a team's experiment looks after a sweep.
The clients (``--clients``, spread over ``--procs`` client processes so that the load
generator is not the bottleneck) each send one request after another, picking the operation
by the mix's weights:

- ``log-metric``: one metric to one of the experiment's runs;
- ``log-batch``: 100 metrics to one run;
- ``runs-get``: one run, as the run page asks for it;
- ``runs-search``: the experiment's runs filtered on a metric and a param and ordered by a
  metric, 50 a page, as the experiment page asks.

Printed per server and store: requests per second, the server's CPU per request (its own
processes), PostgreSQL's (its processes named ``postgres`` on this machine, so a server
process that exits during a round, such as a closed connection's, is not counted), and
p50/p99 of each operation (milliseconds), the medians over ``--repeat`` rounds (servers
take turns within a round); then mlgate's ratio to stock.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metric_throughput import API, Server, _drop_pg, _fresh_pg, _post

OPS = ("log-metric", "log-batch", "runs-get", "runs-search")
SEARCH = {"filter": "metrics.loss < 0.5 and params.lr = '0.01'",
          "order_by": ["metrics.accuracy DESC"], "max_results": 50}


def _seed(url: str, runs: int) -> tuple[str, list[str]]:
    """An experiment of ``runs`` runs as a sweep leaves them; (its id, the run ids)."""
    rng = random.Random(7)
    exp = _post(url, "/experiments/create", {"name": f"mixed{time.time_ns()}"})["experiment_id"]
    ids = []
    for i in range(runs):
        run = _post(url, "/runs/create", {"experiment_id": exp, "start_time": 1,
                                          "run_name": f"trial-{i}"})["run"]["info"]["run_id"]
        _post(url, "/runs/log-batch", {
            "run_id": run,
            "params": [{"key": "lr", "value": rng.choice(["0.1", "0.01", "0.001"])},
                       {"key": "layers", "value": str(rng.randint(1, 8))}],
            "tags": [{"key": "team", "value": "vision"}],
            "metrics": [{"key": k, "value": rng.random(), "timestamp": 1, "step": 0}
                        for k in ("loss", "accuracy", "f1")]})
        ids.append(run)
    return exp, ids


def _body(op: str, exp: str, runs: list[str], rng: random.Random, n: int) -> tuple[str, str, bytes | None]:
    """(method, path, body) of one request of ``op``."""
    run = runs[rng.randrange(len(runs))]
    if op == "log-metric":
        return "POST", "/runs/log-metric", orjson.dumps(
            {"run_id": run, "key": "train_loss", "value": rng.random(),
             "timestamp": n, "step": n})
    if op == "log-batch":
        return "POST", "/runs/log-batch", orjson.dumps({"run_id": run, "metrics": [
            {"key": f"m{i % 10}", "value": i, "timestamp": n, "step": n * 100 + i}
            for i in range(100)]})
    if op == "runs-get":
        return "GET", f"/runs/get?run_id={run}", None
    return "POST", "/runs/search", orjson.dumps({"experiment_ids": [exp], **SEARCH})


async def _clients(url: str, exp: str, runs: list[str], clients: int, duration: float,
                   weights: list[int], seed: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {op: [] for op in OPS}
    fails = dict.fromkeys(OPS, 0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=timeout) as http:
        stop_at = time.monotonic() + duration

        async def client(c: int) -> None:
            rng = random.Random(seed * 1000 + c)
            n = (seed * 1000 + c) * 10_000_000
            while time.monotonic() < stop_at:
                n += 1
                op = rng.choices(OPS, weights)[0]
                method, path, body = _body(op, exp, runs, rng, n)
                t0 = time.perf_counter()
                try:
                    async with http.request(method, url + API + path, data=body, headers={
                            "Content-Type": "application/json"}) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies[op].append((time.perf_counter() - t0) * 1000)
                if not ok:
                    fails[op] += 1

        await asyncio.gather(*(client(c) for c in range(clients)))
    return {"latencies": latencies, "fails": fails}


def _client_process(args: tuple[str, str, list[str], int, float, list[int], int]) -> dict[str, Any]:
    return asyncio.run(_clients(*args))


def _round(server: Server, exp: str, runs: list[str], a: argparse.Namespace,
           weights: list[int], seed: int) -> dict[str, Any]:
    proc = psutil.Process(server.proc.pid)
    family = [proc, *proc.children(recursive=True)]
    cpu0 = sum(sum(p.cpu_times()[:2]) for p in family)
    db0 = _db_cpu() if server.store == "postgres" else {}
    started = time.monotonic()
    per = [a.clients // a.procs + (1 if i < a.clients % a.procs else 0) for i in range(a.procs)]
    with multiprocessing.get_context("spawn").Pool(a.procs) as pool:
        parts = pool.map(_client_process, [(server.url, exp, runs, n, a.duration, weights,
                                            seed * 10 + i) for i, n in enumerate(per)])
    elapsed = time.monotonic() - started
    cpu = sum(sum(p.cpu_times()[:2]) for p in family) - cpu0
    db = sum(t - db0.get(pid, 0.0) for pid, t in _db_cpu().items()) if db0 else float("nan")
    lat = {op: sorted(x for part in parts for x in part["latencies"][op]) for op in OPS}
    done = sum(len(v) for v in lat.values())
    every = sorted(x for v in lat.values() for x in v)
    return {
        "rps": done / a.duration, "cpu_ms": cpu * 1000 / max(done, 1),
        "db_cpu_ms": db * 1000 / max(done, 1),
        "fails": sum(part["fails"][op] for part in parts for op in OPS),
        "elapsed": elapsed,
        **{f"{op} p50": _pct(lat[op], 0.5) for op in OPS},
        **{f"{op} p99": _pct(lat[op], 0.99) for op in OPS},
        "all p99": _pct(every, 0.99),
    }


def _db_cpu() -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL process on this machine, by pid."""
    out = {}
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "postgres":
            try:
                out[p.pid] = sum(p.cpu_times()[:2])
            except psutil.Error:
                pass
    return out


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--runs", type=int, default=264)
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--servers", default="mlgate,stock")
    ap.add_argument("--mix", default="log-metric=50,log-batch=20,runs-get=20,runs-search=10")
    ap.add_argument("--pg-dsn", default=os.environ.get(
        "MLGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--mlflow-bin", default=str(Path(sys.executable).parent / "mlflow"))
    a = ap.parse_args()
    mix = dict(part.split("=") for part in a.mix.split(","))
    unknown = set(mix) - set(OPS)
    if unknown:
        sys.exit(f"unknown operations in --mix: {', '.join(sorted(unknown))}")
    weights = [int(mix.get(op, 0)) for op in OPS]
    kinds = a.servers.split(",")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for store in a.stores.split(","):
        servers: dict[str, tuple[Server, str, list[str], str | None, Path]] = {}
        try:
            for kind in kinds:
                workdir = Path(tempfile.mkdtemp(prefix=f"mlgate-mixed-{kind}-{store}-"))
                dsn = asyncio.run(_fresh_pg(a.pg_dsn)) if store == "postgres" else None
                server = Server(kind, store, workdir, dsn, a.mlflow_bin)
                exp, runs = _seed(server.url, a.runs)
                servers[kind] = (server, exp, runs, dsn, workdir)
            for r in range(a.repeat):
                order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
                for kind in order:
                    server, exp, runs, _, _ = servers[kind]
                    res = _round(server, exp, runs, a, weights, r)
                    results.setdefault((kind, store), []).append(res)
                    print(f"  {kind:6} {store:8} {res['rps']:8.0f} req/s  cpu {res['cpu_ms']:6.2f}"
                          f" ms/req  db {res['db_cpu_ms']:6.2f} ms/req  p99 all"
                          f" {res['all p99']:8.1f} ms  fail {res['fails']}", flush=True)
        finally:
            for server, _, _, dsn, workdir in servers.values():
                server.stop()
                if dsn:
                    asyncio.run(_drop_pg(a.pg_dsn, dsn))
                shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nmixed workload, {a.clients} clients, mix {a.mix}, {a.duration:.0f} s x "
          f"{a.repeat} (medians; {time.strftime('%F %T')})")
    columns = ["rps", "all p99", *(f"{op} p{q}" for op in OPS for q in (50, 99)), "cpu_ms",
               "db_cpu_ms"]
    medians: dict[tuple[str, str], dict[str, float]] = {}
    print(f"{'server':16} {'req/s':>8} {'cpu ms/req':>10} {'db ms/req':>9} {'fails':>6} "
          f"{'p99 all':>8}  " + "  ".join(f"{op + ' p50/p99':>22}" for op in OPS))
    for key, rounds in results.items():
        m = medians[key] = {c: statistics.median(r[c] for r in rounds) for c in columns}
        print(f"{key[0] + ' ' + key[1]:16} {m['rps']:8.0f} {m['cpu_ms']:10.2f} "
              f"{m['db_cpu_ms']:9.2f} "
              f"{sum(r['fails'] for r in rounds):6d} {m['all p99']:8.1f}  "
              + "  ".join(f"{m[op + ' p50']:10.1f} /{m[op + ' p99']:10.1f}" for op in OPS))
    for store in a.stores.split(","):
        if ("mlgate", store) in medians and ("stock", store) in medians:
            ours, stock = medians[("mlgate", store)], medians[("stock", store)]
            print(f"{store}: mlgate {ours['rps'] / stock['rps']:.1f}x stock's req/s, p99 all "
                  f"{ours['all p99']:.0f} vs {stock['all p99']:.0f} ms")


if __name__ == "__main__":
    main()
