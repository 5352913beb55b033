"""Operator commands ``mlgate backup DEST``, ``mlgate restore SRC`` and ``mlgate verify``.

They take the store and destination options ``serve`` takes (flags, then ``MLGATE_*`` and
MLflow's variables), draw progress bars on stderr, and with ``--json`` print one JSON report
on stdout for scripts and cron. The work is in :mod:`backends.backup`; this module builds
the stores and says how artifact URIs map into the destination.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from backends.artifacts.base import ArtifactStore
from backends.backup import Progress, backup, no_progress, restore, verify
from backends.backup.layout import artifact_entries, read_manifest
from backends.errors import BackendError
from backends.registry import (
    MissingDependency,
    artifact_scheme,
    open_artifact_store,
    redact_uri,
)
from gateway.artifact_paths import parse_location, proxied_root_path
from gateway.cli_options import build_settings
from gateway.errors import MlflowError
from gateway.settings import SETTINGS, Settings

__all__ = ["backup_command", "restore_command", "verify_command"]

_STORE_SETTINGS = ("backend_store_uri", "artifacts_destination", "default_artifact_root",
                   "s3_endpoint_url", "azure_api_version", "artifact_part_size",
                   "artifact_upload_concurrency")


def _progress(quiet: bool) -> Progress:
    if quiet:
        return no_progress

    @contextmanager
    def bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        if total is None:
            click.echo(f"{label}...", err=True)
            yield lambda n: None
            return
        with click.progressbar(length=total, label=label, file=sys.stderr) as b:
            yield b.update

    return bar


def _common(fn: Any) -> Any:
    """``--json``, ``--quiet`` and the store options of ``serve``, from the same table (not
    through gateway.cli, which imports this module)."""
    for s in reversed([s for s in SETTINGS if s.name in _STORE_SETTINGS]):
        fn = click.option(s.option, s.name, type=s.type, default=None, help=(
            f"{s.help} [env: {', '.join(s.envvars)}; default: {s.default}]"))(fn)
    fn = click.option("--quiet", is_flag=True, help="No progress bars on stderr.")(fn)
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the report as JSON on stdout.")(fn)


def _store_at(settings: Settings, uri: str) -> ArtifactStore:
    """An artifact store for ``uri`` with the object-store options of ``settings`` (the same
    S3 endpoint and part size as the destination's)."""
    if artifact_scheme(uri) == "":
        Path(uri).mkdir(parents=True, exist_ok=True)
    return open_artifact_store(uri, **replace(settings, artifacts_destination=uri)
                               .artifact_store_options())


def _locator(settings: Settings) -> Callable[[str], str | None]:
    """Maps an artifact root (a run's ``artifact_uri``...) to its path in the artifacts
    destination: ``mlflow-artifacts:/…`` always, a URI under the destination itself (with
    --no-serve-artifacts) by its place below it; anything else is elsewhere (None)."""
    dest = settings.artifacts_destination
    texts = ({os.path.abspath(dest), os.path.realpath(dest)} if artifact_scheme(dest) == ""
             else {dest})
    roots = []
    for text in texts:
        try:
            roots.append(parse_location(text))
        except ValueError:
            pass  # a destination we cannot parse holds no stored root

    def locate(uri: str) -> str | None:
        try:
            path = proxied_root_path(uri)
        except MlflowError:
            return None
        if path is not None:
            return path
        try:
            location = parse_location(uri)
        except ValueError:
            return None
        for root in roots:
            if location.is_within(root):
                return "/".join(location.segments[len(root.segments):])
        return None

    return locate


def _finish(report: dict[str, Any], as_json: bool, lines: list[str], failed: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for line in lines:
            click.echo(line)
    if failed:
        sys.exit(1)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except (BackendError, MissingDependency, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("backup")
@click.argument("dest")
@click.option("--with-artifacts", is_flag=True,
              help="Copy the artifacts too (only those no earlier backup in DEST copied).")
@click.option("--audit/--no-audit", default=True, show_default=True,
              help="Include the audit log.")
@_common
def backup_command(dest: str, with_artifacts: bool, audit: bool, as_json: bool,
                   quiet: bool, **flags: Any) -> None:
    """Back up the metadata store (a consistent snapshot, taken while it serves) and a
    manifest of every artifact with its size and SHA-256 to DEST: a folder, s3://… or
    wasbs://…."""
    settings = build_settings(flags)
    if _locator(settings)(dest) is not None:
        # Its files would then be listed, and reported orphaned, as artifacts.
        raise click.UsageError(f"DEST {redact_uri(dest)} lies inside the artifacts "
                               "destination; back up to somewhere else")

    async def go() -> Any:
        async with _store_at(settings, settings.artifacts_destination) as source, \
                _store_at(settings, dest) as target:
            return await backup(
                metadata_uri=settings.backend_store_uri, source=source, dest=target,
                location=redact_uri(dest), source_label=redact_uri(settings.artifacts_destination),
                with_artifacts=with_artifacts, audit=audit, progress=_progress(quiet))

    report = _run(go())
    lines = [f"backup {report.id} in {report.location}: {report.dialect} schema "
             f"{report.schema_version}, {sum(report.tables.values())} rows, "
             f"{report.artifacts} artifacts ({report.artifact_bytes} bytes)"
             + (f", {report.copied} copied ({report.copied_bytes} bytes)"
                if with_artifacts else "") + f" in {report.seconds:.1f} s"]
    lines += [f"corrupt (not copied): {path}" for path in report.corrupt]
    _finish(report.to_dict(), as_json, lines, bool(report.corrupt))


@click.command("restore")
@click.argument("src")
@click.option("--backup-id", default=None, help="The backup to restore; default: the newest.")
@click.option("--force", is_flag=True,
              help="Replace the data of a store or destination that is not empty.")
@click.option("--metadata-only", is_flag=True,
              help="Restore the database only (the artifacts are still in place).")
@_common
def restore_command(src: str, backup_id: str | None, force: bool, metadata_only: bool,
                    as_json: bool, quiet: bool, **flags: Any) -> None:
    """Restore a backup from SRC into an empty metadata store and artifacts destination.
    SQLite backups restore into SQLite, PostgreSQL backups into PostgreSQL."""
    settings = build_settings(flags)

    async def go() -> Any:
        async with _store_at(settings, settings.artifacts_destination) as target, \
                _store_at(settings, src) as backups:
            return await restore(
                metadata_uri=settings.backend_store_uri, target=target, backups=backups,
                backup_id=backup_id, force=force, with_artifacts=not metadata_only,
                progress=_progress(quiet))

    report = _run(go())
    lines = [(f"restored backup {report.id} into "
             f"{redact_uri(settings.backend_store_uri)}: {sum(report.tables.values())} rows, "
             f"{report.restored} of {report.artifacts} artifacts ({report.restored_bytes} "
             f"bytes) in {report.seconds:.1f} s")]
    lines += [f"missing from the backup: {path}" for path in report.missing]
    lines += [f"corrupt in the backup: {path}" for path in report.corrupt]
    _finish(report.to_dict(), as_json, lines, bool(report.missing or report.corrupt))


@click.command("verify")
@click.option("--sample", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0,
              show_default=True, help="Fraction of the artifacts to re-hash.")
@click.option("--against", "against", default=None,
              help="A backup location: files its newest manifest lists must still exist.")
@click.option("--backup-id", default=None, help="With --against: this backup's manifest.")
@click.option("--seed", type=int, default=None, help="Seed of --sample's choice.")
@_common
def verify_command(sample: float, against: str | None, backup_id: str | None,
                   seed: int | None, as_json: bool, quiet: bool, **flags: Any) -> None:
    """Re-hash artifacts against their stored SHA-256s, check that artifact folders are
    where the metadata says and that its references hold; report what is missing, corrupt
    or orphaned. Exits 1 on any finding."""
    settings = build_settings(flags)

    async def go() -> Any:
        async with _store_at(settings, settings.artifacts_destination) as store:
            listed = []
            if against is not None:
                async with _store_at(settings, against) as backups:
                    manifest = await read_manifest(backups, backup_id)
                    listed = [e async for e in artifact_entries(backups, manifest)]
            return await verify(metadata_uri=settings.backend_store_uri, store=store,
                                locate=_locator(settings), sample=sample, manifest=listed,
                                progress=_progress(quiet), seed=seed)

    report = _run(go())
    counts = report.counts()
    lines = [f"{f.kind}: {f.subject} ({f.detail})" for f in report.findings]
    lines.append(f"{report.files} artifacts ({report.bytes} bytes), {report.checked} "
                 f"re-hashed, {report.unverifiable} without a checksum, {report.external} "
                 "roots elsewhere; " + ", ".join(f"{n} {k}" for k, n in counts.items())
                 + f" in {report.seconds:.1f} s")
    _finish(report.to_dict(), as_json, lines, not report.ok)
