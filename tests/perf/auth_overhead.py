"""log-metric throughput with authentication off, with HTTP Basic and with an API token.

Run by hand (not collected by pytest); needs ``wrk``::

    .venv/bin/python tests/perf/auth_overhead.py --clients 64 --duration 10

Two mlgate processes on fresh SQLite files (or, with ``--pg DSN``, fresh PostgreSQL databases
made through that server and dropped afterwards): one without auth,
one with ``--auth``; the second is driven once with a team member's Basic credentials and
once with the member's token, using the wrk Lua driver of ``metric_throughput.py`` plus an
Authorization header. The modes take turns, each round starting with the next one.
Prints requests/s, p50/p99 latency and failures, and each auth mode relative to auth off;
also the server's CPU time per request (from /proc, its whole process session)
and auth off's relative to it: the gateway is CPU-bound under this load, so that ratio is
what req/s tends to, with less noise; the gateway's busy share (CPU seconds per second: below 100% it waits, for the database
mostly), PostgreSQL's CPU time per request (all its processes; 0 on SQLite) and the
machine's idle share during the run.

With ``--together`` each auth mode runs at the same moment as auth off (two wrk at once, the
two gateways sharing the machine) instead of in turn: a moment's slowdown of the machine
then hits both alike, and 'vs off' is the median of the pairs' req/s ratios. The two
gateways get roughly equal CPU time (the busy column says how equal), so that ratio comes
near the CPU-per-request ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import free_port
from metric_throughput import LUA, Result, _drop_pg, _fresh_pg, _ms, _wait_healthy

API = "/api/2.0/mlflow"
ADMIN, PASSWORD = "perf-admin", "perf-admin-password"
USER = "perf-user"  # a member of the default team; same password


def _start(workdir: Path, auth: bool, extra: list[str], store_uri: str | None = None,
           code: str | None = None, wrapper: Sequence[str] = (),
           timeout: float = 60) -> tuple[subprocess.Popen[bytes], str]:
    """An mlgate process; ``code``: a checkout whose gateway/auth/backends it runs;
    ``wrapper``: a command that runs it (valgrind, in auth_instructions.py)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGATE_"))}
    if code:
        env["PYTHONPATH"] = code
    cmd = [*wrapper, sys.executable, "-m", "gateway", "serve", "--port", str(port),
           "--backend-store-uri", store_uri or f"sqlite:///{workdir / 'm.db'}",
           "--artifacts-destination", str(workdir / "a"), *extra]
    if auth:
        cmd += ["--auth", "--admin-username", ADMIN]
        env["MLGATE_ADMIN_PASSWORD"] = PASSWORD
    log = open(workdir / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, proc, timeout)
    return proc, url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def _post(url: str, path: str, body: dict[str, Any], auth: str | None) -> dict[str, Any]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", auth)
    with urllib.request.urlopen(req, timeout=30) as resp:
        out: dict[str, Any] = json.load(resp)
        return out


def _runs(url: str, auth: str | None, n: int) -> list[str]:
    exp = _post(url, API + "/experiments/create", {"name": f"perf{time.time_ns()}"}, auth)
    return [_post(url, API + "/runs/create", {"experiment_id": exp["experiment_id"]},
                  auth)["run"]["info"]["run_id"] for _ in range(n)]


def _cpu_seconds(match: Callable[[str, list[str]], bool]) -> float:
    """User + system CPU time used so far by the processes for which ``match(name, fields)``
    holds: their command name and the fields of /proc/<pid>/stat after it."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
        except OSError:
            continue  # gone meanwhile
        fields = rest.split()
        if match(head.partition("(")[2], fields):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _session_cpu_seconds(sid: int) -> float:
    """CPU time used so far by the gateway ``sid`` and the processes of its session."""
    return _cpu_seconds(lambda _, fields: int(fields[3]) == sid)


def _postgres_cpu_seconds() -> float:
    """CPU time used so far by every PostgreSQL server process on the machine (the other
    databases' backends are idle during a run)."""
    return _cpu_seconds(lambda name, _: name == "postgres")


def _idle_seconds() -> float:
    """The machine's idle time so far, summed over its CPUs (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[4]) / os.sysconf("SC_CLK_TCK")


class Sample(NamedTuple):
    result: Result
    cpu_us: float  # the gateway's CPU time per request (its whole process session)
    db_us: float  # PostgreSQL's CPU time per request (all its processes)
    idle: float  # the machine's idle share, 0..1


def _wrk(url: str, workdir: Path, runs: list[str], auth: str | None, clients: int,
         duration: float, pid: int) -> Sample:
    """wrk's figures and the server's CPU time per request in microseconds: the gateway is
    CPU-bound under this load, so that is what auth adds, with less noise than req/s; also
    the database's CPU per request and how idle the machine was."""
    cpu, db, idle, start = _session_cpu_seconds(pid), _postgres_cpu_seconds(), \
        _idle_seconds(), time.monotonic()
    lua = LUA % (",".join(f'"{r}"' for r in runs), API + "/runs/log-metric")
    if auth:
        lua = lua.replace('{["Content-Type"] = "application/json"}',
                          '{["Content-Type"] = "application/json", ["Authorization"] = "'
                          + auth + '"}')
    script = workdir / "auth.lua"
    script.write_text(lua)
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(clients), "-d", f"{max(1, round(duration))}s",
         "--latency", "--timeout", "30s", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    fail = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    done = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    elapsed = time.monotonic() - start
    per = 1e6 / max(done, 1)
    return Sample(Result(rps, p50, p99, fail), (_session_cpu_seconds(pid) - cpu) * per,
                  (_postgres_cpu_seconds() - db) * per,
                  (_idle_seconds() - idle) / (elapsed * (os.cpu_count() or 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sqlite-synchronous", default="full")
    parser.add_argument("--modes", default="off,basic,token",
                        help="comma-separated: off, basic, token (off is always measured)")
    parser.add_argument("--pg", metavar="DSN", default=None,
                        help="run on PostgreSQL: fresh databases are made through this DSN")
    parser.add_argument("--together", action="store_true",
                        help="run each mode at the same time as auth off (two wrk at once) "
                             "instead of in turn; 'vs off' is then the median of the pairs' "
                             "ratios, and 'db us/req' and 'idle' are the pair's")
    parser.add_argument("--baseline", metavar="CHECKOUT", default=None,
                        help="also measure auth on with the code of this checkout (e.g. `git "
                             "worktree add /tmp/base <commit>`): modes basic@base, token@base")
    args = parser.parse_args()
    extra = ["--sqlite-synchronous", args.sqlite_synchronous]
    servers = 3 if args.baseline else 2
    dbs: list[str | None] = [None] * servers
    if args.pg:
        dbs = [asyncio.run(_fresh_pg(args.pg)) for _ in range(servers)]
    try:
        results, paired = _measure(args, extra, dbs)
    finally:
        for db in dbs:
            if db is not None:
                asyncio.run(_drop_pg(args.pg, db))
    store = "postgresql" if args.pg else f"sqlite synchronous={args.sqlite_synchronous}"
    base = sorted(s.result.rps for s in results["off"])[len(results["off"]) // 2]
    base_cpu = statistics.median(s.cpu_us for s in results["off"])
    print(f"log-metric, {args.clients} clients, {args.duration:.0f} s x {args.repeat}, "
          f"{store}{', each mode beside auth off' if args.together else ''} (medians)")
    print(f"{'mode':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'fail':>6} {'vs off':>7} "
          f"{'cpu us/req':>10} {'off/cpu':>8} {'busy':>5} {'db us/req':>9} {'idle':>5}")
    for mode, rs in results.items():
        if not rs:
            continue
        mid = sorted((s.result for s in rs), key=lambda r: r.rps)[len(rs) // 2]
        cpu = statistics.median(s.cpu_us for s in rs)
        db_us = statistics.median(s.db_us for s in rs)
        idle = statistics.median(s.idle for s in rs)
        busy = statistics.median(s.cpu_us * s.result.rps / 1e6 for s in rs)
        ratio = statistics.median(paired[mode]) if paired.get(mode) else mid.rps / base
        print(f"{mode:10} {mid.rps:9.0f} {mid.p50_ms:8.2f} {mid.p99_ms:8.2f} "
              f"{sum(s.result.fail for s in rs):6d} {ratio:7.2f} {cpu:10.1f} "
              f"{base_cpu / cpu:8.2f} {busy:5.0%} {db_us:9.1f} {idle:5.0%}")
    for mode, ratios in paired.items():
        if ratios:
            print(f"{mode} beside off, each pair: " + " ".join(f"{r:.2f}" for r in ratios))


def _measure(args: argparse.Namespace, extra: list[str],
             dbs: list[str | None]) -> tuple[dict[str, list[Sample]], dict[str, list[float]]]:
    results: dict[str, list[Sample]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            off_dir = Path(tmp) / "off"
            off_dir.mkdir()
            off, off_url = _start(off_dir, False, extra, dbs[0])
            procs.append(off)
            modes: dict[str, tuple[str, Path, list[str], str | None, int]] = {
                "off": (off_url, off_dir, _runs(off_url, None, args.runs), None, off.pid)}
            for name, code, db in [("", None, dbs[1])] + (
                    [("@base", args.baseline, dbs[2])] if args.baseline else []):
                on_dir = Path(tmp) / f"on{name}"
                on_dir.mkdir()
                on, on_url = _start(on_dir, True, extra, db, code)
                procs.append(on)
                basic, token, on_runs = _member(on_url, args.runs)
                modes[f"basic{name}"] = (on_url, on_dir, on_runs, basic, on.pid)
                modes[f"token{name}"] = (on_url, on_dir, on_runs, token, on.pid)
            order = [m for m in modes
                     if m == "off" or m.split("@")[0] in args.modes.split(",")]
            results = {m: [] for m in order}
            paired: dict[str, list[float]] = {m: [] for m in order if m != "off"}

            def wrk(mode: str) -> Sample:
                url, workdir, runs, auth, pid = modes[mode]
                return _wrk(url, workdir, runs, auth, args.clients, args.duration, pid)

            for _ in range(args.repeat):
                if args.together:
                    # Each mode beside auth off, at the same time: the machine's drift hits
                    # both alike, and the two CPU-bound gateways get about equal CPU time.
                    for mode, ratios in paired.items():
                        with ThreadPoolExecutor(2) as pool:
                            off_run, on_run = pool.map(wrk, ["off", mode])
                        results["off"].append(off_run)
                        results[mode].append(on_run)
                        ratios.append(on_run.result.rps / off_run.result.rps)
                    continue
                # Interleaved, so drift hits every mode alike, and in turn first: the first
                # run of a round was measured ~5% slower than the others, whichever it was.
                for mode in order:
                    results[mode].append(wrk(mode))
                order = order[1:] + order[:1]
        finally:
            for proc in procs:
                _stop(proc)
    return results, paired


def _member(url: str, runs: int) -> tuple[str, str, list[str]]:
    """A team member's Basic header and token, and runs they created: the check then walks
    the grants (the member holds MANAGE on the experiment) as for any ML engineer, not an
    administrator's shortcut."""
    admin = "Basic " + base64.b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode()
    _post(url, API + "/users/create", {"username": USER, "password": PASSWORD}, admin)
    _post(url, "/mlgate/v1/teams/default/members", {"username": USER}, admin)
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    token = "Bearer " + _post(url, "/mlgate/v1/tokens", {"name": "perf"}, basic)["token"]
    return basic, token, _runs(url, basic, runs)


if __name__ == "__main__":
    main()
