"""A stock MLflow SQLite database handed to mlgate is refused and left exactly as it was: not
switched to WAL mode, no -wal, -shm or audit file beside it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from backends import errors
from backends.registry import open_metadata_store

# The unmodified MLflow (a dev dependency) creating its own database with a run in it.
_MLFLOW_CREATES = """
import sys
from mlflow.tracking import MlflowClient

client = MlflowClient(tracking_uri="sqlite:///" + sys.argv[1])
run = client.create_run(client.create_experiment("stock"))
client.log_metric(run.info.run_id, "m", 1.0)
"""


def _stock_like(path: Path) -> None:
    """What refusal looks at in a stock database: Alembic's table, in rollback-journal mode."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('1b5f0d9ad7c1')")
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO experiments VALUES (0, 'Default')")
    conn.close()


def _by_mlflow(path: Path) -> None:
    subprocess.run([sys.executable, "-c", _MLFLOW_CREATES, str(path)], check=True,
                   capture_output=True, timeout=120)


@pytest.mark.parametrize("make", [_stock_like, _by_mlflow], ids=["alembic-table", "mlflow"])
async def test_stock_database_is_refused_without_being_written(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "mlflow.db"
    make(db)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert before.keys() == {"mlflow.db"}

    for _ in range(2):
        store = open_metadata_store(f"sqlite:///{db}")
        with pytest.raises(errors.InvalidArgument, match="stock MLflow database"):
            await store.open()

    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(after) == sorted(before), "files appeared beside the refused database"
    assert after == before, "the refused database was written"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
