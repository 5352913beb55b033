"""The access log (``--access-log text|json``): one line per request on the ``mlgate.access``
logger, through aiohttp's access-log hook, which runs once the response is sent (so the
bytes and the duration are the real ones).

A line names the route template, never the raw path (which carries ids and query strings:
the same reason ``/metrics`` counts by template), and the user and workspace the request was
admitted as. text::

    2025-05-09 10:00:00,123 INFO mlgate.access [4242] 10.0.0.7 "POST /api/2.0/mlflow/runs/log-metric" 200 bytes=193 us=1404 user=alice workspace=default request_id=8c1f...

json, one object a line::

    {"time":"2025-05-09T10:00:00.123Z","client":"10.0.0.7","user":"alice","workspace":"default","method":"POST","route":"/api/2.0/mlflow/runs/log-metric","status":200,"bytes":193,"us":1404,"request_id":"8c1f..."}

The duration is in whole microseconds (as Apache's ``%D``): a float's formatting costs three
times an integer's. Lines are formatted as the response goes out and written together, every
:data:`FLUSH_EVERY` seconds in one logging call (a handler of its own writes them bare, each
with its own time), as the audit log does: a logging call per request would cost the
metric-logging path several percent (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_urldispatcher import AbstractRoute

from gateway.observability.request_id import request_id_of
from gateway.security.middleware import admission_of
from gateway.security.state import SECURITY

__all__ = ["FLUSH_EVERY", "AccessLog"]

log = logging.getLogger("mlgate.access")

FLUSH_EVERY = 0.1  # seconds a line may wait to be written
_MAX_PENDING = 100_000  # lines kept between two writes at most (a stalled stderr)
_PLAIN = re.compile(r"[A-Za-z0-9._:+/=@-]+", re.ASCII)
_UNROUTED = "(unmatched)"
_CODES = {code: str(code) for code in range(100, 600)}





class AccessLog:
    """Collects the lines of one process and writes them in batches; :meth:`logger_class`
    is the class aiohttp's server is given (``access_log_class``)."""

    def __init__(self, app: web.Application, fmt: str) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"access log format must be text or json, not {fmt!r}")
        self._app = app  # the one app served: its security state, read per request
        self._json = fmt == "json"
        self._pending: list[str] = []
        self._routes: dict[AbstractRoute, str] = {}  # route -> template, looked up once
        self._flush: asyncio.TimerHandle | None = None
        self._head = f" INFO mlgate.access [{os.getpid()}] "
        self._millis = self._second = -1  # when _stamp and _day were formatted
        self._stamp = self._day = ""

    def install(self) -> None:
        """Write this logger's lines bare on stderr, outside the root handler's prefix: each
        line carries its own (the batch is one logging call)."""
        if not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(handler)
            log.propagate = False

    @property
    def enabled(self) -> bool:
        # --log-level warning or error silences the access log too.
        return log.isEnabledFor(logging.INFO)

    def logger_class(self) -> type[AbstractAccessLogger]:
        """An :class:`AbstractAccessLogger` (aiohttp makes one per connection) adding to
        this log."""
        collector = self

        class _Logger(AbstractAccessLogger):
            # add itself, not a method calling it: this runs for every request.
            log = staticmethod(collector.add)  # type: ignore[assignment]

            @property
            def enabled(self) -> bool:
                return collector.enabled

        return _Logger

    def add(self, request: web.BaseRequest, response: web.StreamResponse,
            seconds: float) -> None:
        """Format the request's line and keep it; called by aiohttp once the response is
        sent. One function, no call per field: this runs for every request."""
        pending = self._pending
        if len(pending) >= _MAX_PENDING:
            return
        # No match info: refused by aiohttp before routing (a malformed request line).
        info = getattr(request, "_match_info", None)
        route = _UNROUTED
        if info is not None:
            route = self._routes.get(info.route) or self._learn(info.route)
        security = self._app.get(SECURITY)
        user = workspace = None
        if security is None:  # auth and workspaces off: nobody is admitted as anyone
            client = request.remote or ""
        else:
            # The address the audit log and the login limits read (--auth-trusted-proxies).
            # It reads the peer and X-Forwarded-For, which every request has.
            client = security.authenticator.client_address(request)  # type: ignore[arg-type]
            admitted = admission_of(request)
            if admitted is not None:
                workspace = admitted.workspace
                if admitted.identity is not None:
                    user = admitted.identity.username
        # Numbers cost more to format than anything else here (a float's 2,800 instructions,
        # an int's 1,000): the time is formatted once a millisecond, statuses never.
        millis = int(time.time() * 1000)
        if millis != self._millis:
            self._new_millisecond(millis)
        status = response.status
        code = _CODES.get(status) or str(status)
        micros = int(seconds * 1_000_000)
        # Plain by construction, so written unescaped: the client's address, the method (an
        # HTTP token: aiohttp's parser refuses others), the route template, the workspace
        # name and the request id. A user name that is not plain is JSON-quoted, so that no
        # name can split or forge a line.
        if self._json:
            name = ("null" if user is None else f'"{user}"' if _PLAIN.fullmatch(user)
                    else orjson.dumps(user).decode())
            peer = f'"{client}"' if client else "null"
            space = "null" if workspace is None else f'"{workspace}"'
            pending.append(
                f'{{"time":"{self._stamp}","client":{peer},"user":{name},"workspace":{space},'
                f'"method":"{request.method}","route":"{route}","status":{code},'
                f'"bytes":{response.body_length},"us":{micros},'
                f'"request_id":"{request_id_of(request)}"}}')
        else:
            name = ("-" if user is None else user if _PLAIN.fullmatch(user)
                    else orjson.dumps(user).decode())
            pending.append(
                f"{self._stamp}{client or '-'} "
                f'"{request.method} {route}" {code} bytes={response.body_length} '
                f"us={micros} user={name} workspace={workspace or '-'} "
                f"request_id={request_id_of(request)}")
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)

    def _learn(self, route: AbstractRoute) -> str:
        """The route's template; kept unless it is the route of an unmatched path (a new
        one each time)."""
        resource = route.resource
        if resource is None:
            return _UNROUTED
        template = self._routes[route] = resource.canonical
        return template

    def _new_millisecond(self, millis: int) -> None:
        """The stamp of lines written in this millisecond: logging's default time and this
        logger's prefix for text lines, ISO 8601 in UTC for JSON ones."""
        self._millis = millis
        second, part = divmod(millis, 1000)
        if second != self._second:
            self._second = second
            self._day = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) if self._json
                         else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        self._stamp = (f"{self._day}.{part:03d}Z" if self._json
                       else f"{self._day},{part:03d}{self._head}")

    def flush(self) -> None:
        """Write the kept lines now (also at shutdown)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending = self._pending, []
        if pending:
            log.info("%s", "\n".join(pending))
