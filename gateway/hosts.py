"""The Host header check against DNS rebinding, as stock MLflow 3.17's security middleware.

A web page on a name its owner re-points at 127.0.0.1 may call a server on the visitor's
machine as same-origin; the browser still sends the page's name as ``Host``. A server
without ``--auth`` would do what such a page asks. So a request whose Host matches none
of ``--allowed-hosts`` is refused 403 with stock's text; ``/health`` and ``/version`` are
not, for load balancers that probe by address (under the API prefixes the refusal is MLflow
JSON, elsewhere stock's text). Patterns as stock's
``MLFLOW_SERVER_ALLOWED_HOSTS``: the Host header as sent (port included), exact or with
``*`` wildcards (fnmatch); ``*`` alone allows every host.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import API_PREFIXES, BASE_PATH, error_body
from gateway.render import json_response

__all__ = ["INVALID_HOST", "allowed_hosts", "host_middleware"]

log = logging.getLogger("mlgate")

INVALID_HOST = "Invalid Host header - possible DNS rebinding attack detected"


# A client sends the same Host on every request, and parsing it as an address cost 4% of
# a log-metric request; many different ones only evict each other.
@functools.lru_cache(maxsize=256)
def _default_host(host: str) -> bool:
    """Stock's default list (loopback names with any port, the private ranges), read as
    addresses: stock's patterns (``10.*``) also let ``10.evil.example``, a name an attacker
    may point at this machine, through."""
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name or (port and not port.isdigit()):
        name, port = host, ""
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_unspecified


def allowed_hosts(setting: str) -> tuple[str, ...]:
    """The patterns of ``--allowed-hosts`` (comma-separated); empty: the default check."""
    return tuple(p.strip() for p in setting.split(",") if p.strip())


def _allowed(patterns: tuple[str, ...], host: str | None) -> bool:
    if not host:
        return False
    if not patterns:
        return _default_host(host)
    return any(fnmatch.fnmatchcase(host, p) if "*" in p else host == p for p in patterns)


def host_middleware(patterns: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check_host(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                         ) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not _allowed(patterns, host):
            base = request.app.get(BASE_PATH, "")
            path = request.path
            if path not in (base + "/health", base + "/version"):
                log.warning("refused a request with Host header %r", host)
                if path.startswith(base) and path[len(base):].startswith(API_PREFIXES):
                    return json_response(error_body("PERMISSION_DENIED", INVALID_HOST),
                                         status=403)
                return web.Response(status=403, text=INVALID_HOST)
        return await handler(request)

    return check_host
