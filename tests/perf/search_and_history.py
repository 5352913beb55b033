"""runs/search and metrics/get-history latency: mlgate vs stock ``mlflow server``, on the same
PostgreSQL server, the same MariaDB server, and on SQLite.

Run by hand (not collected by pytest)::

    python tests/perf/search_and_history.py [--sizes 10000,100000] [--points 100000]
        [--repeat 7] [--stores postgres,sqlite,mariadb] [--servers mlgate,stock]

For every (store, server) pair it starts the server on a fresh database (a throwaway
PostgreSQL database from MLGATE_TEST_PG_DSN, a MariaDB one from MLGATE_TEST_MYSQL_DSN, or a
SQLite file), creates one experiment per size through the API, then fills each server's
*own* schema directly with SQL (COPY on PostgreSQL, executemany on SQLite and MariaDB): N runs with params ``p`` (10 values) and ``q``, metrics
``m`` and ``loss`` and the run-name tag; plus one run with a metric ``h`` of ``--points``
points. Then it ANALYZEs (VACUUM ANALYZE on PostgreSQL, as autovacuum would soon after such
a load; ANALYZE TABLE on MariaDB) and times, with one HTTP client, sequential requests:

- runs/search over each experiment: ``metrics.m > 0.5 and params.p = 'v3'``, order by
  ``metrics.loss ASC``, max_results 100;
- metrics/get-history of ``h`` (all points in one response).

It prints the median (p50) of ``--repeat`` requests after five warm-up requests (as many as
a server's pooled connections, so none is timed on its first, cold use). A request is timed
until its answer's last byte is read; the benchmark's own JSON parse is timed apart, once
per answer, and printed beside it (the client's cost, the same for every server: Python's
``json.loads`` of the 100k-point history takes about 100 ms here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import pymysql

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from mytools import MyDatabases
from pgtools import admin_dsn, dsn_for

API = "/api/2.0/mlflow"
N_PARAM_VALUES = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fetch(url: str, body: dict[str, Any] | None = None) -> bytes:
    """The answer's bytes, read to the end."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        out: bytes = resp.read()
        return out


def http(url: str, body: dict[str, Any] | None = None) -> Any:
    return json.loads(fetch(url, body))


# -- servers -------------------------------------------------------------------------------


def start(kind: str, uri: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind == "mlgate":
        cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(port),
               "--backend-store-uri", uri, "--artifacts-destination", str(workdir / "art"),
               "--log-level", "warning"]
    else:
        if uri.startswith("postgresql://"):  # stock's default driver here would be psycopg 3
            uri = "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--port", str(port),
               "--backend-store-uri", uri, "--artifacts-destination", str(workdir / "art"),
               "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env = {k: v for k, v in env.items() if not k.startswith("MLGATE_") or k == "MLGATE_TEST_PG_DSN"}
    log = open(workdir / f"{kind}.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{kind} exited: {(workdir / f'{kind}.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{kind} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(20)


# -- data ----------------------------------------------------------------------------------


def make_runs(n: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [{
        "run_id": uuid.UUID(int=rnd.getrandbits(128)).hex,
        "start": 1_700_000_000_000 + i,
        "p": f"v{rnd.randrange(N_PARAM_VALUES)}",
        "q": str(rnd.randrange(1000)),
        "m": rnd.random(),
        "loss": rnd.random(),
    } for i in range(n)]


def rows_for(server: str, exp_id: int, runs: list[dict[str, Any]],
             history: tuple[str, int] | None) -> dict[str, list[tuple[Any, ...]]]:
    """Rows per table of ``server``'s schema."""
    t: dict[str, list[tuple[Any, ...]]] = {}
    if server == "stock":
        t["runs"] = [(r["run_id"], f"run{i}", "LOCAL", "", "", "u", "FINISHED", r["start"],
                      r["start"] + 1, "", "active", f"mlflow-artifacts:/{exp_id}/{r['run_id']}",
                      exp_id) for i, r in enumerate(runs)]
        t["params"] = [x for r in runs for x in ((("p", r["p"], r["run_id"])),
                                                 ("q", r["q"], r["run_id"]))]
        t["tags"] = [("mlflow.runName", f"run{i}", r["run_id"]) for i, r in enumerate(runs)]
        metric = [x for r in runs for x in (("m", r["m"], r["start"], 0, False, r["run_id"]),
                                            ("loss", r["loss"], r["start"], 0, False,
                                             r["run_id"]))]
        t["metrics"] = list(metric)
        t["latest_metrics"] = list(metric)
        if history:
            run_id, points = history
            t["metrics"] += [("h", i / points, 1_700_000_000_000 + i, i, False, run_id)
                             for i in range(points)]
            t["latest_metrics"].append(("h", (points - 1) / points,
                                        1_700_000_000_000 + points - 1, points - 1, False,
                                        run_id))
        return t
    t["runs"] = [(r["run_id"], exp_id, f"run{i}", "u", "FINISHED", r["start"], r["start"] + 1,
                  f"mlflow-artifacts:/{exp_id}/{r['run_id']}/artifacts", "active")
                 for i, r in enumerate(runs)]
    t["run_params"] = [x for r in runs for x in ((r["run_id"], "p", r["p"], exp_id),
                                                 (r["run_id"], "q", r["q"], exp_id))]
    t["run_tags"] = [(r["run_id"], "mlflow.runName", f"run{i}") for i, r in enumerate(runs)]
    return t


STOCK_COLUMNS = {
    "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id",
             "status", "start_time", "end_time", "source_version", "lifecycle_stage",
             "artifact_uri", "experiment_id"),
    "params": ("key", "value", "run_uuid"),
    "tags": ("key", "value", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}
MLGATE_COLUMNS = {
    "runs": ("run_id", "experiment_id", "run_name", "user_id", "status", "start_time",
             "end_time", "artifact_uri", "lifecycle_stage"),
    "run_params": ("run_id", "key", "value", "experiment_id"),
    "run_tags": ("run_id", "key", "value"),
}


async def fill_mlgate_metrics_pg(conn: asyncpg.Connection, runs: list[dict[str, Any]],
                                 history: tuple[str, int] | None) -> None:
    series = [(r["run_id"], k, r[k], 0, r["start"], 0) for r in runs for k in ("m", "loss")]
    if history:
        run_id, points = history
        series.append((run_id, "h", (points - 1) / points, 0,
                       1_700_000_000_000 + points - 1, points - 1))
    before = await conn.fetchval("SELECT COALESCE(MAX(series_id), 0) FROM metric_series")
    await conn.copy_records_to_table(
        "metric_series", records=series, columns=("run_id", "key", "latest_value",
                                                  "latest_is_nan", "latest_timestamp",
                                                  "latest_step"))
    await conn.execute(
        "INSERT INTO metric_points (series_id, timestamp, step, value, is_nan)"
        " SELECT series_id, latest_timestamp, latest_step, latest_value, 0 FROM metric_series"
        " WHERE key <> 'h' AND series_id > $1", before)
    if history:
        run_id, points = history
        sid = await conn.fetchval(
            "SELECT series_id FROM metric_series WHERE run_id = $1 AND key = 'h'", run_id)
        await conn.copy_records_to_table(
            "metric_points", columns=("series_id", "timestamp", "step", "value", "is_nan"),
            records=[(sid, 1_700_000_000_000 + i, i, i / points, 0) for i in range(points)])


def fill_mlgate_metrics_dbapi(db: Any, runs: list[dict[str, Any]],
                              history: tuple[str, int] | None, mark: str) -> None:
    """On a DB-API connection (sqlite3 or pymysql) whose placeholder is ``mark``."""
    cur = db.cursor()
    series = [(r["run_id"], k, r[k], 0, r["start"], 0) for r in runs for k in ("m", "loss")]
    if history:
        run_id, points = history
        series.append((run_id, "h", (points - 1) / points, 0,
                       1_700_000_000_000 + points - 1, points - 1))
    cur.execute("SELECT COALESCE(MAX(series_id), 0) FROM metric_series")
    (before,) = cur.fetchone()
    cur.executemany("INSERT INTO metric_series (run_id, `key`, latest_value, latest_is_nan,"
                    " latest_timestamp, latest_step) VALUES"
                    f" ({', '.join([mark] * 6)})", series)
    cur.execute("INSERT INTO metric_points (series_id, timestamp, step, value, is_nan)"
                " SELECT series_id, latest_timestamp, latest_step, latest_value, 0"
                f" FROM metric_series WHERE `key` <> 'h' AND series_id > {mark}", (before,))
    if history:
        run_id, points = history
        cur.execute(f"SELECT series_id FROM metric_series WHERE run_id = {mark}"
                    " AND `key` = 'h'", (run_id,))
        (sid,) = cur.fetchone()
        cur.executemany("INSERT INTO metric_points (series_id, timestamp, step, value, is_nan)"
                        f" VALUES ({mark}, {mark}, {mark}, {mark}, 0)",
                        [(sid, 1_700_000_000_000 + i, i, i / points) for i in range(points)])


async def fill_pg(dsn: str, server: str, batches: list[tuple[int, list[dict[str, Any]],
                                                            tuple[str, int] | None]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        columns = STOCK_COLUMNS if server == "stock" else MLGATE_COLUMNS
        for exp_id, runs, history in batches:
            async with conn.transaction():
                for table, rows in rows_for(server, exp_id, runs, history).items():
                    await conn.copy_records_to_table(table, records=rows,
                                                     columns=columns[table])
                if server == "mlgate":
                    await fill_mlgate_metrics_pg(conn, runs, history)
        # As autovacuum leaves a table some time after a bulk load: statistics, and the
        # visibility map that lets PostgreSQL answer from an index alone. Same for both.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def fill_dbapi(db: Any, server: str, batches: list[tuple[int, list[dict[str, Any]],
                                                        tuple[str, int] | None]],
               mark: str) -> None:
    """Fill through a DB-API connection (sqlite3 or pymysql); the caller commits."""
    columns = STOCK_COLUMNS if server == "stock" else MLGATE_COLUMNS
    cur = db.cursor()
    for exp_id, runs, history in batches:
        for table, rows in rows_for(server, exp_id, runs, history).items():
            cols = ", ".join(f"`{c}`" for c in columns[table])
            # pymysql sends an INSERT ... VALUES of many rows per statement.
            cur.executemany(f"INSERT INTO {table} ({cols})"
                            f" VALUES ({', '.join([mark] * len(columns[table]))})", rows)
        if server == "mlgate":
            fill_mlgate_metrics_dbapi(db, runs, history, mark)


def fill_sqlite(path: Path, server: str, batches: list[tuple[int, list[dict[str, Any]],
                                                            tuple[str, int] | None]]) -> None:
    db = sqlite3.connect(path, timeout=60)
    with db:
        fill_dbapi(db, server, batches, "?")
    db.execute("ANALYZE")
    db.close()


def fill_mariadb(uri: str, server: str, batches: list[tuple[int, list[dict[str, Any]],
                                                             tuple[str, int] | None]]) -> None:
    parts = urlsplit(uri)
    db = pymysql.connect(host=parts.hostname, port=parts.port or 3306,
                         user=unquote(parts.username or "root"),
                         password=unquote(parts.password or ""), database=parts.path[1:])
    try:
        fill_dbapi(db, server, batches, "%s")
        db.commit()
        with db.cursor() as cur:  # as InnoDB's automatic statistics would soon after a load
            cur.execute("SHOW TABLES")
            for (table,) in cur.fetchall():
                cur.execute(f"ANALYZE TABLE `{table}`")
                cur.fetchall()
    finally:
        db.close()


# -- timing --------------------------------------------------------------------------------


WARM_UP = 5  # requests before timing: every pooled reader connection of mlgate (and stock's
# pool) has read the pages once, as in a server that has been answering for a while


def p50(fn: Callable[[], bytes], repeat: int) -> tuple[float, float, Any]:
    """The median time of ``fn`` (a request, to its answer's last byte), the time
    ``json.loads`` takes over its answer, and the parsed answer."""
    raw = fn()  # warm-up (and the value to check)
    for _ in range(WARM_UP - 1):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    result = json.loads(raw)
    return statistics.median(times), time.perf_counter() - t0, result


def measure(store: str, server: str, sizes: list[int], points: int, repeat: int,
            history_repeat: int) -> list[tuple[str, str, str, float, str]]:
    work = Path(tempfile.mkdtemp(prefix=f"perf-{server}-{store}-"))
    created_db = None
    if store == "mariadb":
        uri = MY_DATABASES.create(f"perf_{server}", migrated=False)
        if server == "stock":  # stock's default MySQL driver (mysqlclient) is not installed
            uri = "mysql+pymysql://" + uri.removeprefix("mysql://")
    elif store == "postgres":
        created_db = f"mlgate_perf_{server}_{uuid.uuid4().hex[:6]}"
        asyncio.run(_admin(f'CREATE DATABASE "{created_db}"'))
        dsn = dsn_for(created_db)
        uri = dsn
    else:
        path = work / "db.sqlite"
        uri = f"sqlite:///{path}"
    try:
        proc, url = start(server, uri, work)
    except BaseException:
        _drop(store, uri, created_db)
        raise
    out = []
    try:
        batches = []
        exp_ids = {}
        hist_run = None
        for n in sizes:
            exp_id = int(http(url + API + "/experiments/create", {"name": f"perf-{n}"})
                         ["experiment_id"])
            exp_ids[n] = exp_id
            runs = make_runs(n, seed=n)
            history = None
            if hist_run is None:
                hist_run = runs[0]["run_id"]
                history = (hist_run, points)
            batches.append((exp_id, runs, history))
        t0 = time.perf_counter()
        if store == "postgres":
            asyncio.run(fill_pg(dsn, server, batches))
        elif store == "mariadb":
            fill_mariadb(uri, server, batches)
        else:
            fill_sqlite(path, server, batches)
        print(f"  [{server}/{store}] filled in {time.perf_counter() - t0:.1f} s", flush=True)
        body_for = {n: {"experiment_ids": [str(e)],
                        "filter": "metrics.m > 0.5 and params.p = 'v3'",
                        "order_by": ["metrics.loss ASC"], "max_results": 100}
                    for n, e in exp_ids.items()}
        for (n, (_, runs, _)) in zip(sizes, batches, strict=True):
            t, _, res = p50(lambda n=n: fetch(url + API + "/runs/search", body_for[n]), repeat)
            expected = [r["run_id"] for r in sorted(
                (r for r in runs if r["m"] > 0.5 and r["p"] == "v3"), key=lambda r: r["loss"])]
            ok = [r["info"]["run_id"] for r in res.get("runs", [])] == expected[:100]
            out.append((server, store, f"search {n} runs", t, "ok" if ok else "WRONG"))
            print(f"  [{server}/{store}] search {n}: {t * 1000:.1f} ms", flush=True)
        q = f"?run_id={hist_run}&metric_key=h"
        t, parse, res = p50(lambda: fetch(url + API + "/metrics/get-history" + q),
                            history_repeat)
        ok = len(res.get("metrics", [])) == points
        out.append((server, store, f"get-history {points} points", t, "ok" if ok else "WRONG"))
        print(f"  [{server}/{store}] history {points}: {t * 1000:.1f} ms"
              f" (+ {parse * 1000:.1f} ms for the client's json.loads)", flush=True)
    finally:
        stop(proc)
        _drop(store, uri, created_db)
    return out


MY_DATABASES = MyDatabases()


def _drop(store: str, uri: str, created_db: str | None) -> None:
    if store == "mariadb":
        MY_DATABASES.drop(uri)
    elif created_db:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{created_db}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(admin_dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--history-repeat", type=int, default=3)
    ap.add_argument("--stores", default="postgres,sqlite")
    ap.add_argument("--servers", default="mlgate,stock")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for store in args.stores.split(","):
        for server in args.servers.split(","):
            results += measure(store, server, sizes, args.points, args.repeat,
                               args.history_repeat)
    print(f"\np50 over {args.repeat} requests (get-history: {args.history_repeat}), "
          f"after {WARM_UP} warm-up requests")
    print(f"{'server':8} {'store':9} {'request':28} {'p50':>10}  check")
    for server, store, what, t, ok in results:
        print(f"{server:8} {store:9} {what:28} {t * 1000:8.1f} ms  {ok}")


if __name__ == "__main__":
    main()
