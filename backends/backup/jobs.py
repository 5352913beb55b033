"""The backup and restore operations: metadata snapshot, artifact manifest, copies."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.artifacts.base import ArtifactStore, ChecksumMismatch
from backends.backup import metadata
from backends.backup.artifacts import Described, bounded, copy, describe, hash_file, walk
from backends.backup.layout import (
    ArtifactEntry,
    Manifest,
    NotEmpty,
    Progress,
    artifact_entries,
    backup_ids,
    download,
    file_chunks,
    new_backup_id,
    object_path,
    read_manifest,
)
from backends.errors import NotFound
from backends.metadata.interface.entities import now_ms
from backends.registry import open_metadata_store

__all__ = ["BackupReport", "RestoreReport", "backup", "restore"]

COPIES = 4  # artifacts streamed at once: each holds a part or two in memory


@dataclass
class BackupReport:
    id: str
    location: str
    dialect: str
    schema_version: int
    tables: dict[str, int]
    artifacts: int
    artifact_bytes: int
    hashed: int  # artifacts without a stored SHA-256, read and hashed by the backup
    with_artifacts: bool
    copied: int
    copied_bytes: int
    corrupt: list[str] = field(default_factory=list)  # stored SHA-256 no longer matches
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestoreReport:
    id: str
    dialect: str
    schema_version: int
    tables: dict[str, int]
    artifacts: int
    restored: int
    restored_bytes: int
    missing: list[str] = field(default_factory=list)  # listed but not in the backup
    corrupt: list[str] = field(default_factory=list)  # in the backup, but its bytes changed
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _upload_file(dest: ArtifactStore, path: str, local: Path) -> str:
    digest = hashlib.sha256()

    async def hashed() -> Any:
        async for chunk in file_chunks(local):
            digest.update(chunk)
            yield chunk

    await dest.put(path, hashed())
    return digest.hexdigest()


async def _known_objects(dest: ArtifactStore) -> set[str]:
    """SHA-256s the newest backup with artifacts copied: they are in objects/ already."""
    for backup_id in reversed(await backup_ids(dest)):
        manifest = await read_manifest(dest, backup_id)
        if manifest.with_artifacts:
            return {e.sha256 async for e in artifact_entries(dest, manifest)}
    return set()


async def backup(*, metadata_uri: str, source: ArtifactStore, dest: ArtifactStore,
                 location: str, source_label: str, with_artifacts: bool, audit: bool,
                 progress: Progress) -> BackupReport:
    """Back up the store at ``metadata_uri`` and the artifacts destination ``source`` into
    ``dest`` (the stores are open; the caller closes them). ``location`` and
    ``source_label`` are the redacted URIs, for the manifest and the report."""
    started = time.monotonic()
    backup_id = new_backup_id()
    while await dest.stat(f"backups/{backup_id}") is not None:  # two in the same second
        backup_id = new_backup_id() + f"-{now_ms() % 1000:03d}"
    manifest = Manifest(id=backup_id, created_ms=now_ms(),
                        dialect=metadata.dialect_of(metadata_uri), schema_version=0,
                        audit=audit, with_artifacts=with_artifacts, source=source_label)
    with tempfile.TemporaryDirectory(prefix="mlgate-backup-") as tmp:
        scratch = Path(tmp)
        # Metadata first: every artifact its snapshot refers to is then already uploaded
        # when the listing below runs (later uploads only add orphans to the manifest).
        version, tables, files = await metadata.dump(metadata_uri, scratch, audit=audit,
                                                     progress=progress)
        manifest.schema_version, manifest.tables = version, tables
        with progress("uploading the database snapshot",
                      sum(f.stat().st_size for f in files)) as update:
            for local in files:
                manifest.metadata_files[local.name] = await _upload_file(
                    dest, f"{manifest.folder}/metadata/{local.name}", local)
                update(local.stat().st_size)
        entries, hashed = await _list_artifacts(source, progress)
        manifest.artifacts = len(entries)
        manifest.artifact_bytes = sum(e.size for e in entries)
        corrupt: list[str] = []
        if with_artifacts:
            known = await _known_objects(dest)
            manifest.copied, manifest.copied_bytes, corrupt = await _copy_objects(
                source, dest, entries, known, progress)
        listing = scratch / "artifacts.jsonl"
        await asyncio.to_thread(_write_lines, listing, entries)
        await _upload_file(dest, f"{manifest.folder}/artifacts.jsonl", listing)
    # Last: its presence is what marks the backup complete.
    await dest.put(f"{manifest.folder}/manifest.json", _once(manifest.to_json().encode()))
    return BackupReport(
        id=backup_id, location=location, dialect=manifest.dialect,
        schema_version=manifest.schema_version,
        tables={k: int(v["rows"]) for k, v in manifest.tables.items()},
        artifacts=manifest.artifacts, artifact_bytes=manifest.artifact_bytes, hashed=hashed,
        with_artifacts=with_artifacts, copied=manifest.copied,
        copied_bytes=manifest.copied_bytes, corrupt=corrupt,
        seconds=round(time.monotonic() - started, 3))


def _write_lines(path: Path, entries: list[ArtifactEntry]) -> None:
    with path.open("w") as f:
        f.writelines(entry.line() + "\n" for entry in entries)


async def _once(data: bytes) -> Any:
    yield data


async def _list_artifacts(source: ArtifactStore, progress: Progress
                          ) -> tuple[list[ArtifactEntry], int]:
    """Every artifact with its size and SHA-256 (stored, else computed); sorted by path."""
    with progress("listing artifacts", None):
        infos = [info async for info in walk(source)]
    described: list[Described] = []

    async def look(path: str) -> Described | None:
        try:
            return await describe(source, path)
        except NotFound:  # deleted since the listing: not in this backup
            return None

    with progress("reading stored checksums", len(infos)) as update:
        async for d in bounded([i.path for i in infos], look):
            if d is not None:
                described.append(d)
            update(1)
    unhashed = [d for d in described if d.stored_sha256 is None]
    entries = [ArtifactEntry(d.path, d.size, d.stored_sha256, True)
               for d in described if d.stored_sha256 is not None]
    with progress("hashing artifacts without a stored checksum",
                  sum(d.size for d in unhashed)) as update:
        for d in unhashed:
            try:
                sha, size = await hash_file(source, d.path, update)
            except NotFound:
                continue
            entries.append(ArtifactEntry(d.path, size, sha, False))
    entries.sort(key=lambda e: e.path)
    return entries, len(unhashed)


async def _copy_objects(source: ArtifactStore, dest: ArtifactStore,
                        entries: list[ArtifactEntry], known: set[str], progress: Progress
                        ) -> tuple[int, int, list[str]]:
    todo: dict[str, ArtifactEntry] = {}
    for entry in entries:
        if entry.sha256 not in known:
            todo.setdefault(entry.sha256, entry)
    copied, copied_bytes, corrupt = 0, 0, []
    with progress("copying artifacts", sum(e.size for e in todo.values())) as update:
        async def one(entry: ArtifactEntry) -> tuple[ArtifactEntry, str]:
            target = object_path(entry.sha256)
            found = await dest.stat(target)
            if found is not None and found.file_size == entry.size:
                update(entry.size)
                return entry, "present"  # an interrupted backup copied it already
            try:
                await copy(source, entry.path, dest, target, entry.sha256, update)
            except ChecksumMismatch:
                return entry, "corrupt"
            except NotFound:
                return entry, "gone"  # deleted since the listing; restore reports it missing
            return entry, "copied"

        async for entry, outcome in bounded(list(todo.values()), one, COPIES):
            if outcome == "corrupt":
                corrupt.append(entry.path)
            elif outcome == "copied":
                copied += 1
                copied_bytes += entry.size
    return copied, copied_bytes, sorted(corrupt)


async def restore(*, metadata_uri: str, target: ArtifactStore, backups: ArtifactStore,
                  backup_id: str | None, force: bool, with_artifacts: bool,
                  progress: Progress) -> RestoreReport:
    """Restore backup ``backup_id`` (default: the newest) from ``backups`` into the store at
    ``metadata_uri`` and, when the backup holds them and ``with_artifacts``, its artifacts
    into ``target``. Raises :class:`NotEmpty` before changing anything when either holds
    data and not ``force``."""
    started = time.monotonic()
    metadata.dialect_of(metadata_uri)  # a store restore cannot write is refused first
    manifest = await read_manifest(backups, backup_id)
    copy_artifacts = with_artifacts and manifest.with_artifacts
    if copy_artifacts and not force:
        async for _ in target.iter_dir(""):
            raise NotEmpty("the artifacts destination is not empty: restore into an empty "
                           "one, or pass --force to write over it")
    if not force and await metadata.holds_data(metadata_uri):
        raise NotEmpty("the metadata store holds data: restore into a new one, or pass "
                       "--force to replace it")
    with tempfile.TemporaryDirectory(prefix="mlgate-restore-") as tmp:
        scratch = Path(tmp)
        with progress("downloading the database snapshot", None):
            for name, sha in manifest.metadata_files.items():
                await download(backups, f"{manifest.folder}/metadata/{name}", scratch / name,
                               sha)
        await metadata.load(metadata_uri, scratch, manifest, force=force, progress=progress)
    store = open_metadata_store(metadata_uri, readers=1, pool_size=1)
    await store.open()  # migrates a backup older than this mlgate
    await store.aclose()
    restored, restored_bytes = 0, 0
    missing: list[str] = []
    corrupt: list[str] = []
    if copy_artifacts:
        entries = [e async for e in artifact_entries(backups, manifest)]
        with progress("restoring artifacts", sum(e.size for e in entries)) as update:
            async def one(entry: ArtifactEntry) -> tuple[ArtifactEntry, str]:
                try:
                    await copy(backups, object_path(entry.sha256), target, entry.path,
                               entry.sha256, update)
                except NotFound:
                    return entry, "missing"
                except ChecksumMismatch:
                    return entry, "corrupt"
                return entry, "ok"

            async for entry, outcome in bounded(entries, one, COPIES):
                if outcome == "ok":
                    restored += 1
                    restored_bytes += entry.size
                else:
                    (missing if outcome == "missing" else corrupt).append(entry.path)
    return RestoreReport(
        id=manifest.id, dialect=manifest.dialect, schema_version=manifest.schema_version,
        tables={k: int(v["rows"]) for k, v in manifest.tables.items()},
        artifacts=manifest.artifacts, restored=restored, restored_bytes=restored_bytes,
        missing=sorted(missing), corrupt=sorted(corrupt),
        seconds=round(time.monotonic() - started, 3))
