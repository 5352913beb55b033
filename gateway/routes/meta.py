"""Server-level routes: health, version, server-info, and mlgate's own stats."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from backends.metadata.interface.store import MetadataStore
from gateway.errors import MlflowError
from gateway.keys import BATCHER, METADATA, SETTINGS, SWEEPER
from gateway.observability.metrics import metrics_handler
from gateway.render import json_response
from gateway.routes.artifacts import capabilities
from gateway.routing import Route
from gateway.serving import READINESS
from gateway.version import __version__

__all__ = ["HEALTH_DEADLINE", "MLFLOW_COMPAT_VERSION", "ROUTES"]

# The MLflow version whose wire contract we answer; the client compares against it.
MLFLOW_COMPAT_VERSION = "3.17.2"

_PUBLIC = Access(ResourceKind.PUBLIC, Action.READ)
# Operators' figures: managing the workspace is the closest thing to "admin" we have.
_ADMIN = Access(ResourceKind.SERVER, Action.READ)  # server-wide figures: all teams


# Under a readiness probe's timeout (3 s in deploy/k8s), so the probe sees our 503, not its own
# timeout.
HEALTH_DEADLINE = 2.0
# The read each store is doing for /health right now, shared by every request that comes
# while it runs: a flood of anonymous probes costs the database one query at a time.
_health_reads: weakref.WeakKeyDictionary[MetadataStore, asyncio.Task[int]] = (
    weakref.WeakKeyDictionary())


def _retrieve(task: asyncio.Task[int]) -> None:
    if not task.cancelled():
        task.exception()  # read, so an abandoned read's error is not logged as lost


async def health(request: web.Request) -> web.Response:
    """200 ``OK`` once the metadata store answers a one-row read (its schema version);
    503 ``TEMPORARILY_UNAVAILABLE`` when it fails or takes more than HEALTH_DEADLINE. The
    readiness check: a replica whose database is unreachable leaves the load balancer, and
    so does one that is stopping (503 from SIGTERM on, gateway/serving.py). ``/version``
    answers without the store, for liveness."""
    readiness = request.app.get(READINESS)
    if readiness is not None and readiness.draining:
        raise MlflowError("This server is draining: it is shutting down.",
                          "TEMPORARILY_UNAVAILABLE")
    store = request.app[METADATA]
    read = _health_reads.get(store)
    if read is None or read.done():
        read = _health_reads[store] = asyncio.create_task(store.schema_version())
        read.add_done_callback(_retrieve)
    # asyncio.wait rather than asyncio.timeout: the answer never waits for the cancelled
    # read's cleanup (a rollback on what may be a stalled connection).
    done, _ = await asyncio.wait({read}, timeout=HEALTH_DEADLINE)
    if not done or read.cancelled():  # cancelled: an earlier request's read that timed out
        read.cancel()
        raise MlflowError(f"The metadata store did not answer within {HEALTH_DEADLINE:g} s.",
                          "TEMPORARILY_UNAVAILABLE")
    read.result()  # a backend error becomes its MLflow error (Unavailable: 503)
    return web.Response(text="OK")


async def version(request: web.Request) -> web.Response:
    return web.Response(text=MLFLOW_COMPAT_VERSION, content_type="text/html",
                        headers={"X-Mlgate-Version": __version__})


async def server_info(request: web.Request) -> web.Response:
    # What the artifact routes really do: mpu/* on S3 and Azure (parts through the gateway
    # unless presigned mode is on), presigned downloads only in presigned mode.
    uploads, downloads = capabilities(request.app)
    return json_response({
        "store_type": "SqlStore",
        "workspaces_enabled": request.app[SETTINGS].workspaces_enabled,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": uploads,
        "multipart_downloads_enabled": downloads,
        "presigned_upload_run_id_supported": False,
        "presigned_upload_model_id_supported": False,
        "features_enabled": {"gateway": False},
    })


async def stats(request: web.Request) -> web.Response:
    """Operators' figures: the metadata store's connection pool (in use, idle, waiting,
    opened, recycled, timeouts, ...), the metric batcher's (batch sizes, waits) and the
    artifact sweep's (sweeps, errors, leftovers removed by kind)."""
    sweeper = request.app.get(SWEEPER)
    return json_response({
        "metadata_store": request.app[METADATA].stats(),
        "batcher": request.app[BATCHER].stats(),
        "sweeper": sweeper.stats() if sweeper is not None else None,
    })


# None of these reads a body: an anonymous caller's body is never decoded or parsed.
ROUTES = [
    Route("GET", "/health", health, _PUBLIC, prefixes=("",), body=False),
    Route("GET", "/version", version, _PUBLIC, prefixes=("",), body=False),
    Route("GET", "/server-info", server_info, _PUBLIC,
          prefixes=("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"), body=False),
    Route("GET", "/mlgate/v1/stats", stats, _ADMIN, prefixes=("",), body=False),
    # Prometheus' scrape; --metrics-port serves it without credentials on its own listener.
    Route("GET", "/metrics", metrics_handler, _ADMIN, prefixes=("",), body=False),
]
