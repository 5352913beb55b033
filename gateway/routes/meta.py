"""Server-level routes: health, version, server-info."""

from __future__ import annotations

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from gateway import __version__
from gateway.render import json_response
from gateway.routing import Route

__all__ = ["MLFLOW_COMPAT_VERSION", "ROUTES"]

# The MLflow version whose wire contract we answer; the client compares against it.
MLFLOW_COMPAT_VERSION = "3.17.2"

_PUBLIC = Access(ResourceKind.PUBLIC, Action.READ)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def version(request: web.Request) -> web.Response:
    return web.Response(text=MLFLOW_COMPAT_VERSION, content_type="text/html",
                        headers={"X-Mlgate-Version": __version__})


async def server_info(request: web.Request) -> web.Response:
    # Multipart and presigned transfers stay off, so every byte passes through the gateway.
    return json_response({
        "store_type": "SqlStore",
        "workspaces_enabled": False,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
        "presigned_upload_run_id_supported": False,
        "presigned_upload_model_id_supported": False,
        "features_enabled": {"gateway": False},
    })


ROUTES = [
    Route("GET", "/health", health, _PUBLIC, prefixes=("",)),
    Route("GET", "/version", version, _PUBLIC, prefixes=("",)),
    Route("GET", "/server-info", server_info, _PUBLIC,
          prefixes=("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")),
]
