"""Two ``mlgate serve`` replicas on one PostgreSQL database and one moto S3 bucket, behind
HAProxy (Debian's package; ``.ci/run`` installs it): round-robin, health checks on
``/health`` every 200 ms, a server out after one failed check and back after two good ones.

Each replica can be stopped with SIGTERM and started again on its port; HAProxy's CSV
statistics say which replicas it sends to and how many answers of each class it gave.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import ServerProcess, free_port, mlgate_command, start_server, stop_server

__all__ = ["ADMIN", "ADMIN_PASSWORD", "Balancer", "Replica", "Reply", "basic", "call", "replicas", "start_all",
           "stop_all"]

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-123"
DRAIN_SECONDS = 2.5  # many of HAProxy's 200 ms checks, on a busy machine too


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Reply(NamedTuple):
    status: int
    body: Any  # the JSON, or the bytes when it is not JSON
    headers: dict[str, str]  # names in lower case


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: Any = None, workspace: str | None = None) -> Reply:
    """One request on a fresh connection to 127.0.0.1:``port``. ``body``: bytes as they
    are, anything else as JSON."""
    sent = dict(headers or {})
    if workspace:
        sent["X-MLFLOW-WORKSPACE"] = workspace
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    got = {k.lower(): v for k, v in resp.getheaders()}
    try:
        return Reply(resp.status, json.loads(data), got)
    except ValueError:
        return Reply(resp.status, data, got)


@dataclass
class Replica:
    name: str
    port: int
    workdir: Path
    command: list[str]
    env: dict[str, str]
    server: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = start_server(self.command, self.url, self.workdir, timeout=60,
                                   env=self.env, name="mlgate")

    def terminate(self) -> int:
        """SIGTERM, as a container stop sends; the exit code once it is gone."""
        assert self.server is not None
        self.server.proc.send_signal(signal.SIGTERM)
        return self.server.proc.wait(30)

    def stop(self) -> None:
        if self.server is not None:
            stop_server(self.server)


def start_all(started: list[Replica]) -> None:
    """Start the replicas side by side (the first start migrates; the others wait for it)."""
    with concurrent.futures.ThreadPoolExecutor(len(started)) as pool:
        for done in [pool.submit(r.start) for r in started]:
            done.result()


def stop_all(started: list[Replica]) -> None:
    """SIGTERM to all at once, so their drains overlap; then wait for each."""
    for replica in started:
        if replica.server is not None and replica.server.proc.poll() is None:
            replica.server.proc.send_signal(signal.SIGTERM)
    for replica in started:
        replica.stop()

    def output(self) -> str:
        return self.server.output() if self.server is not None else ""


def replicas(dsn: str, destination: str, workdir: Path, env: dict[str, str],
             count: int = 2) -> list[Replica]:
    made = []
    for i in range(count):
        port = free_port()
        folder = workdir / f"r{i}"
        command = mlgate_command(
            port, folder, "--artifacts-destination", destination,
            "--auth", "--admin-username", ADMIN,
            "--drain-seconds", str(DRAIN_SECONDS), "--shutdown-timeout", "10",
            # Sweeps many times a second, so that one replica's sweep meets another's
            # uploads in flight.
            "--sweep-interval", "0.3",
            "--db-pool-size", "2", backend_store_uri=dsn)
        made.append(Replica(f"r{i}", port, folder, command,
                            dict(env, MLGATE_ADMIN_PASSWORD=ADMIN_PASSWORD)))
    return made


@dataclass
class Balancer:
    """HAProxy in front of ``replicas``; ``port`` is where clients go."""

    replicas: list[Replica]
    workdir: Path
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check"
                            for r in self.replicas)
        return f"""\
global
    maxconn 512

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    # A connection refused is retried on another server: nothing reached a replica.
    retries 3
    option redispatch 1
    # A connection to a replica per request: no idle connection that a replica may close
    # while HAProxy sends on it.
    option http-server-close

frontend mlgate
    bind 127.0.0.1:{self.port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 200ms fastinter 200ms downinter 200ms fall 1 rise 2
{servers}

frontend stats
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /stats
"""

    def start(self) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            pytest.fail("haproxy is not installed: apt-get install haproxy (.ci/run does)",
                        pytrace=False)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(self.config(), encoding="utf-8")
        log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115  # kept by the process
        self.proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        self.wait_up({r.name for r in self.replicas})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's statistics, by ``proxy/server`` (``mlgate/FRONTEND``, ``replicas/r0``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv",
                                    timeout=5) as resp:
            lines = resp.read().decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {f"{r['pxname']}/{r['svname']}": r for r in rows}

    def up(self) -> set[str]:
        return {key.split("/")[1] for key, row in self.stats().items()
                if key.startswith("replicas/") and row["status"] == "UP"}

    def wait_up(self, names: set[str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.workdir / "haproxy.log").read_text(errors="replace")
                pytest.fail(f"haproxy exited:\n{log}", pytrace=False)
            try:
                if names <= self.up():
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(f"haproxy does not send to {names}: {self.stats()}", pytrace=False)
            time.sleep(0.05)

    def answers(self, status_class: str) -> int:
        """Answers of ``status_class`` (``2xx``, ``5xx``) the balancer gave clients."""
        return int(self.stats()["mlgate/FRONTEND"][f"hrsp_{status_class}"] or 0)

    def retries(self) -> int:
        """Connections to a replica that failed and were tried again (on it or another)."""
        row = self.stats()["replicas/BACKEND"]
        return int(row["wretr"] or 0) + int(row["wredis"] or 0)

    def served_by(self, name: str) -> int:
        """Answers the balancer got from replica ``name`` (any status)."""
        row = self.stats()[f"replicas/{name}"]
        return sum(int(row[f"hrsp_{c}"] or 0) for c in ("1xx", "2xx", "3xx", "4xx", "5xx"))
