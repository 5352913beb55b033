"""Listing, describing (size and SHA-256) and copying the artifacts of a destination.

The SHA-256 a store recorded when the file was uploaded (``ByteStream.sha256``: the local
store's extended attribute, S3 and Azure object metadata) is read with a zero-length
``get``, which on S3 is one HEAD; only files without one are read and hashed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from backends.artifacts.base import ArtifactStore, FileInfo

__all__ = ["Described", "bounded", "copy", "describe", "hash_file", "rehash", "walk"]

T = TypeVar("T")
R = TypeVar("R")
# Requests in flight at once against an object store (HEADs, listings): enough to hide
# the round trips, few enough not to be throttled.
CONCURRENCY = 8


async def _children(store: ArtifactStore, path: str) -> list[FileInfo]:
    return [info async for info in store.iter_dir(path)]


async def walk(store: ArtifactStore, path: str = "") -> AsyncIterator[FileInfo]:
    """Every file under ``path``, a level at a time, in no particular order. Folders of a
    level are listed :data:`CONCURRENCY` at once: on an object store each listing is a
    round trip, and a destination has a folder per run."""
    folders = [path]
    while folders:
        below: list[str] = []
        async for infos in bounded(folders, lambda folder: _children(store, folder)):
            for info in infos:
                if info.is_dir:
                    below.append(info.path)
                else:
                    yield info
        folders = below


@dataclass(frozen=True, slots=True)
class Described:
    path: str
    size: int
    stored_sha256: str | None  # what the store recorded at upload, if anything


async def describe(store: ArtifactStore, path: str) -> Described:
    async with store.get(path, 0, 0) as stream:
        return Described(path, stream.size, stream.sha256)


async def hash_file(store: ArtifactStore, path: str,
                    update: Callable[[int], None] = lambda n: None) -> tuple[str, int]:
    """The SHA-256 and size of the bytes at ``path``, streamed (one chunk in memory)."""
    sha, size, _ = await rehash(store, path, update)
    return sha, size


async def rehash(store: ArtifactStore, path: str,
                 update: Callable[[int], None] = lambda n: None
                 ) -> tuple[str, int, str | None]:
    """:func:`hash_file`, and the SHA-256 the store recorded for the file (or None)."""
    digest = hashlib.sha256()
    size = 0
    async with store.get(path) as stream:
        async for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
            update(len(chunk))
        return digest.hexdigest(), size, stream.sha256


async def _chunks(store: ArtifactStore, path: str, update: Callable[[int], None]
                  ) -> AsyncIterator[bytes]:
    async with store.get(path) as stream:
        async for chunk in stream:
            update(len(chunk))
            yield chunk


async def copy(source: ArtifactStore, path: str, target: ArtifactStore, target_path: str,
               sha256: str, update: Callable[[int], None] = lambda n: None) -> int:
    """Stream ``path`` to ``target_path``; the target refuses bytes whose SHA-256 is not
    ``sha256`` (``ChecksumMismatch``) and records it with the copy."""
    return await target.put(target_path, _chunks(source, path, update), sha256=sha256)


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]],
                  limit: int = CONCURRENCY) -> AsyncIterator[R]:
    """``fn`` over ``items`` with at most ``limit`` calls in flight, results in order of
    completion. Exceptions propagate (the rest are cancelled)."""
    iterator = iter(items)
    pending: set[asyncio.Task[R]] = set()
    try:
        while True:
            while len(pending) < limit:
                item = next(iterator, _END)
                if item is _END:
                    break
                pending.add(asyncio.ensure_future(fn(item)))  # type: ignore[arg-type]
            if not pending:
                return
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()


_END = object()
