"""Prometheus metrics: a registry per app, the request figures counted on the way through,
and ``/metrics`` on the API port (administrators only with ``--auth``) and, with
``--metrics-port``, on a listener of its own.

Requests are counted by the route template that answered (the aiohttp resource's canonical
path, ``/api/2.0/mlflow/runs/get``), never by the raw path: raw paths carry ids, which would
make one series per run and tell anyone who reads the figures which ids exist. The rest (the
batcher, the connection pool, the sweeps, the audit backlog) is read at scrape time from the
counters those parts keep anyway (:mod:`gateway.observability.collectors`), so the request
path pays only for the request figures (docs/performance.md).

The registry is the app's own, not prometheus-client's global one: tests run many apps in
one process, and each worker process has its own figures anyway (with ``--workers N``, scrape
each worker's ``--metrics-port`` listener: port + i).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractResource
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.aiohttp import make_aiohttp_handler

from gateway.errors import MlflowError
from gateway.keys import SETTINGS
from gateway.observability.collectors import GatewayCollector

__all__ = ["METRICS", "METRICS_SITE", "Metrics", "count_bytes", "metrics_handler",
           "metrics_listener"]

# Seconds; from a cached read (under a millisecond) to a large artifact transfer.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
# A request that matched no route may carry any method token: counted as OTHER unless it is
# one of these, so that junk cannot make new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED = "(unmatched)"
# nginx's code for a request whose client went away before it was answered.
_CANCELLED = 499

# No *_created series (a timestamp per series, which Prometheus ignores in the text format):
# a setting of prometheus-client for the whole process.
disable_created_metrics()  # type: ignore[no-untyped-call]

_Children = tuple[Callable[[], None], Callable[[float], None]]


class Metrics:
    """The app's registry, the request counter and latency histogram, and the artifact
    byte counters."""

    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlgate_http_requests", "Requests answered, by route template, method and status.",
            ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram(
            "mlgate_http_request_duration_seconds",
            "Time from the request's arrival in the app to its response, by route template "
            "and method (streamed bodies included when the handler streams them).",
            ("route", "method"), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.artifact_bytes = Counter(
            "mlgate_artifact_bytes", "Artifact bytes through the gateway, by store scheme and "
            "direction (in: uploaded to the store, out: downloaded from it).",
            ("store", "direction"), registry=self.registry)
        self.registry.register(GatewayCollector(app))
        ProcessCollector(registry=self.registry)
        self.handler = make_aiohttp_handler(self.registry)
        # The labelled children of each (resource, method, status) seen: a lookup here is
        # a tenth of prometheus-client's labels().
        self._children: dict[tuple[AbstractResource | None, str, int], _Children] = {}

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        method = request.method
        if resource is None and method not in _METHODS:
            method = "OTHER"
        key = (resource, method, status)
        children = self._children.get(key)
        if children is None:
            route = resource.canonical if resource is not None else _UNMATCHED
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)).inc,
                self.latency.labels(route, method).observe)
        children[0]()
        children[1](seconds)

    def middleware(self) -> Middleware:
        """The outermost middleware: times and counts every request the app answers."""
        observe = self.observe
        clock = time.perf_counter

        @web.middleware
        async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = clock()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = _CANCELLED
                raise
            finally:
                observe(request, status, clock() - started)

        return count_requests


METRICS = web.AppKey("metrics", Metrics)
# The --metrics-port listener's runner, for the addresses it is bound to.
METRICS_SITE = web.AppKey("metrics_site", web.AppRunner)


async def count_bytes(request: web.Request, store: str, direction: Literal["in", "out"],
                      chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` as they are, counted into ``mlgate_artifact_bytes`` (a 1 MiB chunk costs
    one addition)."""
    metrics = request.app.get(METRICS)
    if metrics is None:
        async for chunk in chunks:
            yield chunk
        return
    inc = metrics.artifact_bytes.labels(store, direction).inc
    async for chunk in chunks:
        inc(len(chunk))
        yield chunk


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: the app's registry in Prometheus' text format (OpenMetrics when the
    scraper asks for it)."""
    metrics = request.app.get(METRICS)
    if metrics is None:
        raise MlflowError("Metrics are off on this server (--no-metrics).",
                          "ENDPOINT_NOT_FOUND")
    return await metrics.handler(request)


async def metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` entry: ``/metrics`` alone, unauthenticated, on ``--metrics-host`` and
    ``--metrics-port``, for as long as the app runs."""
    settings = app[SETTINGS]
    side = web.Application()
    side.router.add_get("/metrics", app[METRICS].handler)
    runner = web.AppRunner(side, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
        app[METRICS_SITE] = runner
        yield
    finally:
        await runner.cleanup()

