"""The route table: every route with the access it declares.

Route modules export ``ROUTES``; :func:`install` registers each under its prefixes and
remembers its :class:`~auth.access.Access`, which the access middleware reads. A route
registered without a declaration is refused for everyone (deny by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from auth.access import Access
from gateway.errors import MlflowError

__all__ = ["API", "ARTIFACTS_API", "ROUTE_ACCESS", "Route", "access_middleware", "install"]

API = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACTS_API = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")

HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # relative to each prefix
    handler: HandlerFn
    access: Access
    prefixes: tuple[str, ...] = API


ROUTE_ACCESS = web.AppKey("route_access", dict[web.AbstractRoute, Access])


def install(app: web.Application, routes: Iterable[Route]) -> None:
    table = app.setdefault(ROUTE_ACCESS, {})
    for route in routes:
        for prefix in route.prefixes:
            registered = app.router.add_route(route.method, prefix + route.path, route.handler)
            table[registered] = route.access


def declared_access(request: web.Request) -> Access | None:
    return request.app[ROUTE_ACCESS].get(request.match_info.route)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The enforcement point with auth and workspaces off: routes with no declared access
    are refused and everything else is served as is. With either on, the app has
    :func:`gateway.security.enforcer`'s in its place, which authenticates, selects the
    workspace and checks the declared access."""
    if request.match_info.http_exception is not None:
        return await handler(request)
    access = declared_access(request)
    if access is None:
        raise MlflowError("Permission denied: the route declares no access rule.",
                          "PERMISSION_DENIED")
    return await handler(request)
