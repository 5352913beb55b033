"""Token buckets for the per-workspace and per-caller rate limits: pure arithmetic over
plain values (the time is passed in), so the rules are tested without a clock or a server.

A bucket holds up to ``burst`` units and refills at ``rate`` units a second. A request is
admitted while the bucket holds at least one unit, and then takes its whole cost, which may
leave the level below zero: a log-batch of more rows than are left (or than the burst)
passes, and the debt it leaves holds back what follows, so the long-run rate is kept without
refusing large batches outright. Because the rule does not depend on the cost, a request can
be refused before its cost is known (:func:`empty`: before a log-batch's body is read). A
refused request takes nothing and is told how long until it would pass.

``shared_rate`` divides a limit between the live server processes: each process enforces
its part in its own memory (:mod:`gateway.security.limits` says why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Bucket", "Quota", "Verdict", "charge", "charge_all", "empty", "full", "idle", "peek", "shared_rate"]


@dataclass(frozen=True, slots=True)
class Quota:
    """A limit: ``rate`` units a second, bursts of up to ``burst`` units."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst > 0):
            raise ValueError("a quota's rate and burst must be positive")


@dataclass(slots=True)
class Bucket:
    """A bucket's level as of ``at`` (seconds on the caller's monotonic clock)."""

    level: float
    at: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`charge`: what the RateLimit headers report."""

    admitted: bool
    limit: int  # the burst: units available at once
    remaining: int  # whole units left after this request (0 when in debt)
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until a refused request would pass (0 when admitted)


def _refill(bucket: Bucket, quota: Quota, now: float) -> None:
    if now > bucket.at:
        bucket.level = min(quota.burst, bucket.level + (now - bucket.at) * quota.rate)
        bucket.at = now


# Seconds at most in Retry-After and RateLimit-Reset: the mlflow client sleeps for what
# Retry-After says, and an absurd limit (1e-300 a second) would say hundreds of digits.
MAX_WAIT = 3600


def _verdict(bucket: Bucket, quota: Quota, admitted: bool, retry_after: float) -> Verdict:
    return Verdict(admitted, max(1, math.floor(quota.burst)),
                   max(0, math.floor(bucket.level)),
                   _seconds((quota.burst - bucket.level) / quota.rate),
                   _seconds(retry_after) if not admitted else 0)


def _seconds(wait: float) -> int:
    return max(0, min(MAX_WAIT, math.ceil(wait))) if math.isfinite(wait) else MAX_WAIT


def full(quota: Quota, now: float) -> Bucket:
    """A new bucket: a caller's first request finds its whole burst."""
    return Bucket(quota.burst, now)


def charge(bucket: Bucket, quota: Quota, cost: float, now: float) -> Verdict:
    """Take ``cost`` units from ``bucket`` if it holds one; else take nothing and say when
    to retry (at least one second: ``Retry-After`` is whole seconds)."""
    return charge_all(((bucket, quota),), cost, now)


def charge_all(buckets: Sequence[tuple[Bucket, Quota]], cost: float, now: float) -> Verdict:
    """:func:`charge` every bucket, or none when any of them refuses (a request that a
    caller's limit refuses does not use up its workspace's). The verdict is the refusing
    bucket's that asks the longest wait, else the admitting bucket with the least left."""
    refused = empty(buckets, now)
    if refused is not None:
        return refused
    tightest: Verdict | None = None
    for bucket, quota in buckets:
        bucket.level -= cost
        verdict = _verdict(bucket, quota, True, 0.0)
        if tightest is None or verdict.remaining * tightest.limit < tightest.remaining * verdict.limit:
            tightest = verdict
    if tightest is None:
        raise ValueError("charge_all needs at least one bucket")
    return tightest


def empty(buckets: Sequence[tuple[Bucket, Quota]], now: float) -> Verdict | None:
    """The refusal of a request now, whatever its cost (a bucket below one unit admits
    nothing), or None when every bucket would admit it. The refusal is the bucket's that
    asks the longest wait."""
    refused: Verdict | None = None
    for bucket, quota in buckets:
        _refill(bucket, quota, now)
        if bucket.level < 1:
            verdict = _verdict(bucket, quota, False, max(1.0, (1 - bucket.level) / quota.rate))
            if refused is None or verdict.retry_after > refused.retry_after:
                refused = verdict
    return refused


def peek(bucket: Bucket, quota: Quota, now: float) -> Verdict:
    """The bucket's state for the RateLimit headers, taking nothing."""
    _refill(bucket, quota, now)
    return _verdict(bucket, quota, True, 0.0)


def idle(bucket: Bucket, quota: Quota, now: float) -> bool:
    """Whether the bucket is full again, so forgetting it changes nothing."""
    return bucket.level + max(0.0, now - bucket.at) * quota.rate >= quota.burst


def shared_rate(limit: float, processes: int, burst_seconds: float) -> Quota:
    """One process's part of a limit of ``limit`` units a second enforced by ``processes``
    processes, with bursts of ``burst_seconds`` of it (at least one unit)."""
    rate = limit / max(1, processes)
    return Quota(rate, max(1.0, rate * burst_seconds))
