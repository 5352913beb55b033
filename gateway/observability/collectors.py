"""Figures read at scrape time from the counters the gateway's parts keep anyway: the metric
batcher, the metadata store's connections, authentication, the audit log's backlog, the
artifact sweep and garbage collection. Nothing here runs on a request's path.

On SQLite the "connections" are the store's read connections (``--sqlite-readers``): a read
waits for one with no timeout, so there is no waiting count and no timeouts to report; the
one writer shows as ``mlgate_metadata_writer_busy``. PostgreSQL reports its pool
(``--db-pool-size`` and overflow) in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.keys import BATCHER, GC_SWEEPER, METADATA, SWEEPER
from gateway.observability.distribution import Distribution
from gateway.security.state import SECURITY
from gateway.version import __version__

__all__ = ["GatewayCollector", "histogram_family"]

# (key in Batcher.stats(), family name, help)
_BATCHER_COUNTS = (
    ("requests", "requests", "Write requests (metrics, params, tags) submitted."),
    ("rows", "rows", "Rows taken into transactions."),
    ("batches", "batches", "Transactions started."),
    ("bisections", "bisections", "Failed transactions retried by halves to find the culprit."),
    ("refused_requests", "refused_requests", "Requests the store refused (unknown run...)."),
    ("failed_requests", "failed_requests", "Requests whose transaction failed."),
    ("queue_full_rejections", "queue_full", "Requests answered 503: the queue stayed full."),
)
_BATCHER_DISTRIBUTIONS = {
    "batch_rows": ("mlgate_batcher_batch_rows", "Rows per batcher transaction."),
    "wait_seconds": ("mlgate_batcher_wait_seconds", "Queue time of each batch's oldest request."),
    "commit_seconds": ("mlgate_batcher_commit_seconds", "Time to write and commit one batch."),
}
_POOL_COUNTS = (
    ("opened", "Connections opened."),
    ("closed", "Connections closed."),
    ("recycled", "Connections closed after --db-pool-recycle seconds."),
    ("invalidated", "Connections found broken or retired after one was."),
    ("timeouts", "Requests that waited --db-pool-timeout for a connection and got 503."),
    ("connect_errors", "Connection attempts that failed."),
)
_GC_DELETED = ("runs", "experiments", "logged_models", "metric_points", "artifact_folders")


class GatewayCollector(Collector):
    """Reads the app's parts when ``/metrics`` is scraped."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def describe(self) -> Iterable[Metric]:
        # The families depend on what is configured (auth, sweep, gc); no fixed list.
        return []

    def collect(self) -> Iterator[Metric]:
        app = self._app
        yield InfoMetricFamily("mlgate_build", "The running mlgate.", {"version": __version__})
        if BATCHER in app:
            yield from _batcher(app[BATCHER].stats(), app[BATCHER].distributions)
        if METADATA in app:
            yield from _metadata(app[METADATA].stats())
        security = app.get(SECURITY)
        if security is not None:
            yield _counter("mlgate_auth_failed_logins", "Logins refused: a wrong password, "
                           "an unknown user, or an unknown, revoked or expired token.",
                           security.failed_logins)
            yield _counter("mlgate_auth_rate_limited", "Login attempts answered 429 by the "
                           "failed-login limit (--auth-max-failures).", security.rate_limited)
            yield _counter("mlgate_rate_limited_requests", "Requests answered 429 by a "
                           "workspace's or a caller's rate limit (mlgate limits).",
                           security.limits.refused)
            yield _gauge("mlgate_rate_limit_processes", "Server processes alive that share "
                         "each rate limit (1 while no limit is set).", security.limits.processes)
            if security.audit is not None:
                yield _gauge("mlgate_audit_pending_records", "Audit records queued and not "
                             "yet stored in the database.", security.audit.pending)
                yield _counter("mlgate_audit_dropped_records", "Audit records never stored: "
                               "the backlog was full (the JSON log line may remain).",
                               security.audit.dropped)
        sweeper = app.get(SWEEPER)
        if sweeper is not None:
            yield from _sweeper(sweeper.stats())
        gc = app.get(GC_SWEEPER)
        if gc is not None:
            yield from _gc(gc.stats())


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def histogram_family(name: str, doc: str,
                     series: Iterable[tuple[tuple[str, ...], Distribution]],
                     labels: Sequence[str] = ()) -> HistogramMetricFamily:
    """A histogram family of ``series`` (label values and their distribution)."""
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, dist in series:
        buckets, running = [], 0
        for bound, count in zip((*dist.bounds, float("inf")), dist.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        family.add_metric(list(values), buckets, dist.total)
    return family


def _batcher(stats: Mapping[str, Any], distributions: Mapping[str, Distribution]
             ) -> Iterator[Metric]:
    for key, name, doc in _BATCHER_COUNTS:
        yield _counter(f"mlgate_batcher_{name}", doc, stats[key])
    yield _gauge("mlgate_batcher_queued_requests", "Write requests waiting for a transaction.",
                 stats["queued_requests"])
    yield _gauge("mlgate_batcher_queued_rows", "Rows waiting for a transaction.",
                 stats["queued_rows"])
    yield _gauge("mlgate_batcher_queue_capacity_rows", "Rows that may wait before requests "
                 "are held back (--batch-queue-rows).", stats["max_queue_rows"])
    for key, (name, doc) in _BATCHER_DISTRIBUTIONS.items():
        yield histogram_family(name, doc, [((), distributions[key])])


def _metadata(stats: Mapping[str, Any]) -> Iterator[Metric]:
    if "in_use" not in stats:
        return
    connections = GaugeMetricFamily(
        "mlgate_metadata_connections", "Metadata store connections by state (on SQLite, its "
        "read connections).", labels=("state",))
    connections.add_metric(("in_use",), stats["in_use"])
    connections.add_metric(("idle",), stats["idle"])
    yield connections
    if "waiting" in stats:
        yield _gauge("mlgate_metadata_waiting", "Requests waiting for a connection.",
                     stats["waiting"])
    if "writer_busy" in stats:
        yield _gauge("mlgate_metadata_writer_busy", "1 while SQLite's one writer connection "
                     "is in a transaction.", int(stats["writer_busy"]))
    for key, doc in _POOL_COUNTS:
        if key in stats:
            yield _counter(f"mlgate_metadata_pool_{key}", doc, stats[key])


def _sweeper(stats: Mapping[str, Any]) -> Iterator[Metric]:
    yield _counter("mlgate_sweep_runs", "Sweeps of what cut-off uploads left in the artifacts "
                   "destination.", stats["sweeps"])
    yield _counter("mlgate_sweep_errors", "Sweeps, or removals in one, that failed.",
                   stats["errors"])
    removed = CounterMetricFamily("mlgate_sweep_removed", "Leftovers the sweep removed, by "
                                  "kind.", labels=("kind",))
    for kind, count in sorted(stats["removed"].items()):
        removed.add_metric((kind,), count)
    yield removed


def _gc(stats: Mapping[str, Any]) -> Iterator[Metric]:
    yield _counter("mlgate_gc_runs", "Scheduled garbage collections finished "
                   "(--gc-interval).", stats["sweeps"])
    yield _counter("mlgate_gc_skipped", "Scheduled collections skipped: another process held "
                   "the gc lease.", stats["skipped"])
    yield _counter("mlgate_gc_errors", "Scheduled collections that failed.", stats["errors"])
    deleted = CounterMetricFamily("mlgate_gc_deleted", "What scheduled collections deleted "
                                  "for good.", labels=("what",))
    for what in _GC_DELETED:
        deleted.add_metric((what,), stats["deleted"][what])
    yield deleted
