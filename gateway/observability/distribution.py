"""A cumulative histogram kept as plain numbers, which the collectors turn into Prometheus'
histogram at scrape time (:func:`gateway.observability.collectors.histogram`)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["Distribution"]


class Distribution:
    """Every value added since start, in buckets: ``counts[i]`` holds those at most
    ``bounds[i]`` and above the bound before (the last, those above every bound), and
    ``total`` their sum. Adding one is a bisection and two additions, a fifth of what
    prometheus-client's ``Histogram.observe`` costs (docs/performance.md)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
