"""The artifact store interface. Every implementation passes
``tests/backends/test_artifact_contract.py``.

Paths are relative, ``/``-separated, already checked by the caller to be safe (no ``..``,
no leading ``/``, no backslash); the empty path is the store's root. No method takes or
returns a whole file: writes take an async iterable of chunks, reads yield chunks.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Self

from backends.errors import InvalidArgument, NotFound, NotImplementedByStore

__all__ = ["ArtifactStore", "ByteStream", "ChecksumMismatch", "FileInfo", "Leftover",
           "UploadLedger", "UploadedPart"]


class ChecksumMismatch(InvalidArgument):
    """The SHA-256 of the received bytes is not the one the client announced."""


@dataclass(frozen=True, slots=True)
class UploadedPart:
    part_number: int  # 1-based
    etag: str


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str  # relative to the store root
    is_dir: bool
    file_size: int | None = None  # None for directories


@dataclass(frozen=True, slots=True)
class Leftover:
    """What an unfinished write left in a store (its process died mid-upload), as
    :meth:`ArtifactStore.leftovers` finds it and :meth:`ArtifactStore.discard` removes it."""

    kind: str  # "staging folder", "multipart upload", "uncommitted blocks": the stats' names
    path: str  # the store path it was writing (for temp files, their folder)
    started_ms: int | None  # when it began, where the store can tell
    owner: str | None = None  # the process that wrote it, where the store itself keeps that
    handle: str = ""  # what removing it needs besides the path (an S3 upload id)


class UploadLedger:
    """Where a store notes, before it starts, an upload that leaves something behind until it
    ends (an S3 multipart upload, Azure staged blocks), and forgets it when it ends, so a
    sweep in another process can tell whose it is. ``owner`` names this process.

    This default notes nothing: a store used on its own. The gateway gives its store one
    backed by the metadata store (``gateway/sweeper.py``)."""

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner or uuid.uuid4().hex

    async def begin(self, path: str, upload_id: str | None = None, *, owned: bool = True
                    ) -> str:
        """Note an upload to ``path``; returns the id :meth:`end` takes (``upload_id`` if
        given). ``owned=False`` for a client's upload (``mpu/*``): it outlives this process
        (another replica may finish it), so only its age can tell it was abandoned."""
        return upload_id or uuid.uuid4().hex

    async def end(self, upload_id: str) -> None:
        """Forget the upload: it completed or was cleaned up."""


class ByteStream(ABC):
    """An open read of one object: ``size`` is the whole object's size, ``offset`` and
    ``length`` the part being read. Iterate it for the chunks."""

    size: int
    offset: int
    length: int
    sha256: str | None = None  # hex SHA-256 of the whole object, when the store recorded one

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...


class ArtifactStore(ABC):
    """A tree of files. Open with ``await store.open()``; whoever opens it calls ``aclose()``.
    Set ``ledger`` before opening to have uploads in flight noted (see :class:`UploadLedger`)."""

    ledger: UploadLedger = UploadLedger()

    @classmethod
    @abstractmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        """Build a store for ``uri`` without connecting. Raises ``ValueError`` when malformed."""

    @abstractmethod
    async def open(self) -> None:
        """Create clients, check the destination is usable."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release clients. Safe to call twice."""

    @abstractmethod
    async def put(
        self, path: str, chunks: AsyncIterable[bytes], *, sha256: str | None = None
    ) -> int:
        """Store the bytes of ``chunks`` at ``path``, replacing any file there, and return the
        size. Atomic: the object becomes visible only once complete; if ``chunks`` raises or
        the call is cancelled nothing is left visible and the exception propagates. Raises
        ``InvalidArgument`` when ``path`` is a directory.

        The SHA-256 of the bytes is computed while they stream and stored with the object
        (``ByteStream.sha256`` returns it). When ``sha256`` (lowercase hex) is given and the
        bytes do not match it, nothing is stored and ``ChecksumMismatch`` is raised."""

    @abstractmethod
    def get(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AbstractAsyncContextManager[ByteStream]:
        """Open ``path`` for reading ``length`` bytes (``None``: to the end) from ``offset``.
        Entering raises ``NotFound`` for a missing file, ``InvalidArgument`` for a directory
        or an offset past the end. Leaving closes whatever was opened."""

    @abstractmethod
    async def stat(self, path: str) -> FileInfo | None:
        """The file or directory at ``path``, or ``None``."""

    @abstractmethod
    def iter_dir(self, path: str) -> AsyncIterator[FileInfo]:
        """The immediate children of directory ``path`` (paths relative to the store root),
        sorted by path, fetched page by page. Nothing for a missing path or a file."""

    @abstractmethod
    async def delete(self, path: str) -> None:
        """Delete the file, or the directory and everything under it. Raises ``NotFound``
        when nothing is there."""

    async def delete_tree(self, path: str) -> bool:
        """Delete whatever is at ``path``: a file, or a directory and everything under it,
        a page of objects per request. Nothing there is no error, so garbage collection can
        delete a run's folder again after a crash cut the first try short. Returns whether
        anything was there. ``InvalidArgument`` for the store's root."""
        try:
            await self.delete(path)
        except NotFound:
            return False
        return True

    # -- what unfinished writes leave behind (swept by gateway/sweeper.py) ---------------

    def leftovers(self, noted: Collection[str] = (), *, full: bool = False
                  ) -> AsyncIterator[Leftover]:
        """What unfinished writes left in the store: everything the store can list cheaply,
        and whatever is left at the ``noted`` paths (uploads a ledger noted whose process is
        gone). ``full`` also lists what only a walk over every object finds."""
        return _nothing()

    async def discard(self, leftover: Leftover) -> None:
        """Remove a leftover found by :meth:`leftovers`. Idempotent."""

    async def last_written(self, leftover: Leftover) -> int | None:
        """When bytes last reached the leftover (ms), where the store can tell: a writer
        still at work shows here even when its process looks gone."""
        return None

    # -- server-side multipart upload (MLflow's mpu/* API) ------------------------------
    # Stores that cannot do it keep these defaults; ``supports_multipart`` says which.

    supports_multipart: bool = False
    supports_presigned: bool = False

    async def create_multipart(self, path: str) -> str:
        """Start a multipart upload to ``path`` and return its upload id. Nothing is visible
        at ``path`` until :meth:`complete_multipart`."""
        raise NotImplementedByStore("Multipart upload is not supported by this artifact store")

    async def put_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadedPart:
        """Store part ``part_number`` (1..10000) of the upload; returns its etag. A part sent
        again replaces the earlier one. Raises ``NotFound`` for an unknown upload id."""
        raise NotImplementedByStore("Multipart upload is not supported by this artifact store")

    async def complete_multipart(
        self, path: str, upload_id: str, parts: list[UploadedPart]
    ) -> None:
        """Make the parts, in ``part_number`` order, the object at ``path``."""
        raise NotImplementedByStore("Multipart upload is not supported by this artifact store")

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        """Discard the upload and every part stored for it. Idempotent."""
        raise NotImplementedByStore("Multipart upload is not supported by this artifact store")

    async def presign_part(
        self, path: str, upload_id: str, part_number: int, expires: int
    ) -> tuple[str, dict[str, str]]:
        """A URL (and headers) the client PUTs one part to directly, bypassing the gateway."""
        raise NotImplementedByStore("Presigned URLs are not supported by this artifact store")

    async def presign_get(self, path: str, expires: int) -> tuple[str, dict[str, str]]:
        """A URL (and headers) the client GETs ``path`` from directly."""
        raise NotImplementedByStore("Presigned URLs are not supported by this artifact store")

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _nothing() -> AsyncIterator[Leftover]:
    return
    yield
