"""The serving worker's garbage-collector settings (gateway.cli._settle_heap)."""

from __future__ import annotations

import gc

from aiohttp import web

from gateway import cli


async def test_settle_heap_freezes_startup_objects_and_widens_young_generation() -> None:
    threshold = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    alive = [object() for _ in range(10)]  # objects that exist when the worker is up
    try:
        await cli._settle_heap(web.Application())
        assert gc.get_freeze_count() >= len(alive)
        assert gc.get_threshold() == (cli._GC_YOUNG, *threshold[1:])
        # Later objects are collected as usual: a new cycle is found by a collection.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
