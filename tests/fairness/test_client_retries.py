"""The real mlflow client against a rate-limited workspace: it waits out each 429 (its
urllib3 retry honours Retry-After) and every call succeeds, slower."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    MLGATE_START_TIMEOUT,
    free_port,
    mlgate_command,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.e2e

ADMIN, ADMIN_PASSWORD = "root", "root-password-123"
AUTH = "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()


def _call(url: str, method: str, path: str, body: Any = None) -> str:
    req = urllib.request.Request(url + path, method=method, headers={
        "Authorization": AUTH, "Content-Type": "application/json"},
        data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def test_the_mlflow_client_waits_out_429s(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    port = free_port()
    server = start_server(mlgate_command(port, tmp_path, "--auth"), f"http://127.0.0.1:{port}",
                          tmp_path, timeout=MLGATE_START_TIMEOUT, name="mlgate", env={
                              "MLGATE_ADMIN_USERNAME": ADMIN,
                              "MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        # 4 requests a second in the default workspace, where the client works.
        _call(server.url, "PUT", "/mlgate/v1/teams/default/limits",
              {"requests_per_second": 4})
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        client = mlflow.MlflowClient(tracking_uri=server.url)
        started = time.monotonic()
        exp = client.create_experiment("limited")
        run = client.create_run(exp).info.run_id
        for step in range(6):
            client.log_metric(run, "loss", float(step), step=step)
        took = time.monotonic() - started
        assert [m.step for m in client.get_metric_history(run, "loss")] == list(range(6))
        refused = [line for line in _call(server.url, "GET", "/metrics").splitlines()
                   if line.startswith("mlgate_rate_limited_requests_total ")]
    finally:
        stop_server(server)
    assert float(refused[0].split()[1]) >= 1, refused  # 8 calls at 4 a second: waits
    print(f"client calls took {took:.1f} s, {refused}")
    assert took >= 1.0, took
