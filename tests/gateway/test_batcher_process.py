"""The batcher inside a running ``mlgate serve`` (SQLite and PostgreSQL), over HTTP:
concurrent clients, a bad request among good ones, kill -9 and SIGTERM under load."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import aiohttp
import pytest
from conftest import MlgateFactory, ServerProcess
from mytools import ON_EVERY_DATABASE

API = "/api/2.0/mlflow"


pytestmark = ON_EVERY_DATABASE


async def _post(http: aiohttp.ClientSession, url: str, path: str,
                body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(url + API + path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def _setup_runs(http: aiohttp.ClientSession, url: str, n: int) -> list[str]:
    status, body = await _post(http, url, "/experiments/create", {"name": f"b{time.time_ns()}"})
    assert status == 200, body
    exp = body["experiment_id"]
    runs = []
    for _ in range(n):
        status, body = await _post(http, url, "/runs/create",
                                   {"experiment_id": exp, "start_time": 1})
        assert status == 200, body
        runs.append(body["run"]["info"]["run_id"])
    return runs


async def _steps(http: aiohttp.ClientSession, url: str, run_id: str, key: str) -> list[int]:
    async with http.get(url + API + "/metrics/get-history",
                        params={"run_id": run_id, "metric_key": key}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return [int(m["step"]) for m in body.get("metrics", [])]


def _metric(run_id: str, step: int, key: str = "loss") -> dict[str, Any]:
    return {"run_id": run_id, "key": key, "value": step / 7, "timestamp": 1_000_000 + step,
            "step": step}


async def test_64_clients_every_metric_exactly_once(
    mlgate_factory: MlgateFactory, request: pytest.FixtureRequest
) -> None:
    server = mlgate_factory()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        runs = await _setup_runs(http, server.url, 64)

        async def client(run_id: str) -> None:
            for step in range(500):
                status, body = await _post(http, server.url, "/runs/log-metric",
                                           _metric(run_id, step))
                assert status == 200, body

        await asyncio.gather(*(client(r) for r in runs))
        for run_id in runs:
            assert sorted(await _steps(http, server.url, run_id, "loss")) == list(range(500))
        async with http.get(server.url + "/mlgate/v1/stats") as resp:
            stats = (await resp.json())["batcher"]
    assert stats["rows"] == 64 * 500
    assert stats["batches"] < stats["requests"]  # requests shared transactions
    # The store's choice of concurrent transactions: two on the database servers, one on
    # SQLite (one writer at a time).
    assert stats["writers"] == (1 if "sqlite" in request.node.callspec.id else 2)


async def test_one_bad_request_among_100_fails_alone(mlgate_factory: MlgateFactory) -> None:
    server = mlgate_factory()
    async with aiohttp.ClientSession() as http:
        runs = await _setup_runs(http, server.url, 2)
        status, _ = await _post(http, server.url, "/runs/log-parameter",
                                {"run_id": runs[0], "key": "lr", "value": "0.1"})
        assert status == 200
        good = [_post(http, server.url, "/runs/log-batch",
                      {"run_id": runs[i % 2], "metrics": [_metric(runs[i % 2], i)]})
                for i in range(100)]
        changes_param = _post(http, server.url, "/runs/log-batch", {
            "run_id": runs[0], "metrics": [_metric(runs[0], 1000)],
            "params": [{"key": "lr", "value": "0.2"}]})
        malformed = _post(http, server.url, "/runs/log-metric",
                          {"run_id": runs[1], "key": "loss", "value": "high", "timestamp": 1})
        results = await asyncio.gather(*good[:40], changes_param, *good[40:70], malformed,
                                       *good[70:])
        refused, bad = results[40], results[71]
        assert refused[0] == 400 and refused[1]["error_code"] == "INVALID_PARAMETER_VALUE"
        assert bad[0] == 400 and bad[1]["error_code"] == "INVALID_PARAMETER_VALUE"
        oks = results[:40] + results[41:71] + results[72:]
        assert [s for s, _ in oks] == [200] * 100
        steps = [*await _steps(http, server.url, runs[0], "loss"),
                 *await _steps(http, server.url, runs[1], "loss")]
        assert sorted(steps) == list(range(100))  # step 1000 of the refused batch is absent


async def _load(http: aiohttp.ClientSession, url: str, runs: list[str],
                acked: list[tuple[str, int]], stop: asyncio.Event) -> dict[str, int]:
    """Clients log metrics until ``stop``; ``acked`` gets every (run, step) answered 200.
    Returns how the other requests ended."""
    outcomes: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(run_id: str) -> None:
        step = 0
        while not stop.is_set():
            step += 1
            try:
                async with http.post(url + API + "/runs/log-metric",
                                     json=_metric(run_id, step), timeout=timeout) as resp:
                    await resp.read()
                    if resp.status == 200:
                        acked.append((run_id, step))
                    else:
                        outcomes[str(resp.status)] = outcomes.get(str(resp.status), 0) + 1
            except (aiohttp.ClientError, ConnectionError) as exc:
                name = type(exc).__name__
                outcomes[name] = outcomes.get(name, 0) + 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client(r) for r in runs))
    return outcomes


async def _check_acked(server: ServerProcess, acked: list[tuple[str, int]]) -> None:
    by_run: dict[str, set[int]] = {}
    for run_id, step in acked:
        by_run.setdefault(run_id, set()).add(step)
    async with aiohttp.ClientSession() as http:
        for run_id, steps in by_run.items():
            stored = await _steps(http, server.url, run_id, "loss")
            assert len(stored) == len(set(stored)), "a metric was stored twice"
            missing = steps - set(stored)
            assert not missing, f"{len(missing)} acknowledged metrics lost in {run_id}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill9", "sigterm"])
async def test_signal_under_load_loses_no_acknowledged_write(
    mlgate_factory: MlgateFactory, sig: signal.Signals
) -> None:
    server = mlgate_factory()
    acked: list[tuple[str, int]] = []
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        runs = await _setup_runs(http, server.url, 16)
        load = asyncio.create_task(_load(http, server.url, runs, acked, stop))
        await asyncio.sleep(1.5)
        before = len(acked)
        assert before > 100, "the load did not get going"
        started = time.monotonic()
        os.killpg(server.proc.pid, sig)
        await asyncio.to_thread(server.proc.wait, 30)
        stopped_in = time.monotonic() - started
        await asyncio.sleep(0.3)  # clients now see refused connections
        stop.set()
        outcomes = await asyncio.wait_for(load, 40)  # no request hangs
    assert "500" not in outcomes, outcomes
    if sig == signal.SIGTERM:
        assert server.proc.returncode == 0, server.output()[-2000:]
        assert stopped_in < 10
    restarted = mlgate_factory(workdir=server.workdir)
    await _check_acked(restarted, acked)
