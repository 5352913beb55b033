"""The web UI's chart request (``metrics/get-history-bulk-interval``, 320 points, as the run
page asks): mlgate vs stock ``mlflow server``, on the same PostgreSQL server and on SQLite.

Run by hand (not collected by pytest)::

    python tests/perf/ui_charts.py [--points 100000] [--repeat 15]
        [--stores postgres,sqlite] [--servers mlgate,stock]

For every (store, server) pair it starts the server on a fresh database and logs, through
the API (log-batch of 1,000), two runs of ``--points`` points each: ``in order`` (step and
timestamp rising together, a training loop) and ``steps go down`` (steps logged out of time
order, which mlgate's SQLite store samples by sorting). Then it times sequential chart
requests for each run and prints the median (p50) after five warm-up requests, with a check
that both servers returned the same 320 points.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from search_and_history import API, WARM_UP, _admin, dsn_for, http, p50, start, stop

SHAPES = {
    "in order": lambda i, n: i,
    "steps go down": lambda i, n: (i * 7919) % n,
}


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=600) as resp:
        return json.loads(resp.read())


def log_history(url: str, run_id: str, points: int, step_of: Any) -> None:
    for start_at in range(0, points, 1000):
        http(url + API + "/runs/log-batch", {"run_id": run_id, "metrics": [
            {"key": "loss", "value": (i % 977) / 977, "timestamp": 1_700_000_000_000 + i,
             "step": step_of(i, points)} for i in range(start_at, min(points, start_at + 1000))]})


def measure(store: str, server: str, points: int,
            repeat: int) -> list[tuple[str, str, str, float, str]]:
    work = Path(tempfile.mkdtemp(prefix=f"perf-charts-{server}-{store}-"))
    created_db = None
    if store == "postgres":
        created_db = f"mlgate_perf_{server}_{uuid.uuid4().hex[:6]}"
        asyncio.run(_admin(f'CREATE DATABASE "{created_db}"'))
        uri = dsn_for(created_db)
    else:
        uri = f"sqlite:///{work / 'db.sqlite'}"
    try:
        proc, url = start(server, uri, work)
    except BaseException:
        if created_db:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{created_db}" WITH (FORCE)'))
        raise
    out = []
    try:
        exp_id = http(url + API + "/experiments/create", {"name": "charts"})["experiment_id"]
        for shape, step_of in SHAPES.items():
            run_id = http(url + API + "/runs/create",
                          {"experiment_id": exp_id, "start_time": 1})["run"]["info"]["run_id"]
            log_history(url, run_id, points, step_of)
            chart = (f"{url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
                     f"?run_ids={run_id}&metric_key=loss&max_results=320")
            t, res = p50(lambda chart=chart: get(chart), repeat)
            sample = [(m["step"], m["timestamp"], m["value"]) for m in res.get("metrics", [])]
            digest = hashlib.sha256(json.dumps(sample).encode()).hexdigest()[:12]
            out.append((server, store, f"chart, {points} points {shape}", t,
                        f"{len(sample)} points, sha {digest}"))
            print(f"  [{server}/{store}] {shape}: {t * 1000:.1f} ms", flush=True)
    finally:
        stop(proc)
        if created_db:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{created_db}" WITH (FORCE)'))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--stores", default="postgres,sqlite")
    ap.add_argument("--servers", default="mlgate,stock")
    args = ap.parse_args()
    results = []
    for store in args.stores.split(","):
        for server in args.servers.split(","):
            results += measure(store, server, args.points, args.repeat)
    print(f"\np50 over {args.repeat} requests after {WARM_UP} warm-up requests")
    print(f"{'server':8} {'store':9} {'request':38} {'p50':>10}  check")
    for server, store, what, t, check in results:
        print(f"{server:8} {store:9} {what:38} {t * 1000:8.1f} ms  {check}")


if __name__ == "__main__":
    main()
