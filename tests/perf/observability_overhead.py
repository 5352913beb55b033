"""log-metric throughput with metrics and the access log on, and with both off.

Run by hand (not collected by pytest); needs ``wrk``::

    .venv/bin/python tests/perf/observability_overhead.py --clients 64 --duration 10 --repeat 7

The log-metric load of ``metric_throughput.py`` (wrk, 64 runs), driven by
``auth_overhead.py``'s harness, against mlgate processes on fresh SQLite files (or, with
``--pg DSN``, fresh PostgreSQL databases made through that server and dropped afterwards):

- ``off``: ``--no-metrics --access-log off``;
- ``text``: the defaults (metrics on, ``--access-log text``) plus ``--metrics-port``, whose
  ``/metrics`` is scraped once a second during the round, as a busy Prometheus would;
- ``json``: the same with ``--access-log json``;
- with ``--baseline CHECKOUT``, ``base``: another checkout's code with no flags (e.g. the
  commit before observability, `git worktree add /tmp/base <commit>`).

The access log goes to a file, as it would to a journal. The modes take turns, each round
starting with the next one (the first run of a round tends to be slower), and the medians are
printed with each mode's req/s and gateway CPU per request relative to ``off``. ``--auth``
runs every mode with ``--auth`` and a team member's Basic credentials.

``--together`` runs each mode at the same moment as ``off`` (two wrk at once, the two
gateways sharing the machine) instead of in turn, as ``auth_overhead.py --together`` does:
a moment's slowdown of the machine then hits both alike, and "vs off" is the median of the
pairs' ratios.

``--instructions N`` counts instead the instructions of N requests per mode under callgrind
(``auth_instructions.py``'s harness, 16 concurrent clients): the figure that does not drift
with what else the machine runs (needs ``valgrind``; the access-log lines' writes happen on
the serving thread and are counted, the scrapes are not). Its figures overstate what works
in batches on a timer (the access log's and the audit log's writes, the metric batcher):
under valgrind the server runs ~50 times slower, so each batch carries fewer requests.

``--sample S`` samples instead the serving thread of each mode's server under the wrk
load for S seconds with py-spy (250 Hz) and prints the share of samples spent in the
observability code itself: the access log (formatting and writing), counting the request,
its id, the scrapes. A sampled share is not moved by what else the machine runs, which on a
busy 2-core machine moves req/s by more than the few percent at stake.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from auth_overhead import Sample, _member, _runs, _start, _stop, _wrk
from conftest import free_port
from metric_throughput import _drop_pg, _fresh_pg

MODES = {
    "off": ["--no-metrics", "--access-log", "off"],
    "text": ["--access-log", "text"],
    "json": ["--access-log", "json"],
    # one of the two alone, to tell their costs apart
    "metrics": ["--access-log", "off"],
    "log": ["--no-metrics", "--access-log", "text"],
}


def _scraping(port: int, stop: threading.Event) -> None:
    """GET /metrics once a second until ``stop``."""
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            resp.read()


def _scraped_load(url: str, workdir: Path, runs: list[str], auth: str | None, clients: int,
                  duration: float, pid: int, metrics_port: int | None) -> Sample:
    """The wrk load, with ``/metrics`` on ``metrics_port`` (if any) scraped meanwhile."""
    stop = threading.Event()
    scraper = None
    if metrics_port:
        scraper = threading.Thread(target=_scraping, args=(metrics_port, stop))
        scraper.start()
    try:
        return _wrk(url, workdir, runs, auth, clients, duration, pid)
    finally:
        stop.set()
        if scraper:
            scraper.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--modes", default="off,text,json")
    parser.add_argument("--auth", action="store_true")
    parser.add_argument("--pg", metavar="DSN", default=None)
    parser.add_argument("--baseline", metavar="CHECKOUT", default=None)
    parser.add_argument("--instructions", metavar="N", type=int, default=0)
    parser.add_argument("--together", action="store_true")
    parser.add_argument("--sample", metavar="S", type=float, default=0)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m in MODES]
    if "off" not in modes:
        modes.insert(0, "off")
    if args.baseline:
        modes.append("base")
    if args.instructions:
        count_instructions(args, modes)
        return
    if args.sample:
        sample_shares(args, modes)
        return
    dbs = {m: asyncio.run(_fresh_pg(args.pg)) if args.pg else None for m in modes}
    results: dict[str, list[Sample]] = {m: [] for m in modes}
    paired: dict[str, list[tuple[float, float]]] = {}  # --together: (req/s, cpu) ratios
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            servers = {}
            for mode in modes:
                workdir = Path(tmp) / mode
                workdir.mkdir()
                metrics_port = free_port() if mode in ("text", "json", "metrics") else None
                extra = [] if mode == "base" else list(MODES[mode])
                if metrics_port:
                    extra += ["--metrics-port", str(metrics_port)]
                proc, url = _start(workdir, args.auth, extra, dbs[mode],
                                   args.baseline if mode == "base" else None)
                procs.append(proc)
                if args.auth:
                    auth, _, runs = _member(url, args.runs)
                else:
                    auth, runs = None, _runs(url, None, args.runs)
                servers[mode] = (url, workdir, runs, auth, proc.pid, metrics_port)
            def run(mode: str) -> Sample:
                url, workdir, runs, auth, pid, metrics_port = servers[mode]
                sample = _scraped_load(url, workdir, runs, auth, args.clients, args.duration,
                                       pid, metrics_port)
                results[mode].append(sample)
                print(f"  {mode:5} {sample.result.rps:9.0f}/s p50 {sample.result.p50_ms:6.2f}"
                      f" ms p99 {sample.result.p99_ms:6.2f} ms cpu {sample.cpu_us:6.1f} us"
                      f"/req fail {sample.result.fail}", flush=True)
                return sample

            order = list(modes)
            for _ in range(args.repeat):
                if args.together:
                    for mode in modes[1:]:
                        with ThreadPoolExecutor(2) as pool:
                            off, on = pool.map(run, ["off", mode])
                        paired.setdefault(mode, []).append(
                            (on.result.rps / off.result.rps, on.cpu_us / off.cpu_us))
                    continue
                for mode in order:
                    run(mode)
                order = order[1:] + order[:1]
    finally:
        for proc in procs:
            _stop(proc)
        for db in dbs.values():
            if db is not None:
                asyncio.run(_drop_pg(args.pg, db))
    base_rps = statistics.median(s.result.rps for s in results["off"])
    base_cpu = statistics.median(s.cpu_us for s in results["off"])
    store = "postgresql" if args.pg else "sqlite"
    print(f"\nlog-metric, {args.clients} clients, {args.duration:.0f} s x {args.repeat}, "
          f"{store}{', auth on' if args.auth else ''} (medians; {time.strftime('%F %T')})")
    print(f"{'mode':6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'fail':>6} {'vs off':>7} "
          f"{'cpu us/req':>10} {'cpu vs off':>10}")
    for mode, samples in results.items():
        rps = statistics.median(s.result.rps for s in samples)
        cpu = statistics.median(s.cpu_us for s in samples)
        vs_rps, vs_cpu = rps / base_rps, cpu / base_cpu
        if mode in paired:  # --together: the medians of the pairs' ratios
            vs_rps = statistics.median(r for r, _ in paired[mode])
            vs_cpu = statistics.median(c for _, c in paired[mode])
        print(f"{mode:6} {rps:9.0f} {statistics.median(s.result.p50_ms for s in samples):8.2f}"
              f" {statistics.median(s.result.p99_ms for s in samples):8.2f}"
              f" {sum(s.result.fail for s in samples):6d} {vs_rps:7.3f}"
              f" {cpu:10.1f} {vs_cpu:10.3f}")
        print("       rounds: " + " ".join(f"{s.result.rps:.0f}" for s in samples))


def count_instructions(args: argparse.Namespace, modes: list[str]) -> None:
    from auth_instructions import measure

    counts: dict[str, tuple[float, float]] = {}
    for mode in modes:
        db = asyncio.run(_fresh_pg(args.pg)) if args.pg else None
        try:
            extra = [] if mode == "base" else list(MODES[mode])
            if mode in ("text", "json", "metrics"):
                extra += ["--metrics-port", str(free_port())]
            total, serving, _ = measure("basic" if args.auth else "off", db,
                                        args.instructions, extra=extra,
                                        code=args.baseline if mode == "base" else None)
            counts[mode] = (total, serving)
            print(f"  {mode:5} {total:9.0f} {serving:9.0f}", flush=True)
        finally:
            if db is not None:
                asyncio.run(_drop_pg(args.pg, db))
    print(f"\nlog-metric, {args.instructions} requests, {'postgresql' if args.pg else 'sqlite'}"
          f"{', auth on' if args.auth else ''}: instructions per request")
    print(f"{'mode':6} {'all':>9} {'serving':>9} {'vs off':>7}")
    for mode, (total, serving) in counts.items():
        print(f"{mode:6} {total:9.0f} {serving:9.0f} {serving / counts['off'][1]:7.3f}")


# Where a sampled stack is in observability code: (file, function or None for any). The
# request's own middleware (observe_request, identify) wraps the whole request, so it counts
# only when it is the innermost frame.
_OBSERVABILITY = (
    ("access_log.py", None), ("request_id.py", None), ("collectors.py", None),
    ("prometheus_client", None), ("logging/__init__.py", None),
    ("web_protocol.py", "log_access"), ("metrics.py", "observe"),
    ("metrics.py", "metrics_handler"), ("distribution.py", None),
)
_OUTERMOST = ("observe_request", "identify")


def _frame_is_observability(frame: str) -> bool:
    function, _, where = frame.partition(" (")
    function = function.rsplit(".", 1)[-1]
    return any(path in where and (name is None or function == name)
               for path, name in _OBSERVABILITY)


def sample_shares(args: argparse.Namespace, modes: list[str]) -> None:
    """py-spy's samples of each mode's serving thread under the load, in turn."""
    print(f"log-metric, {args.clients} clients, {args.sample:.0f} s per mode"
          f"{', auth on' if args.auth else ''}: share of the serving thread's samples in "
          f"observability code ({time.strftime('%F %T')})")
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            metrics_port = free_port() if mode in ("text", "json", "metrics") else None
            extra = list(MODES[mode]) + (["--metrics-port", str(metrics_port)]
                                         if metrics_port else [])
            proc, url = _start(workdir, args.auth, extra)
            try:
                if args.auth:
                    auth, _, runs = _member(url, args.runs)
                else:
                    auth, runs = None, _runs(url, None, args.runs)
                out = workdir / "samples.txt"
                spy = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "-p",
                     str(proc.pid), "-d", str(round(args.sample)), "-r", "250", "-f", "raw",
                     "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                sample = _scraped_load(url, workdir, runs, auth, args.clients, args.sample,
                                       proc.pid, metrics_port)
                spy.wait(60)
                lines = out.read_text().splitlines()
            finally:
                _stop(proc)
        total, by_place = _shares(lines)
        inside = sum(by_place.values())
        print(f"\n{mode:5} {sample.result.rps:.0f} req/s, {total} samples: "
              f"{100 * inside / max(total, 1):.2f}% in observability code")
        for where, n in sorted(by_place.items(), key=lambda kv: -kv[1]):
            print(f"  {100 * n / max(total, 1):5.2f}%  {where}")


def _shares(lines: list[str]) -> tuple[int, dict[str, int]]:
    """(the serving thread's samples, those in observability code by innermost place)."""
    total = 0
    by_place: dict[str, int] = {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        if not any("gateway/serving.py" in f for f in frames):
            continue  # another thread (SQLite's, the executor's): not the event loop's
        total += n
        hit = next((f for f in frames if _frame_is_observability(f)), None)
        if hit is None and frames[-1].split(" (")[0].rsplit(".", 1)[-1] in _OUTERMOST:
            hit = frames[-1]
        if hit is not None:
            place = hit.partition(" (")[2].split(":")[0] + " " + hit.split(" (")[0]
            by_place[place] = by_place.get(place, 0) + n
    return total, by_place

if __name__ == "__main__":
    main()
