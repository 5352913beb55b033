"""A 256 MiB artifact goes through a real ``python -m gateway serve`` in both directions
without the server's memory growing with it: bytes stream, nothing is buffered whole."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

MIB = 1024 * 1024
SIZE = 256 * MIB
# Buffers in flight are a few MiB (the store batches ~1 MiB, aiohttp's reader pauses at
# 128 KiB); anything near the file's size would mean a whole-body buffer somewhere.
MAX_GROWTH = 64 * MIB
REPO = Path(__file__).resolve().parents[2]
URL = "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/big.bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path}/m.db",
        "--artifacts-destination", str(tmp_path / "art"), "--log-level", "warning",
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ,
             "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if proc.returncode is not None:
                    err = await proc.stderr.read() if proc.stderr else b""
                    pytest.fail(f"gateway exited {proc.returncode}: {err.decode()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/health") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("gateway did not start")
        yield base, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class _PeakRss:
    """The process's peak RSS, sampled every 20 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.baseline = self._proc.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()


def _block(i: int) -> bytes:
    # Cheap, varied content that is not held anywhere: block i is rebuilt when needed.
    return hashlib.sha256(i.to_bytes(8, "big")).digest() * (MIB // 32)


async def _stream(digest: hashlib._Hash) -> AsyncIterator[bytes]:
    for i in range(SIZE // MIB):
        block = _block(i)
        digest.update(block)
        yield block


async def test_256mib_round_trip_in_constant_memory(gateway: tuple[str, int],
                                                    tmp_path: Path) -> None:
    base, pid = gateway
    rss = _PeakRss(pid)
    sent = hashlib.sha256()
    received = hashlib.sha256()
    size = 0
    timeout = aiohttp.ClientTimeout(total=240)
    with rss.sampling():
        async with aiohttp.ClientSession(base, timeout=timeout) as http:
            async with http.put(URL, data=_stream(sent),
                                headers={"Content-Length": str(SIZE)}) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(URL) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Length"] == str(SIZE)
                async for chunk in resp.content.iter_chunked(MIB):
                    received.update(chunk)
                    size += len(chunk)
    assert size == SIZE
    assert received.hexdigest() == sent.hexdigest()
    assert (tmp_path / "art/1/run/artifacts/big.bin").stat().st_size == SIZE
    growth = rss.peak - rss.baseline
    assert growth < MAX_GROWTH, f"server RSS grew by {growth / MIB:.0f} MiB"
