"""``create_app(settings)``: the only way to build the gateway (CLI, tests and deploy use it)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from backends.artifacts.base import ArtifactStore
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_artifact_store, open_metadata_store, redact_uri
from gateway.batcher import Batcher
from gateway.errors import BASE_PATH, error_middleware
from gateway.hosts import allowed_hosts, host_middleware
from gateway.keys import ARTIFACTS, BATCHER, GC_SWEEPER, METADATA, SETTINGS, SWEEPER, UI_BUNDLE
from gateway.observability.metrics import METRICS, Metrics, metrics_listener, observer
from gateway.routing import access_middleware, install
from gateway.settings import Settings
from gateway.sweeper import MetadataLedger, Sweeper
from gateway.ui_bundle import find_bundle

__all__ = ["create_app"]

log = logging.getLogger("mlgate")


def create_app(settings: Settings) -> web.Application:
    from gateway.routes import all_routes, ui
    from gateway.security import enforcer

    secured = settings.auth or settings.workspaces_enabled
    hosts = allowed_hosts(settings.allowed_hosts)
    app = web.Application(client_max_size=64 * 1024**2)  # JSON bodies; uploads stream
    metrics = Metrics(app) if settings.metrics else None
    # Request ids and figures outermost, so that every answer has them, the host check's too.
    app.middlewares.extend([
        observer(metrics.requests if metrics is not None else None),
        *([] if "*" in hosts else [host_middleware(hosts)]), error_middleware,
        enforcer() if secured else access_middleware])
    app[SETTINGS] = settings
    if metrics is not None:
        app[METRICS] = metrics
    app.cleanup_ctx.append(_metadata_ctx)
    app.cleanup_ctx.append(_batcher_ctx)  # cleaned up first: drains before the store closes
    if settings.serve_artifacts:
        app.cleanup_ctx.append(_artifacts_ctx)
    if secured:
        app.cleanup_ctx.append(_security_ctx)
    if settings.gc_interval > 0:
        app.cleanup_ctx.append(_gc_ctx)  # after the artifacts destination: it deletes there
    if settings.metrics_port:
        app.cleanup_ctx.append(metrics_listener)  # last: up once everything it reads is
    app[UI_BUNDLE] = bundle = find_bundle(settings.static_dir)
    if bundle is None:
        log.warning("the MLflow web UI is not installed: / explains how to get it "
                    "(mlgate ui install)")
    app[BASE_PATH] = base = settings.static_prefix or ""
    install(app, [*all_routes(), ui.AT_PREFIX] if base else all_routes(), base)
    return app


async def _metadata_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store: MetadataStore = open_metadata_store(
        settings.backend_store_uri, **settings.metadata_store_options()
    )
    await store.open()
    log.debug("metadata store: %s", redact_uri(settings.backend_store_uri))
    app[METADATA] = store
    try:
        yield
    finally:
        await store.aclose()


async def _batcher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    batcher = Batcher(
        app[METADATA],
        max_rows=settings.batch_max_rows,
        max_delay=settings.batch_max_delay_ms / 1000,
        max_queue_rows=settings.batch_queue_rows,
        queue_timeout=settings.batch_queue_timeout,
        writers=settings.batch_writers or app[METADATA].batch_writers,
    )
    batcher.start()
    app[BATCHER] = batcher
    try:
        yield
    finally:
        await batcher.close()


async def _security_ctx(app: web.Application) -> AsyncIterator[None]:
    from gateway.security import SECURITY, Security

    security = Security(app[METADATA], app[SETTINGS])
    security.start()
    app[SECURITY] = security
    try:
        yield
    finally:
        await security.close()


async def _artifacts_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store: ArtifactStore = open_artifact_store(
        settings.artifacts_destination, **settings.artifact_store_options()
    )
    sweeper = None
    if settings.sweep_interval > 0:
        store.ledger = MetadataLedger(app[METADATA])
        sweeper = Sweeper(app[METADATA], store, store.ledger,
                          interval=settings.sweep_interval,
                          abandoned_age=settings.abandoned_upload_age,
                          grace=settings.body_timeout + 10)
    await store.open()
    log.debug("artifacts destination: %s", redact_uri(settings.artifacts_destination))
    app[ARTIFACTS] = store
    if sweeper is not None:
        sweeper.start()
        app[SWEEPER] = sweeper
    try:
        yield
    finally:
        if sweeper is not None:
            await sweeper.close()
        await store.aclose()


async def _gc_ctx(app: web.Application) -> AsyncIterator[None]:
    from gateway.gc import GcSweeper

    settings = app[SETTINGS]
    older_than_ms = settings.gc_older_than_ms
    assert older_than_ms is not None  # Settings.validate refused anything else
    sweeper = GcSweeper(app[METADATA], app.get(ARTIFACTS), settings,
                        interval=settings.gc_interval, older_than_ms=older_than_ms)
    sweeper.start()
    app[GC_SWEEPER] = sweeper
    try:
        yield
    finally:
        await sweeper.close()
