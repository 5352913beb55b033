"""Copying a stock server's artifact tree into mlgate's artifact store.

Stock's proxied artifacts (``mlflow-artifacts:/<path>``) live at ``<destination>/<path>``,
and so do mlgate's, so the tree is copied path for path: run, logged model and model
version URIs stay valid unchanged. Each file streams from one store into the other
(``put`` is atomic there). A file already at the destination with the same size is
skipped, so a copy cut off and started again goes on where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from backends.artifacts.base import ArtifactStore, FileInfo

__all__ = ["ArtifactCopy", "copy_tree", "tree_size", "walk"]

_PARALLEL = 4


@dataclass
class ArtifactCopy:
    files: int = 0  # files in the source tree
    bytes: int = 0
    copied_files: int = 0
    copied_bytes: int = 0
    skipped_files: int = 0  # already at the destination


async def walk(store: ArtifactStore, path: str = "") -> AsyncIterator[FileInfo]:
    """Every file under ``path``, depth first in path order."""
    async for info in store.iter_dir(path):
        if info.is_dir:
            async for inner in walk(store, info.path):
                yield inner
        else:
            yield info


def _everything(path: str) -> bool:
    return True


async def copy_tree(source: ArtifactStore, destination: ArtifactStore, *,
                    on_bytes: Callable[[int], None] = lambda n: None,
                    dry_run: bool = False,
                    include: Callable[[str], bool] = _everything) -> ArtifactCopy:
    """Copy every file of ``source`` (for which ``include`` holds) that ``destination``
    lacks (or holds at another size). ``on_bytes`` is told the size of each file done or
    skipped."""
    result = ArtifactCopy()
    limit = asyncio.Semaphore(_PARALLEL)

    async def one(info: FileInfo) -> None:
        size = info.file_size or 0
        async with limit:
            there = await destination.stat(info.path)
            if there is not None and not there.is_dir and there.file_size == size:
                result.skipped_files += 1
            elif not dry_run:
                async with source.get(info.path) as stream:
                    await destination.put(info.path, stream, sha256=stream.sha256)
                result.copied_files += 1
                result.copied_bytes += size
            else:
                result.copied_files += 1
                result.copied_bytes += size
        on_bytes(size)

    pending: set[asyncio.Task[None]] = set()
    try:
        async for info in walk(source):
            if not include(info.path):
                continue
            result.files += 1
            result.bytes += info.file_size or 0
            pending.add(asyncio.create_task(one(info)))
            if len(pending) >= 4 * _PARALLEL:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()
    return result


async def tree_size(store: ArtifactStore,
                    include: Callable[[str], bool] = _everything) -> tuple[int, int]:
    """(files, bytes) under the store's root (those for which ``include`` holds)."""
    files = size = 0
    async for info in walk(store):
        if not include(info.path):
            continue
        files += 1
        size += info.file_size or 0
    return files, size
