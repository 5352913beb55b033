"""Every route declares its access, and a route without one is refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web

from auth.access import Access
from gateway.app import create_app
from gateway.routes import all_routes
from gateway.routing import ROUTES
from gateway.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(backend_store_uri=f"sqlite:///{tmp_path}/r.db",
                    artifacts_destination=str(tmp_path / "art"))


def test_every_route_declares_access() -> None:
    routes = all_routes()
    assert routes
    for route in routes:
        assert isinstance(route.access, Access), route.path


def test_every_registered_route_is_in_the_access_table(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    table = app[ROUTES]
    for resource in app.router.resources():
        for route in resource:
            if route.method == "HEAD":
                continue  # aiohttp adds HEAD for every GET
            assert route in table, f"{route.method} {resource.canonical} declares no access"


def test_both_api_prefixes_are_served(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    paths = {r.canonical for r in app.router.resources()}
    for route in all_routes():
        for prefix in route.prefixes:
            # canonical drops a variable's regex: "{path:.*}" shows as "{path}"
            assert re.sub(r"\{(\w+):[^}]*\}", r"{\1}", prefix + route.path) in paths


async def test_undeclared_route_is_refused(aiohttp_client: Any, tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="should not be reached")

    app.router.add_get("/api/2.0/mlflow/sneaky", sneaky)  # bypasses install(): no Access
    client = await aiohttp_client(app)
    resp = await client.get("/api/2.0/mlflow/sneaky")
    assert resp.status == 403
    assert (await resp.json())["error_code"] == "PERMISSION_DENIED"
