"""The MariaDB schema's newest migration run over a database one version behind that holds
metrics: every series keeps its id, its points and its latest value, and takes new ones;
and the statements of a replica one version behind still run on the migrated schema."""

from __future__ import annotations

from urllib.parse import urlsplit

import pymysql
from mytools import MyDatabases, connect

from backends.metadata._migrations import load_migrations
from backends.metadata.interface.entities import Metric, RunWrite
from backends.registry import open_metadata_store

RUN_A, RUN_B = "a" * 32, "b" * 32


def _at_previous_version(uri: str) -> tuple[int, int]:
    """Apply every migration but the newest, with two runs' metrics in it; the newest
    version and the id of run A's ``loss`` series."""
    migrations = load_migrations("mysql")
    admin = connect(_name(uri), client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL) ENGINE=InnoDB")
            for _, script in migrations[:-1]:
                cur.execute(script)
                while cur.nextset():
                    pass
            cur.execute("INSERT INTO mlgate_schema VALUES (%s)", (migrations[-2][0],))
            cur.execute("INSERT INTO experiments (experiment_id, name, artifact_location)"
                        " VALUES (7, 'old', 'mlflow-artifacts:/7')")
            for run in (RUN_A, RUN_B):
                cur.execute("INSERT INTO runs (run_id, experiment_id, status, start_time,"
                            " artifact_uri) VALUES (%s, 7, 'RUNNING', 1, 'x')", (run,))
            # Keys told apart by case and a trailing space, as the binary collation does.
            for run, key, latest in ((RUN_A, "loss", 0.5), (RUN_A, "Loss", 9.0),
                                     (RUN_A, "loss ", 3.0), (RUN_B, "loss", 0.25)):
                cur.execute("INSERT INTO metric_series (run_id, `key`, latest_value,"
                            " latest_is_nan, latest_timestamp, latest_step)"
                            " VALUES (%s, %s, %s, 0, 20, 2)", (run, key, latest))
                series = cur.lastrowid
                for step, value in ((1, latest + 1), (2, latest)):
                    cur.execute("INSERT INTO metric_points VALUES (%s, %s, %s, %s, 0)",
                                (series, step * 10, step, value))
            cur.execute("SELECT series_id FROM metric_series WHERE run_id = %s"
                        " AND `key` = 'loss'", (RUN_A,))
            (loss_a,) = cur.fetchone()
    finally:
        admin.close()
    return migrations[-1][0], loss_a


def _name(uri: str) -> str:
    return urlsplit(uri).path.lstrip("/")


async def test_the_newest_migration_keeps_every_series(my_databases: MyDatabases) -> None:
    uri = my_databases.create("upgrade", migrated=False)
    newest, loss_a = _at_previous_version(uri)
    store = open_metadata_store(uri)
    await store.open()
    try:
        assert await store.schema_version() == newest
        run = await store.get_run(RUN_A)
        assert {m.key: m.value for m in run.metrics} == {
            "loss": 0.5, "Loss": 9.0, "loss ": 3.0}
        history = await store.get_metric_history(RUN_A, "loss")
        assert [(m.step, m.value) for m in history.items] == [(1, 1.5), (2, 0.5)]
        # New points join the series that were there, small batches (one round trip) and
        # large ones alike, beside new series.
        for padding in (1, 300):
            writes = [RunWrite(RUN_A, [Metric("loss", 0.1 + padding, 30 + padding, 3)]),
                      RunWrite(RUN_B, [Metric(f"k{i}", 1.0, 1, 0) for i in range(padding)])]
            assert await store.log_batches(writes) == [None, None]
        history = await store.get_metric_history(RUN_A, "loss")
        assert [(m.step, m.value) for m in history.items] == [
            (1, 1.5), (2, 0.5), (3, 1.1), (3, 300.1)]
        assert {m.key: m.value for m in (await store.get_run(RUN_A)).metrics}["loss"] == 300.1
        found = await store.search_runs(["7"], order_by=["metrics.loss DESC"])
        assert [r.info.run_id for r in found.items] == [RUN_A, RUN_B]
        found = await store.search_runs(["7"], filter_string="metrics.`loss ` > 2")
        assert [r.info.run_id for r in found.items] == [RUN_A]
    finally:
        await store.aclose()
    conn = connect(_name(uri))
    try:
        with conn.cursor() as cur:
            # The index names a version-15 replica's statements force still resolve, so
            # it keeps working beside a migrated one during a rolling update.
            for index in ("metric_series_run_id_key_key", "metric_series_run_key_value"):
                cur.execute(f"SELECT series_id, latest_value FROM metric_series"
                            f" FORCE INDEX ({index}) WHERE run_id = %s AND `key` = 'loss'",
                            (RUN_A,))
                assert cur.fetchone() == (loss_a, 300.1)
    finally:
        conn.close()
