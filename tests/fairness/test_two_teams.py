"""Fair sharing on one server (SQLite and PostgreSQL): team A floods log-batch at full speed
from several clients, over its limits; team B logs 50 metrics a second. B is never refused
and its p99 stays under 50 ms (or twice its p99 without the flood, on a machine so loaded
that B alone comes near 50 ms); A is answered 429 with Retry-After and the RateLimit fields
once over its limit, and what it gets through stays within it."""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import aiohttp
from conftest import MlgateFactory

ADMIN, ADMIN_PASSWORD = "root", "root-password-123"
API, API3, MLGATE = "/api/2.0/mlflow", "/api/3.0/mlflow", "/mlgate/v1"
FLOOD = Path(__file__).with_name("flood.py")
SECONDS = 5.0  # of B's steady load, inside A's flood
B_RATE = 50  # log-metric requests a second
A_LIMITS = {"requests_per_second": 200, "rows_per_second": 4000}
A_ROWS = 50  # metrics per log-batch: A may land 80 batches a second
B_LIMITS = {"requests_per_second": 100, "rows_per_second": 100}  # B stays inside them


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class _Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def ok(self, method: str, path: str, headers: dict[str, str],
                 body: Any = None, workspace: str | None = None) -> Any:
        if workspace:
            headers = {**headers, "X-MLFLOW-WORKSPACE": workspace}
        async with self.session.request(method, self.url + path, json=body,
                                        headers=headers) as resp:
            text = await resp.text()
            assert resp.status in (200, 201, 204), f"{method} {path}: {resp.status} {text}"
            return json.loads(text) if text else None


async def _team(api: _Api, team: str, user: str, limits: dict[str, float]) -> tuple[str, str]:
    """A team with one member, the member's token and a run; returns (token, run id)."""
    admin = _basic(ADMIN, ADMIN_PASSWORD)
    password = f"{user}-password-123"
    await api.ok("POST", f"{API3}/workspaces", admin, {"name": team})
    await api.ok("POST", f"{API}/users/create", admin, {"username": user, "password": password})
    await api.ok("POST", f"{MLGATE}/teams/{team}/members", admin, {"username": user})
    await api.ok("PUT", f"{MLGATE}/teams/{team}/limits", admin, limits)
    token = (await api.ok("POST", f"{MLGATE}/tokens", _basic(user, password), {}))["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    exp = (await api.ok("POST", f"{API}/experiments/create", bearer, {"name": team},
                        workspace=team))["experiment_id"]
    run = (await api.ok("POST", f"{API}/runs/create", bearer, {"experiment_id": exp},
                        workspace=team))["run"]["info"]["run_id"]
    return token, run


async def _steady(api: _Api, token: str, run: str) -> list[tuple[int, float]]:
    """B's load: a log-metric every 1/B_RATE s on a fixed schedule (a slow answer does not
    delay the next request); (status, seconds) of each."""
    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "team-b"}
    loop = asyncio.get_running_loop()
    results: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        started = loop.time()
        async with api.session.post(f"{api.url}{API}/runs/log-metric", headers=headers, json={
                "run_id": run, "key": "loss", "value": float(i), "timestamp": 1,
                "step": i}) as resp:
            await resp.read()
            results.append((resp.status, loop.time() - started))

    start = loop.time()
    tasks = []
    for i in range(int(SECONDS * B_RATE)):
        await asyncio.sleep(max(0.0, start + i / B_RATE - loop.time()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return results


async def test_a_flooding_team_does_not_slow_down_or_refuse_another(
        mlgate_factory: MlgateFactory) -> None:
    server = mlgate_factory(
        "--auth", env={"MLGATE_ADMIN_USERNAME": ADMIN, "MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    async with aiohttp.ClientSession() as session:
        api = _Api(session, server.url)
        token_a, run_a = await _team(api, "team-a", "alice", A_LIMITS)
        token_b, run_b = await _team(api, "team-b", "bob", B_LIMITS)
        # B alone first (its points are logged again below: stored once). In CI beside other
        # tests on 2 cores, B alone has reached a p99 of 30-40 ms.
        alone = sorted(t * 1000 for _, t in await _steady(api, token_b, run_b))
        bound = max(50.0, 2 * alone[int(len(alone) * 0.99) - 1])
        # A second round only when the first missed B's p99: on 2 shared cores another
        # test's burst can take a few ms from one round; a real loss of fairness misses both.
        for _ in range(2):
            flood = await asyncio.create_subprocess_exec(
                sys.executable, str(FLOOD), server.url, token_a, "team-a", run_a,
                str(SECONDS + 1.0), "4", str(A_ROWS), stdout=asyncio.subprocess.PIPE)
            await asyncio.sleep(0.5)  # A is at full speed and over its limits
            steady = await _steady(api, token_b, run_b)
            out, _ = await flood.communicate()
            a = json.loads(out)
            latencies = sorted(t * 1000 for _, t in steady)
            if latencies[int(len(latencies) * 0.99) - 1] < bound:
                break  # (a second round logs the same points again: stored once)
        history = await api.ok("GET", f"{API}/metrics/get-history?run_id={run_b}&metric_key=loss&max_results=10000",
                               {"Authorization": f"Bearer {token_b}"}, workspace="team-b")

    statuses = {s for s, _ in steady}
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    a_rate = (a["ok"] + a["limited"]) / a["seconds"]
    print(f"\nA: {a_rate:.0f} req/s sent, {a['ok'] / a['seconds']:.0f} admitted "
          f"({a['ok'] * A_ROWS / a['seconds']:.0f} rows/s), {a['limited']} answered 429; "
          f"B: {len(steady)} requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max "
          f"{latencies[-1]:.1f} ms; B alone p99 {alone[int(len(alone) * 0.99) - 1]:.1f} ms")
    assert statuses == {200}, statuses  # none of B's requests is refused
    assert len(history["metrics"]) == len(steady)
    assert p99 < bound, latencies[-10:]
    assert a["limited"] > a["ok"] > 0 and a["other"] == 0, a
    # What A got through stays within its row limit (plus the burst it starts with).
    assert a["ok"] * A_ROWS <= A_LIMITS["rows_per_second"] * (a["seconds"] + 1) + A_ROWS, a
    refusal = a["refusal"]
    assert refusal["body"]["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert int(refusal["headers"]["Retry-After"]) >= 1
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
        refusal["headers"])
