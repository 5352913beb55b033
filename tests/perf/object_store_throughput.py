"""Throughput and memory of the artifact proxy on S3 and Azure, beside a direct SDK transfer.

Run by hand (not collected by pytest)::

    python tests/perf/object_store_throughput.py --store seaweedfs --size-mib 1024
    python tests/perf/object_store_throughput.py --store moto --size-mib 1024
    python tests/perf/object_store_throughput.py --store azurite --size-mib 1024

For the chosen server (started here as a subprocess on free ports) the script writes a
random file, then:

* **direct**: uploads it with the SDK the way mlgate does (aiobotocore multipart with the same
  part size and concurrency / azure-storage-blob staged blocks + commit) and downloads it
  streaming: the ceiling on this machine;
* **gateway**: starts ``python -m gateway serve`` with the bucket/container as
  ``--artifacts-destination``, PUTs the file through the proxy (streaming from disk) and GETs
  it back, checking sha256 both ways, while sampling the gateway process's RSS every 50 ms
  and watching its private TMPDIR for files.

It prints MB/s (1 MB = 10^6 bytes) for each direction, the ratio to the direct figure, the
gateway's peak RSS and the number of temporary files seen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROXY = "/api/2.0/mlflow-artifacts/artifacts"
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
          "KBHBeksoGMGw==")
KEY, SECRET = "perfkey", "perfsecret"


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait(check: Any, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with contextlib.suppress(Exception):  # not up yet
            if check():
                return
        time.sleep(0.2)
    raise SystemExit("server did not start")


def _http_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_store(kind: str, work: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start the object server; returns it and the environment a client needs."""
    log = open(work / f"{kind}.log", "wb")  # noqa: SIM115 - lives as long as the server
    if kind == "moto":
        (port,) = _ports(1)
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=log, start_new_session=True)
        _wait(lambda: _http_up(f"http://127.0.0.1:{port}/moto-api/"), 60, proc)
        return proc, {"MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                      "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    if kind == "seaweedfs":
        ports = _ports(11)
        names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                 "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
                 "debug.port", "s3.port.grpc"]
        env = {"MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports[0]}",
               "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
        (work / "weed").mkdir()
        proc = subprocess.Popen(
            [str(BIN / "weed"), "mini", f"-dir={work / 'weed'}", "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", f"-s3.port={ports[0]}", "-admin.ui=false", "-webdav=false",
             "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
             *[f"-{n}={p}" for n, p in zip(names, ports[1:], strict=True)]],
            stdout=log, stderr=log, start_new_session=True, env={**os.environ, **env})

        def ready() -> bool:
            asyncio.run(_s3_probe(env))
            return True

        _wait(ready, 90, proc)
        return proc, env
    (port,) = _ports(1)
    prefix = Path(os.environ.get("MLGATE_AZURITE_PREFIX", "/tmp/mlgate-azurite"))
    proc = subprocess.Popen(
        [str(prefix / "node_modules/.bin/azurite-blob"), "--blobHost", "127.0.0.1",
         "--blobPort", str(port), "-l", str(work / "azurite"), "--skipApiVersionCheck",
         "--disableTelemetry", "--silent"],
        stdout=log, stderr=log, start_new_session=True)
    _wait(lambda: _http_up(f"http://127.0.0.1:{port}/"), 60, proc)
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZ_ACCOUNT};")
    return proc, {"AZURE_STORAGE_CONNECTION_STRING": conn}


def _s3(env: dict[str, str]) -> Any:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=AioConfig(s3={"addressing_style": "path"}, max_pool_connections=20,
                         request_checksum_calculation="when_required",
                         response_checksum_validation="when_required"))


async def _s3_probe(env: dict[str, str]) -> None:
    async with _s3(env) as c:
        await c.create_bucket(Bucket="perf-probe")
        await c.delete_bucket(Bucket="perf-probe")


async def make_target(kind: str, env: dict[str, str]) -> str:
    name = f"perf-{uuid.uuid4().hex[:12]}"
    if kind == "azurite":
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient.from_connection_string(
            env["AZURE_STORAGE_CONNECTION_STRING"]
        ) as svc:
            await svc.create_container(name)
        return f"wasbs://{name}@{AZ_ACCOUNT}.blob.core.windows.net/mlartifacts"
    async with _s3(env) as c:
        await c.create_bucket(Bucket=name)
    return f"s3://{name}/mlartifacts"


async def _file_parts(path: Path, size: int) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk


async def direct(kind: str, env: dict[str, str], target: str, path: Path, part: int,
                 concurrency: int) -> tuple[float, float]:
    """Upload and download ``path`` with the SDK as mlgate does; MB/s both ways."""
    size = path.stat().st_size
    sem = asyncio.Semaphore(concurrency)
    if kind == "azurite":
        import base64
        import io

        from azure.storage.blob import BlobBlock
        from azure.storage.blob.aio import BlobServiceClient

        container = target[len("wasbs://"):].split("@")[0]
        async with BlobServiceClient.from_connection_string(
            env["AZURE_STORAGE_CONNECTION_STRING"], max_single_get_size=4 * MIB,
            max_chunk_get_size=4 * MIB,
        ) as svc:
            blob = svc.get_blob_client(container, "direct/file.bin")
            ids: list[str] = []
            tasks = []
            t0 = time.perf_counter()

            async def stage(bid: str, data: bytes) -> None:
                async with sem:
                    await blob.stage_block(bid, io.BytesIO(data), length=len(data))

            async for data in _file_parts(path, part):
                bid = base64.b64encode(f"{len(ids):06d}".encode()).decode()
                ids.append(bid)
                await sem.acquire()
                sem.release()
                tasks.append(asyncio.create_task(stage(bid, data)))
            await asyncio.gather(*tasks)
            await blob.commit_block_list([BlobBlock(block_id=b) for b in ids])
            up = size / (time.perf_counter() - t0) / 1e6
            digest = hashlib.sha256()
            t0 = time.perf_counter()
            downloader = await blob.download_blob(max_concurrency=1)
            async for chunk in downloader.chunks():
                digest.update(chunk)
            down = size / (time.perf_counter() - t0) / 1e6
            await blob.delete_blob()
        return up, down
    bucket = target[5:].split("/")[0]
    async with _s3(env) as c:
        t0 = time.perf_counter()
        created = await c.create_multipart_upload(Bucket=bucket, Key="direct/file.bin")
        uid = created["UploadId"]
        etags: dict[int, str] = {}

        async def send(n: int, data: bytes) -> None:
            try:
                resp = await c.upload_part(Bucket=bucket, Key="direct/file.bin", UploadId=uid,
                                           PartNumber=n, Body=data)
                etags[n] = resp["ETag"]
            finally:
                sem.release()

        tasks = []
        n = 0
        async for data in _file_parts(path, part):
            n += 1
            await sem.acquire()
            tasks.append(asyncio.create_task(send(n, data)))
        await asyncio.gather(*tasks)
        await c.complete_multipart_upload(
            Bucket=bucket, Key="direct/file.bin", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": k, "ETag": etags[k]} for k in sorted(etags)]})
        up = size / (time.perf_counter() - t0) / 1e6
        t0 = time.perf_counter()
        resp = await c.get_object(Bucket=bucket, Key="direct/file.bin")
        digest = hashlib.sha256()  # the same work as the gateway run's client does
        async with resp["Body"] as body:
            async for chunk in body.iter_chunks(MIB):
                digest.update(chunk)
        down = size / (time.perf_counter() - t0) / 1e6
        await c.delete_object(Bucket=bucket, Key="direct/file.bin")
    return up, down


class Sampler(threading.Thread):
    def __init__(self, pid: int, tmpdir: Path) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.tmpdir = tmpdir
        self.peak = 0
        self.phase = "upload"
        self.peaks: dict[str, int] = {}
        self.tmp_files: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs)
                self.peak = max(self.peak, rss)
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            except psutil.Error:
                pass
            self.tmp_files.update(str(p) for p in self.tmpdir.rglob("*"))
            time.sleep(0.05)


async def through_gateway(url: str, path: Path, sampler: Sampler) -> tuple[float, float]:
    size = path.stat().st_size
    expected = await asyncio.to_thread(_sha256_file, path)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        t0 = time.perf_counter()
        async with session.put(f"{url}{PROXY}/1/perf/artifacts/file.bin",
                               data=_file_parts(path, MIB),
                               headers={"Content-Length": str(size)}) as resp:
            assert resp.status == 200, await resp.text()
        up = size / (time.perf_counter() - t0) / 1e6
        sampler.phase = "download"
        digest = hashlib.sha256()
        t0 = time.perf_counter()
        async with session.get(f"{url}{PROXY}/1/perf/artifacts/file.bin") as resp:
            assert resp.status == 200
            header = resp.headers.get("X-MLgate-SHA256")
            async for chunk in resp.content.iter_chunked(MIB):
                digest.update(chunk)
        down = size / (time.perf_counter() - t0) / 1e6
    assert digest.hexdigest() == expected, "download differs"
    assert header == expected, f"X-MLgate-SHA256 {header} != {expected}"
    return up, down


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["moto", "seaweedfs", "azurite"], required=True)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlgate-objperf-") as tmp:
        work = Path(tmp)
        src = work / "src.bin"
        with src.open("wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MIB))
        store, env = start_store(args.store, work)
        gateway = None
        try:
            target = asyncio.run(make_target(args.store, env))
            d_up, d_down = asyncio.run(direct(args.store, env, target, src,
                                              args.part_mib * MIB, args.concurrency))
            (port,) = _ports(1)
            gw_tmp = work / "gateway-tmp"
            gw_tmp.mkdir()
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--backend-store-uri", f"sqlite:///{work / 'm.db'}",
                 "--artifacts-destination", target,
                 "--artifact-part-size", str(args.part_mib * MIB),
                 "--artifact-upload-concurrency", str(args.concurrency)],
                cwd=REPO, stdout=open(work / "gateway.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **env, "TMPDIR": str(gw_tmp)})
            url = f"http://127.0.0.1:{port}"
            _wait(lambda: _http_up(url + "/health"), 60, gateway)
            sampler = Sampler(gateway.pid, gw_tmp)
            idle = psutil.Process(gateway.pid).memory_info().rss
            sampler.start()
            g_up, g_down = asyncio.run(through_gateway(url, src, sampler))
            sampler.stop.set()
            sampler.join()
        finally:
            if gateway is not None:
                _stop(gateway)
            _stop(store)
    size = args.size_mib * MIB
    print(f"store={args.store} size={size} B part={args.part_mib} MiB "
          f"concurrency={args.concurrency}")
    print(f"direct  SDK     up {d_up:7.1f} MB/s   down {d_down:7.1f} MB/s")
    print(f"through gateway up {g_up:7.1f} MB/s   down {g_down:7.1f} MB/s   "
          f"({g_up / d_up:.0%} / {g_down / d_down:.0%} of direct)")
    print(f"gateway RSS idle {idle / MIB:.0f} MiB, peak {sampler.peak / MIB:.0f} MiB (upload "
          f"{sampler.peaks.get('upload', 0) / MIB:.0f}, download "
          f"{sampler.peaks.get('download', 0) / MIB:.0f}); "
          f"temporary files seen in its TMPDIR: {len(sampler.tmp_files)}")


if __name__ == "__main__":
    main()
