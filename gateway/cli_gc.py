"""``mlgate gc``: stock's ``mlflow gc`` against the metadata store and the artifacts
destination directly (the server may keep serving meanwhile). See ``gateway/gc.py``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from backends.errors import BackendError
from backends.registry import open_artifact_store, open_metadata_store
from gateway.gc import (
    BESIDE_SQLITE_SERVER,
    IN_SERVER,
    GcError,
    GcPlan,
    GcReport,
    Pace,
    collect,
    parse_duration,
    plan,
)
from gateway.settings import ConfigError, Settings

__all__ = ["gc"]


def _ids(text: str | None) -> list[str] | None:
    return [i.strip() for i in text.split(",") if i.strip()] if text else None


@click.command()
@click.option("--older-than", default=None,
              help="Only what was deleted at least this long ago: 1d2h3m4s, each part "
                   "optional (e.g. 30d, 8h). Default: everything deleted.")
@click.option("--run-ids", default=None,
              help="Comma-separated ids of deleted runs to delete (and only those).")
@click.option("--experiment-ids", default=None,
              help="Comma-separated ids of deleted experiments to delete, with all their "
                   "runs and logged models (and only those).")
@click.option("--logged-model-ids", default=None,
              help="Comma-separated ids of deleted logged models to delete.")
@click.option("--backend-store-uri", default=None,
              help="Metadata store URI [env: MLGATE_BACKEND_STORE_URI].")
@click.option("--artifacts-destination", default=None,
              help="Artifacts destination [env: MLGATE_ARTIFACTS_DESTINATION].")
@click.option("--default-artifact-root", default=None,
              help="The server's --default-artifact-root, if it has one: runs' direct "
                   "artifact roots under it are deleted too.")
@click.option("--dry-run", is_flag=True, help="List what would go; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def gc(older_than: str | None, run_ids: str | None, experiment_ids: str | None,
       logged_model_ids: str | None, backend_store_uri: str | None,
       artifacts_destination: str | None, default_artifact_root: str | None,
       dry_run: bool, as_json: bool) -> None:
    """Permanently delete runs, experiments and logged models in the deleted stage, and
    their artifacts, as `mlflow gc` does. Safe while the server runs: it deletes in short
    transactions, one process at a time."""
    try:
        settings = Settings.from_sources({
            "backend_store_uri": backend_store_uri,
            "artifacts_destination": artifacts_destination,
            "default_artifact_root": default_artifact_root})
        older_ms = parse_duration(older_than) if older_than is not None else None
    except (ConfigError, GcError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        asyncio.run(_gc(settings, older_ms, _ids(run_ids), _ids(experiment_ids),
                        _ids(logged_model_ids), dry_run, as_json))
    except (BackendError, GcError) as exc:
        raise click.ClickException(str(exc)) from None


async def _gc(settings: Settings, older_ms: int | None, run_ids: list[str] | None,
              experiment_ids: list[str] | None, logged_model_ids: list[str] | None,
              dry_run: bool, as_json: bool) -> None:
    # SQLite: no fsync at each commit of gc's own connection. Its deletes need no such
    # durability (a lost one is done again by the next gc), and the server's writer waits
    # behind each commit: 2,000 points held it ~4 ms with the fsync.
    options = {**settings.metadata_store_options(one_connection=True), "synchronous": "normal"}
    store = open_metadata_store(settings.backend_store_uri, **options)
    await store.open()
    try:
        todo = await plan(store, older_than_ms=older_ms, run_ids=run_ids,
                          experiment_ids=experiment_ids, logged_model_ids=logged_model_ids)
        if dry_run:
            _print_plan(todo, as_json)
            return
        artifacts = None
        if settings.serve_artifacts:
            artifacts = open_artifact_store(settings.artifacts_destination,
                                            **settings.artifact_store_options())
            await artifacts.open()
        try:
            with click.progressbar(length=len(todo.runs), label="deleting runs",
                                   file=sys.stderr) as bar:
                report = await collect(store, artifacts, settings, todo, pace=_pace(settings),
                                       progress=bar.update)
        finally:
            if artifacts is not None:
                await artifacts.aclose()
        _print_report(report, as_json)
    finally:
        await store.aclose()


def _pace(settings: Settings) -> Pace:
    """A server may be writing to the same SQLite file; PostgreSQL locks rows, not the
    database, so the server's pace serves there."""
    if settings.backend_store_uri.lower().startswith("sqlite"):
        return BESIDE_SQLITE_SERVER
    return IN_SERVER


def _print_plan(todo: GcPlan, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"dry_run": True, **todo.as_dict()}))
        return
    for kind, ids in todo.as_dict().items():
        for ident in ids:
            verb = "would keep" if kind.startswith("kept") else "would delete"
            click.echo(f"{verb} {kind.removeprefix('kept_').rstrip('s').replace('_', ' ')}"
                       f" {ident}")


def _print_report(report: GcReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    out: dict[str, Any] = report.as_dict()
    for warning in report.warnings:
        click.echo(click.style(warning, fg="yellow"), err=True)
    click.echo(f"deleted {len(out['runs'])} runs ({out['metric_points']} metric points), "
               f"{len(out['logged_models'])} logged models, {len(out['experiments'])} "
               f"experiments, {out['artifact_folders']} artifact folders")
