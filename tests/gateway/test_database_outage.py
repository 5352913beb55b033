"""Outages of PostgreSQL and MariaDB seen through the HTTP API: a small TCP proxy between the
gateway and the database is cut during a write loop and restored. Requests in the outage get 503
TEMPORARILY_UNAVAILABLE within the pool timeout, the gateway heals on its own, and every
acknowledged write is stored.

A restart is the same cut preceded by what a server shutting down sends each of its
connections: ``FATAL 57P01 terminating connection due to administrator command``
(``pg_terminate_backend`` sends exactly that; MariaDB's ``KILL`` closes the connection with
error 1927). Under read load that reaches connections between two statements of a request,
which is where asyncpg reported ``InternalClientError`` rather than a lost connection."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import mytools
import pgtools
from aiohttp.test_utils import TestClient
from tcp_proxy import proxied

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"



async def test_outage_gives_503_then_heals_without_losing_acknowledged_writes(
    aiohttp_client: Any, server_database: str, tmp_path: Path
) -> None:
    proxy, via_proxy = await proxied(server_database)
    pool_timeout = 2.0
    settings = Settings(
        backend_store_uri=via_proxy, artifacts_destination=str(tmp_path / "art"),
        db_pool_size=2, db_max_overflow=2, db_pool_timeout=pool_timeout,
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    try:
        resp = await client.post(API + "/experiments/create", json={"name": "outage"})
        exp_id = (await resp.json())["experiment_id"]
        resp = await client.post(API + "/runs/create",
                                 json={"experiment_id": exp_id, "start_time": 1})
        run_id = (await resp.json())["run"]["info"]["run_id"]

        acked: list[int] = []
        failures: list[tuple[int, float, dict[str, Any]]] = []
        phase = {"name": "before"}
        first_success_after_restore: list[float] = []
        stop = asyncio.Event()

        async def write_loop() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                started = time.monotonic()
                resp = await client.post(API + "/runs/log-metric", json={
                    "run_id": run_id, "key": "m", "value": float(i), "timestamp": i, "step": i})
                elapsed = time.monotonic() - started
                if resp.status == 200:
                    acked.append(i)
                    if phase["name"] == "restored" and not first_success_after_restore:
                        first_success_after_restore.append(time.monotonic())
                else:
                    failures.append((resp.status, elapsed, await resp.json()))
                await asyncio.sleep(0.01)

        writer = asyncio.create_task(write_loop())
        await asyncio.sleep(0.5)
        acked_before_cut = len(acked)
        await proxy.cut()
        phase["name"] = "outage"
        await asyncio.sleep(2.0)
        await proxy.restore()
        restored_at = time.monotonic()
        phase["name"] = "restored"
        deadline = restored_at + 10
        while not first_success_after_restore and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        stop.set()
        await writer

        assert acked_before_cut > 0
        assert failures, "the outage produced no failed request"
        for status, elapsed, body in failures:
            assert status == 503, (status, body)
            assert body["error_code"] == "TEMPORARILY_UNAVAILABLE", body
            assert elapsed <= pool_timeout + 0.5, f"a failed request took {elapsed:.2f} s"
        assert first_success_after_restore, "no request succeeded within 10 s of the restore"
        recovery = first_success_after_restore[0] - restored_at
        print(f"outage: {len(acked)} acknowledged, {len(failures)} x 503 (slowest "
              f"{max(e for _, e, _ in failures):.3f} s), recovered {recovery:.3f} s after restore")
        assert recovery < 3.0, f"recovered {recovery:.2f} s after the database came back"

        resp = await client.get(API + "/metrics/get-history",
                                params={"run_id": run_id, "metric_key": "m"})
        assert resp.status == 200
        stored = {int(m["step"]) for m in (await resp.json())["metrics"]}
        missing = sorted(set(acked) - stored)
        assert not missing, f"acknowledged writes lost: {missing[:10]}"
        stats = (await (await client.get("/mlgate/v1/stats")).json())["metadata_store"]
        label = "mysql" if server_database.startswith("mysql") else "postgresql"
        assert stats["store"] == label and stats["invalidated"] >= 1
    finally:
        await proxy.close()


async def _terminate_backends(uri: str) -> int:
    """What a shutting-down server does to every connection of ``uri``'s database: FATAL
    57P01 on PostgreSQL; on MariaDB, ``KILL`` of each connection."""
    database = urlsplit(uri).path.lstrip("/")
    if not uri.startswith("mysql"):
        conn = await asyncpg.connect(pgtools.admin_dsn(), timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()", database)
        finally:
            await conn.close()
        return len(rows)
    return await asyncio.to_thread(mytools.kill_connections, database)


async def test_restart_under_read_load_answers_only_200_or_503(
    aiohttp_client: Any, server_database: str, tmp_path: Path
) -> None:
    proxy, via_proxy = await proxied(server_database)
    name = urlsplit(server_database).path.lstrip("/")
    settings = Settings(
        backend_store_uri=via_proxy, artifacts_destination=str(tmp_path / "art"),
        db_pool_size=4, db_max_overflow=4, db_pool_timeout=2.0,
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    try:
        resp = await client.post(API + "/experiments/create", json={"name": "restart"})
        exp_id = (await resp.json())["experiment_id"]
        run_ids = []
        for i in range(4):
            resp = await client.post(API + "/runs/create",
                                     json={"experiment_id": exp_id, "start_time": 1})
            run_id = (await resp.json())["run"]["info"]["run_id"]
            run_ids.append(run_id)
            resp = await client.post(API + "/runs/log-batch", json={
                "run_id": run_id, "params": [{"key": "p", "value": str(i)}],
                "metrics": [{"key": "m", "value": float(s), "timestamp": s, "step": s}
                            for s in range(20)]})
            assert resp.status == 200, await resp.text()

        rng = random.Random(21)
        requests = [
            lambda: client.get(API + "/runs/get", params={"run_id": rng.choice(run_ids)}),
            lambda: client.post(API + "/runs/search", json={
                "experiment_ids": [exp_id], "filter": "metrics.m >= 0",
                "order_by": ["metrics.m DESC"]}),
            lambda: client.get(API + "/metrics/get-history",
                               params={"run_id": rng.choice(run_ids), "metric_key": "m"}),
        ]
        answers: dict[int, int] = {}
        unexpected: list[tuple[int, str]] = []
        stop = asyncio.Event()

        async def read_loop(n: int) -> None:
            while not stop.is_set():
                resp = await requests[n % len(requests)]()
                answers[resp.status] = answers.get(resp.status, 0) + 1
                body = await resp.text()
                if resp.status == 503:
                    if (resp.headers.get("Retry-After") is None
                            or "TEMPORARILY_UNAVAILABLE" not in body):
                        unexpected.append((resp.status, body))
                    for secret in (name, str(proxy.port), "127.0.0.1"):
                        if secret in body:
                            unexpected.append((resp.status, body))
                elif resp.status != 200:
                    unexpected.append((resp.status, body))
                n += 1

        readers = [asyncio.create_task(read_loop(n)) for n in range(12)]
        await asyncio.sleep(0.3)
        for _ in range(6):  # restarts: the shutdown's FATAL, refused connections, back up
            assert await _terminate_backends(server_database) > 0
            await asyncio.sleep(0.05)
            await proxy.cut()
            await asyncio.sleep(0.5)
            await proxy.restore()
            await asyncio.sleep(0.4)
        # Sessions killed while the proxy still listens: nothing but the FATAL.
        for _ in range(20):
            await _terminate_backends(server_database)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*readers)

        print(f"restarts under read load: {answers}")
        assert not unexpected, unexpected[:5]
        assert answers.get(503), "the restarts produced no 503"
        resp = await client.get(API + "/runs/get", params={"run_id": run_ids[0]})
        assert resp.status == 200
    finally:
        await proxy.close()


async def test_connections_killed_under_write_load_answer_200_or_503_and_heal(
    aiohttp_client: Any, server_database: str, tmp_path: Path
) -> None:
    """The server ends the gateway's sessions (``KILL``, ``pg_terminate_backend``) again and
    again while writers log: each answer is 200 or 503, and every acknowledged write is
    stored."""
    settings = Settings(
        backend_store_uri=server_database, artifacts_destination=str(tmp_path / "art"),
        db_pool_size=3, db_max_overflow=3, db_pool_timeout=2.0,
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    resp = await client.post(API + "/experiments/create", json={"name": "killed"})
    exp_id = (await resp.json())["experiment_id"]
    resp = await client.post(API + "/runs/create", json={"experiment_id": exp_id, "start_time": 1})
    run_id = (await resp.json())["run"]["info"]["run_id"]
    acked: dict[str, list[int]] = {"metric": [], "param": []}
    unexpected: list[tuple[int, str]] = []
    answers: dict[int, int] = {}
    stop = asyncio.Event()

    async def write_loop(n: int) -> None:
        i = n * 1_000_000
        while not stop.is_set():
            i += 1
            kind = "metric" if i % 2 else "param"
            if kind == "metric":
                resp = await client.post(API + "/runs/log-metric", json={
                    "run_id": run_id, "key": "m", "value": float(i), "timestamp": i, "step": i})
            else:
                resp = await client.post(API + "/runs/log-parameter", json={
                    "run_id": run_id, "key": f"p{i}", "value": str(i)})
            answers[resp.status] = answers.get(resp.status, 0) + 1
            if resp.status == 200:
                acked[kind].append(i)
            elif resp.status != 503 or "TEMPORARILY_UNAVAILABLE" not in await resp.text():
                unexpected.append((resp.status, await resp.text()))

    writers = [asyncio.create_task(write_loop(n)) for n in range(6)]
    await asyncio.sleep(0.3)
    killed = 0
    for _ in range(15):
        killed += await _terminate_backends(server_database)
        await asyncio.sleep(0.15)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*writers)

    print(f"{killed} sessions killed under write load: {answers}")
    assert killed > 0
    assert not unexpected, unexpected[:5]
    resp = await client.get(API + "/runs/get", params={"run_id": run_id})
    assert resp.status == 200, await resp.text()
    params = {p["key"] for p in (await resp.json())["run"]["data"]["params"]}
    assert not {f"p{i}" for i in acked["param"]} - params, "acknowledged params lost"
    resp = await client.get(API + "/metrics/get-history",
                            params={"run_id": run_id, "metric_key": "m"})
    stored = {int(m["step"]) for m in (await resp.json())["metrics"]}
    assert not set(acked["metric"]) - stored, "acknowledged metrics lost"
