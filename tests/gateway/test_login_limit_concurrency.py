"""Regression (attack31): the failed-login limit holds against guesses sent at once.

``Authenticator._verify_password`` asks the limiter before verifying and counts the failure
only after the slow hash: every guess already in flight when the limit is reached is still
verified, so a burst of N parallel guesses gets N tries instead of ``--auth-max-failures``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from access_world import seed_admin, settings_for
from aiohttp.test_utils import TestClient
from test_auth_api import API, basic, store_uri  # noqa: F401  (the store_uri fixture)

from gateway.app import create_app


async def test_parallel_guesses_do_not_exceed_the_failure_limit(
        aiohttp_client: Any, store_uri: str, tmp_path: Path) -> None:  # noqa: F811
    await seed_admin(store_uri)
    app = create_app(settings_for(store_uri, tmp_path, auth_max_failures=3))
    client: TestClient = await aiohttp_client(app)

    async def guess(i: int) -> int:
        resp = await client.get(f"{API}/experiments/get", params={"experiment_id": "0"},
                                headers=basic("root", f"wrong-{i}"))
        return resp.status

    statuses = await asyncio.gather(*(guess(i) for i in range(30)))
    verified = statuses.count(401)
    assert verified <= 3, f"{verified} of 30 parallel guesses were verified; the limit is 3"
    await client.close()
