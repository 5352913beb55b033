"""The ``mlgate`` command: ``serve`` and the operator commands. Thin: parse, build
:class:`Settings`, call :func:`create_app`."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from backends.errors import BackendError
from backends.registry import open_metadata_store, redact_uri
from gateway import serving
from gateway.audit import add_json_lines_handler
from gateway.cli_options import build_settings, settings_options
from gateway.observability.client_errors import quiet_client_errors
from gateway.settings import SETTINGS, ConfigError, Settings

__all__ = ["main"]

log = logging.getLogger("mlgate")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    # Audit records are JSON lines of their own (one logging call carries a batch of them),
    # so their handler adds no prefix, and they do not pass through the root handler.
    add_json_lines_handler()
    quiet_client_errors()


@click.group()
@click.version_option(package_name="mlgate")
def main() -> None:
    """mlgate: an asyncio drop-in replacement for `mlflow server`."""


@main.command()
@settings_options(tuple(s.name for s in SETTINGS))
def serve(**flags: Any) -> None:
    """Serve the MLflow tracking API and the artifact proxy."""
    settings = build_settings(flags)
    try:
        settings.check_exposure()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _configure_logging(settings.log_level)
    log.debug("starting mlgate with %s", settings.public_dict())
    # Migrate once, in this process, before any worker accepts requests.
    asyncio.run(_upgrade(settings))
    if settings.workers == 1:
        _run_worker(settings, reuse_port=False)
        return
    # Several processes share the port through SO_REUSEPORT; each runs its own event loop.
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_run_worker, args=(settings, True, i), daemon=False)
             for i in range(settings.workers)]
    for p in procs:
        p.start()
    # A container's stop signal reaches only this process: pass it on, so that the workers
    # drain and finish their requests instead of dying with us.
    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            p.terminate()

    signal.signal(signal.SIGTERM, forward)
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
    sys.exit(max((p.exitcode or 0) for p in procs))


# Young-generation size of the cyclic garbage collector in a serving worker (CPython's
# default is 700 net allocations). Measured over 10 s of log-metric at 64 clients (about
# 95k requests): the default ran 770 young, 70 middle and 6 full collections, 0.36 s in
# all, the full ones about 23 ms each, walking the whole heap (hence the p99); with the
# startup heap frozen and this threshold, 94 young, 8 middle and 1 full, 0.03 s.
_GC_YOUNG = 50_000


async def _settle_heap(app: web.Application) -> None:
    """Once the worker is up: collect, then move everything alive (modules, the app, pools,
    caches) out of the collector's sight (gc.freeze), and collect the young generation
    less often. Objects are still freed as usual; only cycles among the frozen ones would
    stay, and those are the worker's lifetime objects anyway."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG, older, oldest)


def _run_worker(settings: Settings, reuse_port: bool, index: int = 0) -> None:
    """Serve in this process; worker ``index`` of several has its own metrics listener
    (``--metrics-port`` + index: each process has its own figures) and logs the start-up
    lines if it is the first."""
    from gateway.app import create_app
    from gateway.observability.access_log import AccessLog

    if settings.metrics_port:
        settings = replace(settings, metrics_port=settings.metrics_port + index)
    _configure_logging(settings.log_level)
    sock = None
    if reuse_port:
        sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((settings.host, settings.port))
    app = create_app(settings)
    app.on_startup.append(_settle_heap)  # last: after the stores and pools are open
    access_log = None
    if settings.access_log.lower() != "off":
        access_log = AccessLog(app, settings.access_log.lower())
        access_log.install()

    def started(addresses: Sequence[Any]) -> None:
        if index == 0:
            for line in _startup_lines(app, addresses):
                log.info("%s", line)

    serving.run(
        app, host=settings.host, port=settings.port, sock=sock,
        limits=settings.connection_limits, shutdown_timeout=settings.shutdown_timeout,
        drain_seconds=settings.drain_seconds, access_log=access_log, started=started,
        loop_factory=settings.loop_factory(),
    )


def _startup_lines(app: web.Application, addresses: Sequence[Any]) -> list[str]:
    from gateway.keys import SETTINGS, UI_BUNDLE
    from gateway.observability.metrics import METRICS_SITE
    from gateway.observability.startup import startup_lines

    side = app.get(METRICS_SITE)
    return startup_lines(app[SETTINGS], addresses, ui_installed=app[UI_BUNDLE] is not None,
                         metrics_addresses=side.addresses if side is not None else ())


async def _upgrade(settings: Settings) -> int:
    options = settings.metadata_store_options(one_connection=True)
    store = open_metadata_store(settings.backend_store_uri, **options)
    try:
        await store.open()  # open() migrates under the database's lock
    except BackendError as exc:  # unreachable database, stock MLflow database, ...: one line
        raise click.ClickException(str(exc)) from None
    try:
        if settings.auth:
            await _bootstrap_admin(store, settings)
        return await store.schema_version()
    finally:
        await store.aclose()


async def _bootstrap_admin(store: Any, settings: Settings) -> None:
    import os

    from gateway.cli_auth import ADMIN_PASSWORD_ENV, bootstrap_admin

    password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if settings.admin_username and password:
        if await bootstrap_admin(store, settings.admin_username, password):
            log.info("created admin user %s", settings.admin_username)
    elif settings.admin_username:
        log.warning("--admin-username given without %s; no admin created", ADMIN_PASSWORD_ENV)
    if not await store.list_users():
        log.warning("authentication is on and there are no users: create an admin with "
                    "`mlgate users create-admin NAME` or MLGATE_ADMIN_USERNAME/%s",
                    ADMIN_PASSWORD_ENV)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@click.argument("url", required=False)
@settings_options(("backend_store_uri",))
def upgrade(url: str | None, backend_store_uri: str | None) -> None:
    """Bring the metadata database's schema to the newest version."""
    settings = build_settings({"backend_store_uri": url or backend_store_uri})
    _configure_logging(settings.log_level)
    version = asyncio.run(_upgrade(settings))
    click.echo(f"{redact_uri(settings.backend_store_uri)} is at schema version {version}")


@main.group()
def ui() -> None:
    """The MLflow web UI's files."""


@ui.command("install")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Take the files from this mlflow wheel instead of downloading it.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="Put the files in this folder (then serve with --static-dir FOLDER) "
                   "instead of the one `mlgate serve` looks in by default.")
def ui_install(wheel: Path | None, dest: Path | None) -> None:
    """Download the mlflow wheel alone (no dependencies) and keep its compiled web UI where
    `mlgate serve` looks for it."""
    import tempfile

    from gateway.ui_bundle import data_dir, download_wheel, install_from_wheel

    dest = dest or data_dir()
    with tempfile.TemporaryDirectory(prefix="mlgate-ui-") as tmp:
        try:
            source = wheel or download_wheel(Path(tmp))
            count = install_from_wheel(source, dest)
        except (RuntimeError, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"installed the MLflow web UI ({count} files) in {dest}")


def _add_auth_commands() -> None:
    from gateway.cli_auth import grants, limits, teams, tokens, users

    for group in (users, teams, tokens, grants, limits):
        main.add_command(group)


_add_auth_commands()


def _add_operations_commands() -> None:
    from gateway.cli_backup import backup_command, restore_command, verify_command
    from gateway.cli_gc import gc
    from gateway.cli_import import import_command

    for command in (import_command, gc, backup_command, restore_command, verify_command):
        main.add_command(command)


_add_operations_commands()

if __name__ == "__main__":
    main()
