"""Prometheus metrics: a registry per app, the request figures counted on the way through,
and ``/metrics`` on the API port (administrators only with ``--auth``) and, with
``--metrics-port``, on a listener of its own.

Requests are counted by the route template that answered (the aiohttp resource's canonical
path, ``/api/2.0/mlflow/runs/get``), never by the raw path: raw paths carry ids, which would
make one series per run and tell anyone who reads the figures which ids exist.

What a request pays for is kept down to a few additions: the request figures are plain
numbers (:class:`RequestFigures`) that a collector reads at scrape time, as the batcher's,
the pool's, the sweep's and the audit log's are (:mod:`gateway.observability.collectors`);
prometheus-client's ``Counter`` and ``Histogram`` cost five times as much per request
(docs/performance.md). prometheus-client still keeps the registry, writes the text format and
serves it, and counts the artifact bytes (a call per 1 MiB chunk).

The registry is the app's own, not prometheus-client's global one: tests run many apps in
one process, and each worker process has its own figures anyway (with ``--workers N``, scrape
each worker's ``--metrics-port`` listener: port + i).
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractResource
from prometheus_client import CollectorRegistry, Counter, ProcessCollector, disable_created_metrics
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.errors import MlflowError
from gateway.keys import SETTINGS
from gateway.observability import request_id
from gateway.observability.collectors import GatewayCollector, histogram_family
from gateway.observability.distribution import Distribution

__all__ = ["METRICS", "METRICS_SITE", "Metrics", "RequestFigures", "count_bytes",
           "metrics_handler", "metrics_listener", "observer"]

# Seconds; from a cached read (under a millisecond) to a large artifact transfer.
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0, 30.0, 60.0)
# A request that matched no route may carry any method token: counted as OTHER unless it is
# one of these, so that junk cannot make new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"
# nginx's code for a request whose client went away before it was answered.
_CANCELLED = 499

# No *_created series (a timestamp per series, which Prometheus ignores in the text format):
# a setting of prometheus-client for the whole process.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _Series:
    """One (route, method, status): its count, and its (route, method)'s latencies."""

    __slots__ = ("count", "latency", "status")

    def __init__(self, status: int, latency: Distribution) -> None:
        self.count = 0
        self.status = status
        self.latency = latency


class RequestFigures(Collector):
    """Requests answered, by route template, method and status, and their latencies by
    route template and method; a collector of the app's registry."""

    def __init__(self) -> None:
        # (resource, method, status) -> its series: one dictionary lookup per request.
        self._seen: dict[tuple[AbstractResource | None, str, int], _Series] = {}
        # (route, method) -> latencies, and the series under each.
        self._latency: dict[tuple[str, str], Distribution] = {}
        self._series: dict[tuple[str, str], list[_Series]] = {}

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        key = (resource, request.method, status)
        series = self._seen.get(key)
        if series is None:
            series = self._learn(*key)
        series.count += 1
        latency = series.latency  # Distribution.add, inline: this runs for every request
        latency.counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        latency.total += seconds

    def _learn(self, resource: AbstractResource | None, method: str, status: int) -> _Series:
        route = resource.canonical if resource is not None else UNMATCHED
        if resource is None and method not in _METHODS:
            method = "OTHER"
        key = (route, method)
        latency = self._latency.get(key)
        if latency is None:
            latency = self._latency[key] = Distribution(LATENCY_BOUNDS)
        peers = self._series.setdefault(key, [])
        series = next((s for s in peers if s.status == status), None)
        if series is None:  # several resources share a template (one per method)
            series = _Series(status, latency)
            peers.append(series)
        if resource is not None or method != "OTHER":
            self._seen[(resource, method, status)] = series
        return series

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        counts = CounterMetricFamily(
            "mlgate_http_requests", "Requests answered, by route template, method and status.",
            labels=("route", "method", "status"))
        for (route, method), peers in sorted(self._series.items()):
            for series in peers:
                counts.add_metric((route, method, str(series.status)), series.count)
        yield counts
        yield histogram_family(
            "mlgate_http_request_duration_seconds",
            "Time from a request's arrival in the app to its response, by route template and "
            "method (streamed bodies included when the handler streams them).",
            sorted(self._latency.items()), ("route", "method"))


class Metrics:
    """The app's registry, its request figures and the artifact byte counter."""

    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestFigures()
        self.registry.register(self.requests)
        self.artifact_bytes = Counter(
            "mlgate_artifact_bytes", "Artifact bytes through the gateway, by store scheme and "
            "direction (in: uploaded to the store, out: downloaded from it).",
            ("store", "direction"), registry=self.registry)
        self.registry.register(GatewayCollector(app))
        ProcessCollector(registry=self.registry)
        self.handler = make_aiohttp_handler(self.registry)


METRICS = web.AppKey("metrics", Metrics)
# The --metrics-port listener's runner, for the addresses it is bound to.
METRICS_SITE = web.AppKey("metrics_site", web.AppRunner)


def observer(figures: RequestFigures | None) -> Middleware:
    """The outermost middleware: gives the request its id (returned as ``X-Request-Id``)
    and, unless metrics are off, times and counts it. A handler that prepares its own
    response sets the header itself (``artifacts.send_file``)."""
    assign, header = request_id.assign, request_id.HEADER
    if figures is None:
        @web.middleware
        async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
            rid = assign(request)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers[header] = rid
                raise
            if not response.prepared:
                response.headers[header] = rid
            return response

        return identify
    observe = figures.observe
    clock = time.perf_counter

    @web.middleware
    async def observe_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = assign(request)
        started = clock()
        status = 500
        try:
            response = await handler(request)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            exc.headers[header] = rid
            raise
        except asyncio.CancelledError:
            status = _CANCELLED
            raise
        finally:
            observe(request, status, clock() - started)
        if not response.prepared:
            response.headers[header] = rid
        return response

    return observe_request


async def count_bytes(request: web.Request, store: str, direction: Literal["in", "out"],
                      chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` as they are, counted into ``mlgate_artifact_bytes``."""
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
