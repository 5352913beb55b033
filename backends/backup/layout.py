"""Where a backup keeps what, its manifest, and the small helpers every step shares.

A backup destination (any artifact store: a folder, ``s3://…``) holds::

    backups/<id>/metadata/…        the database snapshot (files listed in the manifest)
    backups/<id>/artifacts.jsonl   one line per artifact: path, size, sha256
    backups/<id>/manifest.json     written last: a backup without one is incomplete
    objects/<sha256[:2]>/<sha256>  artifact contents (``--with-artifacts``), shared by all
                                   backups, so each one copies only what no earlier one did

``<id>`` is the UTC time the backup began (``20260102T030405Z``), so ids sort by age.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backends.artifacts.base import ArtifactStore
from backends.errors import BackendError, InvalidArgument, NotFound

__all__ = [
    "BACKUPS",
    "CHUNK",
    "FORMAT",
    "OBJECTS",
    "ArtifactEntry",
    "Manifest",
    "NotEmpty",
    "Progress",
    "artifact_entries",
    "backup_ids",
    "download",
    "file_chunks",
    "new_backup_id",
    "no_progress",
    "object_path",
    "read_manifest",
    "read_text",
]

FORMAT = 1
CHUNK = 1024 * 1024
BACKUPS = "backups"
OBJECTS = "objects"


class NotEmpty(InvalidArgument):
    """A restore's target store or destination holds data and ``--force`` was not given."""


class Progress(Protocol):
    """Opens a bar for ``total`` units (bytes, rows, files) labelled ``label``; entering
    it gives the function to call with each step done. ``total`` None: no bar, a note."""

    def __call__(self, label: str, total: int | None) -> AbstractContextManager[
            Callable[[int], None]]: ...


@contextmanager
def _silent(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


no_progress: Progress = _silent


@dataclass(frozen=True, slots=True)
class ArtifactEntry:
    path: str  # inside the artifacts destination
    size: int
    sha256: str
    stored: bool  # the store had the SHA-256 recorded (False: the backup hashed the bytes)

    def line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, line: str) -> ArtifactEntry:
        raw = json.loads(line)
        return cls(str(raw["path"]), int(raw["size"]), str(raw["sha256"]), bool(raw["stored"]))


@dataclass
class Manifest:
    id: str
    created_ms: int
    dialect: str  # "sqlite" or "postgresql"
    schema_version: int
    metadata_files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # rows, columns
    audit: bool = True
    with_artifacts: bool = False
    artifacts: int = 0
    artifact_bytes: int = 0
    copied: int = 0  # artifacts this backup copied (the rest were already in objects/)
    copied_bytes: int = 0
    source: str = ""  # the artifacts destination backed up, redacted
    format: int = FORMAT

    @property
    def folder(self) -> str:
        return f"{BACKUPS}/{self.id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)  # tables stay in restore order

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise InvalidArgument(f"backup format {raw.get('format')!r} is not {FORMAT}: "
                                  "restore it with the mlgate version that wrote it")
        return cls(**raw)


def new_backup_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def object_path(sha256: str) -> str:
    return f"{OBJECTS}/{sha256[:2]}/{sha256}"


async def backup_ids(store: ArtifactStore) -> list[str]:
    """Ids of the complete backups in ``store`` (those with a manifest), oldest first."""
    ids = []
    async for info in store.iter_dir(BACKUPS):
        if info.is_dir and await store.stat(f"{info.path}/manifest.json") is not None:
            ids.append(info.path.rsplit("/", 1)[-1])
    return sorted(ids)


async def read_text(store: ArtifactStore, path: str) -> str:
    parts = []
    async with store.get(path) as stream:
        async for chunk in stream:
            parts.append(chunk)
    return b"".join(parts).decode()


async def read_manifest(store: ArtifactStore, backup_id: str | None = None) -> Manifest:
    """The manifest of backup ``backup_id``, or of the newest complete one. Raises
    ``NotFound`` when there is none."""
    if backup_id is None:
        ids = await backup_ids(store)
        if not ids:
            raise NotFound(f"no complete backup in {store!r}")
        backup_id = ids[-1]
    return Manifest.from_json(await read_text(store, f"{BACKUPS}/{backup_id}/manifest.json"))


async def artifact_entries(store: ArtifactStore, manifest: Manifest
                           ) -> AsyncIterator[ArtifactEntry]:
    """The artifacts a backup listed, read line by line."""
    buffer = b""
    async with store.get(f"{manifest.folder}/artifacts.jsonl") as stream:
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield ArtifactEntry.parse(line.decode())
    if buffer.strip():
        yield ArtifactEntry.parse(buffer.decode())


async def file_chunks(path: Path, update: Callable[[int], None] = lambda n: None
                      ) -> AsyncIterator[bytes]:
    """A local file's bytes, read a chunk at a time off the event loop."""
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            update(len(chunk))
            yield chunk
    finally:
        f.close()


async def download(store: ArtifactStore, path: str, target: Path, sha256: str | None,
                   update: Callable[[int], None] = lambda n: None) -> None:
    """Copy ``path`` of ``store`` to the local file ``target``, checking its SHA-256."""
    digest = hashlib.sha256()
    tmp = target.with_name(target.name + ".part")
    try:
        f = await asyncio.to_thread(tmp.open, "wb")
        try:
            async with store.get(path) as stream:
                async for chunk in stream:
                    digest.update(chunk)
                    await asyncio.to_thread(f.write, chunk)
                    update(len(chunk))
        finally:
            f.close()
        if sha256 is not None and digest.hexdigest() != sha256:
            raise BackendError(f"{path} in the backup is corrupt: its SHA-256 is "
                               f"{digest.hexdigest()}, the manifest says {sha256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
