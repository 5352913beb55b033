"""Server-level routes: health, version, server-info, and mlgate's own stats."""

from __future__ import annotations

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from gateway import __version__
from gateway.keys import BATCHER, METADATA, SETTINGS, SWEEPER
from gateway.observability.metrics import metrics_handler
from gateway.render import json_response
from gateway.routes.artifacts import capabilities
from gateway.routing import Route

__all__ = ["MLFLOW_COMPAT_VERSION", "ROUTES"]

# The MLflow version whose wire contract we answer; the client compares against it.
MLFLOW_COMPAT_VERSION = "3.17.2"

_PUBLIC = Access(ResourceKind.PUBLIC, Action.READ)
# Operators' figures: managing the workspace is the closest thing to "admin" we have.
_ADMIN = Access(ResourceKind.SERVER, Action.READ)  # server-wide figures: all teams


async def health(request: web.Request) -> web.Response:
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
