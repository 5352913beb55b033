"""``mlgate import``: a stock server's data, built with the real ``mlflow`` client, imported
into a fresh mlgate store; then stock's JSON and mlgate's compared field by field (the ids
are the same on both sides, so nothing is normalised), and the registered model loaded
through mlgate.

The stock source is built once per module and per source kind (SQLite, PostgreSQL); the
stock server keeps running so its answers can be read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import (
    MLGATE_START_TIMEOUT,
    ServerProcess,
    free_port,
    mlgate_command,
    start_server,
    stop_server,
)
from pgtools import PgDatabases
from stock_source import StockSource, build_stock_source
from test_stock_parity import API, Call, calls, differences, fetch, registry_calls

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def mlgate_import(source: str, backend: str, artifacts: Path, *extra: str,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gateway", "import", source, "--backend-store-uri", backend,
           "--artifacts-destination", str(artifacts), *extra]
    done = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if check and done.returncode != 0:
        pytest.fail(f"mlgate import failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
                    pytrace=False)
    return done


def _extra_calls(src: StockSource) -> list[Call]:
    odd = (("run_id", src.odd_run_id),)
    return [
        Call("runs/get odd values", "GET", f"{API}/runs/get", odd),
        Call("get-history odd", "GET", f"{API}/metrics/get-history",
             (*odd, ("metric_key", "odd"))),
        Call("get-history big", "GET", f"{API}/metrics/get-history",
             (*odd, ("metric_key", "big"), ("max_results", "25000"))),
        Call("runs/get deleted run", "GET", f"{API}/runs/get",
             (("run_id", src.deleted_run_id),)),
        Call("runs/search deleted only", "POST", f"{API}/runs/search",
             body={"experiment_ids": [src.session.experiment_id],
                   "run_view_type": "DELETED_ONLY"}),
        Call("runs/search all", "POST", f"{API}/runs/search",
             body={"experiment_ids": [src.session.experiment_id, src.models.experiment_id],
                   "run_view_type": "ALL", "order_by": ["start_time DESC"]}),
        Call("experiments/search", "POST", f"{API}/experiments/search",
             body={"max_results": 100}),
        Call("prompts search", "GET", f"{API}/registered-models/search",
             (("filter", "tags.`mlflow.prompt.is_prompt` = 'true'"),)),
        Call("model-versions/search", "GET", f"{API}/model-versions/search"),
    ]


def compare_servers(src: StockSource, mlgate_url: str) -> None:
    report: list[str] = []
    every = [*calls(src.session), *registry_calls(src.models), *_extra_calls(src)]
    for call in every:
        if call.method == "POST" and call.path.endswith(("/create", "/alias")):
            continue  # writes: the two servers would then differ
        lines = list(differences(fetch(src.server.url, call), fetch(mlgate_url, call)))
        if lines:
            report.append(f"=== {call.label}: {len(lines)} difference(s)")
            report.extend("  " + line for line in lines[:30])
    if report:
        pytest.fail("mlgate's JSON after import differs from stock's:\n" + "\n".join(report),
                    pytrace=False)


def check_model_loads(src: StockSource, mlgate_url: str) -> None:
    import mlflow.pyfunc
    import numpy as np
    from models_session import MODEL_NAME, features
    from session import tracking_uri

    X, _ = features()
    with tracking_uri(mlgate_url):
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
        assert np.array_equal(np.asarray(model.predict(X)), src.models.expected)


@pytest.fixture(scope="module")
def sqlite_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockSource]:
    src = build_stock_source(tmp_path_factory.mktemp("stock-sqlite"))
    yield src
    stop_server(src.server)


@pytest.fixture(scope="module")
def module_pg() -> Iterator[PgDatabases]:
    databases = PgDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="module")
def postgres_source(tmp_path_factory: pytest.TempPathFactory,
                    module_pg: PgDatabases) -> Iterator[StockSource]:
    dsn = module_pg.create("stock", migrated=False)
    uri = dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    src = build_stock_source(tmp_path_factory.mktemp("stock-pg"), uri)
    yield src
    stop_server(src.server)


MYSQL_DSN = os.environ.get("MLGATE_TEST_MYSQL_DSN") or "mysql://root@127.0.0.1:3306"


@pytest.fixture(scope="module")
def mysql_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockSource]:
    """The seed flow on a stock server over MariaDB (or MySQL) at ``MLGATE_TEST_MYSQL_DSN``
    (``.ci/run`` installs and starts MariaDB), in a throwaway database."""
    import pymysql

    parts = urlsplit(MYSQL_DSN)
    name = f"mlgate_test_import_{uuid.uuid4().hex[:8]}"

    def admin(sql: str) -> None:
        conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306,
                               user=parts.username or "root", password=parts.password or "")
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    try:
        admin(f"CREATE DATABASE {name}")
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB/MySQL is not reachable at MLGATE_TEST_MYSQL_DSN={MYSQL_DSN!r} "
                    f"({exc}); run the tests through .ci/run", pytrace=False)
    uri = f"mysql+pymysql://{parts.netloc}/{name}"
    try:
        src = build_stock_source(tmp_path_factory.mktemp("stock-mysql"), uri)
        yield src
        stop_server(src.server)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name}")


def _destination(kind: str, workdir: Path, pg: PgDatabases) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'mlgate.db'}"
    return pg.create("import", migrated=False)


def _serve(workdir: Path, backend: str) -> ServerProcess:
    port = free_port()
    return start_server(mlgate_command(port, workdir, backend_store_uri=backend),
                        f"http://127.0.0.1:{port}", workdir, timeout=MLGATE_START_TIMEOUT,
                        name="mlgate")


@pytest.mark.parametrize("destination", ["sqlite", "postgres"])
def test_sqlite_source_matches_stock(sqlite_source: StockSource, destination: str,
                                     tmp_path: Path, module_pg: PgDatabases) -> None:
    backend = _destination(destination, tmp_path, module_pg)
    done = mlgate_import(sqlite_source.backend_uri, backend, tmp_path / "mlartifacts",
                         "--artifacts-from", str(sqlite_source.artifacts), "--json")
    report = json.loads(done.stdout)
    assert report["ok"], report
    assert report["counts"]["metric points"]["source"] == 3020
    assert report["counts"]["deleted runs"] == {"source": 1, "destination": 1}
    assert report["counts"]["prompts"] == {"source": 1, "destination": 1}
    server = _serve(tmp_path, backend)
    try:
        compare_servers(sqlite_source, server.url)
        check_model_loads(sqlite_source, server.url)
    finally:
        stop_server(server)


def test_postgres_source_matches_stock(postgres_source: StockSource, tmp_path: Path,
                                       module_pg: PgDatabases) -> None:
    backend = _destination("sqlite", tmp_path, module_pg)
    done = mlgate_import(postgres_source.backend_uri, backend, tmp_path / "mlartifacts",
                         "--artifacts-from", str(postgres_source.artifacts), "--json")
    report = json.loads(done.stdout)
    assert report["ok"], report
    server = _serve(tmp_path, backend)
    try:
        compare_servers(postgres_source, server.url)
        check_model_loads(postgres_source, server.url)
    finally:
        stop_server(server)


def test_mysql_source_matches_stock(mysql_source: StockSource, tmp_path: Path,
                                    module_pg: PgDatabases) -> None:
    backend = _destination("postgres", tmp_path, module_pg)
    done = mlgate_import(mysql_source.backend_uri, backend, tmp_path / "mlartifacts",
                         "--artifacts-from", str(mysql_source.artifacts), "--json",
                         "--chunk-rows", "500")
    report = json.loads(done.stdout)
    assert report["ok"], report
    assert report["counts"]["metric points"]["destination"] == 3020
    server = _serve(tmp_path, backend)
    try:
        compare_servers(mysql_source, server.url)
        check_model_loads(mysql_source, server.url)
    finally:
        stop_server(server)


# -- resuming, dry runs, refusals -------------------------------------------------------------


def _grow(db_path: Path, run_id: str, points: int) -> None:
    """Add ``points`` points of a new metric to a stock SQLite database, as stock's store
    would write them (a metrics row each and the latest in latest_metrics)."""
    with sqlite3.connect(db_path) as db:
        db.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
            " VALUES ('grown', ?, ?, ?, ?, 0)",
            [(i / 3, 1_700_000_000_000 + i, run_id, i) for i in range(points)])
        db.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                   " VALUES ('grown', ?, ?, ?, 0, ?)",
                   ((points - 1) / 3, 1_700_000_000_000 + points - 1, points - 1, run_id))


def _copied(db_path: Path, entity: str) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute("SELECT copied FROM mlgate_import_progress WHERE entity = ?",
                             (entity,)).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def test_killed_import_resumes_exactly(sqlite_source: StockSource, tmp_path: Path) -> None:
    source_db = tmp_path / "stock.db"
    shutil.copy(sqlite_source.backend_uri.removeprefix("sqlite:///"), source_db)
    _grow(source_db, sqlite_source.odd_run_id, 200_000)
    dest_db = tmp_path / "mlgate.db"
    cmd = [sys.executable, "-m", "gateway", "import", f"sqlite:///{source_db}",
           "--backend-store-uri", f"sqlite:///{dest_db}",
           "--artifacts-destination", str(tmp_path / "art"), "--chunk-rows", "2000"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while _copied(dest_db, "metrics") < 20_000:
        assert proc.poll() is None, "the import finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _copied(dest_db, "metrics")
    assert 0 < partial < 203_020
    done = mlgate_import(f"sqlite:///{source_db}", f"sqlite:///{dest_db}", tmp_path / "art",
                         "--json")
    report = json.loads(done.stdout)
    assert report["ok"], report
    assert report["counts"]["metric points"] == {"source": 203_020, "destination": 203_020}
    assert report["metric_checksum"]["source"] == report["metric_checksum"]["destination"]
    # A third run finds nothing left to do and changes nothing.
    again = json.loads(mlgate_import(f"sqlite:///{source_db}", f"sqlite:///{dest_db}",
                                     tmp_path / "art", "--json").stdout)
    assert again["counts"] == report["counts"] and again["ok"]
    assert sum(again["rows_imported"].values()) == 0


def test_dry_run_writes_nothing(sqlite_source: StockSource, tmp_path: Path) -> None:
    dest_db = tmp_path / "mlgate.db"
    done = mlgate_import(sqlite_source.backend_uri, f"sqlite:///{dest_db}", tmp_path / "art",
                         "--artifacts-from", str(sqlite_source.artifacts), "--dry-run",
                         "--json")
    plan: dict[str, Any] = json.loads(done.stdout)
    assert plan["rows"]["metrics"] == 3020 and plan["rows"]["runs"] == 6
    assert plan["artifact_files"] > 0
    assert not dest_db.exists() and not (tmp_path / "art").exists()


def test_unknown_revision_is_refused(sqlite_source: StockSource, tmp_path: Path) -> None:
    source_db = tmp_path / "stock.db"
    shutil.copy(sqlite_source.backend_uri.removeprefix("sqlite:///"), source_db)
    with sqlite3.connect(source_db) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    done = mlgate_import(f"sqlite:///{source_db}", f"sqlite:///{tmp_path / 'm.db'}",
                         tmp_path / "art", check=False)
    assert done.returncode != 0
    assert "'ffffffffffff'" in done.stderr and "MLflow 2.0 to 3.17" in done.stderr
    assert not (tmp_path / "m.db").exists()


def test_destination_with_other_data_is_refused(sqlite_source: StockSource,
                                                tmp_path: Path) -> None:
    dest = f"sqlite:///{tmp_path / 'm.db'}"
    other = tmp_path / "other.db"
    shutil.copy(sqlite_source.backend_uri.removeprefix("sqlite:///"), other)
    mlgate_import(sqlite_source.backend_uri, dest, tmp_path / "art")
    done = mlgate_import(f"sqlite:///{other}", dest, tmp_path / "art", check=False)
    assert done.returncode != 0 and "did not come from this source" in done.stderr


@pytest.mark.parametrize("destination", ["sqlite", "postgres"])
def test_import_without_progress_records_writes_nothing_twice(
        sqlite_source: StockSource, destination: str, tmp_path: Path,
        module_pg: PgDatabases) -> None:
    """Every write ignores rows already there: with its progress records reset, a second
    import reads the whole source again and ends with the same contents (on PostgreSQL the
    points' COPY then meets existing rows and falls back to inserting around them)."""
    backend = _destination(destination, tmp_path, module_pg)
    first = json.loads(mlgate_import(sqlite_source.backend_uri, backend, tmp_path / "art",
                                     "--json").stdout)
    reset = "UPDATE mlgate_import_progress SET position = NULL, copied = 0, done = 0"
    if destination == "sqlite":
        with sqlite3.connect(tmp_path / "mlgate.db") as db:
            db.execute(reset)
    else:
        import psycopg2  # type: ignore[import-untyped]

        with psycopg2.connect(backend) as conn, conn.cursor() as cur:
            cur.execute(reset)
        conn.close()
    second = json.loads(mlgate_import(sqlite_source.backend_uri, backend, tmp_path / "art",
                                      "--json").stdout)
    assert second["ok"], second
    assert second["counts"] == first["counts"]
    assert second["rows_imported"]["metrics"] == 3020


# -- older schema revisions --------------------------------------------------------------------

_AT_REVISION = """
import sys
import sqlalchemy
from alembic import command
from mlflow.store.db.utils import _get_alembic_config
from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
url, revision = sys.argv[1], sys.argv[2]
engine = sqlalchemy.create_engine(url)
InitialBase.metadata.create_all(engine)
config = _get_alembic_config(url)
with engine.begin() as connection:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
"""


def _stock_db_at(path: Path, revision: str) -> None:
    """A stock database at an older Alembic revision, as the MLflow release of that revision
    created it: the initial tables, then the installed mlflow's migrations up to
    ``revision``."""
    subprocess.run([sys.executable, "-c", _AT_REVISION, f"sqlite:///{path}", revision],
                   check=True, capture_output=True, env={**os.environ,
                                                         "MLFLOW_DISABLE_TELEMETRY": "true"})


def _fill_old(path: Path) -> None:
    """A little of everything that revision has, written with its own columns."""
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        db.execute("INSERT INTO experiments (experiment_id, name, artifact_location,"
                   " lifecycle_stage, creation_time, last_update_time) VALUES"
                   " (0, 'Default', 'mlflow-artifacts:/0', 'active', 1, 1),"
                   " (1, 'old', 'mlflow-artifacts:/1', 'active', 2, 3)")
        db.execute("INSERT INTO experiment_tags (key, value, experiment_id) VALUES ('t', 'v', 1)")
        for run, stage in (("a" * 32, "active"), ("b" * 32, "deleted")):
            db.execute("INSERT INTO runs (run_uuid, name, source_type, user_id, status,"
                       " start_time, end_time, lifecycle_stage, artifact_uri, experiment_id)"
                       " VALUES (?, 'r', 'LOCAL', 'u', 'FINISHED', 5, 6, ?, ?, 1)",
                       (run, stage, f"mlflow-artifacts:/1/{run}/artifacts"))
            db.execute("INSERT INTO params (key, value, run_uuid) VALUES ('p', '1', ?)", (run,))
            db.execute("INSERT INTO tags (key, value, run_uuid) VALUES ('mlflow.runName', 'r', ?)",
                       (run,))
            db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                           " VALUES ('m', ?, ?, ?, ?, ?)",
                           [(0.0 if i == 3 else i / 2, 10 + i, run, i, i == 3) for i in range(50)])
            db.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                       " VALUES ('m', 24.5, 59, 49, 0, ?)", (run,))
        db.execute("INSERT INTO registered_models (name, creation_time, last_updated_time)"
                   " VALUES ('rm', 7, 8)")
        db.execute("INSERT INTO model_versions (name, version, creation_time, last_updated_time,"
                   " current_stage, source, run_id, status) VALUES"
                   " ('rm', 1, 7, 8, 'Production', ?, ?, 'READY')",
                   (f"mlflow-artifacts:/1/{'a' * 32}/artifacts/model", "a" * 32))
        if "registered_model_aliases" in tables:
            db.execute("INSERT INTO registered_model_aliases (alias, version, name)"
                       " VALUES ('champion', 1, 'rm')")
        if "datasets" in tables:
            db.execute("INSERT INTO datasets (dataset_uuid, experiment_id, name, digest,"
                       " dataset_source_type, dataset_source) VALUES ('d1', 1, 'ds', 'abc',"
                       " 'local', '{}')")
            db.execute("INSERT INTO inputs (input_uuid, source_type, source_id,"
                       " destination_type, destination_id) VALUES ('i1', 'DATASET', 'd1',"
                       " 'RUN', ?)", ("a" * 32,))
            db.execute("INSERT INTO input_tags (input_uuid, name, value)"
                       " VALUES ('i1', 'mlflow.data.context', 'train')")


@pytest.mark.parametrize("revision", ["97727af70f4d", "7f2a7d5fae7d", "0584bdc529eb",
                                      "400f98739977"])
def test_older_revisions_import(revision: str, tmp_path: Path) -> None:
    """MLflow 2.0 (97727af70f4d: no aliases, datasets or storage_location yet), 2.3
    (datasets), the last 2.x schema (0584bdc529eb) and 3.0's (logged models, no inputs.step)."""
    source = tmp_path / "stock.db"
    _stock_db_at(source, revision)
    _fill_old(source)
    dest = tmp_path / "mlgate.db"
    report = json.loads(mlgate_import(f"sqlite:///{source}", f"sqlite:///{dest}",
                                      tmp_path / "art", "--json").stdout)
    assert report["ok"], report
    assert report["counts"]["metric points"] == {"source": 100, "destination": 100}
    assert report["counts"]["deleted runs"] == {"source": 1, "destination": 1}
    with sqlite3.connect(dest) as db:
        assert db.execute("SELECT storage_location, model_id FROM model_versions").fetchall() \
            == [(None, None)]
        assert db.execute("SELECT name, creation_time FROM experiments ORDER BY 1").fetchall() \
            == [("Default", 1), ("old", 2)]


# -- FileStore ---------------------------------------------------------------------------------

_FILESTORE_SESSION = """
import json, math, sys
import mlflow, mlflow.sklearn, pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("filestore")
X, y = load_iris(return_X_y=True)
with mlflow.start_run(run_name="train") as run:
    mlflow.log_params({"C": 1.0, "solver": "lbfgs"})
    mlflow.set_tag("team/sub", "ml")
    for i in range(20):
        mlflow.log_metric("loss", 1 / (i + 1), step=i)
    mlflow.log_metric("odd", math.nan, step=0)
    mlflow.log_metric("odd", math.inf, step=1)
    mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"a": [1, 2]}), name="ds"),
                     context="train")
    mlflow.log_text("hello", "notes/report.txt")
    info = mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(X, y), name="model")
mlflow.register_model(f"models:/{info.model_id}", "fsmodel")
client = MlflowClient()
client.set_registered_model_alias("fsmodel", "champion", "1")
client.set_model_version_tag("fsmodel", "1", "validated", "yes")
gone = client.create_run(run.info.experiment_id).info.run_id
client.delete_run(gone)
history = {k: [[m.timestamp, m.step, m.value] for m in client.get_metric_history(run.info.run_id, k)]
           for k in ("loss", "odd")}
print(json.dumps({"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                  "deleted": gone, "history": history,
                  "params": {"C": "1.0", "solver": "lbfgs"}}))
"""


def test_filestore_source(tmp_path: Path) -> None:
    """A FileStore folder (mlruns/) written by the mlflow client: its runs, metrics, dataset
    input, artifacts, logged model and registered model come over; artifact URIs inside the
    folder become mlflow-artifacts: URIs, and the model loads through mlgate."""
    import math

    import mlflow.pyfunc
    import numpy as np
    from mlflow.tracking import MlflowClient
    from models_session import features
    from session import tracking_uri

    mlruns = tmp_path / "mlruns"
    made = subprocess.run(
        [sys.executable, "-c", _FILESTORE_SESSION, mlruns.as_uri()], check=True,
        capture_output=True, text=True,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"})
    logged = json.loads(made.stdout.strip().splitlines()[-1])
    backend = f"sqlite:///{tmp_path / 'mlgate.db'}"
    report = json.loads(mlgate_import(str(mlruns), backend, tmp_path / "mlartifacts",
                                      "--json").stdout)
    assert report["ok"], report
    assert report["counts"]["deleted runs"] == {"source": 1, "destination": 1}
    assert report["counts"]["aliases"] == {"source": 1, "destination": 1}
    assert report["artifacts"]["copied_files"] >= 5  # the report and the model's files
    server = _serve(tmp_path, backend)
    try:
        with tracking_uri(server.url):
            client = MlflowClient()
            run = client.get_run(logged["run_id"])
            assert run.info.experiment_id == logged["experiment_id"]
            assert run.info.artifact_uri == (
                f"mlflow-artifacts:/{logged['experiment_id']}/{logged['run_id']}/artifacts")
            assert run.data.params == logged["params"]
            assert run.data.tags["team/sub"] == "ml"
            assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["ds"]
            for key, points in logged["history"].items():
                # The FileStore appends a point logged twice twice, and keeps inf; a
                # database (stock's too) keeps the point once, and inf as the largest float.
                def distinct(rows: list[list[float]]) -> list[tuple[Any, ...]]:
                    return sorted({(ts, step, "nan" if math.isnan(v)
                                    else max(-sys.float_info.max, min(v, sys.float_info.max)))
                                   for ts, step, v in rows}, key=str)

                ours = [[m.timestamp, m.step, m.value]
                        for m in client.get_metric_history(logged["run_id"], key)]
                assert distinct(ours) == distinct(points)
            assert client.get_run(logged["deleted"]).info.lifecycle_stage == "deleted"
            assert mlflow.artifacts.load_text(f"runs:/{logged['run_id']}/notes/report.txt") \
                == "hello"
            X, _ = features()
            model = mlflow.pyfunc.load_model("models:/fsmodel@champion")
            assert np.asarray(model.predict(X)).shape == (len(X),)
    finally:
        stop_server(server)
