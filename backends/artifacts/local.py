"""Artifacts in a local directory, laid out as stock MLflow does: ``<root>/<path>``.

URI: a plain path (``./mlartifacts``, ``/srv/artifacts``) or ``file:///srv/artifacts``
(``file://localhost/...`` too). A stock ``mlartifacts/`` folder is served as is.

The SHA-256 of every upload is computed while it is written and kept in the file's
extended attribute ``user.mlgate.sha256`` (hex), set before the rename, so the checksum and
the bytes appear together and the on-disk layout stays exactly stock's. A filesystem
without user xattrs just stores no checksum.

Writes go to a temporary file in the writing process's own staging folder,
``<root>/.mlgate-tmp/<owner>/<uuid>`` (``owner`` from the store's ledger), whose writeback to
disk is started every few MiB as the body arrives (Linux), are fsynced, then renamed over
the target with ``os.replace``, so readers see either the old file or the
complete new one. The target's folders are made only then: a write cut off leaves no empty
folders. A process killed mid-write leaves its staging folder, which the sweep removes once
the process is gone (:meth:`LocalArtifactStore.leftovers`). A target on another filesystem
(a mounted or symlinked subfolder) is staged a second time beside it. Listings hide the
staging folder and the temporary files of older versions (``.<name>.mlgate-tmp-<uuid>``) and
stock (``.artifact.uploading.*``). Blocking calls run in the default executor, a chunk of
about 1 MiB at a time.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import re
import shutil
import stat as stat_mod
import sys
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import unquote, urlsplit

from backends.artifacts.base import (
    ArtifactStore,
    ByteStream,
    ChecksumMismatch,
    FileInfo,
    Leftover,
)
from backends.errors import InvalidArgument, NotFound, Unavailable

__all__ = ["LocalArtifactStore"]

T = TypeVar("T")

CHUNK_SIZE = 1024 * 1024

SHA256_XATTR = "user.mlgate.sha256"

STAGING = ".mlgate-tmp"  # <root>/.mlgate-tmp/<owner>/<uuid>
_TMP_MARK = ".mlgate-tmp-"
# Staging files beside the target: older versions' and, on another filesystem, ours; and
# the ones stock's LocalArtifactRepository leaves after a crash.
_HIDDEN = re.compile(r"^\..*\.mlgate-tmp-[0-9a-f]{32}$|^\.artifact\.uploading\.")
# Keeps ".<name>.mlgate-tmp-<32 hex>" under NAME_MAX (255) for any legal name.
_TMP_NAME_MAX = 180
_OWNER = re.compile(r"^[0-9a-f]{32}$")
# Buffers one writev takes; more is EINVAL. A batch of many small chunks is written in parts.
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 16
# An upload asks the kernel to start writing its data to disk every this many bytes, so that
# the fsync before the rename finds little left to write (see _start_writeback).
WRITEBACK_STEP = 8 * 1024 * 1024


def _is_hidden(name: str) -> bool:
    return _HIDDEN.match(name) is not None


# --- running blocking calls ------------------------------------------------------------


async def _settle(fut: asyncio.Future[Any]) -> bool:
    """Wait until ``fut`` is done whatever happens. Returns whether this task was cancelled
    meanwhile, so the caller can re-raise once its cleanup is finished."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            cancelled = True
    if not fut.cancelled():
        fut.exception()  # mark it retrieved; the caller already handles the outcome
    return cancelled


async def _blocking(
    fn: Callable[..., T], *args: Any, discard: Callable[[T], None] | None = None
) -> T:
    """Run ``fn(*args)`` in a thread. A thread cannot be stopped, so on cancellation this
    waits for it to finish before re-raising: the caller's cleanup (closing an fd, removing a
    temp file) then never races the call still using them. ``discard`` releases a result
    that arrives after the caller was cancelled (an fd that would otherwise leak)."""
    fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await _settle(fut)
        if discard is not None and not fut.cancelled() and fut.exception() is None:
            with suppress(OSError):
                discard(fut.result())
        raise


# --- writeback ---------------------------------------------------------------------------


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2), which Python's os module lacks; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of ``fd`` to disk without waiting for it. The page cache
    otherwise holds a whole upload until the final fsync, which then writes it all while
    the client waits; started as the body arrives, the disk works beside the network.
    Advisory: a failure (a filesystem that does not support it) changes nothing."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


# --- error translation -----------------------------------------------------------------


def _translate(exc: OSError, path: str, *, reading: bool = False) -> BaseException:
    """The backend error for ``exc``, or ``exc`` itself when it is not the caller's fault
    (permissions, I/O errors): those reach the log, not the client. Messages name only the
    store-relative path, never the server's directories."""
    if isinstance(exc, FileNotFoundError) or (reading and isinstance(exc, NotADirectoryError)):
        # "a.txt/b" where a.txt is a file: nothing is there (stock answers 404 as well).
        return NotFound(f"No such artifact: '{path}'")
    if isinstance(exc, IsADirectoryError):
        return InvalidArgument(f"Artifact path refers to a directory: '{path}'")
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return InvalidArgument(f"A parent of artifact path '{path}' is a file")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidArgument(f"Artifact path is too long: '{path}'")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable("The artifacts destination is out of space")
    return exc


@contextmanager
def _translating(path: str, *, reading: bool = False) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        err = _translate(exc, path, reading=reading)
        if err is exc:
            raise
        raise err from exc


# --- reading ---------------------------------------------------------------------------


class _LocalByteStream(ByteStream):
    """Reads ``length`` bytes from ``offset`` of an open fd with ``os.pread``, keeping one
    chunk read ahead so the disk works while the previous chunk goes to the socket."""

    def __init__(
        self, path: str, fd: int, size: int, offset: int, length: int, chunk_size: int,
        sha256: str | None = None,
    ) -> None:
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.offset = offset
        self.length = length
        self._fd = fd
        self._chunk_size = chunk_size
        self._pending: asyncio.Future[bytes] | None = None
        self._closed = False

    def _read_ahead(self, position: int, remaining: int) -> asyncio.Future[bytes] | None:
        if remaining <= 0:
            return None
        n = min(self._chunk_size, remaining)
        return asyncio.get_running_loop().run_in_executor(None, os.pread, self._fd, n, position)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._closed:
            raise RuntimeError("the stream is closed")
        position, remaining = self.offset, self.length
        self._pending = self._read_ahead(position, remaining)
        while self._pending is not None:
            current = self._pending
            try:
                chunk = await asyncio.shield(current)
            except OSError as exc:
                self._pending = None
                err = _translate(exc, self.path, reading=True)
                if err is exc:
                    raise
                raise err from exc
            if not chunk:
                # The file shrank under us. os.replace leaves this fd on the old inode, so
                # only an in-place truncate does this; stop rather than spin.
                self._pending = None
                raise InvalidArgument("The artifact changed while it was being read")
            position += len(chunk)
            remaining -= len(chunk)
            self._pending = self._read_ahead(position, remaining)
            yield chunk

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cancelled = False
        if self._pending is not None:
            # A read may still be running in a thread; close the fd only once it is done.
            cancelled = await _settle(self._pending)
            self._pending = None
        await _blocking(os.close, self._fd)
        if cancelled:
            raise asyncio.CancelledError


def _create(path: str) -> int:
    # 0o666 & ~umask: the mode a plain open() gives, as stock sets on its files.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o666)


def _remove_empty(*folders: str) -> None:
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:  # not empty (in use), or already gone
            return


def _check_parents(root: str, parent: str) -> None:
    """Fail before the body arrives when the target's folder cannot be made: the nearest
    existing ancestor must be a folder. The folders themselves are made at publishing."""
    while parent != root and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", parent)


def _replace_across(tmp: str, target: str) -> None:
    """``os.replace`` onto another filesystem: copy to a hidden file beside the target, then
    rename that. A crash during the copy leaves the hidden file (listings skip it)."""
    parent, name = os.path.split(target)
    beside = os.path.join(parent, f".{name[:_TMP_NAME_MAX]}{_TMP_MARK}{uuid.uuid4().hex}")
    try:
        with open(tmp, "rb") as src, os.fdopen(_create(beside), "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_SIZE)
            dst.flush()
            with suppress(OSError):
                os.setxattr(dst.fileno(), SHA256_XATTR, os.getxattr(src.fileno(), SHA256_XATTR))
            os.fsync(dst.fileno())
        os.replace(beside, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(beside)
        raise
    os.unlink(tmp)


@dataclass
class _Staged:
    path: str  # store-relative, for messages
    fd: int
    tmp: str
    target: str
    digest: Any = None  # hashlib sha256 object, fed in write order
    written: int = 0  # bytes written so far
    flushed: int = 0  # bytes whose writeback has been started
    published: bool = False
    closed: bool = False


class LocalArtifactStore(ArtifactStore):
    """A directory tree on the local filesystem (see the module docstring)."""

    def __init__(self, root: str, *, chunk_size: int = CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.root = os.path.abspath(root)
        self._chunk_size = chunk_size

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        chunk_size = options.pop("chunk_size", CHUNK_SIZE)
        if options:
            raise TypeError(f"unknown options for the local artifact store: {sorted(options)}")
        if not uri or not uri.strip():
            raise ValueError("the artifacts destination must not be empty")
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ValueError(
                    f"file URI {uri!r} names host {parts.netloc!r}; only local paths "
                    "(file:///path or file://localhost/path) are supported"
                )
            path = unquote(parts.path)
            if not path:
                raise ValueError(f"file URI {uri!r} has no path")
        elif scheme == "" or len(scheme) == 1:  # one letter: a Windows drive, "C:\\x"
            path = uri
        else:
            raise ValueError(f"{uri!r} is not a local path or file:// URI")
        return cls(path, chunk_size=int(chunk_size))

    def __repr__(self) -> str:
        return f"LocalArtifactStore({self.root!r})"

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        # The root is created by the first write, as stock does; an existing non-directory
        # there can never work, so fail now rather than on the first upload.
        def check() -> None:
            if os.path.exists(self.root) and not os.path.isdir(self.root):
                raise Unavailable("The artifacts destination exists and is not a directory")

        await _blocking(check)

    async def aclose(self) -> None:
        # Nothing is held between calls: each read or write owns its file descriptor. The
        # staging folder goes once empty (a write still running keeps it: the sweep's then).
        await _blocking(_remove_empty, self._staging(), os.path.join(self.root, STAGING))

    # -- leftovers ----------------------------------------------------------------------

    def _leftovers(self) -> list[Leftover]:
        found = []
        try:
            with os.scandir(os.path.join(self.root, STAGING)) as entries:
                for entry in entries:
                    if _OWNER.match(entry.name) and entry.is_dir(follow_symlinks=False):
                        with suppress(FileNotFoundError):
                            started = int(entry.stat(follow_symlinks=False).st_mtime * 1000)
                            found.append(Leftover("staging folder", f"{STAGING}/{entry.name}",
                                                  started, owner=entry.name))
        except (FileNotFoundError, NotADirectoryError):
            pass
        return found

    async def leftovers(self, noted: Collection[str] = (), *, full: bool = False
                        ) -> AsyncIterator[Leftover]:
        # Every staging file is in its owner's folder: one listing finds them all.
        for leftover in await _blocking(self._leftovers):
            yield leftover

    def _last_written(self, leftover: Leftover) -> int | None:
        folder = os.path.join(self.root, *self._staged_folder(leftover))
        times = []
        with suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                with suppress(FileNotFoundError):
                    times.append(entry.stat(follow_symlinks=False).st_mtime)
        return int(max(times) * 1000) if times else None

    async def last_written(self, leftover: Leftover) -> int | None:
        return await _blocking(self._last_written, leftover)

    @staticmethod
    def _staged_folder(leftover: Leftover) -> tuple[str, str]:
        staging, _, owner = leftover.path.partition("/")
        if staging != STAGING or not _OWNER.match(owner):
            raise InvalidArgument(f"Not a leftover of this store: '{leftover.path}'")
        return staging, owner

    async def discard(self, leftover: Leftover) -> None:
        folder = os.path.join(self.root, *self._staged_folder(leftover))
        await _blocking(shutil.rmtree, folder, True)
        await _blocking(_remove_empty, os.path.join(self.root, STAGING))

    # -- helpers ------------------------------------------------------------------------

    def _abs(self, path: str) -> str:
        if not path:
            return self.root
        parts = path.split("/")
        if parts[0] == STAGING:
            raise InvalidArgument(f"Artifact path '{path}' is reserved by the server")
        return os.path.join(self.root, *parts)

    def _staging(self) -> str:
        return os.path.join(self.root, STAGING, self.ledger.owner)

    # -- writing ------------------------------------------------------------------------

    def _stage(self, path: str) -> _Staged:
        target = self._abs(path)
        with _translating(path):
            if os.path.isdir(target):
                raise IsADirectoryError(errno.EISDIR, "is a directory", target)
            _check_parents(self.root, os.path.dirname(target))
            tmp = os.path.join(self._staging(), uuid.uuid4().hex)
            for attempt in range(3):
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
                try:
                    fd = _create(tmp)
                    break
                except FileNotFoundError:
                    # Another process closing removed the empty staging folders meanwhile.
                    if attempt == 2:
                        raise
        return _Staged(path, fd, tmp, target, hashlib.sha256())

    @staticmethod
    def _write(staged: _Staged, chunks: list[bytes]) -> None:
        views = [memoryview(c) for c in chunks]
        i = 0
        with _translating(staged.path):
            while i < len(views):
                written = os.writev(staged.fd, views[i : i + _IOV_MAX])
                # A short write leaves the tail of some chunk; carry on from there.
                while i < len(views) and written >= len(views[i]):
                    written -= len(views[i])
                    i += 1
                if written:
                    views[i] = views[i][written:]
        staged.written += sum(len(c) for c in chunks)
        if staged.written - staged.flushed >= WRITEBACK_STEP:
            _start_writeback(staged.fd, staged.flushed, staged.written - staged.flushed)
            staged.flushed = staged.written

    @staticmethod
    def _hash(staged: _Staged, chunks: list[bytes]) -> None:
        for chunk in chunks:  # hashlib releases the GIL: this runs beside the write
            staged.digest.update(chunk)

    @staticmethod
    def _publish(staged: _Staged, expected: str | None) -> None:
        actual = staged.digest.hexdigest()
        if expected is not None and actual != expected.lower():
            raise ChecksumMismatch(
                f"SHA-256 of the uploaded bytes is {actual}, the client announced {expected}"
            )
        with suppress(OSError):  # no user xattrs here (tmpfs without them, some NFS)
            os.setxattr(staged.fd, SHA256_XATTR, actual.encode("ascii"))
        with _translating(staged.path):
            os.fsync(staged.fd)
            staged.closed = True
            os.close(staged.fd)
            os.makedirs(os.path.dirname(staged.target), exist_ok=True)
            try:
                os.replace(staged.tmp, staged.target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _replace_across(staged.tmp, staged.target)
        staged.published = True
        # Persist the rename itself; not every filesystem lets a directory be fsynced.
        with suppress(OSError):
            dir_fd = os.open(os.path.dirname(staged.target), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @staticmethod
    def _discard(staged: _Staged) -> None:
        if not staged.closed:
            staged.closed = True
            with suppress(OSError):
                os.close(staged.fd)
        if not staged.published:
            with suppress(FileNotFoundError):
                os.unlink(staged.tmp)

    async def put(
        self, path: str, chunks: AsyncIterable[bytes], *, sha256: str | None = None
    ) -> int:
        if not path:
            raise InvalidArgument("Artifact path must name a file")
        staged = await _blocking(self._stage, path, discard=self._discard)
        loop = asyncio.get_running_loop()
        # One write in flight while the next batch is received: network and disk overlap,
        # and memory stays at about two batches whatever the file size.
        writing: asyncio.Future[None] | None = None
        hashing: asyncio.Future[None] | None = None  # in its own thread, in batch order
        batch: list[bytes] = []
        batched = 0
        total = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                batch.append(chunk)
                batched += len(chunk)
                total += len(chunk)
                if batched >= self._chunk_size:
                    if writing is not None:
                        await asyncio.shield(writing)
                    if hashing is not None:
                        await asyncio.shield(hashing)
                    writing = loop.run_in_executor(None, self._write, staged, batch)
                    hashing = loop.run_in_executor(None, self._hash, staged, batch)
                    batch, batched = [], 0
            if writing is not None:
                await asyncio.shield(writing)
                writing = None
            if hashing is not None:
                await asyncio.shield(hashing)
                hashing = None
            if batch:
                await _blocking(self._write, staged, batch)
                await _blocking(self._hash, staged, batch)
            await _blocking(self._publish, staged, sha256)
        finally:
            # Runs on success too, as a no-op once published. Cancellation (a client that
            # went away) or a failing iterator lands here with the temp file still hidden.
            cancelled = False
            if writing is not None:
                cancelled = await _settle(writing)
            if hashing is not None:
                cancelled = await _settle(hashing) or cancelled
            if not staged.published:
                await _blocking(self._discard, staged)
            if cancelled:
                raise asyncio.CancelledError
        return total

    # -- reading ------------------------------------------------------------------------

    def _open_read(self, path: str, offset: int, length: int | None) -> _LocalByteStream:
        with _translating(path, reading=True):
            fd = os.open(self._abs(path), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if stat_mod.S_ISDIR(st.st_mode):
                # Linux opens directories read-only without complaint.
                raise InvalidArgument(f"Artifact path refers to a directory: '{path}'")
            size = st.st_size
            if offset < 0 or offset > size:
                raise InvalidArgument(f"Offset {offset} is outside '{path}' ({size} bytes)")
            if length is not None and length < 0:
                raise InvalidArgument("length must not be negative")
            available = size - offset
            count = available if length is None else min(length, available)
            try:
                digest: str | None = os.getxattr(fd, SHA256_XATTR).decode("ascii")
            except (OSError, UnicodeDecodeError):
                digest = None  # written by stock, or a filesystem without xattrs
        except BaseException:
            os.close(fd)
            raise
        return _LocalByteStream(path, fd, size, offset, count, self._chunk_size, digest)

    def get(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AbstractAsyncContextManager[ByteStream]:
        return self._get(path, offset, length)

    @asynccontextmanager
    async def _get(self, path: str, offset: int, length: int | None) -> AsyncIterator[ByteStream]:
        stream = await _blocking(
            self._open_read, path, offset, length, discard=lambda s: os.close(s._fd)
        )
        try:
            yield stream
        finally:
            await stream._close()

    # -- metadata -----------------------------------------------------------------------

    def _stat(self, path: str) -> FileInfo | None:
        try:
            with _translating(path, reading=True):
                st = os.stat(self._abs(path))
        except NotFound:
            return None
        if stat_mod.S_ISDIR(st.st_mode):
            return FileInfo(path, True, None)
        return FileInfo(path, False, st.st_size)

    async def stat(self, path: str) -> FileInfo | None:
        return await _blocking(self._stat, path)

    def _list(self, path: str) -> list[FileInfo]:
        out: list[FileInfo] = []
        try:
            with _translating(path, reading=True), os.scandir(self._abs(path)) as entries:
                for entry in entries:
                    if _is_hidden(entry.name) or (not path and entry.name == STAGING):
                        continue
                    child = f"{path}/{entry.name}" if path else entry.name
                    try:
                        # Follows symlinks, as stock's os.path.isdir/getsize do.
                        if entry.is_dir():
                            out.append(FileInfo(child, True, None))
                        else:
                            out.append(FileInfo(child, False, entry.stat().st_size))
                    except FileNotFoundError:
                        continue  # deleted (or a dangling link) while we listed
        except NotFound:
            return []  # a missing path, or a file: no children
        out.sort(key=lambda info: info.path)
        return out

    async def iter_dir(self, path: str) -> AsyncIterator[FileInfo]:
        # One scandir is one page: a local directory is read in a single pass anyway.
        for info in await _blocking(self._list, path):
            yield info

    # -- deleting -----------------------------------------------------------------------

    def _delete(self, path: str) -> None:
        target = self._abs(path)
        with _translating(path, reading=True):
            st = os.lstat(target)
        with _translating(path):
            if stat_mod.S_ISDIR(st.st_mode):
                shutil.rmtree(target)
            else:
                os.unlink(target)  # a file, or a symlink (never followed out of the tree)

    async def delete(self, path: str) -> None:
        if not path:
            # Stock would rmtree the whole destination; no request should be able to.
            raise InvalidArgument("Refusing to delete the root of the artifact store")
        await _blocking(self._delete, path)
