"""The pool settings and connection-loss behaviour of the PostgreSQL and MariaDB stores
(which share backends/metadata/dialects/_pool.py), against real servers.

PostgreSQL's connections are counted in ``pg_stat_activity`` by the ``application_name`` each
store sets; MariaDB's in ``information_schema.processlist`` by the test's own database. The
outage tests are tests/gateway/test_database_outage.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import mytools
import pytest
from pgtools import admin_dsn
from tcp_proxy import proxied

from backends import errors
from backends.metadata.dialects._pooled import PooledSqlStore
from backends.metadata.dialects.mysql import MysqlMetadataStore
from backends.metadata.dialects.postgres import PostgresMetadataStore
from backends.metadata.interface.entities import Metric, RunWrite


async def _pids(app_name: str) -> set[int]:
    conn = await asyncpg.connect(admin_dsn())
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app_name)
        return {r[0] for r in rows}
    finally:
        await conn.close()


class Sessions:
    """The server sessions of one store: PostgreSQL's by application_name, MariaDB's by
    database (each test has its own)."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    async def ids(self) -> set[int]:
        if self.kind == "mariadb":
            return await asyncio.to_thread(mytools.connection_ids, self.name)
        return await _pids(self.name)

    async def count(self) -> int:
        return len(await self.ids())

    async def wait_for_count(self, expected: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            n = await self.count()
            if n == expected or time.monotonic() > deadline:
                return n
            await asyncio.sleep(0.05)

    async def kill(self) -> int:
        if self.kind == "mariadb":
            return await asyncio.to_thread(mytools.kill_connections, self.name)
        return await _terminate(self.name)


@pytest.fixture
async def open_store(server_database: str) -> AsyncIterator[Any]:
    """``await open_store(**pool_options)`` → an open store on a fresh PostgreSQL or MariaDB
    database (``via``: another URI of it), and its :class:`Sessions`."""
    uri = server_database
    kind = "mariadb" if uri.startswith("mysql") else "postgres"
    stores: list[PooledSqlStore] = []

    async def make(**options: Any) -> tuple[PooledSqlStore, Sessions]:
        store: PooledSqlStore
        if kind == "mariadb":
            name = urlsplit(uri).path.lstrip("/")
            store = MysqlMetadataStore.from_uri(options.pop("via", uri), **options)
        else:
            name = f"mlgate-test-{uuid.uuid4().hex[:10]}"
            store = PostgresMetadataStore.from_uri(options.pop("via", uri),
                                                   application_name=name, **options)
        await store.open()
        stores.append(store)
        return store, Sessions(kind, name)

    make.uri = uri  # type: ignore[attr-defined]
    yield make
    for store in stores:
        await store.aclose()


@pytest.fixture
async def open_pg_store(pg_database: str) -> AsyncIterator[Any]:
    """``await open_pg_store(**pool_options)`` → an open PostgreSQL store."""
    stores: list[PostgresMetadataStore] = []

    async def make(**options: Any) -> PostgresMetadataStore:
        store = PostgresMetadataStore.from_uri(pg_database, **options)
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


async def _hold(store: PooledSqlStore, seconds: float) -> None:
    sleep = "SLEEP" if isinstance(store, MysqlMetadataStore) else "pg_sleep"
    async with store._read() as db:
        await db.execute(f"SELECT {sleep}(?)", (seconds,))


@pytest.mark.parametrize("overflow_idle", [0.0, 0.5])
async def test_burst_stays_within_size_plus_overflow_then_shrinks(
        open_store: Any, overflow_idle: float) -> None:
    store, sessions = await open_store(pool_size=2, max_overflow=3, pool_timeout=10,
                                       overflow_idle=overflow_idle)
    assert await sessions.count() == 2  # pool_size opened at start

    burst = asyncio.gather(*(_hold(store, 0.4) for _ in range(12)))
    peak = 0
    while not burst.done():
        peak = max(peak, await sessions.count())
        assert store.stats()["open"] <= 5
        await asyncio.sleep(0.02)
    await burst
    assert peak == 5, f"a burst of 12 should use pool_size + max_overflow = 5, saw {peak}"

    # The overflow connections are closed once idle (for overflow_idle); pool_size stay.
    assert await sessions.wait_for_count(2) == 2
    stats = store.stats()
    assert (stats["open"], stats["idle"], stats["in_use"], stats["waiting"]) == (2, 2, 0, 0)
    assert stats["opened"] == 5 and stats["timeouts"] == 0


async def test_overflow_connections_serve_the_next_burst_before_they_close(
        open_store: Any) -> None:
    # Under steady load whose concurrency wavers around pool_size, closing an overflow
    # connection as soon as it was returned meant opening another a moment later.
    store, sessions = await open_store(pool_size=2, max_overflow=3, pool_timeout=10,
                                       overflow_idle=3.0)
    for _ in range(3):
        await asyncio.gather(*(_hold(store, 0.2) for _ in range(5)))
        await asyncio.sleep(0.1)
    stats = store.stats()
    assert stats["opened"] == 5, "each burst should reuse the overflow connections"
    assert (stats["open"], stats["idle"]) == (5, 5)
    assert await sessions.count() == 5
    # Once idle for overflow_idle, all but pool_size close, without any further request.
    assert await sessions.wait_for_count(2, timeout=8.0) == 2
    assert store.stats()["open"] == 2


async def test_old_connections_are_recycled(open_store: Any) -> None:
    store, sessions = await open_store(pool_size=2, max_overflow=0, pool_recycle=1)
    before = await sessions.ids()
    assert len(before) == 2
    await asyncio.gather(_hold(store, 0.05), _hold(store, 0.05))
    assert await sessions.ids() == before  # young connections are reused
    await asyncio.sleep(1.3)
    await asyncio.gather(_hold(store, 0.05), _hold(store, 0.05))
    assert await sessions.wait_for_count(2) == 2
    after = await sessions.ids()
    assert not after & before, "connections older than pool_recycle must be replaced"
    assert store.stats()["recycled"] >= 2


async def test_pool_timeout_raises_unavailable(open_store: Any) -> None:
    store, _ = await open_store(pool_size=1, max_overflow=0, pool_timeout=0.3)
    holder = asyncio.create_task(_hold(store, 1.0))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="within 0.3 s"):
        await store.get_experiment("0")
    assert 0.25 <= time.monotonic() - started < 1.0
    assert store.stats()["timeouts"] == 1 and store.stats()["waiting"] == 0
    await holder
    assert (await store.get_experiment("0")).name == "Default"  # the pool still works


async def test_pgbouncer_mode_runs_without_a_statement_cache(open_pg_store: Any) -> None:
    store = await open_pg_store(pool_size=1, pgbouncer=True)
    exp_id = await store.create_experiment("bouncer", artifact_root="mlflow-artifacts:")
    assert (await store.get_experiment(exp_id)).name == "bouncer"
    await store.search_runs([exp_id], filter_string="params.a = 'b'")
    async with store._read() as db:
        row = await (await db.execute("SELECT count(*) FROM pg_prepared_statements")).fetchone()
        assert row is not None and row[0] == 0  # only unnamed statements: PgBouncer-safe


async def test_statement_cache_is_used_by_default(open_pg_store: Any) -> None:
    store = await open_pg_store(pool_size=1)
    await store.get_experiment("0")
    async with store._read() as db:
        row = await (await db.execute("SELECT count(*) FROM pg_prepared_statements")).fetchone()
        assert row is not None and row[0] > 0


@pytest.mark.parametrize("store_class, scheme", [(PostgresMetadataStore, "postgresql"),
                                                 (MysqlMetadataStore, "mysql")])
async def test_password_never_in_errors(store_class: Any, scheme: str) -> None:
    store = store_class.from_uri(f"{scheme}://nobody:s3cr3t-pw@127.0.0.1:1/db", pool_timeout=2)
    with pytest.raises(errors.Unavailable) as info:
        await store.open()
    assert "s3cr3t-pw" not in str(info.value)
    assert f"{scheme}://nobody:***@127.0.0.1:1/db" in str(info.value)


async def _terminate(app_name: str) -> int:
    conn = await asyncpg.connect(admin_dsn())
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = $1", app_name)
        return len(rows)
    finally:
        await conn.close()


async def test_metric_batch_survives_its_connections_being_killed(open_store: Any) -> None:
    """A metric-only batch is one statement without BEGIN/COMMIT, retried on another
    connection when the one it took turns out dead (it may run twice: it is idempotent)."""
    store, sessions = await open_store(pool_size=2)
    exp_id = await store.create_experiment("killed", artifact_root="mlflow-artifacts:")
    run_id = (await store.create_run(exp_id, user_id="u", run_name="r", start_time=1)
              ).info.run_id
    await asyncio.gather(_hold(store, 0.05), _hold(store, 0.05))  # two idle connections
    # Killed while this event loop is blocked, so the pool has not yet seen them close:
    # the first try finds out only when its statement fails.
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.append(asyncio.run(sessions.kill())))
    killer.start()
    killer.join()
    time.sleep(0.3)  # noqa: ASYNC251 - the loop must not run meanwhile
    assert killed == [2]
    verdicts = await store.log_batches([RunWrite(run_id, (Metric("m", 1.0, 5, 1),))])
    assert verdicts == [None]
    assert store.stats()["invalidated"] >= 1
    assert [(m.value, m.step) for m in (await store.get_metric_history(run_id, "m")).items] == [
        (1.0, 1)]


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "unnoticed"])
async def test_idle_connections_ended_by_the_server_are_replaced(
        open_store: Any, noticed: bool) -> None:
    """What MySQL's ``wait_timeout`` (or an operator's KILL) does to idle connections: the
    next requests succeed on fresh ones. ``unnoticed``: the sessions end while this event
    loop is blocked, so the pool learns of it only at BEGIN, and must try another."""
    store, sessions = await open_store(pool_size=2, max_overflow=0)
    await asyncio.gather(_hold(store, 0.05), _hold(store, 0.05))  # two idle connections
    before = await sessions.ids()
    if noticed:
        assert await sessions.kill() == 2
        await asyncio.sleep(0.3)  # the close reaches the pooled sockets
    else:
        killed: list[int] = []
        killer = threading.Thread(target=lambda: killed.append(asyncio.run(sessions.kill())))
        killer.start()
        killer.join()
        time.sleep(0.3)  # noqa: ASYNC251 - the loop must not see the close
        assert killed == [2]
    assert (await store.get_experiment("0")).name == "Default"
    exp_id = await store.create_experiment("after-kill", artifact_root="mlflow-artifacts:")
    assert (await store.get_experiment(exp_id)).name == "after-kill"
    assert not (await sessions.ids()) & before


async def test_idle_connections_cut_by_the_network_are_replaced(open_store: Any) -> None:
    """A network path reset while every connection is idle: the next request succeeds."""
    proxy, via = await proxied(open_store.uri)
    try:
        store, _ = await open_store(pool_size=2, max_overflow=0, pool_timeout=3, via=via)
        await asyncio.gather(_hold(store, 0.05), _hold(store, 0.05))
        await proxy.cut()
        await proxy.restore()
        await asyncio.sleep(0.1)
        assert (await store.get_experiment("0")).name == "Default"
        assert await store.create_experiment("after-cut", artifact_root="mlflow-artifacts:")
        assert store.stats()["invalidated"] >= 2
    finally:
        await proxy.close()


async def test_a_statement_on_a_stalled_network_path_times_out(open_store: Any) -> None:
    """The path stalls while a statement runs (nothing is closed, nothing arrives): the
    request fails with Unavailable after ``command_timeout`` instead of hanging for the
    kernel's TCP timeout, and once the path flows the store answers again."""
    proxy, via = await proxied(open_store.uri)
    try:
        store, _ = await open_store(pool_size=1, max_overflow=0, pool_timeout=2,
                                    command_timeout=1.5, via=via)
        slow = asyncio.create_task(_hold(store, 1.0))
        await asyncio.sleep(0.3)
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(errors.Unavailable):
            await asyncio.wait_for(slow, 10)
        assert time.monotonic() - started < 3.0
        proxy.flow()
        assert (await store.get_experiment("0")).name == "Default"
    finally:
        await proxy.close()


async def test_a_committed_write_whose_answer_was_lost_is_not_refused(my_database: str) -> None:
    """MariaDB sends a small metric batch as one script and tries it again on another
    connection when the first is lost. The batch commits, its answer is lost with the
    connection, and the run is deleted before the second try: the write was stored, so it
    must not be answered as refused (a client does not retry a 400), only as retryable."""
    proxy, via = await proxied(my_database)
    store = MysqlMetadataStore.from_uri(via, pool_size=1, max_overflow=0, pool_timeout=3)
    direct = MysqlMetadataStore.from_uri(my_database)
    await store.open()
    await direct.open()
    try:
        exp_id = await direct.create_experiment("lost", artifact_root="mlflow-artifacts:")
        run_id = (await direct.create_run(exp_id, user_id="u", run_name="r",
                                          start_time=1)).info.run_id
        assert await store.log_batches([RunWrite(run_id, [Metric("m", 0.0, 0, 0)])]) == [None]
        proxy.deafen()
        write = asyncio.create_task(
            store.log_batches([RunWrite(run_id, [Metric("m", 1.0, 1, 1)])]))
        deadline = time.monotonic() + 5
        while len((await direct.get_metric_history(run_id, "m")).items) < 2:
            assert time.monotonic() < deadline, "the batch did not commit"
            await asyncio.sleep(0.02)
        await direct.delete_run(run_id)
        proxy.drop()
        [verdict] = await asyncio.wait_for(write, 10)
        assert isinstance(verdict, errors.Unavailable), verdict
        # Tried again (the client's retry), the write is refused now, and nothing doubles.
        [again] = await store.log_batches([RunWrite(run_id, [Metric("m", 1.0, 1, 1)])])
        assert isinstance(again, errors.InvalidArgument)
        assert len((await direct.get_metric_history(run_id, "m")).items) == 2
    finally:
        await store.aclose()
        await direct.aclose()
        await proxy.close()
