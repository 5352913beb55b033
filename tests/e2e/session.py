"""The issue's acceptance session, driven by the real ``mlflow`` client, shared by the e2e tests.

:func:`run_session` logs exactly what a user's training script logs (experiment, run, params,
five epochs of metrics, a pandas dataset, a text report, a folder of nested artifacts) plus two
runs that the search filter must exclude. :func:`check_session` reads everything back through
the client and asserts it. Both run in-process: :func:`tracking_uri` points the client at a
server and restores the client's globals and environment afterwards, so nothing leaks from one
test (or one server) to the next.

The data is deterministic (fixed values, seeded bytes), so the same session against stock
``mlflow server`` and against mlgate produces JSON that differs only in ids and timestamps.
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.data
import pandas as pd  # type: ignore[import-untyped]
from mlflow.tracking import MlflowClient

__all__ = [
    "ACCURACY",
    "LOSS",
    "PARAMS",
    "REPORT_PATH",
    "SEARCH_FILTER",
    "SessionResult",
    "check_session",
    "run_session",
    "tracking_uri",
]

PARAMS = {"learning_rate": 0.01, "batch_size": 32, "epochs": 10, "model_type": "local_test"}
ACCURACY = [0.61, 0.68, 0.74, 0.79, 0.83]
LOSS = [0.92, 0.71, 0.55, 0.43, 0.35]
SEARCH_FILTER = "metrics.accuracy > 0.7 and params.model_type = 'local_test'"
REPORT_PATH = "reports/test_report.txt"
RUN_NAME = "local test run"
# Runs that share the experiment but must not match SEARCH_FILTER: one fails the metric
# clause, one the param clause.
OTHER_RUNS = {
    "low accuracy run": ({"model_type": "local_test"}, 0.5),
    "other model run": ({"model_type": "other"}, 0.95),
}

# Environment the fluent API writes (set_tracking_uri, set_experiment, start_run) so that
# subprocesses inherit it; restored by tracking_uri().
_CLIENT_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID",
               "MLFLOW_EXPERIMENT_NAME")
# The client retries a 5xx up to 7 times with exponential backoff (about 4 minutes in all), so
# one broken endpoint would eat the test's timeout. One quick retry keeps the retry path
# exercised and a failure fast; read per request, restored by tracking_uri().
_CLIENT_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # an int for the client
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


@contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """Point the in-process mlflow client at *uri*; restore its globals and env on exit."""
    from mlflow.tracking import _tracking_service, fluent

    saved_env = {k: os.environ.get(k) for k in (*_CLIENT_ENV, *_CLIENT_RETRY_ENV)}
    saved_uri = _tracking_service.utils._tracking_uri
    saved_experiment = fluent._active_experiment_id
    os.environ.update(_CLIENT_RETRY_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        fluent._active_experiment_id = saved_experiment
        mlflow.set_tracking_uri(saved_uri)  # type: ignore[arg-type]  # None unsets it
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class SessionResult:
    """What run_session logged, for check_session and the parity comparison."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str
    run_id: str
    other_run_ids: dict[str, str]
    dataset_name: str
    dataset_digest: str
    report: str
    artifact_dir: Path
    artifact_files: dict[str, bytes] = field(default_factory=dict)  # run-relative path → bytes


def _training_frame() -> pd.DataFrame:
    rng = random.Random(42)
    rows = [
        {
            "feature_a": round(rng.uniform(0, 1), 6),
            "feature_b": round(rng.gauss(0, 1), 6),
            "feature_c": round(rng.uniform(-5, 5), 6),
            "target": float(rng.random() > 0.5),
        }
        for _ in range(100)
    ]
    return pd.DataFrame(rows)


def _report() -> str:
    lines = ["Local test report", "=================", ""]
    lines += [f"epoch {i}: accuracy={a:.2f} loss={l:.2f}"
              for i, (a, l) in enumerate(zip(ACCURACY, LOSS))]
    lines += ["", f"final accuracy: {ACCURACY[-1]} \u2713", ""]
    return "\n".join(lines)


def _write_artifact_tree(root: Path) -> dict[str, bytes]:
    """A folder with nested sub-folders, a binary file and an empty file."""
    rng = random.Random(7)
    files = {
        "summary.json": json.dumps({"accuracy": ACCURACY[-1], "loss": LOSS[-1]}).encode(),
        "plots/curve.csv": "".join(
            f"{i},{a},{l}\n" for i, (a, l) in enumerate(zip(ACCURACY, LOSS))
        ).encode(),
        "plots/deep/weights.bin": rng.randbytes(70_000),
        "notes/empty.txt": b"",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def run_session(uri: str, workdir: Path) -> SessionResult:
    """Log the acceptance session against the tracking server at *uri*."""
    workdir.mkdir(parents=True, exist_ok=True)
    artifact_dir = workdir / "outputs"
    artifact_files = _write_artifact_tree(artifact_dir)
    report = _report()
    name = f"local_test_{time.time_ns()}"
    with tracking_uri(uri):
        experiment = mlflow.set_experiment(name)
        with mlflow.start_run(run_name=RUN_NAME) as run:
            mlflow.log_params(PARAMS)
            for epoch, (acc, loss) in enumerate(zip(ACCURACY, LOSS)):
                mlflow.log_metric("accuracy", acc, step=epoch)
                mlflow.log_metric("loss", loss, step=epoch)
            dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
                _training_frame(), source="generated", targets="target"
            )
            mlflow.log_input(dataset, context="training")
            mlflow.log_text(report, REPORT_PATH)
            mlflow.log_artifacts(str(artifact_dir))
        other_ids = {}
        for other_name, (params, accuracy) in OTHER_RUNS.items():
            with mlflow.start_run(run_name=other_name) as other:
                mlflow.log_params(params)
                mlflow.log_metric("accuracy", accuracy, step=0)
            other_ids[other_name] = other.info.run_id
    artifact_files[REPORT_PATH] = report.encode("utf-8")
    return SessionResult(
        tracking_uri=uri,
        experiment_name=name,
        experiment_id=experiment.experiment_id,
        run_id=run.info.run_id,
        other_run_ids=other_ids,
        dataset_name=dataset.name,
        dataset_digest=dataset.digest,
        report=report,
        artifact_dir=artifact_dir,
        artifact_files=artifact_files,
    )


def check_session(result: SessionResult, workdir: Path) -> None:
    """Read the session back through the mlflow client and assert every value."""
    with tracking_uri(result.tracking_uri):
        client = MlflowClient()
        _check_run(client, result)
        _check_history(client, result)
        _check_artifacts(client, result, workdir)
        _check_search(client, result)


def _check_run(client: MlflowClient, result: SessionResult) -> None:
    run = client.get_run(result.run_id)
    assert run.info.run_id == result.run_id
    assert run.info.experiment_id == result.experiment_id
    assert run.info.run_name == RUN_NAME
    assert run.info.status == "FINISHED"
    assert run.info.lifecycle_stage == "active"
    assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
    assert run.info.artifact_uri.endswith(f"/{result.run_id}/artifacts"), run.info.artifact_uri
    # Params come back as the strings the client sent.
    assert run.data.params == {k: str(v) for k, v in PARAMS.items()}
    # The run's metrics are the latest value of each key.
    assert run.data.metrics == {"accuracy": ACCURACY[-1], "loss": LOSS[-1]}
    assert run.data.tags["mlflow.runName"] == RUN_NAME
    assert "mlflow.user" in run.data.tags
    assert client.get_experiment(result.experiment_id).name == result.experiment_name
    by_name = client.get_experiment_by_name(result.experiment_name)
    assert by_name is not None and by_name.experiment_id == result.experiment_id

    assert run.inputs is not None
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    (dataset_input,) = inputs
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "training"}
    ds = dataset_input.dataset
    assert (ds.name, ds.digest) == (result.dataset_name, result.dataset_digest)
    assert ds.source_type == "local"
    assert json.loads(ds.profile or "") == {"num_rows": 100, "num_elements": 400}
    schema = json.loads(ds.schema or "")
    assert [c["name"] for c in schema["mlflow_colspec"]] == [
        "feature_a", "feature_b", "feature_c", "target"
    ]


def _check_history(client: MlflowClient, result: SessionResult) -> None:
    for key, values in (("accuracy", ACCURACY), ("loss", LOSS)):
        history = client.get_metric_history(result.run_id, key)
        assert [(m.key, m.step, m.value) for m in history] == [
            (key, step, value) for step, value in enumerate(values)
        ]
        assert all(m.timestamp > 0 for m in history)


def _check_artifacts(client: MlflowClient, result: SessionResult, workdir: Path) -> None:
    def listing(path: str | None) -> dict[str, tuple[bool, int | None]]:
        return {f.path: (f.is_dir, f.file_size) for f in client.list_artifacts(result.run_id, path)}

    files = result.artifact_files
    assert listing(None) == {
        "notes": (True, None),
        "plots": (True, None),
        "reports": (True, None),
        "summary.json": (False, len(files["summary.json"])),
    }
    assert listing("plots") == {
        "plots/curve.csv": (False, len(files["plots/curve.csv"])),
        "plots/deep": (True, None),
    }
    assert listing("plots/deep") == {
        "plots/deep/weights.bin": (False, len(files["plots/deep/weights.bin"])),
    }
    assert listing("reports") == {REPORT_PATH: (False, len(files[REPORT_PATH]))}
    # Stock reports no file_size for an empty file (the client sees None); accept 0 too.
    (empty,) = client.list_artifacts(result.run_id, "notes")
    assert (empty.path, empty.is_dir, empty.file_size or 0) == ("notes/empty.txt", False, 0)

    text = mlflow.artifacts.load_text(f"runs:/{result.run_id}/{REPORT_PATH}")
    assert text == result.report

    # The whole tree, then one nested file on its own.
    dst = workdir / "downloaded"
    dst.mkdir(parents=True)
    root = Path(client.download_artifacts(result.run_id, "", str(dst)))
    got = {
        p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }
    assert sorted(got) == sorted(files)
    for rel, data in files.items():
        assert got[rel] == data, f"{rel}: downloaded bytes differ"
    single = workdir / "single"
    single.mkdir(parents=True)
    one = Path(client.download_artifacts(result.run_id, "plots/deep/weights.bin", str(single)))
    assert filecmp.cmp(one, result.artifact_dir / "plots/deep/weights.bin", shallow=False)


def _check_search(client: MlflowClient, result: SessionResult) -> None:
    mlflow.set_experiment(result.experiment_name)
    frame = mlflow.search_runs(filter_string=SEARCH_FILTER)
    assert list(frame["run_id"]) == [result.run_id]
    row = frame.iloc[0]
    assert row["metrics.accuracy"] == ACCURACY[-1]
    assert row["params.model_type"] == "local_test"
    assert row["tags.mlflow.runName"] == RUN_NAME
    for other_id in result.other_run_ids.values():
        assert other_id not in set(frame["run_id"])

    everything = client.search_runs(
        [result.experiment_id], "params.model_type = 'local_test'",
        order_by=["metrics.accuracy DESC"],
    )
    assert [r.info.run_id for r in everything] == [
        result.run_id, result.other_run_ids["low accuracy run"]
    ]
