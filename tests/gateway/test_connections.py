"""Connections: idle keep-alive, slow request heads and stalled bodies are closed, and a
flood of idle sockets under a 1,024-descriptor limit does not keep a new client out, on each
event loop the server can run on (``--event-loop``: uvloop, the default, and asyncio's).

Each test starts ``python -m gateway serve`` and talks raw TCP to it. The settings go
through the environment, so on a build without them the tests fail on the behaviour, not
on an unknown flag.
"""

from __future__ import annotations

import resource
import select
import shlex
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port, start_server, stop_server

pytestmark = pytest.mark.timeout(120)

_FD_LIMIT = 1024
_IDLE_SOCKETS = 1200
_LOOPS = {"uvloop": "on uvloop", "asyncio": "on asyncio's event loop"}


def _serve(workdir: Path, env: dict[str, str], *, fd_limit: int | None = None
           ) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--backend-store-uri", f"sqlite:///{workdir / 'mlgate.db'}",
           "--artifacts-destination", str(workdir / "mlartifacts")]
    if fd_limit is not None:
        cmd = ["sh", "-c", f"ulimit -n {fd_limit} && exec {shlex.join(cmd)}"]
    return start_server(cmd, f"http://127.0.0.1:{port}", workdir, timeout=60, env=env)


def _settings(**env: str) -> pytest.MarkDecorator:
    """Start the test's ``server`` with these ``MLGATE_*`` variables, once per event loop."""
    return pytest.mark.parametrize(
        "server", [{**env, "MLGATE_EVENT_LOOP": loop} for loop in _LOOPS], indirect=True,
        ids=list(_LOOPS))


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """mlgate with the short timeouts given by indirect parametrization (as env vars)."""
    srv = _serve(tmp_path, request.param)
    try:
        # The start-up line names the loop: the test runs on the one it is named for.
        assert _LOOPS[request.param["MLGATE_EVENT_LOOP"]] in srv.output(), srv.output()
        yield srv
    finally:
        stop_server(srv)


def _connect(server: ServerProcess) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes *sock* (reading and discarding what it sends), or
    None if it is still open after *seconds*."""
    start = time.monotonic()
    sock.settimeout(0.1)
    while (waited := time.monotonic() - start) < seconds:
        try:
            if sock.recv(65536) == b"":
                return waited
        except TimeoutError:
            continue
        except ConnectionResetError:
            return waited
    return None


def _health_seconds(server: ServerProcess, timeout: float) -> float:
    start = time.monotonic()
    with urllib.request.urlopen(server.url + "/health", timeout=timeout) as resp:
        assert resp.status == 200
    return time.monotonic() - start


@_settings(MLGATE_KEEPALIVE_TIMEOUT="1")
def test_idle_keepalive_connection_is_closed(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        waited = _closed_within(sock, 5)
    assert waited is not None, "an idle keep-alive connection was still open after 5 s"
    assert waited >= 0.5


@_settings(MLGATE_HEADER_TIMEOUT="1", MLGATE_KEEPALIVE_TIMEOUT="30")
def test_request_head_sent_a_byte_at_a_time_is_cut_off(server: ServerProcess) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slowloris\r\n\r\n"
    with _connect(server) as sock:
        start = time.monotonic()
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if _closed_within(sock, 0.5) is not None:
                break
        else:
            pytest.fail("the server answered a request head sent over "
                        f"{time.monotonic() - start:.0f} s")
        assert time.monotonic() - start < 4


def _upload_head(length: int) -> bytes:
    return (f"PUT /api/2.0/mlflow-artifacts/artifacts/0/slow/file.bin HTTP/1.1\r\n"
            f"Host: localhost\r\nContent-Length: {length}\r\n\r\n").encode()


@_settings(MLGATE_BODY_TIMEOUT="1", MLGATE_KEEPALIVE_TIMEOUT="30")
def test_body_that_stops_arriving_is_cut_off(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(_upload_head(100_000) + b"x" * 1000)
        waited = _closed_within(sock, 5)
    assert waited is not None, "a stalled upload was still open after 5 s"
    assert waited >= 0.5
    # The cut upload left no file behind.
    listing = urllib.request.urlopen(
        server.url + "/api/2.0/mlflow-artifacts/artifacts?path=0/slow", timeout=5).read()
    assert b"file.bin" not in listing


@_settings(MLGATE_BODY_TIMEOUT="1", MLGATE_KEEPALIVE_TIMEOUT="30")
def test_slow_but_steady_upload_is_not_cut(server: ServerProcess) -> None:
    chunks = 12  # one every 0.4 s: 4.8 s in all, several times the body timeout
    with _connect(server) as sock:
        sock.sendall(_upload_head(chunks * 100))
        for _ in range(chunks):
            time.sleep(0.4)
            sock.sendall(b"y" * 100)
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    body = urllib.request.urlopen(
        server.url + "/api/2.0/mlflow-artifacts/artifacts/0/slow/file.bin", timeout=5).read()
    assert body == b"y" * chunks * 100


@_settings(MLGATE_MAX_CONNECTIONS="4", MLGATE_BODY_TIMEOUT="30", MLGATE_KEEPALIVE_TIMEOUT="30")
def test_a_client_past_the_cap_of_busy_connections_gets_503_and_the_busy_ones_finish(
    server: ServerProcess,
) -> None:
    busy = [_connect(server) for _ in range(4)]
    try:
        for i, sock in enumerate(busy):  # each with an upload in progress
            sock.sendall(_upload_head(2000).replace(b"file.bin", f"f{i}.bin".encode())
                         + b"z" * 1000)
        time.sleep(0.3)
        with _connect(server) as extra:
            extra.settimeout(5)
            answer = b""
            while chunk := extra.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b'"TEMPORARILY_UNAVAILABLE"' in answer and b"Retry-After: 1" in answer
        for sock in busy:
            sock.sendall(b"z" * 1000)
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "a busy upload was cut"
    finally:
        for sock in busy:
            sock.close()
    output = server.wait_for("connection limit of 4 reached", timeout=5)
    # One warning line, no traceback per refusal.
    assert "Traceback" not in output and " ERROR " not in output, output


def _open_idle(address: tuple[str, int], count: int) -> list[socket.socket]:
    """Open *count* connections that send nothing, waiting up to half a second for their
    handshakes: a burst larger than the listen backlog would have its SYNs dropped and
    retried a second or more later, and the server would never see them all."""
    socks = []
    poller = select.poll()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        poller.register(sock, select.POLLOUT)
        socks.append(sock)
    pending = {sock.fileno() for sock in socks}
    deadline = time.monotonic() + 0.5
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(50):
            pending.discard(fd)
            poller.unregister(fd)
    return socks


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.mark.parametrize("loop", list(_LOOPS))
def test_new_client_is_served_past_idle_sockets_at_the_descriptor_limit(
    tmp_path: Path, loop: str,
) -> None:
    _raise_own_fd_limit(_IDLE_SOCKETS + 256)
    # A long keep-alive timeout: the idle sockets must not simply time out first.
    server = _serve(tmp_path, {"MLGATE_KEEPALIVE_TIMEOUT": "60", "MLGATE_EVENT_LOOP": loop},
                    fd_limit=_FD_LIMIT)
    host, port = server.url.removeprefix("http://").split(":")
    idle: list[socket.socket] = []
    try:
        while len(idle) < _IDLE_SOCKETS:
            idle += _open_idle((host, int(port)), 50)
        try:
            waited = _health_seconds(server, timeout=5)
        except OSError as exc:
            pytest.fail(f"a new client got no answer with {_IDLE_SOCKETS} idle sockets "
                        f"open: {exc!r}")
        assert waited < 1, f"a new client waited {waited:.2f} s"
        assert "connection limit" in server.output()
    finally:
        for sock in idle:
            sock.close()
        stop_server(server)
