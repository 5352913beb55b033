"""CPU instructions a server spends per log-metric request: mlgate on each store against the
bare aiohttp "hello" server, counted by valgrind's callgrind.

Run by hand (not collected by pytest); needs ``valgrind`` (Debian package)::

    python tests/perf/instructions_per_request.py [--requests 3200] [--clients 64]
        [--stores sqlite,postgres,mariadb] [--servers hello,mlgate]

Requests per second move by 10–30% between rounds on a shared machine, and by 4× between
machines, which hides a change of a few percent in the gateway's own work. An instruction
count does not move: each server runs under ``valgrind --tool=callgrind`` with counting
off, gets its runs and a warm-up, and counts only while exactly ``--requests`` log-metric
requests (each its own distinct point, over 64 runs, from ``--clients`` keep-alive
connections) are answered; two runs of the hello server agreed to 0.4%. It counts the
server process only (not the database's), and callgrind runs it 50× slower, so batches
form as under load.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metric_throughput import API, start_target, stop_target

_COUNT = ("valgrind", "--tool=callgrind", "--instr-atstart=no")


async def _drive(url: str, runs: list[str], requests: int, clients: int, first: int) -> None:
    """Exactly ``requests`` log-metric requests (a multiple of ``clients``), each answered 200."""
    async def client(c: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
            for j in range(requests // clients):
                n = first + j * clients + c
                body = {"run_id": runs[n % len(runs)], "key": "loss", "value": n,
                        "timestamp": n, "step": n}
                async with http.post(url + API + "/runs/log-metric", json=body) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"{resp.status}: {await resp.text()}")
                    await resp.read()

    await asyncio.gather(*(client(c) for c in range(clients)))


def _control(pid: int, *option: str) -> None:
    subprocess.run(["callgrind_control", *option, str(pid)], check=True, capture_output=True)


def measure(kind: str, store: str, args: argparse.Namespace) -> float:
    """Instructions per request of one server."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"mlgate-ipr-{os.getpid()}-{kind}-{store}"
    wrap = (*_COUNT, f"--callgrind-out-file={out}.%p")
    target = start_target(kind, store, args, wrap)
    try:
        pid = target.server.proc.pid
        url = target.server.url
        asyncio.run(_drive(url, target.runs, args.clients * 10, args.clients, 0))
        _control(pid, "-i", "on")
        asyncio.run(_drive(url, target.runs, args.requests, args.clients, 1_000_000))
        _control(pid, "-i", "off")
        _control(pid, "-d")
        time.sleep(1)
        total = 0
        for path in glob.glob(f"{out}.*"):
            with open(path) as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        total = max(total, int(line.split()[1]))
            os.unlink(path)
        requests: int = args.requests
        return total / requests
    finally:
        stop_target(target, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3200)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--stores", default="sqlite,postgres,mariadb")
    ap.add_argument("--servers", default="hello,mlgate")
    ap.add_argument("--pg-dsn", default=os.environ.get(
        "MLGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--my-dsn", default=os.environ.get(
        "MLGATE_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306"))
    args = ap.parse_args()
    args.mlflow_bin = "mlflow"  # start_target's; stock is not measured here
    args.requests -= args.requests % args.clients
    rows = []
    if "hello" in args.servers.split(","):
        rows.append(("hello", "-", measure("hello", "-", args)))
        print(f"  hello: {rows[-1][2] / 1000:,.1f} kIr per request", flush=True)
    if "mlgate" in args.servers.split(","):
        for store in args.stores.split(","):
            rows.append(("mlgate", store, measure("mlgate", store, args)))
            print(f"  mlgate {store}: {rows[-1][2] / 1000:,.1f} kIr per request", flush=True)
    hello = rows[0][2] if rows and rows[0][0] == "hello" else None
    print(f"\n{args.requests} log-metric requests from {args.clients} connections, counted by"
          " callgrind")
    print(f"{'server':7} {'store':9} {'kIr/request':>12} {'hello / it':>11}")
    for kind, store, ir in rows:
        ratio = f"{hello / ir:.2f}" if hello else ""
        print(f"{kind:7} {store:9} {ir / 1000:12,.1f} {ratio:>11}")


if __name__ == "__main__":
    main()
