"""Artifact proxy throughput and memory: mlgate vs a bare aiohttp server vs stock MLflow.

Run by hand (not collected by pytest)::

    python tests/perf/artifact_throughput.py --size-mib 1024 [--repeat 3] [--mlflow-bin PATH]

Each server runs as its own process with its own TMPDIR. The script uploads a random file
of the given size with a streaming PUT, downloads it with a streaming GET, checks sha256
both ways (the stored file on disk, and the bytes received), samples the server process
tree's RSS every 50 ms, and watches the server's TMPDIR for files spooled outside the
destination. It prints medians over ``--repeat`` rounds.

The bare server is the ceiling: aiohttp streaming the body straight to a file and back, no
validation, no atomic rename.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import aiohttp
import psutil
from aiohttp import web

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
PROXY = "/api/2.0/mlflow-artifacts/artifacts"


# -- the bare server (runs in a child process: `--bare-server PORT DIR`) ------------------


def _bare_app(root: Path) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        path = root / request.match_info["name"]
        with path.open("wb") as f:
            async for chunk in request.content.iter_chunked(MIB):
                await asyncio.to_thread(f.write, chunk)
        return web.Response()

    async def get(request: web.Request) -> web.StreamResponse:
        path = root / request.match_info["name"]
        resp = web.StreamResponse()
        resp.content_length = path.stat().st_size
        await resp.prepare(request)
        with path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, MIB):
                await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_put("/blob/{name}", put)
    app.router.add_get("/blob/{name}", get)
    app.router.add_get("/health", health)
    return app


# -- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    cmd: list[str]
    dest: Path  # the artifacts destination the stored file lands under
    tmpdir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None

    def url(self, key: str) -> str:
        if self.name == "bare aiohttp":
            return f"http://127.0.0.1:{self.port}/blob/{key.replace('/', '_')}"
        return f"http://127.0.0.1:{self.port}{PROXY}/{key}"

    def stored(self, key: str) -> Path:
        if self.name == "bare aiohttp":
            return self.dest / key.replace("/", "_")
        return self.dest / key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


SERVERS = ("mlgate", "bare aiohttp", "stock mlflow")


def _servers(work: Path, mlflow_bin: str | None, only: list[str]) -> list[Server]:
    out = []
    for name in SERVERS:
        if name.split()[0] not in only:
            continue
        slug = name.split()[0]
        dest, tmp = work / f"{slug}-artifacts", work / f"{slug}-tmp"
        dest.mkdir()
        tmp.mkdir()
        port = _free_port()
        if name == "mlgate":
            cmd = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--backend-store-uri", f"sqlite:///{work}/mlgate.db",
                   "--artifacts-destination", str(dest), "--log-level", "warning"]
        elif name == "bare aiohttp":
            cmd = [sys.executable, __file__, "--bare-server", str(port), str(dest)]
        else:
            if mlflow_bin is None:
                print("note: stock mlflow not found (--mlflow-bin); skipping it", flush=True)
                continue
            cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
                   "--artifacts-destination", str(dest)]
        # No job runner and huey consumers: they would only add idle processes to the tree.
        env = {"TMPDIR": str(tmp), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")]))}
        out.append(Server(name, cmd, dest, tmp, port, env))
    return out


def _find_mlflow(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    beside = Path(sys.executable).with_name("mlflow")
    if beside.exists():
        return str(beside)
    return shutil.which("mlflow")


async def _start(server: Server, timeout: float = 180.0) -> None:
    env = {**os.environ, **server.env}
    server.proc = proc = await asyncio.create_subprocess_exec(
        *server.cmd, cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{server.name} exited with {proc.returncode}:\n{err}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{server.port}/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.name} did not become healthy in {timeout:.0f}s")


async def _stop(server: Server) -> None:
    proc = server.proc
    if proc is None or proc.returncode is not None:
        return
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(proc.pid).children(recursive=True)
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    for child in children:  # stock's uvicorn workers, if any outlived the parent
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


# -- sampling ---------------------------------------------------------------------------


class Sampler:
    """Samples the process tree's total RSS and the size of the server's TMPDIR every 50 ms
    on a thread, so the event loop doing the transfer is not slowed by it."""

    def __init__(self, pid: int, tmpdir: Path) -> None:
        self._root = psutil.Process(pid)
        self._tmpdir = tmpdir
        self.peak_rss = 0
        self.peak_tmp_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        for proc in [self._root, *self._root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total

    def cpu(self) -> float:
        """CPU seconds (user + system, all threads) used so far by the process tree: less
        swayed than MB/s by other work on a shared machine."""
        total = 0.0
        for proc in [self._root, *self._root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def _tmp_bytes(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self._tmpdir):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.peak_rss = max(self.peak_rss, self.rss())
            self.peak_tmp_bytes = max(self.peak_tmp_bytes, self._tmp_bytes())
            self._stop.wait(0.05)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- transfers --------------------------------------------------------------------------


def _make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(MIB, remaining))
            f.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, MIB):
            yield chunk


async def _upload(http: aiohttp.ClientSession, url: str, source: Path) -> float:
    size = source.stat().st_size
    start = time.perf_counter()
    # Content-Length as the MLflow client sends it; the body is streamed from the file.
    async with http.put(url, data=_file_chunks(source),
                        headers={"Content-Length": str(size),
                                 "Content-Type": "application/octet-stream"}) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"PUT {url}: {resp.status} {await resp.text()}")
    return time.perf_counter() - start


async def _download(http: aiohttp.ClientSession, url: str) -> tuple[float, str, int]:
    digest = hashlib.sha256()
    received = 0
    start = time.perf_counter()
    async with http.get(url) as resp:
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: {resp.status} {await resp.text()}")
        async for chunk in resp.content.iter_chunked(MIB):
            digest.update(chunk)
            received += len(chunk)
    return time.perf_counter() - start, digest.hexdigest(), received


@dataclass
class Result:
    server: str
    up: list[float] = field(default_factory=list)  # MB/s
    down: list[float] = field(default_factory=list)
    up_cpu: list[float] = field(default_factory=list)  # server CPU seconds per GiB uploaded
    peak_rss: int = 0
    idle_rss: int = 0
    sha_ok: bool = True
    tmp_bytes: int = 0
    error: str | None = None


async def _bench(server: Server, source: Path, sha: str, repeat: int) -> Result:
    result = Result(server.name)
    size = source.stat().st_size
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    try:
        await _start(server)
        assert server.proc is not None
        await asyncio.sleep(1.0)  # let startup work (migrations, imports) settle
        with Sampler(server.proc.pid, server.tmpdir) as sampler:
            result.idle_rss = sampler.rss()
            async with aiohttp.ClientSession(timeout=timeout) as http:
                for i in range(repeat):
                    key = f"perf/{i}/blob.bin"
                    cpu = sampler.cpu()
                    up = await _upload(http, server.url(key), source)
                    result.up_cpu.append((sampler.cpu() - cpu) * 1024 * MIB / size)
                    stored = server.stored(key)
                    stored_ok = await asyncio.to_thread(_sha256_file, stored) == sha
                    down, got, received = await _download(http, server.url(key))
                    result.sha_ok &= stored_ok and got == sha and received == size
                    result.up.append(size / MIB / up)
                    result.down.append(size / MIB / down)
                    stored.unlink()
        result.peak_rss = sampler.peak_rss
        result.tmp_bytes = sampler.peak_tmp_bytes
    except (OSError, RuntimeError, aiohttp.ClientError, TimeoutError) as exc:
        # Report the failure in the table and go on with the other servers.
        result.error = f"{type(exc).__name__}: {exc}"
        result.sha_ok = False
    finally:
        await _stop(server)
    return result


def _table(results: list[Result], size_mib: int, repeat: int) -> str:
    head = (f"{'server':<14} {'up MB/s':>9} {'up CPU s/GiB':>13} {'down MB/s':>10} "
            f"{'peak RSS MB':>12} "
            f"{'idle RSS MB':>12} {'tmp outside dest':>17} {'sha256 ok':>10}")
    lines = [f"{size_mib} MiB file, median of {repeat}", head, "-" * len(head)]
    for r in results:
        if r.error and not r.up:
            lines.append(f"{r.server:<14} failed: {r.error}")
            continue
        tmp = f"{r.tmp_bytes / MIB:.0f} MiB" if r.tmp_bytes else "none"
        lines.append(
            f"{r.server:<14} {statistics.median(r.up):>9.0f} "
            f"{statistics.median(r.up_cpu):>13.2f} {statistics.median(r.down):>10.0f} "
            f"{r.peak_rss / MIB:>12.0f} {r.idle_rss / MIB:>12.0f} {tmp:>17} "
            f"{'yes' if r.sha_ok else 'NO':>10}"
        )
        if r.error:
            lines.append(f"{'':<14} then failed: {r.error}")
    by_name = {r.server: r for r in results if r.up}
    if "mlgate" in by_name and "bare aiohttp" in by_name:
        gate, bare = by_name["mlgate"], by_name["bare aiohttp"]
        lines.append(f"mlgate / bare aiohttp: up {_ratio(gate.up, bare.up)}, "
                     f"down {_ratio(gate.down, bare.down)}")
    return "\n".join(lines)


def _ratio(ours: list[float], ceiling: list[float]) -> str:
    return f"{statistics.median(ours) / statistics.median(ceiling):.0%}"


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mlgate-perf-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


async def _main(args: argparse.Namespace) -> int:
    size = args.size_mib * MIB
    with _workdir(args.keep) as work:
        source = work / "source.bin"
        print(f"generating {args.size_mib} MiB of random data in {work} ...", flush=True)
        sha = await asyncio.to_thread(_make_file, source, size)
        results = []
        mlflow_bin = _find_mlflow(args.mlflow_bin) if "stock" in args.servers else None
        for server in _servers(work, mlflow_bin, args.servers):
            print(f"benchmarking {server.name} ...", flush=True)
            results.append(await _bench(server, source, sha, args.repeat))
        print()
        print(_table(results, args.size_mib, args.repeat))
        return 0 if all(r.sha_ok for r in results) else 1


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-server":
        web.run_app(_bare_app(Path(sys.argv[3])), host="127.0.0.1", port=int(sys.argv[2]),
                    print=None, access_log=None)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mlflow-bin", help="the stock `mlflow` executable (default: the "
                        "one next to this Python, else on PATH)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--servers", nargs="+", choices=[n.split()[0] for n in SERVERS],
                        default=[n.split()[0] for n in SERVERS],
                        help="which servers to run (default: all three)")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
