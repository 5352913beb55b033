"""SIGTERM with ``--drain-seconds``: the replica keeps serving, but ``/health`` answers 503
(draining) at once so a load balancer's health check takes it out, and every answer tells
the client to close its connection; after the drain the listener closes, the upload that
was in flight finishes, the metric batcher's rows are stored, and the process exits 0."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psutil
from conftest import free_port, mlgate_command, start_server, stop_server

DRAIN = 1.5
API = "/api/2.0/mlflow"
UPLOAD = "/api/2.0/mlflow-artifacts/artifacts/drain/big.bin"
BODY = bytes(range(256)) * 4096  # 1 MiB


def _call(port: int, method: str, path: str, body: Any = None
          ) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection: (status, headers, JSON body or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"} if body is not None else {})
        resp = conn.getresponse()
        data = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        return resp.status, headers, json.loads(data)
    except ValueError:
        return resp.status, headers, data


def test_sigterm_drains_then_stops(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = mlgate_command(port, tmp_path, "--drain-seconds", str(DRAIN))
    server = start_server(cmd, url, tmp_path, timeout=30, name="mlgate")
    try:
        run = _call(port, "POST", f"{API}/runs/create", {"experiment_id": "0"})[2]
        run_id = run["run"]["info"]["run_id"]
        # An upload in flight: its head and half its body are in when SIGTERM comes.
        upload = socket.create_connection(("127.0.0.1", port), timeout=10)
        upload.sendall(f"PUT {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY[:len(BODY) // 2])
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        # 503 well before the listener closes (DRAIN after the signal).
        status, _, body = _call(port, "GET", "/health")
        while status == 200 and time.monotonic() < signalled + DRAIN / 2:
            status, _, body = _call(port, "GET", "/health")
        assert status == 503, body
        assert body["error_code"] == "TEMPORARILY_UNAVAILABLE" and "draining" in body["message"]

        # New connections are still served, and told not to come back on the same one.
        status, headers, body = _call(port, "POST", f"{API}/runs/log-batch", {
            "run_id": run_id,
            "metrics": [{"key": "m", "value": 1.5, "timestamp": 1, "step": 0}]})
        assert status == 200, body
        assert headers.get("connection") == "close"

        # After the drain the listener is closed; the upload in flight still completes.
        refused = None
        while time.monotonic() < signalled + DRAIN + 5:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                refused = time.monotonic() - signalled
                break
            time.sleep(0.05)
        assert refused is not None and refused >= DRAIN, refused
        upload.sendall(BODY[len(BODY) // 2:])
        reply = upload.recv(65536).decode()
        upload.close()
        assert reply.startswith("HTTP/1.1 200"), reply
        assert server.proc.wait(10) == 0, server.output()
    finally:
        stop_server(server)

    # Restarted on the same files: the upload and the row logged while draining are there.
    server = start_server(cmd, url, tmp_path, timeout=30, name="mlgate")
    try:
        assert _call(port, "GET", UPLOAD)[2] == BODY
        history = _call(port, "GET", f"{API}/metrics/get-history?run_id={run_id}&metric_key=m")
        assert [m["value"] for m in history[2]["metrics"]] == [1.5]
    finally:
        stop_server(server)


def _listens(proc: psutil.Process, port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
               for c in proc.net_connections(kind="tcp"))


def test_sigterm_to_serve_with_workers_drains_every_worker(tmp_path: Path) -> None:
    """A container's stop signal reaches only ``mlgate serve``, the workers' parent: it
    passes SIGTERM on, so the workers drain and exit rather than outlive it."""
    port = free_port()
    cmd = mlgate_command(port, tmp_path, "--workers", "2", "--drain-seconds", str(DRAIN))
    server = start_server(cmd, f"http://127.0.0.1:{port}", tmp_path, timeout=30, name="mlgate")
    workers: list[psutil.Process] = []
    try:
        parent = psutil.Process(server.proc.pid)
        deadline = time.monotonic() + 30
        while len(workers := [c for c in parent.children() if _listens(c, port)]) < 2:
            assert time.monotonic() < deadline, "the two workers never listened"
            time.sleep(0.1)
        server.proc.send_signal(signal.SIGTERM)  # the parent alone, not its process group
        signalled = time.monotonic()
        while _call(port, "GET", "/health")[0] == 200 and time.monotonic() < signalled + 1:
            pass
        time.sleep(0.2)  # the signal passed on reaches the workers a moment apart
        answers = {_call(port, "GET", "/health")[0] for _ in range(20)}
        assert answers == {503}, answers  # both workers drain (the kernel spreads the calls)
        assert time.monotonic() - signalled < DRAIN
        assert server.proc.wait(DRAIN + 10) == 0, server.output()
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, alive
    finally:
        stop_server(server)
        for worker in workers:  # left behind by a parent that died alone
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
