"""Regression (attack31): a locked-out name stays locked out for credentials served from the
verified-credentials cache.

The cache was consulted before the failed-login limiter: while guesses at a user's password
got 429, the right password (verified earlier, so cached) still got 200 — from any address,
which told the attacker which guess was right.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from access_world import ADMIN, ADMIN_PASSWORD, bearer, seed_admin, settings_for
from aiohttp.test_utils import TestClient
from test_auth_api import API, basic, store_uri  # noqa: F401  (the store_uri fixture)

from gateway.app import create_app
from gateway.security.watch import POLL_INTERVAL

USER_AT = {"X-Forwarded-For": "10.0.0.1"}
ATTACKER_AT = {"X-Forwarded-For": "10.6.6.6"}


async def _client(aiohttp_client: Any, uri: str, tmp_path: Path) -> TestClient:
    await seed_admin(uri)
    client = await aiohttp_client(create_app(settings_for(
        uri, tmp_path, auth_max_failures=3, auth_trusted_proxies="127.0.0.1")))
    # The auth watch's first read empties the caches; what is verified after it stays.
    await asyncio.sleep(3 * POLL_INTERVAL)
    return client


async def _status(client: TestClient, headers: dict[str, str], at: dict[str, str]) -> int:
    resp = await client.get(f"{API}/experiments/get", params={"experiment_id": "0"},
                            headers={**headers, **at})
    return resp.status


async def test_cached_password_is_rate_limited_like_a_guess(
        aiohttp_client: Any, store_uri: str, tmp_path: Path) -> None:  # noqa: F811
    client = await _client(aiohttp_client, store_uri, tmp_path)
    right = basic(ADMIN, ADMIN_PASSWORD)
    assert await _status(client, right, USER_AT) == 200  # verified, now cached
    guesses = [await _status(client, basic(ADMIN, f"guess-{i}"), ATTACKER_AT) for i in range(5)]
    assert guesses[:3] == [401] * 3 and set(guesses[3:]) == {429}
    # The right password from the attacker's address is refused like the guesses before it...
    assert await _status(client, right, ATTACKER_AT) == 429
    # ...while the user, known at their own address, carries on.
    assert await _status(client, right, USER_AT) == 200
    await client.close()


async def test_token_guesses_lock_out_only_the_guessing_address(
        aiohttp_client: Any, store_uri: str, tmp_path: Path) -> None:  # noqa: F811
    """A cached token is refused where its guesses came from, and only there: its id is
    visible (``mlg_<id>_…``) and its secret cannot be guessed, so a lockout of the id would
    only let anyone who saw it lock out its holder's new addresses (a CI runner's)."""
    client = await _client(aiohttp_client, store_uri, tmp_path)
    resp = await client.post("/mlgate/v1/tokens", json={},
                             headers={**basic(ADMIN, ADMIN_PASSWORD), **USER_AT})
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["token"]
    assert await _status(client, bearer(token), USER_AT) == 200  # verified, now cached
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    guesses = [await _status(client, bearer(wrong), ATTACKER_AT) for _ in range(5)]
    assert guesses[:3] == [401] * 3 and set(guesses[3:]) == {429}
    assert await _status(client, bearer(token), ATTACKER_AT) == 429
    assert await _status(client, bearer(token), USER_AT) == 200
    assert await _status(client, bearer(token), {"X-Forwarded-For": "10.0.0.2"}) == 200
    await client.close()


async def test_a_failed_login_records_only_what_could_name_someone(
        aiohttp_client: Any, store_uri: str, tmp_path: Path) -> None:  # noqa: F811
    """Regression (attack24): a failed login's record took the workspace header and the user
    name as sent, unchecked and of any length. A junk token costs no password hash, so anyone
    could write several kilobytes of their choosing into every audit row, as fast as the
    server answers, and file the rows under any team."""
    client = await _client(aiohttp_client, store_uri, tmp_path)
    junk = {"Authorization": "Bearer junk", "X-Request-Id": "junk-token"}
    for workspace in ("w" * 4000, "Team B"):  # the first passes the name pattern, not its length
        resp = await client.get(f"{API}/experiments/get", params={"experiment_id": "0"},
                                headers={**junk, "X-MLFLOW-WORKSPACE": workspace})
        assert resp.status == 401
    long_name = basic("u" * 3000, "guess")
    assert await _status(client, {**long_name, "X-MLFLOW-WORKSPACE": "team-b"}, ATTACKER_AT) == 401
    resp = await client.get("/mlgate/v1/audit", headers=basic(ADMIN, ADMIN_PASSWORD))
    failed = [r for r in (await resp.json())["records"] if r["action"] == "login"]
    assert [(r["workspace"], len(r["username"] or "")) for r in failed] == [
        (None, 0), (None, 0), ("team-b", 255)], failed
    assert failed[-1]["username"] == "u" * 254 + "\u2026"  # cut, and marked as cut
    await client.close()


async def test_made_up_token_ids_hold_no_counter(
        aiohttp_client: Any, store_uri: str, tmp_path: Path) -> None:  # noqa: F811
    """Regression (attack24): a failure with a token id that exists nowhere was counted under
    that id. It costs no password hash, so some 100,000 made-up ids a worker (under two
    minutes) filled the limiter's table and evicted the counters of locked-out names, which
    then got their full allowance of guesses again. Such ids now leave no counter."""
    client = await _client(aiohttp_client, store_uri, tmp_path)
    made_up = bearer("mlg_0123456789abcdef_" + "A" * 43)
    assert [await _status(client, made_up, ATTACKER_AT) for _ in range(5)] == [401] * 5
    await client.close()


async def test_a_credential_has_one_cache_entry_however_it_is_spelled(
        aiohttp_client: Any, tmp_path: Path) -> None:
    """Regression (attack24): the cache was keyed by the Authorization header as sent, so
    ``bearer  <token>`` (any scheme case, any number of spaces) was a new entry. A token's
    holder filled the 10,000 entries in seconds, pushing every other client's verified
    password out of the cache on every worker, so that each of their next requests cost a
    password hash. The user's row is removed behind the server's back here, so that only the
    cache can still answer."""
    uri = f"sqlite:///{tmp_path}/m.db"
    client = await _client(aiohttp_client, uri, tmp_path)
    credentials = basic(ADMIN, ADMIN_PASSWORD)["Authorization"].split()[1]
    assert await _status(client, {"Authorization": f"Basic {credentials}"}, USER_AT) == 200
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("DELETE FROM auth_users")
    for spelling in (f"basic   {credentials} ", f"BASIC {credentials}"):
        assert await _status(client, {"Authorization": spelling}, USER_AT) == 200, spelling
    await client.close()
