"""Rate limits through a real socket: administrators set them per workspace (API), the
limits count requests per workspace and per token, a request naming no workspace counts
against its caller, a refusal is MLflow's 429 with Retry-After and the RateLimit fields, and
a change made through one server process is in force in another within a second."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from access_world import ADMIN, MLGATE, Api, bearer, seed_admin, settings_for
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.security.limits import HEARTBEAT

API = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
LIMITS = f"{MLGATE}/teams/team-a/limits"


async def _server(aiohttp_client: Any, uri: str, tmp_path: Path, **extra: Any) -> Api:
    client: TestClient = await aiohttp_client(create_app(settings_for(uri, tmp_path, **extra)))
    return Api(client)


async def _statuses(api: Api, who: dict[str, str], n: int, path: str = f"{API}/experiments/"
                    "search", workspace: str | None = "team-a") -> list[int]:
    body = None if path.startswith(API3) else {"max_results": 1}
    method = "GET" if body is None else "POST"
    return [(await api.call(method, path, who, body, workspace=workspace)).status
            for _ in range(n)]


async def test_limits_per_workspace_and_token_with_mlflow_shaped_refusals(
        aiohttp_client: Any, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/limits.db"
    await seed_admin(uri)
    api = await _server(aiohttp_client, uri, tmp_path)
    await api.ok("POST", f"{API3}/workspaces", body={"name": "team-a"})
    await api.add_user("a1", team="team-a", role="manager")
    await api.add_user("a2", team="team-a")
    t1, t2 = bearer((await api.token("a1"))[0]), bearer((await api.token("a1"))[0])

    # Only administrators set limits; the team's manager may read them; input is checked.
    assert (await api.call("PUT", LIMITS, "a1", {"requests_per_second": 1})).status == 403
    assert (await api.call("GET", LIMITS, "a2")).status == 403
    bad = await api.call("PUT", LIMITS, ADMIN, {"rows_per_second": -1})
    assert (bad.status, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    missing = await api.call("PUT", f"{MLGATE}/teams/no-team/limits", ADMIN, {})
    assert missing.status == 404
    set_ = await api.ok("PUT", LIMITS, ADMIN, {"requests_per_second": 3,
                                                "caller_requests_per_second": 2})
    assert set_["limits"]["requests_per_second"] == 3
    assert set_["effective"]["caller_requests_per_second"] == 2
    assert (await api.ok("GET", LIMITS, "a1"))["limits"]["rows_per_second"] is None
    listed = await api.ok("GET", f"{MLGATE}/limits")
    assert [r["workspace"] for r in listed["limits"]] == ["team-a"]
    assert listed["defaults"]["caller_requests_per_second"] == 0  # none

    # Each token has 2 of the team's 3 a second.
    assert await _statuses(api, t1, 3) == [200, 200, 429]
    assert await _statuses(api, t2, 2) == [200, 429]  # the team's third, then none left
    async with api.client.post(f"{API}/experiments/search", json={"max_results": 1},
                               headers={**t2, "X-MLFLOW-WORKSPACE": "team-a"}) as resp:
        body = await resp.json()
        assert resp.status == 429 and body["error_code"] == "REQUEST_LIMIT_EXCEEDED", body
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.headers["RateLimit-Limit"] == "3"  # the team's bucket refused
        assert resp.headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(resp.headers["RateLimit-Reset"]) <= 2
    # Other workspaces are not held back by team-a's limits.
    assert await _statuses(api, t1, 2, workspace="default") == [200, 200]

    await asyncio.sleep(1.1)  # refilled
    async with api.client.post(f"{API}/experiments/search", json={"max_results": 1},
                               headers={**t1, "X-MLFLOW-WORKSPACE": "team-a"}) as resp:
        assert resp.status == 200
        assert resp.headers["RateLimit-Limit"] == "2"  # the token's, the tighter one
        assert resp.headers["RateLimit-Remaining"] == "1"
    metrics = (await api.send("GET", "/metrics")).body.decode()
    assert "mlgate_rate_limited_requests_total 3.0" in metrics  # t1's, t2's, the header check
    assert (await api.call("DELETE", LIMITS, ADMIN)).status == 204
    assert (await api.call("DELETE", LIMITS, ADMIN)).status == 404
    assert await _statuses(api, t1, 3) == [200, 200, 200]  # the defaults: no team limit

    # A server whose default lets each caller make 3 requests a second: one that names no
    # workspace (the workspace list) counts against its caller.
    limited = await _server(aiohttp_client, uri, tmp_path, rate_limit_caller_requests=3.0)
    assert await _statuses(limited, t2, 4, f"{API3}/workspaces", None) == [200] * 3 + [429]


async def test_a_limit_set_through_one_process_holds_in_another_within_a_second(
        aiohttp_client: Any, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/limits.db"
    await seed_admin(uri)
    one = await _server(aiohttp_client, uri, tmp_path)
    other = await _server(aiohttp_client, uri, tmp_path)
    await one.ok("POST", f"{API3}/workspaces", body={"name": "team-a"})
    await one.add_user("a1", team="team-a")
    token = bearer((await one.token("a1"))[0])
    assert await _statuses(other, token, 3) == [200] * 3
    await one.ok("PUT", LIMITS, ADMIN, {"requests_per_second": 4})
    await asyncio.sleep(1.0)
    assert 429 in await _statuses(other, token, 5)  # in force there within a second
    # Once both have counted each other (a heartbeat a second), each holds half: 2 a second.
    await asyncio.sleep(2 * HEARTBEAT)
    assert await _statuses(other, token, 3) == [200, 200, 429]


async def test_an_outsider_naming_a_team_is_not_charged_to_it_nor_told_its_limit(
        aiohttp_client: Any, tmp_path: Path) -> None:
    """Team B's member sends requests with ``X-MLFLOW-WORKSPACE: team-a``: they are refused
    or find nothing, and must neither spend team-a's budget (which would lock team-a out)
    nor show team-a's limit, which tells that team-a exists."""
    uri = f"sqlite:///{tmp_path}/limits.db"
    await seed_admin(uri)
    api = await _server(aiohttp_client, uri, tmp_path)
    for team in ("team-a", "team-b"):
        await api.ok("POST", f"{API3}/workspaces", body={"name": team})
    await api.add_user("a1", team="team-a")
    await api.add_user("b1", team="team-b")
    await api.ok("PUT", LIMITS, ADMIN, {"requests_per_second": 2})
    outsider = bearer((await api.token("b1"))[0])
    async with api.client.post(f"{API}/experiments/search", json={"max_results": 1},
                               headers={**outsider, "X-MLFLOW-WORKSPACE": "team-a"}) as resp:
        assert "RateLimit-Limit" not in resp.headers
    await _statuses(api, outsider, 4)
    assert await _statuses(api, "a1", 2) == [200, 200]
