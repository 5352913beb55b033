"""The sweep: removes what uploads cut off by a crash left in the artifacts destination.

A process killed mid-upload leaves its staging files (local store), a pending multipart
upload (S3) or staged blocks (Azure). Each gateway process heartbeats into the metadata
store and notes there, before it starts, every upload that leaves something in an object
store until it ends (the store's :class:`~backends.artifacts.base.UploadLedger`). The sweep,
at start and every ``sweep_interval``, lists the leftovers and removes:

- those of a process that missed three of its heartbeats (one per its own interval: it is
  gone), never another live process's, so replicas sharing a destination sweep side by side;
- those of no known process (a client's ``mpu/*`` upload it never finished, one a process
  started before it could note it, one of a process that does not sweep) once older than
  ``abandoned_upload_age`` and seen so by two sweeps in a row.

After a failed heartbeat (the metadata store was away) no process is taken as gone until
heartbeats have worked for a minute again: the others had no way to heartbeat either. And
a leftover that received bytes within ``grace`` (the body timeout and a margin: a live
upload's bytes never pause longer) is kept whatever its owner's heartbeat says, as a
process whose event loop was held up misses heartbeats while it still writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import Counter
from typing import Any

from backends.artifacts.base import ArtifactStore, Leftover, UploadLedger
from backends.metadata.interface.entities import UploadInFlight, now_ms
from backends.metadata.interface.store import MetadataStore

__all__ = ["MetadataLedger", "Sweeper"]

log = logging.getLogger("mlgate.sweeper")

MISSED_HEARTBEATS = 3
# After the metadata store was away, how long to let every process heartbeat again before
# taking any as gone (at least; three of this process's intervals if that is longer).
RECOVERY_SECONDS = 60.0
# Listing every object to find Azure's uncommitted blobs is a walk over the destination.
FULL_SWEEP_EVERY = 3600.0


class MetadataLedger(UploadLedger):
    """Uploads in flight noted in the metadata store, owned by this process."""

    def __init__(self, store: MetadataStore) -> None:
        super().__init__(uuid.uuid4().hex)
        self._store = store

    async def begin(self, path: str, upload_id: str | None = None, *, owned: bool = True
                    ) -> str:
        upload_id = upload_id or uuid.uuid4().hex
        await self._store.begin_upload(
            UploadInFlight(upload_id, path, self.owner if owned else "", now_ms()))
        return upload_id

    async def end(self, upload_id: str) -> None:
        try:
            await self._store.end_upload(upload_id)
        except Exception:
            # The upload itself is done; the note goes at a later sweep once we are gone.
            log.warning("could not forget upload %s", upload_id, exc_info=True)


class Sweeper:
    """Heartbeats for this process and sweeps ``artifacts`` (see the module docstring)."""

    def __init__(self, metadata: MetadataStore, artifacts: ArtifactStore, ledger: UploadLedger,
                 *, interval: float, abandoned_age: float, grace: float) -> None:
        self._metadata = metadata
        self._artifacts = artifacts
        self._owner = ledger.owner
        self._interval = interval
        self._abandoned_age_ms = int(abandoned_age * 1000)
        self._grace_ms = int(grace * 1000)
        self._task: asyncio.Task[None] | None = None
        self._failed_at: float | None = None  # monotonic time of the last failed heartbeat
        self._last_full: float | None = None
        self._suspects: set[tuple[str, str, str]] = set()  # old, unowned, seen last sweep
        self._removed: Counter[str] = Counter()
        self._sweeps = 0
        self._errors = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mlgate-sweeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self._metadata.forget_owner(self._owner)
        except Exception:
            log.warning("could not remove this process's heartbeat", exc_info=True)

    def stats(self) -> dict[str, Any]:
        return {"sweeps": self._sweeps, "errors": self._errors, "removed": dict(self._removed)}

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                self._errors += 1
                log.warning("artifact sweep failed", exc_info=True)
            await asyncio.sleep(self._interval)

    async def _heartbeat(self) -> bool:
        """Heartbeat; returns whether this process may now judge others gone."""
        alive_until = now_ms() + int(MISSED_HEARTBEATS * self._interval * 1000)
        try:
            await self._metadata.heartbeat(self._owner, socket.gethostname(), os.getpid(),
                                           alive_until)
        except Exception:
            self._failed_at = time.monotonic()
            raise
        wait = max(RECOVERY_SECONDS, MISSED_HEARTBEATS * self._interval)
        return self._failed_at is None or time.monotonic() - self._failed_at >= wait

    async def sweep(self) -> dict[str, int]:
        """One heartbeat and one pass; returns what it removed, by kind."""
        may_judge = await self._heartbeat()
        now = now_ms()
        monotonic = time.monotonic()
        full = self._last_full is None or monotonic - self._last_full >= FULL_SWEEP_EVERY
        old = now - self._abandoned_age_ms
        alive_until = await self._metadata.heartbeats()
        alive_until.pop(self._owner, None)

        def over(owner: str | None, started_ms: int | None) -> bool:
            """Whether the writer is gone: its heartbeats stopped, or nobody knows it and
            what it wrote is older than the abandoned age."""
            if owner == self._owner:
                return False
            until = alive_until.get(owner) if owner else None
            if until is not None:
                return may_judge and until < now
            return started_ms is not None and started_ms < old

        noted = await self._metadata.uploads_in_flight()
        by_path: dict[str, list[UploadInFlight]] = {}
        for upload in noted:
            by_path.setdefault(upload.path, []).append(upload)
        ended = {u.upload_id for u in noted if over(u.owner, u.started_ms)}

        suspects: set[tuple[str, str, str]] = set()

        def abandoned(leftover: Leftover) -> bool:
            if leftover.owner == self._owner:
                return False
            notes = by_path.get(leftover.path) if leftover.owner is None else None
            if notes:
                return all(u.upload_id in ended for u in notes)
            if leftover.owner is not None and leftover.owner in alive_until:
                return over(leftover.owner, leftover.started_ms)
            if not over(None, leftover.started_ms):
                return False
            # Known to no one and old: taken only when the previous sweep saw it so too, as
            # a client's upload is listed a moment before it is noted (and some stores, moto
            # among them, give every upload a start in the past).
            key = (leftover.kind, leftover.path, leftover.handle)
            suspects.add(key)
            return key in self._suspects

        removed: Counter[str] = Counter()
        kept_paths: set[str] = set()
        async for leftover in self._artifacts.leftovers(
                {u.path for u in noted if u.upload_id in ended}, full=full):
            if not abandoned(leftover):
                continue
            written = await self._artifacts.last_written(leftover)
            if written is not None and written > now - self._grace_ms:
                # Bytes arrived lately: a writer is at work, whatever its heartbeat says. Its
                # note stays, so a later sweep still knows whose it is.
                kept_paths.add(leftover.path)
                log.debug("kept %s at %r: bytes arrived %.1f s ago", leftover.kind,
                          leftover.path, (now - written) / 1000)
                continue
            try:
                await self._artifacts.discard(leftover)
            except Exception:
                kept_paths.add(leftover.path)
                self._errors += 1
                log.warning("could not remove %s at %r", leftover.kind, leftover.path,
                            exc_info=True)
                continue
            removed[leftover.kind] += 1
            log.info("removed %s at %r left by a process that is gone", leftover.kind,
                     leftover.path)
        self._suspects = suspects
        if full:
            self._last_full = monotonic
        for upload in noted:
            if upload.upload_id in ended and upload.path not in kept_paths:
                await self._metadata.end_upload(upload.upload_id)
        if may_judge:
            # Long gone processes: what they left is judged by its age from now on.
            await self._metadata.forget_owners_before(old)
        self._sweeps += 1
        self._removed.update(removed)
        return dict(removed)
