"""``mlgate import SOURCE``: a stock MLflow server's data into the configured stores.

SOURCE is the stock server's ``--backend-store-uri``; ``--artifacts-from`` its
``--artifacts-destination``. The destination is the one ``serve`` uses
(``--backend-store-uri``, ``--artifacts-destination``). Progress goes to stderr, the report
to stdout (``--json`` for scripts). The exit code is 1 when the report finds a difference.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from backends.artifacts.base import ArtifactStore
from backends.errors import BackendError
from backends.importer import Importer, Report, compare, open_reader
from backends.importer.artifacts import ArtifactCopy, copy_tree, tree_size
from backends.importer.auth import AuthImport, AuthPlan, import_auth, read_auth
from backends.importer.filestore import artifact_paths, filestore_root
from backends.importer.job import check_source, source_counts
from backends.metadata.sql.tracking import SqlMetadataStore
from backends.registry import (
    metadata_scheme,
    open_artifact_store,
    open_metadata_store,
    redact_uri,
)
from gateway.cli_options import build_settings, settings_options
from gateway.settings import Settings

__all__ = ["import_command"]


class _Bars:
    """A click progress bar per table on stderr (silent with ``quiet``)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: Any = None
        self.rows: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def table_started(self, entity: str, total: int, already: int) -> None:
        self.rows[entity] = 0
        self.seconds[entity] = time.monotonic()
        if self.quiet:
            return
        self._bar = click.progressbar(length=max(total, 1), label=f"{entity:<22}",
                                      file=sys.stderr, show_pos=True)
        self._bar.__enter__()
        self._bar.update(min(already, total))

    def rows_written(self, entity: str, n: int) -> None:
        self.rows[entity] += n
        if self._bar is not None:
            self._bar.update(n)

    def table_finished(self, entity: str) -> None:
        self.seconds[entity] = time.monotonic() - self.seconds[entity]
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _source_key(uri: str) -> str:
    """The source as the progress records name it: the redacted URI without a driver, or
    a FileStore folder's file:// URI."""
    root = filestore_root(uri)
    if root is not None:
        return root.resolve().as_uri()
    scheme, sep, rest = uri.partition("://")
    return redact_uri(scheme.split("+", 1)[0] + sep + rest)


def _artifact_plan(source: str, artifacts_from: str | None
                   ) -> tuple[str | None, Callable[[str], bool]]:
    """Where the artifacts come from, and which files of it are artifacts: a FileStore
    keeps them in its own folder, among its metadata files, unless told otherwise."""
    root = filestore_root(source)
    if root is not None and (artifacts_from is None or _same_place(artifacts_from, str(root))):
        return str(root), artifact_paths
    return artifacts_from, lambda path: True


async def _artifacts(settings: Settings, artifacts_from: str, *, dry_run: bool,
                     quiet: bool, include: Callable[[str], bool]) -> ArtifactCopy | None:
    source = open_artifact_store(artifacts_from, **_same_kind_options(settings, artifacts_from))
    destination = open_artifact_store(settings.artifacts_destination,
                                      **settings.artifact_store_options())
    if _same_place(artifacts_from, settings.artifacts_destination):
        return None  # left where they are
    async with source, destination:
        _, size = await tree_size(source, include)
        bar: Any = None
        if not quiet:
            bar = click.progressbar(length=max(size, 1), label=f"{'artifact bytes':<22}",
                                    file=sys.stderr)
            bar.__enter__()
        try:
            return await copy_tree(source, destination, dry_run=dry_run, include=include,
                                   on_bytes=bar.update if bar is not None else lambda n: None)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)


def _same_kind_options(settings: Settings, uri: str) -> dict[str, Any]:
    """The destination's object-store options serve a source of the same scheme (the same
    S3 endpoint, say); a local folder takes none."""
    from backends.registry import artifact_scheme

    if artifact_scheme(uri) == artifact_scheme(settings.artifacts_destination):
        return settings.artifact_store_options()
    return {}


def _same_place(a: str, b: str) -> bool:
    from pathlib import Path
    from urllib.parse import unquote, urlsplit

    def norm(uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme in ("", "file"):
            return str(Path(unquote(parts.path) if parts.scheme else uri).resolve())
        return uri.rstrip("/")

    return norm(a) == norm(b)


def _print_report(report: Report, copy: ArtifactCopy | None, elapsed: float,
                  rows: dict[str, int]) -> None:
    click.echo(f"{'entity':<24}{'source':>12}{'mlgate':>12}")
    for c in report.counts:
        mark = "" if c.equal else "   DIFFERENT"
        click.echo(f"{c.entity:<24}{c.source:>12}{c.destination:>12}{mark}")
    same = "equal" if report.source_checksum == report.destination_checksum else "DIFFERENT"
    click.echo(f"metric histories: {report.histories}, checksums {same} "
               f"(source {report.source_checksum[:16]}, mlgate "
               f"{report.destination_checksum[:16]})")
    for run_id, key in report.histories_differing[:20]:
        click.echo(f"  history differs: run {run_id} metric {key}")
    if copy is not None:
        click.echo(f"artifacts: {copy.files} files, {copy.bytes} bytes; copied "
                   f"{copy.copied_files} ({copy.copied_bytes} bytes), {copy.skipped_files} "
                   "already there")
    points = rows.get("metrics", 0)
    click.echo(f"imported in {elapsed:.1f} s"
               + (f"; {points} metric points, {points / elapsed:,.0f}/s" if points else ""))


async def _auth_plan(auth_db: str | None) -> AuthPlan | None:
    if auth_db is None:
        return None
    async with open_reader(auth_db) as reader:
        return await read_auth(reader)


def _print_auth(plan: AuthPlan, done: AuthImport | None) -> None:
    counts = plan.counts()
    click.echo(f"auth (revision {plan.revision}): " + ", ".join(
        f"{n} {what}" for what, n in counts.items()))
    if done is not None:
        click.echo("  added: " + ", ".join(f"{n} {what}" for what, n in done.added.items()))
        if done.kept_users:
            click.echo("  already in mlgate, kept as they are (password, admin flag, "
                       "roles): " + ", ".join(done.kept_users))
        for row in done.withheld[:20]:
            click.echo(f"  role not given to an existing mlgate user: {row}")
    if plan.unusable:
        click.echo("  stock hash not accepted (set a new password with `mlgate users "
                   "set-password`): " + ", ".join(plan.unusable))
    for row in plan.skipped[:20]:
        click.echo(f"  skipped (mlgate has no such resource or tier): {row}")


def _auth_json(plan: AuthPlan, done: AuthImport | None) -> dict[str, Any]:
    out: dict[str, Any] = {"revision": plan.revision, "source": plan.counts(),
                           "skipped": plan.skipped, "unusable_hashes": plan.unusable}
    if done is not None:
        out["added"] = done.added
        out["kept_users"] = done.kept_users
        out["withheld_roles"] = done.withheld
    return out


async def _dry_run(source: str, settings: Settings, artifacts_from: str | None,
                   as_json: bool, auth_db: str | None) -> None:
    async with open_reader(source) as reader:
        revision = await check_source(reader)
        counts = await source_counts(reader)
    auth = await _auth_plan(auth_db)
    files = size = 0
    artifacts_from, include = _artifact_plan(source, artifacts_from)
    in_place = bool(artifacts_from) and _same_place(artifacts_from or "",
                                                    settings.artifacts_destination)
    if artifacts_from and not in_place:
        store: ArtifactStore = open_artifact_store(
            artifacts_from, **_same_kind_options(settings, artifacts_from))
        async with store:
            files, size = await tree_size(store, include)
    if as_json:
        out: dict[str, Any] = {"dry_run": True, "revision": revision, "rows": counts,
                               "artifact_files": files, "artifact_bytes": size,
                               "artifacts_in_place": in_place}
        if auth is not None:
            out["auth"] = _auth_json(auth, None)
        click.echo(json.dumps(out))
        return
    click.echo(f"{redact_uri(source)} (Alembic revision {revision}) would bring over:")
    for entity, n in counts.items():
        click.echo(f"  {entity:<24}{n:>12}")
    if in_place:
        click.echo("  artifacts: left where they are (--artifacts-destination is the same place)")
    elif artifacts_from:
        click.echo(f"  artifacts: {files} files, {size} bytes")
    if auth is not None:
        _print_auth(auth, None)
    click.echo("nothing was written (--dry-run)")


async def _import(source: str, settings: Settings, artifacts_from: str | None, *,
                  as_json: bool, chunk_rows: int, auth_db: str | None) -> bool:
    started = time.monotonic()
    bars = _Bars(quiet=as_json)
    auth = await _auth_plan(auth_db)  # refused before anything is written
    auth_done = None
    async with open_reader(source) as reader:
        options = settings.metadata_store_options(one_connection=True)
        store = open_metadata_store(settings.backend_store_uri, **options)
        assert isinstance(store, SqlMetadataStore)  # _check_destination saw to it
        importer = Importer(reader, store, _source_key(source), chunk_rows=chunk_rows,
                            progress=bars)
        await check_source(reader)  # before the destination is created
        await store.open()
        try:
            await importer.run()
            if auth is not None:
                auth_done = await import_auth(auth, store)
            copy = None
            artifacts_from, include = _artifact_plan(source, artifacts_from)
            if artifacts_from:
                copy = await _artifacts(settings, artifacts_from, dry_run=False,
                                        quiet=as_json, include=include)
            elapsed = time.monotonic() - started
            report = await compare(reader, store)
        finally:
            await store.aclose()
    if as_json:
        out = report.as_dict()
        out["seconds"] = round(elapsed, 3)
        out["rows_imported"] = bars.rows
        out["table_seconds"] = {k: round(v, 3) for k, v in bars.seconds.items()}
        if copy is not None:
            out["artifacts"] = vars(copy)
        if auth is not None:
            out["auth"] = _auth_json(auth, auth_done)
        click.echo(json.dumps(out))
    else:
        _print_report(report, copy, elapsed, bars.rows)
        if auth is not None:
            _print_auth(auth, auth_done)
    return report.ok


def _check_destination(uri: str) -> None:
    """Refuse, before the source is read (a dry run included), a store import cannot write."""
    store = open_metadata_store(uri)
    if not isinstance(store, SqlMetadataStore) or not store.import_target:
        raise click.UsageError(
            f"mlgate import writes to sqlite:// and postgresql:// stores, not "
            f"{metadata_scheme(uri)}:// (the importer is not ported to it yet)")


@click.command("import")
@click.argument("source")
@click.option("--artifacts-from", default=None,
              help="The stock server's artifact root (its --artifacts-destination): a "
                   "folder, s3://bucket/path or wasbs://…; copied into --artifacts-destination "
                   "unless it is the same place. A FileStore's own artifacts come by default.")
@click.option("--auth-db", default=None,
              help="Stock basic-auth's database (its database_uri, e.g. "
                   "sqlite:///basic_auth.db): its users, roles and permissions come too.")
@click.option("--dry-run", is_flag=True, help="Report what would come over; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--chunk-rows", default=50_000, show_default=True,
              help="Rows per read and per write transaction.")
@settings_options(("backend_store_uri", "artifacts_destination", "s3_endpoint_url",
                    "azure_api_version", "log_level"))
def import_command(source: str, artifacts_from: str | None, auth_db: str | None,
                   dry_run: bool, as_json: bool, chunk_rows: int, **flags: Any) -> None:
    """Bring a stock MLflow server's data (SOURCE: its backend store URI, e.g.
    sqlite:///mlflow.db, postgresql://… or a FileStore folder such as ./mlruns) into
    mlgate's store, keeping every id. Run it again after an interruption: it continues
    where it stopped."""
    settings = build_settings(flags)
    _check_destination(settings.backend_store_uri)
    try:
        if dry_run:
            asyncio.run(_dry_run(source, settings, artifacts_from, as_json, auth_db))
            return
        ok = asyncio.run(_import(source, settings, artifacts_from, as_json=as_json,
                                 chunk_rows=chunk_rows, auth_db=auth_db))
    except (BackendError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not ok:
        sys.exit(1)
