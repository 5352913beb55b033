"""The ArtifactStore contract, run over every implementation.

A new backend joins by adding a branch to ``tests/object_stores.py``'s
:func:`open_test_store` (and, if it needs a service, a fixture that starts it); every test
below then runs against it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from object_stores import STORE_KINDS, open_test_store

from backends import errors
from backends.artifacts import local as local_store
from backends.artifacts.azure import AzureArtifactStore
from backends.artifacts.base import (
    ArtifactStore,
    ChecksumMismatch,
    FileInfo,
    Leftover,
    UploadLedger,
)
from backends.artifacts.local import LocalArtifactStore
from backends.artifacts.s3 import S3ArtifactStore

MIB = 1024 * 1024


@pytest.fixture(params=STORE_KINDS)
async def artifact_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ArtifactStore]:
    """The store under test; servers come from ``tests/object_stores.py`` (one that cannot
    start fails the test), each test gets a fresh bucket or container."""
    async with open_test_store(request.param, request, tmp_path) as store:
        yield store


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        await asyncio.sleep(0)  # yield to the loop, as a socket would
        yield data[i : i + size]


async def _read(store: ArtifactStore, path: str, offset: int = 0,
                length: int | None = None) -> bytes:
    out = bytearray()
    async with store.get(path, offset, length) as stream:
        async for chunk in stream:
            out += chunk
        assert len(out) == stream.length
    return bytes(out)


async def _list(store: ArtifactStore, path: str) -> list[FileInfo]:
    return [info async for info in store.iter_dir(path)]


async def _paths(store: ArtifactStore, path: str) -> list[str]:
    return [info.path for info in await _list(store, path)]


class _Boom(Exception):
    pass


# -- put / get ---------------------------------------------------------------------------


async def test_round_trip_multi_chunk(artifact_store: ArtifactStore) -> None:
    data = os.urandom(3 * MIB + 12345)  # several of the store's chunks, with a ragged tail
    size = await artifact_store.put("1/run/artifacts/model.bin", _chunks(data, 100_003))
    assert size == len(data)
    async with artifact_store.get("1/run/artifacts/model.bin") as stream:
        assert (stream.size, stream.offset, stream.length) == (len(data), 0, len(data))
        digest = hashlib.sha256()
        chunks = 0
        async for chunk in stream:
            digest.update(chunk)
            chunks += 1
    assert digest.digest() == hashlib.sha256(data).digest()
    assert chunks > 1  # streamed, not one buffer


async def test_ranged_get(artifact_store: ArtifactStore) -> None:
    data = os.urandom(2 * MIB + 7)
    await artifact_store.put("f.bin", _chunks(data))
    assert await _read(artifact_store, "f.bin", 10, 100) == data[10:110]
    assert await _read(artifact_store, "f.bin", MIB - 3, MIB + 5) == data[MIB - 3 : 2 * MIB + 2]
    assert await _read(artifact_store, "f.bin", 2 * MIB) == data[2 * MIB :]  # to the end
    assert await _read(artifact_store, "f.bin", len(data) - 5, 1000) == data[-5:]  # clamped
    assert await _read(artifact_store, "f.bin", len(data)) == b""
    async with artifact_store.get("f.bin", 10, 100) as stream:
        assert (stream.size, stream.offset, stream.length) == (len(data), 10, 100)


async def test_get_offset_past_end_is_invalid(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("f.txt", _chunks(b"hello"))
    with pytest.raises(errors.InvalidArgument):
        async with artifact_store.get("f.txt", 6):
            pass


async def test_get_missing_is_not_found(artifact_store: ArtifactStore) -> None:
    with pytest.raises(errors.NotFound):
        async with artifact_store.get("nope/missing.txt"):
            pass
    await artifact_store.put("file.txt", _chunks(b"x"))
    with pytest.raises(errors.NotFound):
        async with artifact_store.get("file.txt/below"):  # a file is not a directory
            pass


async def test_get_directory_is_invalid(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("dir/inner.txt", _chunks(b"x"))
    with pytest.raises(errors.InvalidArgument):
        async with artifact_store.get("dir"):
            pass


async def test_put_over_directory_is_invalid(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("dir/inner.txt", _chunks(b"x"))
    with pytest.raises(errors.InvalidArgument):
        await artifact_store.put("dir", _chunks(b"y"))
    assert await _read(artifact_store, "dir/inner.txt") == b"x"


async def test_overwrite_replaces(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("a/f.txt", _chunks(b"first version, longer"))
    await artifact_store.put("a/f.txt", _chunks(b"second"))
    assert await _read(artifact_store, "a/f.txt") == b"second"
    assert await _paths(artifact_store, "a") == ["a/f.txt"]


async def test_empty_file(artifact_store: ArtifactStore) -> None:
    assert await artifact_store.put("empty.txt", _chunks(b"")) == 0
    assert await _read(artifact_store, "empty.txt") == b""
    assert await artifact_store.stat("empty.txt") == FileInfo("empty.txt", False, 0)
    assert await _list(artifact_store, "") == [FileInfo("empty.txt", False, 0)]


# -- stat / iter_dir ---------------------------------------------------------------------


async def test_stat(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("d/sub/f.txt", _chunks(b"12345"))
    assert await artifact_store.stat("d/sub/f.txt") == FileInfo("d/sub/f.txt", False, 5)
    assert await artifact_store.stat("d/sub") == FileInfo("d/sub", True, None)
    assert await artifact_store.stat("d") == FileInfo("d", True, None)
    assert await artifact_store.stat("d/missing") is None
    assert await artifact_store.stat("d/sub/f.txt/below") is None


async def test_iter_dir(artifact_store: ArtifactStore) -> None:
    for path in ["r/b.txt", "r/a.txt", "r/sub/deep/x.txt", "r/sub/y.txt", "r/c/z.txt",
                 "r/.hidden-but-real"]:
        await artifact_store.put(path, _chunks(path.encode()))
    listed = await _list(artifact_store, "r")
    assert listed == [
        FileInfo("r/.hidden-but-real", False, len("r/.hidden-but-real")),
        FileInfo("r/a.txt", False, 7),
        FileInfo("r/b.txt", False, 7),
        FileInfo("r/c", True, None),
        FileInfo("r/sub", True, None),
    ]
    assert await _paths(artifact_store, "r/sub") == ["r/sub/deep", "r/sub/y.txt"]
    assert await _paths(artifact_store, "r/sub/deep") == ["r/sub/deep/x.txt"]
    assert await _paths(artifact_store, "") == ["r"]


async def test_iter_dir_of_missing_or_file_is_empty(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("f.txt", _chunks(b"x"))
    assert await _list(artifact_store, "missing") == []
    assert await _list(artifact_store, "f.txt") == []


async def test_iter_dir_of_empty_store(artifact_store: ArtifactStore) -> None:
    assert await _list(artifact_store, "") == []


# -- delete ------------------------------------------------------------------------------


async def test_delete_file(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("d/f.txt", _chunks(b"x"))
    await artifact_store.put("d/g.txt", _chunks(b"y"))
    await artifact_store.delete("d/f.txt")
    assert await artifact_store.stat("d/f.txt") is None
    assert await _paths(artifact_store, "d") == ["d/g.txt"]


async def test_delete_directory_is_recursive(artifact_store: ArtifactStore) -> None:
    for path in ["keep.txt", "d/a.txt", "d/sub/b.txt", "d/sub/deeper/c.txt"]:
        await artifact_store.put(path, _chunks(b"x"))
    await artifact_store.delete("d")
    assert await artifact_store.stat("d") is None
    assert await artifact_store.stat("d/sub/b.txt") is None
    assert await _paths(artifact_store, "") == ["keep.txt"]


async def test_delete_missing_is_not_found(artifact_store: ArtifactStore) -> None:
    with pytest.raises(errors.NotFound):
        await artifact_store.delete("nothing/here")


async def test_delete_tree_takes_a_run_folder_and_is_idempotent(
        artifact_store: ArtifactStore) -> None:
    # What gc deletes: a run's folder, next to a run whose id it prefixes.
    paths = [f"1/r1/artifacts/f{i}.txt" for i in range(30)] + [
        "1/r1/artifacts/model/MLmodel", "1/r10/artifacts/a.txt", "1/r1.txt"]
    for path in paths:
        await artifact_store.put(path, _chunks(b"x"))
    assert await artifact_store.delete_tree("1/r1") is True
    assert await artifact_store.stat("1/r1") is None
    assert await _paths(artifact_store, "1") == ["1/r1.txt", "1/r10"]
    assert await artifact_store.delete_tree("1/r1") is False  # a second gc finds nothing
    assert await artifact_store.delete_tree("1/r1.txt") is True
    with pytest.raises(errors.InvalidArgument):
        await artifact_store.delete_tree("")


# -- atomicity ---------------------------------------------------------------------------


async def _failing_chunks(before: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(before), 64 * 1024):
        yield before[i : i + 64 * 1024]
    raise _Boom("client went away")


async def test_failed_upload_leaves_nothing(artifact_store: ArtifactStore) -> None:
    with pytest.raises(_Boom):
        await artifact_store.put("up/big.bin", _failing_chunks(os.urandom(3 * MIB)))
    assert await artifact_store.stat("up/big.bin") is None
    assert await _list(artifact_store, "up") == []


async def test_failed_overwrite_keeps_the_old_file(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("f.bin", _chunks(b"old"))
    with pytest.raises(_Boom):
        await artifact_store.put("f.bin", _failing_chunks(os.urandom(MIB + 1)))
    assert await _read(artifact_store, "f.bin") == b"old"
    assert await _paths(artifact_store, "") == ["f.bin"]


async def test_cancelled_upload_leaves_nothing(artifact_store: ArtifactStore) -> None:
    started = asyncio.Event()
    never = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MIB)  # enough to start a write to the backend
        started.set()
        await never.wait()
        yield b"unreachable"

    task = asyncio.create_task(artifact_store.put("up/stalled.bin", stalls()))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await artifact_store.stat("up/stalled.bin") is None
    assert await _list(artifact_store, "up") == []


async def test_early_exit_from_a_read_closes_cleanly(artifact_store: ArtifactStore) -> None:
    await artifact_store.put("f.bin", _chunks(os.urandom(3 * MIB)))
    async with artifact_store.get("f.bin") as stream:
        async for _chunk in stream:
            break  # leave with a read-ahead possibly in flight
    assert (await artifact_store.stat("f.bin")) == FileInfo("f.bin", False, 3 * MIB)


# -- integrity ---------------------------------------------------------------------------


async def test_sha256_is_recorded_while_streaming(artifact_store: ArtifactStore) -> None:
    data = os.urandom(6 * MIB + 3)  # more than one S3 part in the fixture's configuration
    await artifact_store.put("sum/big.bin", _chunks(data, 1_000_003))
    await artifact_store.put("sum/small.txt", _chunks(b"small"))
    async with artifact_store.get("sum/big.bin") as stream:
        assert stream.sha256 == hashlib.sha256(data).hexdigest()
    async with artifact_store.get("sum/small.txt", 1, 2) as stream:  # whole object's digest
        assert stream.sha256 == hashlib.sha256(b"small").hexdigest()


async def test_many_small_chunks(artifact_store: ArtifactStore) -> None:
    # A body trickling in, or sent as small HTTP chunks, reaches the store as many small
    # pieces: more of them in one batch than writev takes (IOV_MAX, 1024 on Linux).
    data = os.urandom(2 * MIB + 5)
    assert await artifact_store.put("small/pieces.bin", _chunks(data, 500)) == len(data)
    assert await _read(artifact_store, "small/pieces.bin") == data
    async with artifact_store.get("small/pieces.bin") as stream:
        assert stream.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [100, 6 * MIB + 3])
async def test_announced_sha256_is_checked(artifact_store: ArtifactStore, size: int) -> None:
    data = os.urandom(size)
    good = hashlib.sha256(data).hexdigest()
    await artifact_store.put("sum/old.bin", _chunks(b"old"))
    with pytest.raises(ChecksumMismatch):
        await artifact_store.put("sum/new.bin", _chunks(data), sha256="0" * 64)
    with pytest.raises(ChecksumMismatch):
        await artifact_store.put("sum/old.bin", _chunks(data), sha256=good[::-1])
    assert await artifact_store.stat("sum/new.bin") is None
    assert await _read(artifact_store, "sum/old.bin") == b"old"
    assert await artifact_store.put("sum/new.bin", _chunks(data), sha256=good.upper()) == size
    async with artifact_store.get("sum/new.bin") as stream:
        assert stream.sha256 == good


# -- server-side multipart (mpu/*) -------------------------------------------------------


async def test_multipart_upload(artifact_store: ArtifactStore) -> None:
    if not artifact_store.supports_multipart:
        with pytest.raises(errors.NotImplementedByStore):
            await artifact_store.create_multipart("mp/f.bin")
        return
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    upload_id = await artifact_store.create_multipart("mp/f.bin")
    # Out of order and in parallel, as the client's thread pool sends them.
    uploaded = await asyncio.gather(*(
        artifact_store.put_part("mp/f.bin", upload_id, n, _chunks(parts[n - 1]))
        for n in (3, 1, 2)))
    assert await artifact_store.stat("mp/f.bin") is None  # nothing visible before complete
    await artifact_store.complete_multipart("mp/f.bin", upload_id, list(uploaded))
    assert await _read(artifact_store, "mp/f.bin") == b"".join(parts)


async def test_multipart_abort_leaves_nothing(artifact_store: ArtifactStore) -> None:
    if not artifact_store.supports_multipart:
        with pytest.raises(errors.NotImplementedByStore):
            await artifact_store.abort_multipart("mp/f.bin", "x")
        return
    upload_id = await artifact_store.create_multipart("mp/f.bin")
    await artifact_store.put_part("mp/f.bin", upload_id, 1, _chunks(os.urandom(MIB)))
    await artifact_store.abort_multipart("mp/f.bin", upload_id)
    await artifact_store.abort_multipart("mp/f.bin", upload_id)  # idempotent
    assert await artifact_store.stat("mp/f.bin") is None
    assert await _list(artifact_store, "") == []
    assert await _pending(artifact_store) == 0


async def _pending(store: ArtifactStore) -> int:
    """Multipart uploads or uncommitted blocks left in the store's bucket/container."""
    if isinstance(store, S3ArtifactStore):
        return len(await store.pending_multipart_uploads())
    if isinstance(store, AzureArtifactStore):
        return await store.all_uncommitted_blobs()
    return 0


async def test_failed_and_cancelled_uploads_leave_no_pending_parts(
    artifact_store: ArtifactStore,
) -> None:
    with pytest.raises(_Boom):
        await artifact_store.put("up/big.bin", _failing_chunks(os.urandom(12 * MIB)))
    gate = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield os.urandom(MIB)
        gate.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(artifact_store.put("up/stalled.bin", stalls()))
    await asyncio.wait_for(gate.wait(), 30)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _list(artifact_store, "up") == []
    assert await _pending(artifact_store) == 0


# -- local only --------------------------------------------------------------------------


def _files_on_disk(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
async def test_local_starts_writeback_while_uploading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The binding must load and accept its arguments: a broken one would only make the
    # final fsync slow again, which no other test notices.
    assert local_store._SYNC_FILE_RANGE is not None
    started: list[tuple[int, int, int]] = []

    def record(fd: int, offset: int, length: int) -> None:
        assert local_store._SYNC_FILE_RANGE is not None
        assert local_store._SYNC_FILE_RANGE(fd, offset, length, 2) == 0
        started.append((offset, length, os.fstat(fd).st_size))

    monkeypatch.setattr(local_store, "_start_writeback", record)
    store = LocalArtifactStore.from_uri(str(tmp_path / "a"))
    data = os.urandom(4 * local_store.WRITEBACK_STEP + 5)
    await store.put("wb/big.bin", _chunks(data, 100_003))
    # Contiguous ranges from 0, each already written, while the upload was in progress.
    assert [s[0] for s in started] == [0, *(s[0] + s[1] for s in started[:-1])]
    assert all(size >= offset + length for offset, length, size in started)
    assert len(started) >= 3
    assert (tmp_path / "a" / "wb" / "big.bin").read_bytes() == data


async def test_local_failed_and_cancelled_uploads_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore.from_uri(str(tmp_path / "a"))
    await store.open()
    await store.put("up/keep.txt", _chunks(b"keep"))
    with pytest.raises(_Boom):
        await store.put("up/big.bin", _failing_chunks(os.urandom(3 * MIB)))

    gate = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield os.urandom(2 * MIB)
        gate.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.put("up/stalled.bin", stalls()))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.aclose()  # the process's staging folder goes with it once empty
    assert _files_on_disk(tmp_path / "a") == ["up", "up/keep.txt"]


async def test_local_listing_hides_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "a"
    (root / "d").mkdir(parents=True)
    (root / "d" / "real.txt").write_bytes(b"x")
    (root / "d" / f".real.txt.mlgate-tmp-{'0' * 32}").write_bytes(b"partial")
    (root / "d" / ".artifact.uploading.abc123").write_bytes(b"stock's partial")
    store = LocalArtifactStore.from_uri(f"file://{root}")
    await store.open()
    assert await _paths(store, "d") == ["d/real.txt"]


async def test_local_listing_hides_the_staging_folder_and_refuses_its_paths(
    tmp_path: Path,
) -> None:
    store = LocalArtifactStore.from_uri(str(tmp_path / "a"))
    await store.open()
    await store.put("f.txt", _chunks(b"f"))
    (tmp_path / "a" / ".mlgate-tmp" / ("0" * 32)).mkdir(parents=True)
    assert await _paths(store, "") == ["f.txt"]
    with pytest.raises(errors.InvalidArgument):
        await store.put(f".mlgate-tmp/{'0' * 32}/x", _chunks(b"x"))
    with pytest.raises(errors.InvalidArgument):
        await _paths(store, ".mlgate-tmp")


async def test_local_write_onto_another_filesystem(tmp_path: Path) -> None:
    """A subfolder that is a mount or a link onto another filesystem (here tmpfs): the
    staged file cannot be renamed there, so it is copied beside the target and renamed."""
    elsewhere = Path("/dev/shm") / f"mlgate-test-{os.getpid()}-{tmp_path.name}"
    if not elsewhere.parent.is_dir() or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.fail("this test needs /dev/shm on another filesystem than the temp folder")
    elsewhere.mkdir()
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "mounted").symlink_to(elsewhere)
        store = LocalArtifactStore.from_uri(str(tmp_path / "a"))
        await store.open()
        data = os.urandom(3 * MIB)
        await store.put("mounted/sub/f.bin", _chunks(data))
        assert await _read(store, "mounted/sub/f.bin") == data
        async with store.get("mounted/sub/f.bin") as stream:
            assert stream.sha256 == hashlib.sha256(data).hexdigest() or stream.sha256 is None
        assert sorted(p.name for p in elsewhere.rglob("*")) == ["f.bin", "sub"]
        await store.aclose()
        assert not (tmp_path / "a" / ".mlgate-tmp").exists()
    finally:
        shutil.rmtree(elsewhere)


async def test_local_serves_a_stock_layout(tmp_path: Path) -> None:
    root = tmp_path / "mlartifacts"
    target = root / "1" / "abc" / "artifacts" / "model" / "MLmodel"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"flavors: {}\n")
    store = LocalArtifactStore.from_uri(str(root))
    await store.open()
    assert await _read(store, "1/abc/artifacts/model/MLmodel") == b"flavors: {}\n"


def test_local_from_uri(tmp_path: Path) -> None:
    assert LocalArtifactStore.from_uri(f"file://{tmp_path}/x").root == f"{tmp_path}/x"
    assert LocalArtifactStore.from_uri(f"file://localhost{tmp_path}/x").root == f"{tmp_path}/x"
    assert LocalArtifactStore.from_uri("rel/dir").root == os.path.abspath("rel/dir")
    for bad in ["file://otherhost/x", "", "s3://bucket/x", "file://"]:
        with pytest.raises(ValueError):
            LocalArtifactStore.from_uri(bad)


async def test_local_open_refuses_a_file_as_root(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(errors.Unavailable):
        await LocalArtifactStore.from_uri(str(tmp_path / "f")).open()


async def test_local_refuses_to_delete_the_root(tmp_path: Path) -> None:
    store = LocalArtifactStore.from_uri(str(tmp_path / "a"))
    await store.put("f.txt", _chunks(b"x"))
    with pytest.raises(errors.InvalidArgument):
        await store.delete("")
    assert await _paths(store, "") == ["f.txt"]


# -- leftovers of unfinished writes (the sweep's side of the interface) ---------------------


class _NotingLedger(UploadLedger):
    """Keeps the uploads a store notes, as the gateway's metadata-backed ledger does."""

    def __init__(self) -> None:
        super().__init__()
        self.noted: dict[str, str] = {}
        self.begun = 0

    async def begin(self, path: str, upload_id: str | None = None, *, owned: bool = True
                    ) -> str:
        upload_id = await super().begin(path, upload_id, owned=owned)
        self.noted[upload_id] = path
        self.begun += owned
        return upload_id

    async def end(self, upload_id: str) -> None:
        self.noted.pop(upload_id, None)


@pytest.fixture(params=STORE_KINDS)
async def noting_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ArtifactStore, _NotingLedger]]:
    ledger = _NotingLedger()
    async with open_test_store(request.param, request, tmp_path, ledger) as store:
        yield store, ledger


async def _leftovers(store: ArtifactStore, noted: list[str] | None = None,
                     full: bool = False) -> list[Leftover]:
    return [lo async for lo in store.leftovers(noted or [], full=full)]


async def test_a_small_upload_notes_nothing(
    noting_store: tuple[ArtifactStore, _NotingLedger], tmp_path: Path,
) -> None:
    store, ledger = noting_store
    await store.put("small.txt", _chunks(b"x" * 1024))
    assert ledger.begun == 0
    # The local store's own staging folder (empty) is there while it is open.
    assert [lo for lo in await _leftovers(store, full=True) if lo.owner != ledger.owner] == []
    assert [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == [
        tmp_path / "artifacts" / "small.txt"] or not isinstance(store, LocalArtifactStore)


async def test_a_stalled_upload_is_noted_found_and_discarded(
    noting_store: tuple[ArtifactStore, _NotingLedger], tmp_path: Path,
) -> None:
    """What a process killed mid-upload leaves: found by ``leftovers`` (the noted path
    for object stores, the owner's staging folder locally) and gone after ``discard``."""
    store, ledger = noting_store
    gate = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in _chunks(os.urandom(6 * MIB), MIB):
            yield chunk
        gate.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.put("up/big.bin", stalls()))
    await asyncio.wait_for(gate.wait(), 30)
    deadline = asyncio.get_running_loop().time() + 30
    while not (found := await _leftovers(store, list(ledger.noted.values()))):
        assert asyncio.get_running_loop().time() < deadline, "nothing staged after 30 s"
        await asyncio.sleep(0.1)
    if isinstance(store, AzureArtifactStore):
        # The writer is cut off, not dead: let its staging requests in flight land first,
        # or one could stage a block again after the discard (seen once in CI).
        while await store.uncommitted_blocks("up/big.bin") < 6:
            assert asyncio.get_running_loop().time() < deadline, "blocks not staged in 30 s"
            await asyncio.sleep(0.1)
    if isinstance(store, LocalArtifactStore):
        assert [(lo.kind, lo.owner) for lo in found] == [("staging folder", ledger.owner)]
        assert ledger.begun == 0  # the owner is in the staging folder's name
    else:
        assert list(ledger.noted.values()) == ["up/big.bin"]  # noted before it began
        assert [lo.path for lo in found] == ["up/big.bin"]
    for leftover in found:
        await store.discard(leftover)
        await store.discard(leftover)  # idempotent
    assert await _leftovers(store, list(ledger.noted.values())) == []
    assert await _pending(store) == 0
    staged = tmp_path / "artifacts" / ".mlgate-tmp"
    assert [p for p in staged.rglob("*") if p.is_file()] == []
    task.cancel()  # the writer, cut off, cleans up what is no longer there
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ledger.noted == {}
    assert await store.stat("up/big.bin") is None
    await store.put("up/after.txt", _chunks(b"after"))  # writing still works
    assert await _read(store, "up/after.txt") == b"after"


async def test_a_full_look_finds_unnoted_multipart_uploads(
    noting_store: tuple[ArtifactStore, _NotingLedger],
) -> None:
    """A client's mpu/* upload is noted as nobody's while it runs and forgotten when it
    ends; one left unfinished is found by a full look (or at its noted path), with when it
    began where the store tells, so the sweep can judge it by its age."""
    store, ledger = noting_store
    if not store.supports_multipart:
        assert await _leftovers(store, full=True) == []
        return
    upload_id = await store.create_multipart("mp/f.bin")
    assert ledger.noted == {upload_id: "mp/f.bin"} and ledger.begun == 0  # not owned
    await store.put_part("mp/f.bin", upload_id, 1, _chunks(os.urandom(MIB)))
    found = await _leftovers(store, full=True)
    assert [lo.path for lo in found] == ["mp/f.bin"]
    assert found[0].started_ms is not None  # moto always says 2010-11-10: no more checked
    assert [lo.path for lo in await _leftovers(store, ["mp/f.bin"])] == ["mp/f.bin"]
    await store.discard(found[0])
    assert await _pending(store) == 0
    assert await store.stat("mp/f.bin") is None
    await store.abort_multipart("mp/f.bin", upload_id)
    assert ledger.noted == {}
    done = await store.create_multipart("mp/g.bin")
    part = await store.put_part("mp/g.bin", done, 1, _chunks(b"g"))
    await store.complete_multipart("mp/g.bin", done, [part])
    assert ledger.noted == {}
