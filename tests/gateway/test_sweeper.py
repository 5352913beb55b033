"""The artifact sweep's judgement (gateway/sweeper.py), on real stores: two gateway
processes, A and B, share a SQLite metadata store and an artifacts destination (a local
folder, an S3 bucket on moto, an Azure container on Azurite); A is cut off mid-upload.

The crash itself (``kill -9`` of a real server, then a restart) is in
``tests/e2e/test_object_store_destinations.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from object_stores import open_test_store

from backends.artifacts.base import ArtifactStore, Leftover
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_metadata_store
from gateway.sweeper import MetadataLedger, Sweeper

MIB = 1024 * 1024
INTERVAL = 0.2  # a process missing three heartbeats is gone after 0.6 s
GRACE = 0.3  # bytes that arrived more recently than this mark a writer at work
KIND = {"local": "staging folder", "s3": "multipart upload", "azure": "uncommitted blocks"}


@pytest.fixture
async def metadata(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = open_metadata_store(f"sqlite:///{tmp_path / 'mlgate.db'}")
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def _stalled_put(store: ArtifactStore) -> asyncio.Task[int]:
    """A put that sent 6 MiB (more than a part) and then hangs, as one whose process died."""
    gate = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield os.urandom(MIB)
        gate.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.put("1/run/artifacts/model.bin", body()))
    await asyncio.wait_for(gate.wait(), 30)
    deadline = time.monotonic() + 30
    while not await _left(store):
        assert time.monotonic() < deadline, "the upload staged nothing in 30 s"
        await asyncio.sleep(0.1)
    return task


async def _left(store: ArtifactStore, metadata: MetadataStore | None = None) -> list[Leftover]:
    """What unfinished writes left: staging folders holding files, multipart uploads and
    staged blocks (at the paths ``metadata`` notes, and by a full look)."""
    noted = [u.path for u in await metadata.uploads_in_flight()] if metadata else []
    found = [lo async for lo in store.leftovers(noted, full=True)]
    return [lo for lo in found if lo.kind != "staging folder" or _holds_files(store, lo)]


def _holds_files(store: ArtifactStore, leftover: Leftover) -> bool:
    folder = Path(store.root) / leftover.path  # type: ignore[attr-defined]
    return any(p.is_file() for p in folder.rglob("*"))


async def _cancel(task: asyncio.Task[int]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("kind", ["local", "s3", "azure"])
async def test_a_live_process_keeps_its_upload_and_a_gone_ones_is_removed(
    kind: str, metadata: MetadataStore, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    ledger_a, ledger_b = MetadataLedger(metadata), MetadataLedger(metadata)
    async with open_test_store(kind, request, tmp_path, ledger_a) as store:
        a = Sweeper(metadata, store, ledger_a, interval=INTERVAL, abandoned_age=3600,
                    grace=GRACE)
        b = Sweeper(metadata, store, ledger_b, interval=INTERVAL, abandoned_age=3600,
                    grace=GRACE)
        await a.sweep()  # A's heartbeat
        upload = await _stalled_put(store)
        try:
            assert await b.sweep() == {}
            assert await a.sweep() == {}  # a process never sweeps its own live upload
            assert [lo.kind for lo in await _left(store, metadata)] == [KIND[kind]]
            await asyncio.sleep(4 * INTERVAL)  # A misses three heartbeats: gone
            assert await b.sweep() == {KIND[kind]: 1}
            assert await _left(store, metadata) == []
            assert await metadata.uploads_in_flight() == []
            assert b.stats()["removed"] == {KIND[kind]: 1}
        finally:
            await _cancel(upload)
        await store.put("1/run/artifacts/after.txt", _one(b"after"))
        assert await store.stat("1/run/artifacts/after.txt") is not None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize("kind", ["s3", "azure"])
async def test_a_clients_unfinished_upload_goes_only_once_older_than_the_abandoned_age(
    kind: str, metadata: MetadataStore, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """mpu/* uploads belong to no process (another replica may finish them): neither a
    gone process nor a restart removes them, only their age."""
    ledger = MetadataLedger(metadata)
    async with open_test_store(kind, request, tmp_path, ledger) as store:
        upload_id = await store.create_multipart("1/run/artifacts/big.bin")
        await store.put_part("1/run/artifacts/big.bin", upload_id, 1, _one(os.urandom(MIB)))
        other = MetadataLedger(metadata)
        patient = Sweeper(metadata, store, other, interval=INTERVAL, abandoned_age=3600,
                    grace=GRACE)
        await asyncio.sleep(4 * INTERVAL)
        assert await patient.sweep() == {}
        assert len(await _left(store, metadata)) == 1
        await asyncio.sleep(1.1)
        strict = Sweeper(metadata, store, other, interval=INTERVAL, abandoned_age=1.0,
                         grace=GRACE)
        assert await strict.sweep() == {KIND[kind]: 1}
        assert await _left(store, metadata) == []
        assert await metadata.uploads_in_flight() == []


async def test_a_staging_folder_of_an_unknown_process_goes_by_its_age(
    metadata: MetadataStore, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """A folder whose process never heartbeated here (an older version, a process without
    the sweep, one forgotten a day after it died) is judged by when it last changed, and
    taken when two sweeps in a row found it old."""
    ledger = MetadataLedger(metadata)
    async with open_test_store("local", request, tmp_path, ledger) as store:
        staging = tmp_path / "artifacts" / ".mlgate-tmp"
        old, young = staging / ("0" * 32), staging / ("1" * 32)
        for folder in (old, young):
            folder.mkdir(parents=True)
            (folder / "f").write_bytes(b"partial")
        two_days_ago = time.time() - 2 * 86400
        for path in (old / "f", old):
            os.utime(path, (two_days_ago, two_days_ago))
        sweeper = Sweeper(metadata, store, ledger, interval=INTERVAL, abandoned_age=86400,
                          grace=GRACE)
        assert await sweeper.sweep() == {}  # a first look only makes it a suspect
        assert await sweeper.sweep() == {"staging folder": 1}
        assert not old.exists() and (young / "f").exists()


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_writer_whose_heartbeat_is_late_keeps_its_upload_while_bytes_arrive(
    kind: str, metadata: MetadataStore, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """A process whose event loop was held up (a decoding bomb, say) misses heartbeats
    while its upload still receives bytes: the sweep of another process keeps it."""
    ledger_a, ledger_b = MetadataLedger(metadata), MetadataLedger(metadata)
    async with open_test_store(kind, request, tmp_path, ledger_a) as store:
        a = Sweeper(metadata, store, ledger_a, interval=INTERVAL, abandoned_age=3600,
                    grace=GRACE)
        b = Sweeper(metadata, store, ledger_b, interval=INTERVAL, abandoned_age=3600,
                    grace=30.0)
        await a.sweep()
        upload = await _stalled_put(store)
        try:
            await asyncio.sleep(4 * INTERVAL)  # A's heartbeats are late, its bytes recent
            assert await b.sweep() == {}
            assert [lo.kind for lo in await _left(store, metadata)] == [KIND[kind]]
            # Once its bytes stopped too, a later sweep takes it: it is still known as A's.
            late = Sweeper(metadata, store, ledger_b, interval=INTERVAL, abandoned_age=3600,
                           grace=GRACE)
            await asyncio.sleep(GRACE)
            assert await late.sweep() == {KIND[kind]: 1}
            assert await _left(store, metadata) == []
        finally:
            await _cancel(upload)
