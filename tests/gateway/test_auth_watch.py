"""The auth caches and their watch over a real store (SQLite; PostgreSQL where it matters):
a change made through another store connection (another process, the CLI) is reported to
the watch and emptied from the caches; a lookup that raced an invalidation does not put its
old answer back; while the store cannot be read the caches are emptied every short while."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backends import errors as be
from backends.metadata.interface.auth_entities import AuthVersions, GrantRow
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_metadata_store
from gateway.security.caches import TTLCache
from gateway.security.resolution import Resolver
from gateway.security.state import Security
from gateway.security.watch import SCOPES, AuthWatch
from gateway.settings import Settings


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return (request.getfixturevalue("pg_database") if request.param == "postgres"
            else f"sqlite:///{tmp_path}/watch.db")


async def _opened(uri: str) -> MetadataStore:
    store = open_metadata_store(uri, artifact_root="mlflow-artifacts:")
    await store.open()
    return store


@pytest.fixture
async def stores(store_uri: str) -> AsyncIterator[tuple[MetadataStore, MetadataStore]]:
    """Two stores on one database: the server's, and another process's."""
    here, there = await _opened(store_uri), await _opened(store_uri)
    try:
        yield here, there
    finally:
        await here.aclose()
        await there.aclose()


async def _until(check: Callable[[], bool], within: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "not within the time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def test_a_value_read_across_an_invalidation_is_not_cached() -> None:
    cache: TTLCache[str, int] = TTLCache(30)
    epoch = cache.epoch
    cache.discard("other")  # any invalidation, of any key
    cache.put("k", 1, epoch)
    assert cache.get("k") is None
    cache.put("k", 2, cache.epoch)
    assert cache.get("k") == 2
    epoch = cache.epoch
    cache.clear()
    cache.put("k", 3, epoch)
    assert cache.get("k") is None


async def test_the_watch_reports_what_another_connection_changed(
        stores: tuple[MetadataStore, MetadataStore]) -> None:
    here, there = stores
    reports: list[frozenset[str]] = []
    watch = AuthWatch(here, reports.append, interval=0.05)
    watch.start()
    try:
        await _until(lambda: len(reports) == 1, 2)
        assert reports == [SCOPES]  # the first read: whatever was cached may predate it
        user = await there.create_user("b1", "h")
        await asyncio.sleep(0.2)
        assert len(reports) == 1  # a new user contradicts nothing cached
        await there.create_workspace("team-a")
        await there.set_member("team-a", user.user_id, "member")
        await _until(lambda: set().union(*reports[1:]) == {"workspaces", "identities"}, 2)
        await there.update_user("b1", password_hash="h2")
        await _until(lambda: "credentials" in reports[-1], 2)
    finally:
        await watch.close()


class _Unreachable:
    """A store whose change counters cannot be read until ``back`` is set."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.back = False

    async def auth_versions(self) -> AuthVersions:
        if not self.back:
            raise be.Unavailable("database down")
        return await self.store.auth_versions()


async def test_unreadable_counters_give_the_caches_a_short_life_and_changes_are_seen(
        stores: tuple[MetadataStore, MetadataStore], caplog: pytest.LogCaptureFixture) -> None:
    here, there = stores
    flaky = _Unreachable(here)
    reports: list[tuple[float, frozenset[str]]] = []
    watch = AuthWatch(flaky, lambda scopes: reports.append((time.monotonic(), scopes)),  # type: ignore[arg-type]
                      interval=0.02, blind_ttl=0.3)
    flaky.back = True
    watch.start()
    try:
        await _until(lambda: len(reports) == 1, 2)
        flaky.back = False
        blind_from = time.monotonic()
        await there.create_workspace("team-a")  # while this process cannot read
        await asyncio.sleep(1.0)
        # Blind: everything is dropped once the caches may be blind_ttl old, and again
        # every blind_ttl, not at every failed read.
        blind = reports[1:]
        assert 2 <= len(blind) <= 4 and all(scopes == SCOPES for _, scopes in blind)
        assert blind[0][0] - blind_from >= 0.25
        assert all(b[0] - a[0] >= 0.29 for a, b in itertools.pairwise(blind))
        assert "cannot read auth changes" in caplog.text
        flaky.back = True
        count = len(reports)
        await _until(lambda: len(reports) == count + 1, 2)
        assert reports[-1][1] == {"workspaces"}  # what changed meanwhile, once it can read
        await asyncio.sleep(0.5)
        assert len(reports) == count + 1  # reading again: no more blind drops
    finally:
        await watch.close()


async def test_a_grant_lookup_racing_a_change_does_not_keep_the_old_answer(
        stores: tuple[MetadataStore, MetadataStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup reads the old grants, the change lands and is invalidated, then the lookup
    would cache what it read: it must not, or the old grant would hold for the cache's
    lifetime."""
    here, there = stores
    resolver = Resolver(here, ttl=30)
    read_done, go_on = asyncio.Event(), asyncio.Event()
    original = here.grants_on

    async def slow_grants_on(*args: Any) -> Any:
        rows = await original(*args)
        read_done.set()
        await go_on.wait()
        return rows

    monkeypatch.setattr(here, "grants_on", slow_grants_on)
    lookup = asyncio.create_task(resolver.grants("experiment", "default", "7"))
    await read_done.wait()
    await there.set_grant(GrantRow("experiment", "default", "7", "user", "1", "DENY"))
    resolver.invalidate_grants()  # what the watch does on seeing the change
    go_on.set()
    assert await lookup == ()  # that request began before the change
    monkeypatch.setattr(here, "grants_on", original)
    after = await resolver.grants("experiment", "default", "7")
    assert [g.permission.name for g in after] == ["DENY"]


async def test_security_drops_its_caches_when_another_process_changes_them(
        store_uri: str, stores: tuple[MetadataStore, MetadataStore], tmp_path: Path) -> None:
    """The whole chain in one process: a grant cached by the resolver, an identity by the
    authenticator; another connection changes both; both are reloaded within a second."""
    here, there = stores
    user = await there.create_user("b1", "h")
    settings = Settings(backend_store_uri=store_uri, artifacts_destination=str(tmp_path),
                        auth=True)
    sec = Security(here, settings)
    sec.start()
    try:
        await asyncio.sleep(0.4)  # past the first read
        assert await sec.grants("experiment", "default", "7") == ()
        assert dict((await sec.identity_for(user.user_id)).teams) == {}
        await there.create_workspace("team-a")
        await there.set_member("team-a", user.user_id, "manager")
        await there.set_grant(GrantRow("experiment", "default", "7", "user",
                                       str(user.user_id), "READ"))
        started = time.monotonic()
        while True:
            grants = await sec.grants("experiment", "default", "7")
            teams = dict((await sec.identity_for(user.user_id)).teams)
            if grants and teams:
                break
            assert time.monotonic() - started < 1.0, (grants, teams)
            await asyncio.sleep(0.02)
        assert teams == {"team-a": "manager"}
    finally:
        await sec.close()


async def test_a_counter_read_that_hangs_is_as_blind_as_one_that_fails(
        pg_database: str) -> None:
    """A replica cut off from PostgreSQL by a link that drops packets gets no error, only a
    read that waits (up to the driver's command timeout, 60 s): the caches must still be
    dropped every blind_ttl, or a revoked token keeps working meanwhile. A lock on the
    counters stands in for the silent link."""
    here = await _opened(pg_database)
    reports: list[float] = []
    watch = AuthWatch(here, lambda _: reports.append(time.monotonic()),
                      interval=0.02, blind_ttl=0.3)
    holder = await asyncpg.connect(pg_database, timeout=10)
    watch.start()
    try:
        await _until(lambda: len(reports) == 1, 2)
        async with holder.transaction():
            await holder.execute("LOCK TABLE auth_versions IN ACCESS EXCLUSIVE MODE")
            await asyncio.sleep(1.0)
            assert len(reports) >= 3, "the caches outlived a read that does not answer"
    finally:
        await watch.close()
        await holder.close()
        await here.aclose()
