"""``/health`` is the readiness check: it answers 200 only while the metadata store answers,
and 503 within its deadline when the store is closed, refuses connections or stalls.
``/version`` (the liveness check) keeps answering through all of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from tcp_proxy import proxied

from gateway.app import create_app
from gateway.keys import METADATA
from gateway.routes.meta import HEALTH_DEADLINE
from gateway.settings import Settings


async def _health(client: TestClient) -> tuple[int, float, Any]:
    started = time.monotonic()
    resp = await client.get("/health")
    body = await resp.json() if resp.status != 200 else await resp.text()
    return resp.status, time.monotonic() - started, body


async def test_health_reads_the_store_and_answers_503_once_it_is_closed(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = Settings(backend_store_uri=f"sqlite:///{tmp_path / 'm.db'}",
                        artifacts_destination=str(tmp_path / "art"))
    client: TestClient = await aiohttp_client(create_app(settings))
    status, _, body = await _health(client)
    assert (status, body) == (200, "OK")

    await client.app[METADATA].aclose()  # what an unreachable store looks like to a handler
    status, _, body = await _health(client)
    assert status == 503
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    # Liveness does not depend on the store: a restart would not bring it back.
    resp = await client.get("/version")
    assert resp.status == 200


async def test_health_gives_503_within_its_deadline_while_the_database_stalls_or_refuses(
    aiohttp_client: Any, server_database: str, tmp_path: Path
) -> None:
    proxy, via_proxy = await proxied(server_database)
    settings = Settings(backend_store_uri=via_proxy, artifacts_destination=str(tmp_path / "a"),
                        db_pool_size=2, db_pool_timeout=5.0)
    client: TestClient = await aiohttp_client(create_app(settings))
    try:
        assert (await _health(client))[0] == 200

        proxy.stall()
        # Several probes at once share one read; each is answered by the deadline.
        answers = await asyncio.gather(*(_health(client) for _ in range(5)))
        for status, took, body in answers:
            assert status == 503, body
            assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
            assert took < HEALTH_DEADLINE + 1.0, took
        resp = await client.get("/version")
        assert resp.status == 200

        # Healthy again once the path flows: the timed-out read's connection is discarded.
        proxy.flow()
        deadline = time.monotonic() + 15
        while (status := (await _health(client))[0]) != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert status == 200

        await proxy.cut()
        status, took, body = await _health(client)
        assert status == 503, body
        assert took < HEALTH_DEADLINE + 1.0, took
    finally:
        await proxy.close()

