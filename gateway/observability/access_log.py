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
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.observability.request_id import request_id_of
from gateway.security.middleware import admission_of
from gateway.security.state import SECURITY

__all__ = ["FLUSH_EVERY", "AccessLog"]

log = logging.getLogger("mlgate.access")

FLUSH_EVERY = 0.1  # seconds a line may wait to be written
_MAX_PENDING = 100_000  # lines kept between two writes at most (a stalled stderr)
_PLAIN = re.compile(r"[A-Za-z0-9._:+/=@-]+", re.ASCII)
_UNROUTED = "(unmatched)"


def _text_value(value: str) -> str:
    """``value`` as is when plain, else JSON-quoted: a user name with a space or a newline
    cannot split or forge a line."""
    return value if _PLAIN.fullmatch(value) else orjson.dumps(value).decode()


class AccessLog:
    """Collects the lines of one process and writes them in batches; :meth:`logger_class`
    is the class aiohttp's server is given (``access_log_class``)."""

    def __init__(self, fmt: str) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"access log format must be text or json, not {fmt!r}")
        self._json = fmt == "json"
        self._pending: list[tuple[Any, ...]] = []
        self._flush: asyncio.TimerHandle | None = None
        self._pid = os.getpid()
        self._second = -1  # the second _stamp was formatted for
        self._stamp = ("", "")

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
            def log(self, request: web.BaseRequest, response: web.StreamResponse,
                    time: float) -> None:
                collector.add(request, response, time)

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
                route = resource.canonical
            security = info.current_app.get(SECURITY)
        # The address the audit log and the login limits read (--auth-trusted-proxies).
        client = (security.authenticator.client_address(request)
                  if security is not None else request.remote or "")
        admitted = admission_of(request)
        user = workspace = None
        if admitted is not None:
            workspace = admitted.workspace
            if admitted.identity is not None:
                user = admitted.identity.username
        self._pending.append((time.time(), client, user, workspace, request.method, route,
                              response.status, response.body_length, seconds,
                              request_id_of(request)))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)

    def flush(self) -> None:
        """Write the kept lines now (also at shutdown)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending = self._pending, []
        if pending:
            line = self._json_line if self._json else self._text_line
            log.info("%s", "\n".join([line(*p) for p in pending]))

    def _stamps(self, when: float) -> tuple[str, str]:
        """The second of ``when`` as logging's default time (local) and as ISO 8601 (UTC),
        formatted once a second."""
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)),
                           time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return self._stamp

    def _text_line(self, when: float, client: str, user: str | None, workspace: str | None,
                   method: str, route: str, status: int, size: int, seconds: float,
                   request_id: str) -> str:
        # Method: an HTTP token (aiohttp's parser refuses others), never a space or a quote.
        return (f"{self._stamps(when)[0]},{int(when % 1 * 1000):03d} INFO mlgate.access "
                f'[{self._pid}] {client or "-"} "{method} {route}" {status} bytes={size} '
                f"ms={seconds * 1000:.1f} user={_text_value(user) if user else '-'} "
                f"workspace={workspace or '-'} request_id={request_id}")

    def _json_line(self, when: float, client: str, user: str | None, workspace: str | None,
                   method: str, route: str, status: int, size: int, seconds: float,
                   request_id: str) -> str:
        return orjson.dumps({
            "time": f"{self._stamps(when)[1]}.{int(when % 1 * 1000):03d}Z",
            "client": client or None, "user": user, "workspace": workspace, "method": method,
            "route": route, "status": status, "bytes": size, "ms": round(seconds * 1000, 3),
            "request_id": request_id}).decode()
