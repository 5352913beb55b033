"""``mlgate import`` speed: metric points per second from a stock database into mlgate's
SQLite and PostgreSQL stores.

Run by hand (not collected by pytest)::

    python tests/perf/import_throughput.py [--points 2000000] [--runs 100] [--keys 10]
        [--sources sqlite,postgres] [--destinations sqlite,postgres]
        [--pg-dsn postgresql://postgres@127.0.0.1:5432/postgres]

The stock database is made by stock's own store (the schema at MLflow 3.17's head) and then
filled directly, as stock's store would (a metrics row per point, a latest_metrics row per
series): logging millions of points through a stock server would take longer than the
measurement. Each import runs ``python -m gateway import`` on a fresh destination; the rate
is the metric table's points over the time the ``metrics`` table took (from the JSON
report's per-table timing), and the whole import's wall time is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]


def _stock_schema(uri: str) -> None:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    code = ("import sys; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore;"
            " SqlAlchemyStore(sys.argv[1], '/tmp')")
    subprocess.run([sys.executable, "-c", code, uri],
                   check=True, env=env, capture_output=True)


def _rows(points: int, runs: int, keys: int) -> tuple[list[tuple[object, ...]], ...]:
    run_ids = [uuid.uuid4().hex for _ in range(runs)]
    per_series = max(1, points // (runs * keys))
    run_rows = [(r, "r", "u", "FINISHED", 1, 2, "active", f"mlflow-artifacts:/1/{r}/artifacts",
                 1) for r in run_ids]
    metric_rows = []
    latest_rows = []
    for r in run_ids:
        for k in range(keys):
            for i in range(per_series):
                metric_rows.append((f"m{k}", i / 7, 1_700_000_000_000 + i, r, i, False))
            latest_rows.append((f"m{k}", (per_series - 1) / 7,
                                1_700_000_000_000 + per_series - 1, per_series - 1, False, r))
    return run_rows, metric_rows, latest_rows


_RUNS = ("INSERT INTO runs (run_uuid, name, user_id, status, start_time, end_time,"
         " lifecycle_stage, artifact_uri, experiment_id) VALUES (%s)")
_METRICS = "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (%s)"
_LATEST = ("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
           " VALUES (%s)")
_EXPERIMENT = ("INSERT INTO experiments (experiment_id, name, artifact_location,"
               " lifecycle_stage, creation_time, last_update_time)"
               " VALUES (1, 'perf', 'mlflow-artifacts:/1', 'active', 1, 1)")


def make_sqlite_source(path: Path, points: int, runs: int, keys: int) -> str:
    uri = f"sqlite:///{path}"
    _stock_schema(uri)
    run_rows, metric_rows, latest_rows = _rows(points, runs, keys)
    with sqlite3.connect(path) as db:
        db.execute(_EXPERIMENT)
        db.executemany(_RUNS % ",".join("?" * 9), run_rows)
        db.executemany(_METRICS % ",".join("?" * 6), metric_rows)
        db.executemany(_LATEST % ",".join("?" * 6), latest_rows)
    return uri


def make_pg_source(dsn: str, points: int, runs: int, keys: int) -> str:
    _stock_schema(dsn.replace("postgresql://", "postgresql+psycopg2://", 1))
    run_rows, metric_rows, latest_rows = _rows(points, runs, keys)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(_EXPERIMENT)
        cur.executemany(_RUNS % ",".join(["%s"] * 9), run_rows)
        for start in range(0, len(metric_rows), 100_000):
            args = ",".join(cur.mogrify("(%s,%s,%s,%s,%s,%s)", r).decode()
                            for r in metric_rows[start:start + 100_000])
            cur.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                        " VALUES " + args)
        cur.executemany(_LATEST % ",".join(["%s"] * 6), latest_rows)
    return dsn


def _database(admin: str, name: str, *, drop: bool = False) -> str:
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    parts = urlsplit(admin)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def run_import(source: str, destination: str, workdir: Path) -> dict[str, object]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "import", source, "--backend-store-uri", destination,
         "--artifacts-destination", str(workdir / "art"), "--json"],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed:\n{done.stdout}\n{done.stderr}")
    report: dict[str, object] = json.loads(done.stdout)
    report["wall"] = wall
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--sources", default="sqlite,postgres")
    parser.add_argument("--destinations", default="sqlite,postgres")
    parser.add_argument("--pg-dsn", default=os.environ.get(
        "MLGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:8]
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlgate-import-perf-") as tmp:
        work = Path(tmp)
        sources = {}
        for kind in args.sources.split(","):
            t = time.perf_counter()
            if kind == "sqlite":
                sources[kind] = make_sqlite_source(work / "stock.db", args.points, args.runs,
                                                   args.keys)
            else:
                name = f"mlgate_perf_stock_{suffix}"
                made.append(name)
                sources[kind] = make_pg_source(_database(args.pg_dsn, name), args.points,
                                               args.runs, args.keys)
            print(f"stock {kind} source with {args.points:,} points made in "
                  f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
        try:
            for src_kind, source in sources.items():
                for dst_kind in args.destinations.split(","):
                    target = work / f"{src_kind}-{dst_kind}"
                    target.mkdir()
                    if dst_kind == "sqlite":
                        destination = f"sqlite:///{target / 'mlgate.db'}"
                    else:
                        name = f"mlgate_perf_dest_{src_kind}_{suffix}"
                        made.append(name)
                        destination = _database(args.pg_dsn, name)
                    report = run_import(source, destination, target)
                    points = report["counts"]["metric points"]["destination"]  # type: ignore[index]
                    seconds = report["table_seconds"]["metrics"]  # type: ignore[index]
                    print(f"{src_kind:>8} -> {dst_kind:<8} {points:>10,} points: metrics table "
                          f"{seconds:6.1f} s = {points / seconds:>9,.0f} points/s; whole "
                          f"import {report['seconds']:.1f} s, with the report "
                          f"{report['wall']:.1f} s; ok={report['ok']}")
        finally:
            for name in made:
                _database(args.pg_dsn, name, drop=True)


if __name__ == "__main__":
    main()
