"""Instructions per log-metric request with authentication off, with HTTP Basic and with an
API token, counted by valgrind's callgrind: a repeatable figure where req/s on a shared
machine is not (these machines drift 10-25% between rounds of the same server).

Run by hand (not collected by pytest); needs ``valgrind`` (Debian package)::

    .venv/bin/python tests/perf/auth_instructions.py [--requests 2000] [--pg DSN]
        [--modes off,basic,token] [--keep DIR] [--cache-sim]

Each mode starts its own mlgate process under callgrind with instrumentation off, makes a
team member, a token and 64 runs, sends 500 warm-up requests, then counts the instructions
of ``--requests`` log-metric requests (16 concurrent aiohttp clients; the wait for the
audit log's linger included). Prints instructions per request in all and on the serving
thread (the event loop's: the one that bounds throughput; SQLite's audit inserts run on a
thread of their own), and auth off's serving-thread count relative to each mode's. The
count misses what a request costs in cache misses and in the database server's process,
so it is the floor of auth's cost, not its measure in req/s (``auth_overhead.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from auth_overhead import API, _member, _runs, _start
from metric_throughput import _drop_pg, _fresh_pg


async def _load(url: str, auth: str | None, runs: list[str], requests: int) -> None:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    sent = 0
    async with aiohttp.ClientSession() as session:
        async def client() -> None:
            nonlocal sent
            while sent < requests:
                sent += 1
                body = (f'{{"run_id":"{runs[sent % len(runs)]}","key":"loss","value":{sent},'
                        f'"timestamp":{sent},"step":{sent}}}')
                async with session.post(url + API + "/runs/log-metric", data=body,
                                        headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"{resp.status}: {await resp.text()}")
                    await resp.read()

        await asyncio.gather(*(client() for _ in range(16)))


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def measure(mode: str, store_uri: str | None, requests: int, keep: Path | None = None,
            cache_sim: bool = False, extra: Sequence[str] = (), code: str | None = None,
            label: str | None = None) -> tuple[float, float, dict[str, float]]:
    """(instructions per request in all, on the serving thread, and the serving thread's
    per-request counts of every event callgrind counted: with ``cache_sim`` also its
    simulated cache misses); ``keep``: a folder to copy the serving thread's callgrind
    profile to, as ``<label or mode>.cg`` (for callgrind_annotate). ``extra``: more flags
    for ``mlgate serve``; ``code``: a checkout to run instead (see ``auth_overhead._start``)."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proc, url = _start(
            workdir, mode != "off", ["--sqlite-synchronous", "full", *extra], store_uri,
            code=code, wrapper=["valgrind", "--tool=callgrind", "--instr-atstart=no",
                     *(["--cache-sim=yes"] if cache_sim else []),
                     "--separate-threads=yes", f"--callgrind-out-file={workdir}/cg.%p"],
            timeout=300)
        try:
            auth = None
            if mode == "off":
                runs = _runs(url, None, 64)
            else:
                basic, token, runs = _member(url, 64)
                auth = token if mode == "token" else basic
            asyncio.run(_load(url, auth, runs, 500))
            time.sleep(0.5)
            _control("-i", "on", str(proc.pid))
            asyncio.run(_load(url, auth, runs, requests))
            time.sleep(0.6)  # the audit log's linger (0.25 s) and its write
            _control("-i", "off", str(proc.pid))
            _control("-d", str(proc.pid))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(120)
        threads: dict[str, int] = {}
        serving: dict[str, float] = {}
        for part in workdir.glob("cg.*-*"):
            text = part.read_text()
            totals = re.search(r"^totals: (.+)$", text, re.MULTILINE)
            counts = [int(n) for n in totals[1].split()] if totals else [0]
            thread = part.name.rsplit("-", 1)[1]
            threads[thread] = threads.get(thread, 0) + counts[0]  # Ir, the first event
            events = re.search(r"^events: (.+)$", text, re.MULTILINE)
            if thread == "01" and events and totals:
                for name, count in zip(events[1].split(), counts, strict=False):
                    serving[name] = serving.get(name, 0) + count / requests
            # the dump's profile (cg.<pid>.1-01), not the empty one written at exit
            if keep is not None and thread == "01" and counts[0]:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(part, keep / f"{label or mode}.cg")
        return sum(threads.values()) / requests, threads.get("01", 0) / requests, serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--modes", default="off,basic,token")
    parser.add_argument("--pg", metavar="DSN", default=None,
                        help="run on PostgreSQL: a fresh database per mode, made through this DSN")
    parser.add_argument("--keep", metavar="DIR", type=Path, default=None,
                        help="copy each mode's serving-thread profile to DIR/<mode>.cg")
    parser.add_argument("--cache-sim", action="store_true",
                        help="also simulate the caches (callgrind --cache-sim=yes) and print "
                             "the serving thread's misses per request")
    args = parser.parse_args()
    results: dict[str, tuple[float, float, dict[str, float]]] = {}
    for mode in args.modes.split(","):
        db = asyncio.run(_fresh_pg(args.pg)) if args.pg else None
        try:
            results[mode] = measure(mode, db, args.requests, args.keep, args.cache_sim)
        finally:
            if db is not None:
                asyncio.run(_drop_pg(args.pg, db))
    print(f"log-metric, {args.requests} requests, {'postgresql' if args.pg else 'sqlite'}: "
          "instructions per request")
    print(f"{'mode':6} {'all':>9} {'serving':>9} {'off/mode':>9}")
    base = results["off"][1] if "off" in results else 0.0
    for mode, (total, serving, _) in results.items():
        ratio = f"{base / serving:9.3f}" if base else f"{'-':>9}"
        print(f"{mode:6} {total:9.0f} {serving:9.0f} {ratio}")
    if args.cache_sim:  # I1mr: first-level instruction cache read misses, D1mr/D1mw: data
        print("serving thread, per request: " + ", ".join(
            f"{mode} " + " ".join(f"{k}={v:.0f}" for k, v in events.items() if k != "Ir")
            for mode, (_, _, events) in results.items()))


if __name__ == "__main__":
    main()
