"""Shared fixtures: real server processes for the end-to-end tests.

``mlgate_url`` starts ``python -m gateway serve`` on a free port with a fresh SQLite file and
artifact folder, and ``stock_mlflow_url`` starts stock ``mlflow server`` the same way (once per
session: it needs 10–30 s to boot on our 2-core machines). Both wait for ``GET /health`` to
answer 200, fail with the server's own output if it does not, and stop the process group with
SIGTERM, then SIGKILL. Nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mytools import MyDatabases
from pgtools import PgDatabases

# tests/e2e/session.py holds the acceptance assertions shared by the e2e modules; let pytest
# rewrite its asserts so a failure shows the values.
pytest.register_assert_rewrite("session")

# Object-store servers (moto, SeaweedFS, Azurite) and per-test buckets/containers.
from object_stores import (  # noqa: F401
    azurite_container,
    azurite_server,
    moto_bucket,
    moto_s3_server,
    seaweedfs_bucket,
    seaweedfs_server,
)

__all__ = ["GatewayTestServer", "ServerProcess", "database_uri", "free_port", "start_server", "stop_server"]


class GatewayTestServer(TestServer):
    """aiohttp's test server set as ``mlgate serve`` sets aiohttp: request bodies are
    decoded by the gateway (gateway.parsing.body_chunks), not by aiohttp's parser."""

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        await super().start_server(loop=loop, auto_decompress=False, **kwargs)


@pytest.fixture
def aiohttp_client(aiohttp_client: Any) -> Any:
    """pytest-aiohttp's client fixture, serving an application on a GatewayTestServer."""
    async def start(app: Any, *args: Any, server_kwargs: dict[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        if isinstance(app, web.Application):
            app = GatewayTestServer(app, **(server_kwargs or {}))
        return await aiohttp_client(app, *args, **kwargs)

    return start

MLGATE_START_TIMEOUT = 30.0
# Stock mlflow imports a great deal and migrates its schema before it listens: 14 s measured on
# an idle 2-core machine, more when the other core is busy running tests.
STOCK_START_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0

# Variables that would point a server (or the client inside it) somewhere else.
_SCRUBBED_ENV = (
    "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID",
    "MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_DEFAULT_ARTIFACT_ROOT",
    "MLFLOW_HOST", "MLFLOW_PORT", "MLFLOW_WORKERS", "MLFLOW_SERVE_ARTIFACTS",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A server started by a fixture; ``url`` has no trailing slash."""

    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, text: str, count: int = 1, timeout: float = 10.0) -> str:
        """The output once ``text`` is in it ``count`` times; fails the test with the output
        if that takes longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (output := self.output()).count(text) < count:
            assert time.monotonic() < deadline, output
            time.sleep(0.1)
        return output


def _server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED_ENV and not k.startswith("MLGATE_")}
    env.update(
        PYTHONUNBUFFERED="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    env.update(extra or {})
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def stop_server(server: ServerProcess) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not gone."""
    proc = server.proc
    if proc.poll() is not None:
        return
    # The server runs in its own session; signal the whole group so workers go too (stock
    # mlflow runs uvicorn in a child process).
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(STOP_TIMEOUT)


def start_server(
    cmd: Sequence[str], url: str, workdir: Path, *, timeout: float,
    env: dict[str, str] | None = None, name: str = "server",
) -> ServerProcess:
    """Start *cmd* in *workdir* and wait until ``GET {url}/health`` answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd), cwd=workdir, env=_server_env(env), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = ServerProcess(url=url, proc=proc, workdir=workdir, log_path=log_path)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        if _healthy(url):
            return server
        code = proc.poll()
        if code is not None:
            pytest.fail(
                f"{name} exited with code {code} before it was healthy.\n"
                f"command: {' '.join(cmd)}\n--- output ---\n{server.output()}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            stop_server(server)
            pytest.fail(
                f"{name} was not healthy after {time.monotonic() - started:.0f} s.\n"
                f"command: {' '.join(cmd)}\n--- output ---\n{server.output()}",
                pytrace=False,
            )
        time.sleep(0.1)


def mlgate_command(
    port: int, workdir: Path, *extra: str, backend_store_uri: str | None = None
) -> list[str]:
    return [
        sys.executable, "-m", "gateway", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", backend_store_uri or f"sqlite:///{workdir / 'mlgate.db'}",
        "--artifacts-destination", str(workdir / "mlartifacts"),
        *extra,
    ]


def stock_mlflow_command(port: int, workdir: Path, *extra: str) -> list[str]:
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    launcher = [str(mlflow_bin)] if mlflow_bin.exists() else [sys.executable, "-m", "mlflow"]
    return [
        *launcher, "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", str(workdir / "art"),
        "--workers", "1",
        *extra,
    ]


MlgateFactory = Callable[..., ServerProcess]


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    """Creates throwaway PostgreSQL databases (see tests/pgtools.py); drops them all at the end."""
    databases = PgDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture
def pg_database(pg_databases: PgDatabases) -> Iterator[str]:
    """The DSN of a fresh PostgreSQL database with mlgate's schema, dropped after the test."""
    dsn = pg_databases.create("t")
    yield dsn
    pg_databases.drop(dsn)


@pytest.fixture(scope="session")
def my_databases() -> Iterator[MyDatabases]:
    """Creates throwaway MariaDB databases (see tests/mytools.py); drops them all at the end."""
    databases = MyDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture
def my_database(my_databases: MyDatabases) -> Iterator[str]:
    """The URI of a fresh MariaDB database with mlgate's schema, dropped after the test."""
    uri = my_databases.create("t")
    yield uri
    my_databases.drop(uri)


def database_uri(request: pytest.FixtureRequest, tmp_path: Path, name: str = "store") -> str:
    """A fresh migrated database for a fixture parametrized with "sqlite", "postgres" and
    "mariadb": a SQLite file named ``name`` or a throwaway server database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/{name}.db"
    fixture = {"postgres": "pg_database", "mariadb": "my_database"}[request.param]
    uri: str = request.getfixturevalue(fixture)
    return uri


@pytest.fixture(params=["postgres", "mariadb"])
def server_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URI of a fresh migrated PostgreSQL or MariaDB database: for the tests of what the
    network stores share (pool, outages)."""
    return database_uri(request, tmp_path)


# The databases behind mlgate_factory's parameters, beside SQLite: a module may run its tests
# on more of them with pytestmark = pytest.mark.parametrize("mlgate_factory", [...],
# indirect=True).
_SERVER_DATABASES = {"postgres": "pg_databases", "mariadb": "my_databases"}


@pytest.fixture(params=["sqlite", "postgres"])
def mlgate_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlgateFactory]:
    """Start mlgate servers (fresh database and artifact folder each); all stop at teardown.
    Runs every test on SQLite and on a throwaway PostgreSQL database (or MariaDB, where a
    module asks for it).

    ``mlgate_factory(*extra_flags, env={...}, workdir=None)`` returns a :class:`ServerProcess`;
    pass the ``workdir`` of an earlier (stopped) server to restart on the same files and
    database.
    """
    servers: list[ServerProcess] = []
    databases: dict[Path, str] = {}
    fixture = _SERVER_DATABASES.get(request.param)
    maker: PgDatabases | MyDatabases | None = (
        request.getfixturevalue(fixture) if fixture else None)

    def start(
        *extra: str, env: dict[str, str] | None = None, workdir: Path | None = None
    ) -> ServerProcess:
        workdir = workdir or tmp_path_factory.mktemp("mlgate")
        if maker is not None and workdir not in databases:
            databases[workdir] = maker.create("e2e", migrated=False)
        port = free_port()
        server = start_server(
            mlgate_command(port, workdir, *extra, backend_store_uri=databases.get(workdir)),
            f"http://127.0.0.1:{port}", workdir,
            timeout=MLGATE_START_TIMEOUT, env=env, name="mlgate",
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)
    for uri in databases.values():
        assert maker is not None
        maker.drop(uri)


@pytest.fixture
def mlgate_server(mlgate_factory: MlgateFactory) -> ServerProcess:
    """One mlgate (SQLite or PostgreSQL, see :func:`mlgate_factory`) with local artifacts."""
    return mlgate_factory()


@pytest.fixture
def mlgate_url(mlgate_server: ServerProcess) -> str:
    """Base URL of :func:`mlgate_server`, e.g. ``http://127.0.0.1:54321``."""
    return mlgate_server.url


@pytest.fixture(scope="session")
def stock_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Stock ``mlflow server`` (SQLite, proxied artifacts, one worker), shared by the session.

    Tests that use it create their own experiments, so sharing is safe. Job execution is off
    so it spawns no huey workers.
    """
    workdir = tmp_path_factory.mktemp("stock-mlflow")
    port = free_port()
    server = start_server(
        stock_mlflow_command(port, workdir), f"http://127.0.0.1:{port}", workdir,
        timeout=STOCK_START_TIMEOUT, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        name="stock-mlflow",
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def stock_mlflow_url(stock_mlflow_server: ServerProcess) -> str:
    """Base URL of :func:`stock_mlflow_server`."""
    return stock_mlflow_server.url
