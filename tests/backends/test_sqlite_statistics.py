"""The SQLite store keeps planner statistics fresh for runs/search: once the runs table has
grown, a search refreshes them and every read connection plans with them (a selective param
equality is searched from its index, not by walking every run of the experiment)."""

from __future__ import annotations

import random
import sqlite3
import uuid
from pathlib import Path

from backends.metadata.dialects.sqlite import SQLITE, SqliteMetadataStore
from backends.metadata.interface.entities import ViewType
from backends.metadata.sql import tracking_search as sql_search

ROOT = "mlflow-artifacts:"
FILTER = "metrics.m > 0.5 and params.p = 'v3'"


def _fill(path: Path, exp_id: int, n: int) -> list[tuple[str, str, float]]:
    """n runs written by another connection (as a bulk import would): param p, metric m."""
    rnd = random.Random(7)
    runs = [(uuid.UUID(int=rnd.getrandbits(128)).hex, f"v{rnd.randrange(10)}", rnd.random())
            for _ in range(n)]
    db = sqlite3.connect(path, timeout=30)
    with db:
        db.executemany(
            "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
            " artifact_uri) VALUES (?, ?, 'r', 'u', 'FINISHED', ?, 'x')",
            [(r, exp_id, i) for i, (r, _, _) in enumerate(runs)])
        db.executemany("INSERT INTO run_params (run_id, key, value, experiment_id)"
                       " VALUES (?, 'p', ?, ?)", [(r, p, exp_id) for r, p, _ in runs])
        db.executemany(
            "INSERT INTO metric_series (run_id, key, latest_value, latest_is_nan,"
            " latest_timestamp, latest_step) VALUES (?, 'm', ?, 0, 0, 0)",
            [(r, m) for r, _, m in runs])
    db.close()
    return runs


async def _plans(store: SqliteMetadataStore, sql: str, params: list[object]) -> list[str]:
    """The first step of the plan on each read connection in turn. The query runs first: a
    connection notices a schema change when a statement runs, not at EXPLAIN; and each
    EXPLAIN text is new, or sqlite3's statement cache would show the plan of its first
    preparation."""
    plans = []
    for n in range(len(store._all_readers)):
        async with store._read() as db:
            await (await db.execute(sql, params)).fetchall()
            explain = f"EXPLAIN QUERY PLAN {sql} -- {uuid.uuid4().hex} {n}"
            rows = await (await db.execute(explain, params)).fetchall()
            plans.append(str(next(iter(rows))[3]))
    return plans


async def test_search_refreshes_statistics_for_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "stats.db"
    store = SqliteMetadataStore(str(path), readers=3)
    await store.open()
    try:
        exp_id = int(await store.create_experiment("stats", artifact_root=ROOT))
        runs = _fill(path, exp_id, 3000)
        sql, params = sql_search.build_search_runs_sql(
            SQLITE, [exp_id], FILTER, ViewType.ACTIVE_ONLY, ["metrics.m"], 10, 0)
        # Statistics from open() describe an empty database: every run is walked.
        assert all("runs_experiment_order" in p for p in await _plans(store, sql, params))

        page = await store.search_runs([str(exp_id)], filter_string=FILTER,
                                       order_by=["metrics.m"], max_results=10)
        expected = sorted((m, r) for r, p, m in runs if p == "v3" and m > 0.5)[:10]
        assert [r.info.run_id for r in page.items] == [r for _, r in expected]
        assert all("run_params_experiment_key_value" in p
                   for p in await _plans(store, sql, params))
    finally:
        await store.aclose()
