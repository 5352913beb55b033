"""The route table: every route with the access it declares.

Route modules export ``ROUTES``; :func:`install` registers each under its prefixes and
remembers its :class:`~auth.access.Access`, which the access middleware reads. A route
registered without a declaration is refused for everyone (deny by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from auth.access import Access
from gateway.errors import MlflowError
from gateway.parsing import MESSAGE, Message, read_request

__all__ = ["API", "ARTIFACTS_API", "ROUTES", "Route", "access_middleware", "declared",
           "install"]

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
    # What the handler reads, parsed once before the permission check (gateway.parsing
    # MESSAGE); path variables are added to it.
    message: Message = field(default_factory=Message)
    body: bool = True  # False: the body is streamed bytes, only the query string is parsed
    # A request that is not a protobuf message (a GraphQL document): its own parse step in
    # place of read_request, giving the message the check and the handler read.
    reader: Callable[[web.Request], Awaitable[dict[str, Any]]] | None = None
    # A file download although the access is a READ of another resource (a run's file
    # preview): audited as the artifact proxy's downloads are.
    download: bool = False
    # The metric rows the request writes (log-metric, log-batch), charged to the
    # workspace's and the caller's row limits (gateway.security.limits).
    rows: Callable[[dict[str, Any]], int] | None = None


ROUTES = web.AppKey("routes", dict[web.AbstractRoute, Route])


def install(app: web.Application, routes: Iterable[Route], base: str = "") -> None:
    """Register ``routes`` under each of their prefixes, all under ``base`` (the server's
    ``--static-prefix``)."""
    table = app.setdefault(ROUTES, {})
    for route in routes:
        for prefix in route.prefixes:
            registered = app.router.add_route(route.method, base + prefix + route.path,
                                              route.handler)
            table[registered] = route


def declared(request: web.Request) -> Route | None:
    """The route table's entry for the request's route (None: a 404/405, or undeclared)."""
    return request.app[ROUTES].get(request.match_info.route)


async def parse_into(request: web.Request, route: Route) -> None:
    """Parse the request into its route's message, once (see :data:`MESSAGE`)."""
    if route.reader is not None:
        request[MESSAGE] = await route.reader(request)
    else:
        request[MESSAGE] = await read_request(request, route.message, body=route.body)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The enforcement point with auth and workspaces off: routes with no declared access
    are refused and everything else is served as is. With either on, the app has
    :func:`gateway.security.enforcer`'s in its place, which authenticates, selects the
    workspace and checks the declared access."""
    if request.match_info.http_exception is not None:
        return await handler(request)
    route = declared(request)
    if route is None:
        raise MlflowError("Permission denied: the route declares no access rule.",
                          "PERMISSION_DENIED")
    await parse_into(request, route)
    return await handler(request)
