"""The fair share of the store's connections: a workspace alone is not held back; once
another has requests in flight, each gets its part and the other's next request does not
queue behind a flood."""

from __future__ import annotations

import asyncio

import pytest

from gateway.security.shares import PoolShares


async def _hold(shares: PoolShares, key: str, entered: list[str],
                release: asyncio.Event) -> None:
    async with shares.held(key):
        entered.append(key)
        await release.wait()


async def test_a_flood_leaves_the_other_workspace_its_share() -> None:
    shares = PoolShares(capacity=4)
    entered: list[str] = []
    release_a, release_b = asyncio.Event(), asyncio.Event()
    flood = [asyncio.create_task(_hold(shares, "a", entered, release_a)) for _ in range(10)]
    await asyncio.sleep(0)
    assert entered == ["a"] * 10  # alone: as many as it likes (the pool decides)
    other = asyncio.create_task(_hold(shares, "b", entered, release_b))
    await asyncio.sleep(0)
    assert entered[-1] == "b"  # under its share (2 of 4): straight in
    more_a = [asyncio.create_task(_hold(shares, "a", entered, release_a)) for _ in range(3)]
    await asyncio.sleep(0)
    assert entered.count("a") == 10  # over its share now: they wait
    release_a.set()
    await asyncio.gather(*flood, *more_a)
    assert entered.count("a") == 13
    release_b.set()
    await other


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    shares = PoolShares(capacity=2)
    entered: list[str] = []
    gates = {k: asyncio.Event() for k in "ab"}
    first = [asyncio.create_task(_hold(shares, k, entered, gates[k])) for k in "ab"]
    await asyncio.sleep(0)
    queued = [asyncio.create_task(_hold(shares, "a", entered, gates["a"])) for _ in range(2)]
    await asyncio.sleep(0)
    assert entered == ["a", "b"]  # one each: a's others wait
    queued[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued[0]
    gates["b"].set()  # b leaves: a alone again, its waiter goes in
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert entered == ["a", "b", "a"]
    gates["a"].set()
    await asyncio.gather(*first, queued[1])
