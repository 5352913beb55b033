"""Group commit for run writes: one transaction for many concurrent requests.

The MLflow client sends one HTTP request per ``log_metric`` call, and a transaction per
request caps a server at its database's commit rate. Here the log-metric, log-param,
set-tag and log-batch handlers validate their request, :meth:`Batcher.submit` it and await
its verdict; one writer task drains the queue and hands everything pending to
:meth:`MetadataStore.log_batches` in **one transaction**, and answers each request only
after that transaction committed. A 200 therefore means the rows are durable.

Flushing: the writer takes up to ``max_rows`` rows as soon as it is free. While a commit is
in flight, new requests pile up and go together in the next one, so batches grow with the
load by themselves and an idle gateway adds no wait at all. ``max_delay`` (0 by default)
makes the writer linger that long after the oldest pending request for more rows to join,
unless ``max_rows`` are pending earlier.

``writers`` writer tasks (1 by default) may each have a transaction in flight: on a database
server one transaction's statements run on one core, so a second writer keeps the server's
other core busy while the first commits. A writer starts a transaction beside another only
for at least a fifth of ``max_rows`` queued, or once the oldest queued request has waited
``spare_after`` (5 ms): a transaction's fixed cost in the gateway is paid per batch, and a
few rows more in the next batch cost less than a second transaction for them (MariaDB
log-metric at 64 clients: docs/performance.md), but a long commit in flight (a large
log-batch, a lock wait) must not hold the others' small writes for all its length. Two
batches in flight are not ordered against each other; nothing needs them to be: a request
is answered only once its batch committed, so a client's next write always starts after
its previous one is durable, and the store keeps each series' latest point by value, not by
arrival.

Failures stay with their request: validation happens before :meth:`submit`; the store
reports per-request refusals (unknown run, changed param) without failing the others; and
if the transaction itself fails, the batch is retried by halves until the culprit is alone.
A database outage (``Unavailable``) is not bisected: every request of the batch gets it.

Fair share between workspaces: each request is queued under its workspace (its *share*),
and a batch takes one request from each share in turn, so a team's request joins the next
batch however many rows another team has queued. The queue is shared the same way: while
several shares wait, one may always queue up to its fair part of ``max_queue_rows``
(``max_queue_rows / shares waiting``), even when a flooding share filled the rest, so a
flood costs the others at most one batch's commit of latency, never a place in a full
queue. (The flood's volume itself is the rate limits' job: :mod:`gateway.security.limits`.)

Backpressure: at most ``max_queue_rows`` rows wait (plus one fair part, as above). A
request that does not fit waits up to ``queue_timeout`` for room, then gets ``QueueFull``
(503 with ``Retry-After``; the MLflow client retries it). Memory is bounded by the queue, not by the load.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from backends import errors
from backends.metadata.interface.entities import RunWrite
from gateway.observability.distribution import Distribution

__all__ = ["BatchWriter", "Batcher", "QueueFull"]

log = logging.getLogger("mlgate.batcher")

_WINDOW = 1024  # recent batches kept for the size and wait figures
# Upper bounds of the cumulative histograms (/metrics): rows per batch, and seconds.
ROW_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 50_000)
SECOND_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                 5.0)


class BatchWriter(Protocol):
    """What the batcher needs of a metadata store (:meth:`MetadataStore.log_batches`)."""

    async def log_batches(
        self, writes: Sequence[RunWrite]
    ) -> list[errors.BackendError | None]: ...


class QueueFull(errors.Unavailable):
    """The write queue stayed full for the whole wait; answered 503 with Retry-After."""


@dataclass(slots=True)
class _Pending:
    write: RunWrite
    future: asyncio.Future[None]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class _Figures:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    bisections: int = 0
    refused: int = 0
    failed: int = 0
    queue_full: int = 0
    sizes: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=_WINDOW))
    waits: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_WINDOW))
    commits: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_WINDOW))
    # Since start, for /metrics: one addition per batch, never per request.
    size_buckets: Distribution = field(default_factory=lambda: Distribution(ROW_BOUNDS))
    wait_buckets: Distribution = field(default_factory=lambda: Distribution(SECOND_BOUNDS))
    commit_buckets: Distribution = field(default_factory=lambda: Distribution(SECOND_BOUNDS))


class Batcher:
    def __init__(
        self,
        store: BatchWriter,
        *,
        max_rows: int = 5000,
        max_delay: float = 0.0,
        max_queue_rows: int = 100_000,
        queue_timeout: float = 5.0,
        writers: int = 1,
        spare_after: float = 0.005,
    ) -> None:
        if (max_rows < 1 or max_queue_rows < max_rows or max_delay < 0 or queue_timeout < 0
                or writers < 1 or spare_after < 0):
            raise ValueError("batcher limits must be positive and max_queue_rows >= max_rows")
        self._store = store
        self._max_rows = max_rows
        self._max_delay = max_delay
        self._max_queue_rows = max_queue_rows
        self._queue_timeout = queue_timeout
        self._writer_count = writers
        self._spare_rows = max(1, max_rows // 5)  # what a writer beside a busy one waits for
        self._in_flight = 0
        self._spare_after = spare_after  # how long a request waits for a busy writer
        # Pending requests by share, in turn order: the share served longest ago first.
        self._queues: dict[str, collections.deque[_Pending]] = {}
        self._share_rows: dict[str, int] = {}
        self._pending = 0
        self._queued_rows = 0
        self._arrived = asyncio.Event()  # something was queued
        self._room = asyncio.Event()  # rows left the queue
        self._closing = False
        self._writers: list[asyncio.Task[None]] = []
        self._figures = _Figures()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if not self._writers:
            self._writers = [asyncio.create_task(self._run(), name=f"mlgate-batcher-{i}")
                             for i in range(self._writer_count)]

    async def close(self) -> None:
        """Refuse new writes, commit everything queued, then stop the writers."""
        self._closing = True
        self._arrived.set()
        self._room.set()
        writers, self._writers = self._writers, []
        await asyncio.gather(*writers)

    # -- the request side ----------------------------------------------------------------

    async def submit(self, write: RunWrite, share: str = "") -> None:
        """Return once ``write`` is committed; raise the store's refusal of it, or
        ``Unavailable`` / ``QueueFull``. ``share``: whose turn it waits for (a workspace)."""
        if self._closing or not self._writers:
            raise errors.Unavailable("The server is shutting down; retry the request.")
        rows = max(1, write.rows)
        if not self._fits(rows, share):
            await self._wait_for_room(rows, share)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(share)
        if queue is None:
            queue = self._queues[share] = collections.deque()
            self._share_rows[share] = 0
        queue.append(_Pending(write, future))
        self._share_rows[share] += rows
        self._pending += 1
        self._queued_rows += rows
        self._figures.requests += 1
        # Beside a busy writer, the first request queued wakes the next one to time it.
        if not self._in_flight or self._pending == 1 or self._queued_rows >= self._spare_rows:
            self._arrived.set()
        # If this request is cancelled (the client went away), so is the future, but the
        # write stays queued: it is committed all the same, and a retry of it stores
        # nothing twice. Cancelled once its verdict is in, the task still reads the
        # verdict as it wakes, so a refusal is never reported as an unread exception.
        await future

    def _fits(self, rows: int, share: str) -> bool:
        # A request larger than the whole queue is admitted when the queue is empty.
        if self._queued_rows + rows <= self._max_queue_rows or not self._pending:
            return True
        mine = self._share_rows.get(share)
        shares = len(self._queues) + (mine is None)
        return (mine or 0) + rows <= self._max_queue_rows // shares

    async def _wait_for_room(self, rows: int, share: str) -> None:
        deadline = time.monotonic() + self._queue_timeout
        while not self._fits(rows, share):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                self._figures.queue_full += 1
                raise QueueFull(
                    "The server's write queue is full; retry the request shortly.")
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), remaining)

    # -- the writer ----------------------------------------------------------------------

    def _oldest(self) -> float:
        return min(q[0].enqueued for q in self._queues.values())

    def _has_work(self) -> bool:
        return bool(self._pending) and (
            not self._in_flight or self._closing or self._queued_rows >= self._spare_rows
            or time.monotonic() - self._oldest() >= self._spare_after)

    async def _run(self) -> None:
        while True:
            if not self._has_work():
                if self._closing and not self._pending:
                    return
                self._arrived.clear()
                if not self._pending:
                    await self._arrived.wait()
                    continue
                # Beside a busy writer: until the oldest request has waited spare_after.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(),
                                           self._oldest() + self._spare_after - time.monotonic())
                continue
            if self._max_delay and not self._closing:
                await self._linger()
                if not self._has_work():  # another writer took it meanwhile
                    continue
            batch = self._take()
            self._in_flight += 1
            try:
                await self._commit(batch)
            except Exception:  # pragma: no cover - _commit answers every future itself
                log.exception("batch writer failed")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(errors.Unavailable("The write failed; retry."))
            finally:
                self._in_flight -= 1

    async def _linger(self) -> None:
        deadline = self._oldest() + self._max_delay
        while self._pending and self._queued_rows < self._max_rows and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        queues, share_rows = self._queues, self._share_rows
        taken = len(queues) > 1
        if not taken:  # one share (always, without workspaces): no turns to take
            [(share, queue)] = queues.items()
            while queue:
                size = max(1, queue[0].write.rows)
                if batch and rows + size > self._max_rows:
                    break
                batch.append(queue.popleft())
                rows += size
            if queue:
                share_rows[share] -= rows
            else:
                del queues[share], share_rows[share]
        while taken and queues:  # rounds: one request of each share whose next one fits
            taken = False
            for share in list(queues):
                queue = queues[share]
                size = max(1, queue[0].write.rows)
                if batch and rows + size > self._max_rows:
                    continue
                batch.append(queue.popleft())
                rows += size
                taken = True
                del queues[share]  # its next turn comes after the others'
                if queue:
                    queues[share] = queue
                    share_rows[share] -= size
                else:
                    del share_rows[share]
        self._pending -= len(batch)
        self._queued_rows -= rows
        self._room.set()
        waited = time.monotonic() - min(p.enqueued for p in batch)
        f = self._figures
        f.batches += 1
        f.rows += rows
        f.sizes.append(rows)
        f.waits.append(waited)
        f.size_buckets.add(rows)
        f.wait_buckets.add(waited)
        return batch

    async def _commit(self, batch: Sequence[_Pending]) -> None:
        started = time.monotonic()
        try:
            verdicts = await self._store.log_batches([p.write for p in batch])
        except errors.Unavailable as exc:
            self._figures.failed += len(batch)
            _answer_all(batch, exc)
            return
        except Exception as exc:  # noqa: BLE001 - any failure of the transaction is bisected
            if len(batch) == 1:
                self._figures.failed += 1
                _answer_all(batch, exc)
                return
            # Someone in this batch breaks the transaction: retry by halves to find them.
            self._figures.bisections += 1
            half = len(batch) // 2
            await self._commit(batch[:half])
            await self._commit(batch[half:])
            return
        took = time.monotonic() - started
        self._figures.commits.append(took)
        self._figures.commit_buckets.add(took)
        for p, verdict in zip(batch, verdicts, strict=True):
            if p.future.done():
                continue
            if verdict is None:
                p.future.set_result(None)
            else:
                self._figures.refused += 1
                p.future.set_exception(verdict)

    # -- figures -------------------------------------------------------------------------

    @property
    def distributions(self) -> dict[str, Distribution]:
        """Rows per batch, and seconds waited and taken by commits, since start."""
        f = self._figures
        return {"batch_rows": f.size_buckets, "wait_seconds": f.wait_buckets,
                "commit_seconds": f.commit_buckets}

    def stats(self) -> dict[str, object]:
        f = self._figures
        return {
            "queued_requests": self._pending,
            "queued_shares": len(self._queues),
            "queued_rows": self._queued_rows,
            "max_queue_rows": self._max_queue_rows,
            "max_rows": self._max_rows,
            "max_delay_ms": self._max_delay * 1000,
            "writers": self._writer_count,
            "requests": f.requests,
            "rows": f.rows,
            "batches": f.batches,
            "bisections": f.bisections,
            "refused_requests": f.refused,
            "failed_requests": f.failed,
            "queue_full_rejections": f.queue_full,
            "recent_batch_rows": _summary(f.sizes),
            "recent_wait_ms": _summary([w * 1000 for w in f.waits]),
            "recent_commit_ms": _summary([c * 1000 for c in f.commits]),
        }


def _answer_all(batch: Sequence[_Pending], exc: BaseException) -> None:
    for p in batch:
        if not p.future.done():
            p.future.set_exception(exc)


def _summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": round(statistics.fmean(ordered), 3),
        "p50": round(ordered[len(ordered) // 2], 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max": round(ordered[-1], 3),
    }
