"""A stock MLflow server's data, built with the real ``mlflow`` client, for the import tests.

:func:`build_stock_source` runs stock ``mlflow server`` on a fresh backend store (SQLite, or
a PostgreSQL database given as ``postgresql+psycopg2://``), logs the seed flow (tests/e2e's
acceptance session: params, stepped metrics, a dataset input, a text report, nested
artifacts; and the models session: a scikit-learn model logged, registered twice, aliased,
staged and tagged), a run with NaN and ±inf points, a prompt, and deletes one run. The
server is left running so the test can read stock's JSON; the caller stops it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import (
    STOCK_START_TIMEOUT,
    ServerProcess,
    free_port,
    start_server,
    stock_mlflow_command,
)
from models_session import ModelsSession, run_models_session
from session import SessionResult, run_session, tracking_uri

__all__ = ["StockSource", "build_stock_source", "start_stock"]


@dataclass
class StockSource:
    server: ServerProcess
    backend_uri: str  # as stock was given it
    artifacts: Path  # stock's --artifacts-destination
    session: SessionResult
    models: ModelsSession
    odd_run_id: str  # NaN, +inf, -inf points
    deleted_run_id: str


def start_stock(workdir: Path, backend_uri: str | None = None) -> ServerProcess:
    port = free_port()
    cmd = stock_mlflow_command(port, workdir)
    if backend_uri is not None:
        cmd[cmd.index("--backend-store-uri") + 1] = backend_uri
    return start_server(cmd, f"http://127.0.0.1:{port}", workdir, timeout=STOCK_START_TIMEOUT,
                        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                        name="stock-mlflow")


def build_stock_source(workdir: Path, backend_uri: str | None = None) -> StockSource:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    server = start_stock(workdir, backend_uri)
    session = run_session(server.url, workdir / "session")
    models = run_models_session(server.url)
    with tracking_uri(server.url):
        client = MlflowClient()
        exp = session.experiment_id
        odd = client.create_run(exp, run_name="odd values").info.run_id
        client.log_batch(odd, metrics=[
            Metric("odd", v, 1_700_000_000_000 + i, i)
            for i, v in enumerate([1.5, math.nan, math.inf, -math.inf, 0.0, -2.5])])
        client.log_batch(odd, metrics=[Metric("big", i / 7, 1_700_000_000_000 + i, i)
                                       for i in range(3000)])
        client.set_terminated(odd)
        gone = client.create_run(exp, run_name="deleted run").info.run_id
        client.log_param(gone, "p", "1")
        client.log_metric(gone, "m", 1.0)
        client.delete_run(gone)
        import mlflow.genai

        mlflow.genai.register_prompt("greeting", "Hello {{name}}", commit_message="first")
    backend = backend_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    return StockSource(server, backend, workdir / "art", session, models, odd, gone)
