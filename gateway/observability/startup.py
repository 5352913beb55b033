"""The lines ``mlgate serve`` logs once it listens: where the API, the UI and the metrics
are, which stores it uses (passwords redacted) and whether authentication is on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backends.registry import redact_uri
from gateway.settings import Settings
from gateway.version import __version__

__all__ = ["startup_lines", "url_of"]

_ANY = ("0.0.0.0", "::")


def url_of(address: Any) -> str:
    """``http://host:port`` of a bound socket address (IPv6 in brackets)."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return f"http+unix://{address}"


def _loop_name(settings: Settings) -> str:
    return "asyncio's event loop" if settings.loop_factory() is None else "uvloop"


def startup_lines(settings: Settings, addresses: Sequence[Any], *, ui_installed: bool,
                  metrics_addresses: Sequence[Any] = ()) -> list[str]:
    """Two lines: where to go, then what the server runs on."""
    base = settings.static_prefix or ""
    roots = [url_of(a) + base for a in addresses] or ["(no address)"]
    root = roots[0]
    anywhere = " (all interfaces)" if addresses and addresses[0][0] in _ANY else ""
    ui = f"the UI at {root}/" if ui_installed else f"no UI (not installed; {root}/ says how)"
    where = f"mlgate {__version__} listening on {', '.join(roots)}{anywhere}: the API at " \
            f"{root}/api/2.0/mlflow, {ui}"
    if settings.metrics:
        where += f", metrics at {root}/metrics" + (" (administrators)" if settings.auth else "")
        if metrics_addresses:
            where += " and, without credentials, at " + ", ".join(
                url_of(a) + "/metrics" for a in metrics_addresses)
    if settings.workers > 1 and settings.metrics_port:
        where += (f" (worker i's on port {settings.metrics_port}+i, "
                  f"{settings.workers} workers)")
    artifacts = (f"artifacts proxied to {redact_uri(settings.artifacts_destination)}"
                 if settings.serve_artifacts else
                 f"artifacts not proxied (clients write to {settings.artifact_root})")
    auth = "authentication on" if settings.auth else "authentication OFF"
    if settings.workspaces_enabled and not settings.auth:
        auth += ", workspaces on"
    what = (f"metadata store {redact_uri(settings.backend_store_uri)}, {artifacts}, {auth}, "
            f"access log {settings.access_log.lower()}, {settings.workers} worker"
            + ("s" if settings.workers > 1 else "") + f" on {_loop_name(settings)}")
    return [where, what]
