"""Run the app: aiohttp's server plus the connection limits aiohttp lacks.

aiohttp closes a connection that waits too long for a request (``keepalive_timeout``) but
has no timeout for a request head or body that trickles in, and no cap on open
connections, so idle or slow clients can take every file descriptor. Here:

- idle: no request in progress and no byte of the next for ``keepalive_timeout``;
- head: a request's line and headers not complete ``header_timeout`` after its first byte;
- body: the handler waits for a body and no byte has come for ``body_timeout``. While
  the handler is not reading (a slow store), aiohttp pauses the socket and that time does
  not count, so a slow but moving upload is never cut;
- at ``max_connections`` a new connection closes the oldest idle one, as nginx reuses
  keep-alive connections when ``worker_connections`` run out; if every connection has a
  request in progress, the new one gets a 503 and is closed.

The limit sits below the descriptor limit so that ``accept()`` never fails: asyncio
stops accepting for a second after an ``EMFILE``, and new clients would wait that long.

At SIGTERM (or SIGINT) the server first drains for ``drain_seconds``: it keeps listening and
serving, but ``/health`` answers 503 (see :class:`Readiness`) so a load balancer's health
check takes the replica out, and every response says ``Connection: close`` so keep-alive
clients reconnect, through the balancer, to another replica. Then it stops listening, lets
requests in flight finish for up to ``shutdown_timeout``, and the app's cleanup drains the
metric batcher. A second SIGINT (Ctrl-C) cuts the drain short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger, AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

__all__ = ["READINESS", "Limits", "Readiness", "run"]

log = logging.getLogger("mlgate")

# Descriptors kept back from connections: the listening socket's accept burst (the
# backlog, 128) plus the stores' files and pools.
_FD_RESERVE = 256
_REPORT_EVERY = 10.0  # seconds between log lines about closed connections

_REFUSAL_BODY = (b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": '
                 b'"Too many connections; retry later."}')
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n"
            + _REFUSAL_BODY)


@dataclass(frozen=True)
class Limits:
    keepalive_timeout: float
    header_timeout: float
    body_timeout: float
    max_connections: int  # 0: derived from the descriptor limit

    def connection_cap(self) -> int:
        """``max_connections``, or when 0, half the descriptors left after a reserve (a
        connection may hold a file open too: an upload's temporary file, a download)."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
        fit = max(16, (soft - _FD_RESERVE) // 2)
        if self.max_connections == 0:
            return fit
        if self.max_connections > soft - _FD_RESERVE:
            log.warning("--max-connections %d is close to or above the descriptor limit "
                        "(%d): new clients may wait when it is reached",
                        self.max_connections, soft)
        return self.max_connections


class Readiness:
    """Whether this process is going away: set at SIGTERM, read by ``/health``."""

    def __init__(self) -> None:
        self.draining = False

    async def on_response_prepare(self, request: web.BaseRequest,
                                  response: web.StreamResponse) -> None:
        if self.draining:
            # Tell the client before it reuses the connection, rather than closing it
            # under a request the client may already be sending. (The hook runs after
            # aiohttp wrote its own Connection header, so set both.)
            response.force_close()
            response.headers["Connection"] = "close"


READINESS = web.AppKey("readiness", Readiness)


class _Connection(RequestHandler):
    """aiohttp's connection, timing the request head and body as well as idleness."""

    __slots__ = ("_busy", "_clock", "_head_since", "_idle_since", "_last_read", "_payload",
                 "_refused", "_started_at")

    def __init__(self, manager: _Server, *, loop: asyncio.AbstractEventLoop,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._clock = loop.time
        self._busy = False
        self._payload: StreamReader | None = None
        self._idle_since = self._last_read = self._clock()
        self._head_since: float | None = None
        self._started_at = 0.0
        self._refused = False

    @property
    def idle(self) -> bool:
        return not self._busy

    def data_received(self, data: bytes) -> None:
        now = self._last_read = self._clock()
        if not self._busy and self._head_since is None:
            self._head_since = now
        if self._busy and (self._close or self._force_close) and self.transport is not None:
            # Shutting down: aiohttp drops what arrives from here on, so an upload still
            # streaming in would hang until --shutdown-timeout and fail. Take the body of
            # the request in progress; the connection still closes after its answer.
            closing, forced = self._close, self._force_close
            self._close = self._force_close = False
            try:
                super().data_received(data)
            finally:
                self._close, self._force_close = closing or self._close, forced or self._force_close
            return
        super().data_received(data)

    def refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 and close, before any request is read."""
        self._refused = True
        transport.write(_REFUSAL)
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        task = self._task_handler
        super().connection_lost(exc)
        if self._refused and task is not None:
            # Refused in connection_made: aiohttp's request loop was scheduled but has not
            # run, and would start on a connection already lost (an AssertionError nobody
            # retrieves, logged with a traceback per refusal). It has nothing to do.
            task.cancel()

    def request_started(self, payload: StreamReader) -> None:
        self._started_at = perf_counter()
        self._busy = True
        self._payload = payload
        self._head_since = None

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._busy = False
            self._payload = None
            self._idle_since = self._clock()

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse,
                   time: float | None) -> None:
        # aiohttp times the request with loop.time(), which uvloop keeps to the millisecond;
        # the access log's durations are in microseconds.
        if self._logging_enabled and self.access_logger is not None:
            self.access_logger.log(request, response, perf_counter() - self._started_at)

    def overdue(self, now: float, limits: Limits) -> str | None:
        """Why this connection should be closed now, or None."""
        if not self._busy:
            if self._head_since is not None:
                return "head" if now - self._head_since > limits.header_timeout else None
            return "idle" if now - self._idle_since > limits.keepalive_timeout else None
        if self._payload is None or self._payload.is_eof() or self.transport is None:
            return None
        if not self.transport.is_reading():
            # Paused because the handler is not reading: we hold the client back.
            self._last_read = now
            return None
        return "body" if now - self._last_read > limits.body_timeout else None


class _Server(web.Server):
    """aiohttp's server, making :class:`_Connection`\\ s and holding them to the limits."""

    def __init__(self, handler: Any, *, limits: Limits, request_factory: Any,
                 handler_cancellation: bool, loop: asyncio.AbstractEventLoop,
                 **kwargs: Any) -> None:
        super().__init__(handler, request_factory=self._request_started,
                         handler_cancellation=handler_cancellation, loop=loop, **kwargs)
        self._app_request_factory = request_factory
        self._connection_kwargs = kwargs
        self._connection_loop = loop
        self._limits = limits
        self._cap = limits.connection_cap()
        self._open: dict[RequestHandler, None] = {}  # oldest first
        self._closed: Counter[str] = Counter()
        self._next_report = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        shortest = min(limits.keepalive_timeout, limits.header_timeout, limits.body_timeout)
        self._sweep_every = min(1.0, max(0.05, shortest / 4))
        log.info("accepting at most %d connections", self._cap)

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._connection_loop, **self._connection_kwargs)

    def _request_started(self, message: RawRequestMessage, payload: StreamReader,
                         protocol: RequestHandler, writer: AbstractStreamWriter,
                         task: asyncio.Task[None]) -> web.BaseRequest:
        if isinstance(protocol, _Connection):
            protocol.request_started(payload)
        request: web.BaseRequest = self._app_request_factory(message, payload, protocol,
                                                             writer, task)
        return request

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if not isinstance(handler, _Connection):
            return
        if len(self._open) >= self._cap:
            victim = next((c for c in self._open if isinstance(c, _Connection) and c.idle),
                          None)
            if victim is None:
                handler.refuse(transport)
                self._count("refused")
                return
            self._close(victim, "evicted")
        self._open[handler] = None
        if self._sweeper is None:
            self._sweeper = self._connection_loop.call_later(self._sweep_every, self._sweep)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None
                        ) -> None:
        self._open.pop(handler, None)
        super().connection_lost(handler, exc)

    def _close(self, conn: RequestHandler, reason: str) -> None:
        self._open.pop(conn, None)
        conn.force_close()
        self._count(reason)

    def _count(self, reason: str) -> None:
        self._closed[reason] += 1
        self._report(self._connection_loop.time())

    def _report(self, now: float) -> None:
        closed = self._closed
        if now < self._next_report or not (closed.keys() - {"idle"}):
            return
        if closed["evicted"] or closed["refused"]:
            log.warning("connection limit of %d reached (--max-connections): oldest idle "
                        "connections closed for new ones: %d; new ones refused with 503 as "
                        "every connection had a request in progress: %d",
                        self._cap, closed["evicted"], closed["refused"])
        if closed["head"] or closed["body"]:
            log.info("connections closed as their request head took over %gs: %d; as "
                     "their body stopped arriving for %gs: %d",
                     self._limits.header_timeout, closed["head"],
                     self._limits.body_timeout, closed["body"])
        closed.clear()
        self._next_report = now + _REPORT_EVERY

    def _sweep(self) -> None:
        now = self._connection_loop.time()
        for conn in list(self._open):
            reason = conn.overdue(now, self._limits) if isinstance(conn, _Connection) else None
            if reason is not None:
                self._close(conn, reason)
        self._report(now)
        self._sweeper = self._connection_loop.call_later(self._sweep_every, self._sweep)

    def pre_shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        super().pre_shutdown()


class _Runner(web.AppRunner):
    """An :class:`~aiohttp.web.AppRunner` whose server is a :class:`_Server`."""

    def __init__(self, app: web.Application, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's startup
        return _Server(plain.request_handler, limits=self._limits,
                       request_factory=plain.request_factory,
                       handler_cancellation=plain.handler_cancellation,
                       loop=asyncio.get_running_loop(), **plain._kwargs)


class AccessLog(Protocol):
    """What serving needs of :class:`gateway.observability.access_log.AccessLog` (named by
    shape: that module depends on the security layer, which depends on the settings, which
    import this module)."""

    def logger_class(self) -> type[AbstractAccessLogger]: ...

    def flush(self) -> None: ...


def run(app: web.Application, *, host: str, port: int, sock: socket.socket | None,
        limits: Limits, shutdown_timeout: float, drain_seconds: float = 0.0,
        access_log: AccessLog | None = None,
        started: Callable[[Sequence[Any]], None] = lambda addresses: None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
    """Serve *app* on *sock*, or on *host*:*port*, until SIGINT or SIGTERM; then drain for
    ``drain_seconds`` (see the module docstring) and shut down gracefully (as
    :func:`aiohttp.web.run_app`). ``access_log``: where each request's line goes (None:
    nowhere). ``started`` is given the addresses listened on. ``loop_factory``: the event
    loop to run on (None: asyncio's default)."""
    readiness = app.setdefault(READINESS, Readiness())
    app.on_response_prepare.append(readiness.on_response_prepare)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(app, host=host, port=port, sock=sock, limits=limits,
                          shutdown_timeout=shutdown_timeout, drain_seconds=drain_seconds,
                          readiness=readiness, access_log=access_log, started=started))


async def _serve(app: web.Application, *, host: str, port: int, sock: socket.socket | None,
                 limits: Limits, shutdown_timeout: float, drain_seconds: float,
                 readiness: Readiness, access_log: AccessLog | None,
                 started: Callable[[Sequence[Any]], None]) -> None:
    stop = asyncio.Event()
    interrupted = asyncio.Event()  # SIGINT: Ctrl-C, which a second time skips the drain

    def on_signal(sig: signal.Signals) -> None:
        if sig == signal.SIGINT and stop.is_set():
            interrupted.set()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    # aiohttp's own keep-alive timer also runs from the previous response and ignores a
    # head in progress; set it past the sum so that it never cuts before ours do.
    # Bodies are decoded by gateway.parsing (see body_chunks), not in aiohttp's parser.
    logging_kwargs: dict[str, Any] = {"access_log": None}
    if access_log is not None:
        logging_kwargs = {"access_log": logging.getLogger("mlgate.access"),
                          "access_log_class": access_log.logger_class()}
    runner = _Runner(app, limits=limits, shutdown_timeout=shutdown_timeout,
                     keepalive_timeout=limits.keepalive_timeout + limits.header_timeout,
                     auto_decompress=False, **logging_kwargs)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock) if sock else web.TCPSite(runner, host, port)
        await site.start()
        started(runner.addresses)
        await stop.wait()
        readiness.draining = True
        if drain_seconds > 0:
            log.info("stopping: /health answers 503 for %g s (--drain-seconds) while "
                     "requests are still served, then in-flight requests get up to %g s",
                     drain_seconds, shutdown_timeout)
            # A repeated SIGTERM does not shorten it: a supervisor that signals the whole
            # process group and `serve --workers`, which passes its SIGTERM on, send two.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupted.wait(), drain_seconds)
    finally:
        await runner.cleanup()
        if access_log is not None:
            access_log.flush()
