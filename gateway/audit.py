"""The audit log: one record per write, permission change, failed login and artifact
download, stored in the database and written as one JSON log line.

Records are appended by a background task in batches (one transaction per batch), so an
audited request does not wait for a second commit; :meth:`AuditLog.flush` writes what is
pending (the admin query endpoint calls it first, and shutdown drains it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import orjson

from backends.errors import BackendError
from backends.metadata.auth_base import AuthStore
from backends.metadata.auth_entities import AuditRecord

__all__ = ["AuditLog"]

log = logging.getLogger("mlgate.audit")
_MAX_PENDING = 100_000  # beyond this the database is down for long; keep the log lines


class AuditLog:
    def __init__(self, store: AuthStore) -> None:
        self._store = store
        self._pending: list[AuditRecord] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def record(self, rec: AuditRecord) -> None:
        """Log the record now and queue it for the database."""
        log.info("%s", orjson.dumps(dataclasses.asdict(rec)).decode())
        if len(self._pending) < _MAX_PENDING:
            self._pending.append(rec)
        else:
            log.error("audit queue full; record kept in the log only")
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mlgate-audit")

    async def flush(self) -> None:
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._store.append_audit(batch)
                except BackendError:
                    self._pending[:0] = batch  # keep order; retried on the next wake
                    raise

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except BackendError as exc:
                log.warning("audit records not stored yet (%s); retrying", exc)
                await asyncio.sleep(1.0)
                self._wake.set()

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                self._task.cancel()
                await self._task
        with contextlib.suppress(BackendError):
            await self.flush()
