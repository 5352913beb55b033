"""The Host header check against DNS rebinding (gateway/hosts.py), as stock's: a page on a
name re-pointed at this machine must not reach the API, while loopback, private addresses,
configured names and the health probes keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.hosts import INVALID_HOST
from gateway.settings import Settings

API = "/api/2.0/mlflow"


async def _client(aiohttp_client: Any, tmp_path: Path, allowed: str = "",
                  **extra: Any) -> TestClient:
    settings = Settings(backend_store_uri=f"sqlite:///{tmp_path}/hosts.db",
                        artifacts_destination=str(tmp_path / "art"), allowed_hosts=allowed,
                        **extra)
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


async def _status(client: TestClient, path: str, host: str) -> tuple[int, str]:
    resp = await client.get(path, headers={"Host": host}, params={"max_results": "1"})
    return resp.status, await resp.text()


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "localhost", "localhost:8080",
                                  "[::1]:5000", "10.1.2.3:5000", "192.168.0.7",
                                  "172.20.0.2:5000", "0.0.0.0:5000"])
async def test_loopback_and_private_hosts_are_answered(aiohttp_client: Any, tmp_path: Path,
                                                       host: str) -> None:
    client = await _client(aiohttp_client, tmp_path)
    assert (await _status(client, f"{API}/experiments/search", host))[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "127.0.0.1.evil.example",
                                  "localhost.evil.example:5000", "172.32.0.1", "8.8.8.8:5000",
                                  # names an attacker may point here, which stock's patterns
                                  # (10.*, localhost:*) let through
                                  "10.evil.example:5000", "192.168.1.1.evil.example",
                                  "172.16.0.1.evil.example:5000", "localhost:5000.evil",
                                  "127.0.0.1:5000@evil"])
async def test_other_hosts_are_refused(aiohttp_client: Any, tmp_path: Path, host: str) -> None:
    client = await _client(aiohttp_client, tmp_path)
    status, body = await _status(client, f"{API}/experiments/search", host)
    assert status == 403 and INVALID_HOST in body and "PERMISSION_DENIED" in body
    status, body = await _status(client, "/", host)
    assert (status, body) == (403, INVALID_HOST)
    for probe in ("/health", "/version"):
        assert (await _status(client, probe, host))[0] == 200, probe


async def test_configured_hosts_replace_the_default(aiohttp_client: Any,
                                                    tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, "mlflow.corp.example, *.ml.example:*")
    for host, status in (("mlflow.corp.example", 200), ("a.ml.example:443", 200),
                         ("mlflow.corp.example:5000", 403), ("127.0.0.1:5000", 403)):
        assert (await _status(client, f"{API}/experiments/search", host))[0] == status, host


async def test_a_star_answers_any_host(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, "*")
    assert (await _status(client, f"{API}/experiments/search", "evil.example"))[0] == 200


async def test_the_check_comes_before_authentication(aiohttp_client: Any,
                                                     tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, auth=True)
    status, _ = await _status(client, f"{API}/experiments/search", "evil.example")
    assert status == 403  # not 401: no login is attempted, none counted
    assert (await _status(client, f"{API}/experiments/search", "127.0.0.1"))[0] == 401
