"""The access log (``--access-log text|json``): one line per request on the ``mlgate.access``
logger, through aiohttp's access-log hook, which runs once the response is sent (so the
bytes and the duration are the real ones).

A line names the route template, never the raw path (which carries ids and query strings:
the same reason ``/metrics`` counts by template), and the user and workspace the request was
admitted as. text::

    2025-05-09 10:00:00,123 INFO mlgate.access [4242] 10.0.0.7 "POST /api/2.0/mlflow/runs/log-metric" 200 bytes=2 ms=1.4 user=alice workspace=default request_id=8c1f...

json, one object a line::

    {"time":"2025-05-09T10:00:00.123Z","client":"10.0.0.7","user":"alice","workspace":"default","method":"POST","route":"/api/2.0/mlflow/runs/log-metric","status":200,"bytes":2,"ms":1.4,"request_id":"8c1f..."}

Lines are kept and written together, every :data:`FLUSH_EVERY` seconds in one logging call
(a handler of its own writes them bare, each with its own time), as the audit log does: a
logging call per request cost the metric-logging path several percent
(docs/performance.md).
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
from aiohttp.web_urldispatcher import AbstractResource

from gateway.observability.request_id import request_id_of
from gateway.security.middleware import admission_of
from gateway.security.state import SECURITY

__all__ = ["FLUSH_EVERY", "AccessLog"]

log = logging.getLogger("mlgate.access")

FLUSH_EVERY = 0.1  # seconds a line may wait to be written
_MAX_PENDING = 100_000  # lines kept between two writes at most (a stalled stderr)
_PLAIN = re.compile(r"[A-Za-z0-9._:+/=@-]+", re.ASCII)
_UNROUTED = "(unmatched)"


# A request's line, kept until the batch is written: time, client, user, workspace, method,
# route template, status, bytes, seconds, request id. A user name that is not plain is
# JSON-quoted in the text format, so that a space or a newline cannot split or forge a line.
_Line = tuple[float, str, str | None, str | None, str, str, int, int, float, str]


class AccessLog:
    """Collects the lines of one process and writes them in batches; :meth:`logger_class`
    is the class aiohttp's server is given (``access_log_class``)."""

    def __init__(self, fmt: str) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"access log format must be text or json, not {fmt!r}")
        self._json = fmt == "json"
        self._pending: list[_Line] = []
        self._routes: dict[AbstractResource, str] = {}  # resource -> template, looked up once
        self._flush: asyncio.TimerHandle | None = None
        self._pid = os.getpid()
        self._second = -1  # the second _local and _utc were formatted for
        self._local = self._utc = ""

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
        """Keep the request's line; called by aiohttp once the response is sent."""
        if len(self._pending) >= _MAX_PENDING:
            return
        # No match info: refused by aiohttp before routing (a malformed request line).
        info = getattr(request, "_match_info", None)
        route, security = _UNROUTED, None
        if info is not None:
            resource = info.route.resource
            if resource is not None:
                route = self._routes.get(resource) or self._learn(resource)
            security = info.current_app.get(SECURITY)
        user = workspace = None
        if security is None:  # auth and workspaces off: nobody is admitted as anyone
            client = request.remote or ""
        else:
            # The address the audit log and the login limits read (--auth-trusted-proxies).
            client = security.authenticator.client_address(request)
            admitted = admission_of(request)
            if admitted is not None:
                workspace = admitted.workspace
                if admitted.identity is not None:
                    user = admitted.identity.username
        self._pending.append((time.time(), client, user, workspace, request.method, route,
                              response.status, response.body_length, seconds,
                              request_id_of(request)))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)

    def _learn(self, resource: AbstractResource) -> str:
        route = self._routes[resource] = resource.canonical
        return route

    def flush(self) -> None:
        """Write the kept lines now (also at shutdown)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending = self._pending, []
        if pending:
            lines = self._json_lines(pending) if self._json else self._text_lines(pending)
            log.info("%s", "\n".join(lines))

    def _second_of(self, when: float) -> int:
        """``when``'s second, its two stamps (logging's default local time, ISO 8601 UTC)
        formatted once a second."""
        second = int(when)
        if second != self._second:
            self._second = second
            self._local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return second

    def _text_lines(self, pending: list[_Line]) -> list[str]:
        # One loop over the batch, no call per line: this runs for every request.
        head = f" INFO mlgate.access [{self._pid}] "
        plain = _PLAIN.fullmatch
        out = []
        for when, client, user, workspace, method, route, status, size, seconds, rid in pending:
            millis = int((when - self._second_of(when)) * 1000)
            # The method is an HTTP token (aiohttp's parser refuses others): no space or quote.
            name = "-" if user is None else user if plain(user) else orjson.dumps(user).decode()
            out.append(f"{self._local},{millis:03d}{head}{client or '-'} "
                       f'"{method} {route}" {status} bytes={size} ms={seconds * 1000:.1f} '
                       f"user={name} workspace={workspace or '-'} request_id={rid}")
        return out

    def _json_lines(self, pending: list[_Line]) -> list[str]:
        # Written as text, not through orjson.dumps of a dict (twice the time): every value
        # but the user name is plain by construction (an address, an HTTP token, a route
        # template, a workspace name, a request id), so it needs no escaping.
        plain = _PLAIN.fullmatch
        out = []
        for when, client, user, workspace, method, route, status, size, seconds, rid in pending:
            millis = int((when - self._second_of(when)) * 1000)
            name = ("null" if user is None else f'"{user}"' if plain(user)
                    else orjson.dumps(user).decode())
            space = "null" if workspace is None else f'"{workspace}"'
            peer = f'"{client}"' if client else "null"
            out.append(f'{{"time":"{self._utc}.{millis:03d}Z","client":{peer},"user":{name},'
                       f'"workspace":{space},"method":"{method}","route":"{route}",'
                       f'"status":{status},"bytes":{size},"ms":{seconds * 1000:.3f},'
                       f'"request_id":"{rid}"}}')
        return out
