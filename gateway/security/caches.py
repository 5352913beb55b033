"""The one cache shape the security layer uses: a bounded LRU whose entries expire."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TTLCache"]

_FOREVER = float("inf")
K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """``ttl`` seconds per entry; 0 disables the cache, ``None`` keeps entries until the LRU
    drops them (for facts that never change, such as a run's experiment).

    A value read from the database while an invalidation happened must not be stored after
    it: take :attr:`epoch` before the read and pass it to :meth:`put`, which then drops the
    value if anything was invalidated meanwhile."""

    def __init__(self, ttl: float | None, size: int = 10_000) -> None:
        self._ttl, self._size = ttl, size
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._epoch = 0  # invalidations so far

    @property
    def epoch(self) -> int:
        return self._epoch

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] != _FOREVER and item[0] < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[1]

    def put(self, key: K, value: V, epoch: int | None = None) -> None:
        if self._ttl == 0 or (epoch is not None and epoch != self._epoch):
            return
        expires = _FOREVER if self._ttl is None else time.monotonic() + self._ttl
        self._data[key] = (expires, value)
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def drop(self, match: Callable[[K, V], bool]) -> None:
        self._epoch += 1
        for key in [k for k, (_, v) in self._data.items() if match(k, v)]:
            del self._data[key]

    def discard(self, key: K) -> None:
        self._epoch += 1
        self._data.pop(key, None)

    def clear(self) -> None:
        self._epoch += 1
        self._data.clear()
