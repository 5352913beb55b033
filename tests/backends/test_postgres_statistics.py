"""The PostgreSQL store analyzes the tables runs/search plans over when nobody has: a new or
restored database, or a server whose autovacuum is off or has not come round yet. Without
statistics PostgreSQL planned a filtered search of a 264-run experiment as a walk of every
matching metric for each matching param (docs/performance.md). A search starts the refresh
in the background and does not wait for it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from backends.metadata.dialects.postgres import PostgresMetadataStore
from backends.metadata.interface.entities import Metric, Param, ViewType

ROOT = "mlflow-artifacts:"
SEARCHED = {"runs", "run_params", "run_tags", "metric_series"}


async def _analyzed(dsn: str) -> set[str]:
    """The tables an ANALYZE statement (not autovacuum) has analyzed."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
    finally:
        await conn.close()
    return {r[0] for r in rows}


async def test_a_search_analyzes_the_searched_tables_nobody_has(pg_database: str) -> None:
    store = PostgresMetadataStore.from_uri(pg_database, pool_size=2)
    await store.open()
    try:
        exp = await store.create_experiment("stats", artifact_root=ROOT)
        for i in range(3):
            run = await store.create_run(exp, user_id="u", run_name=f"r{i}", start_time=i)
            await store.log_batch(run.info.run_id, metrics=[Metric("m", i / 3, 0, 0)],
                                  params=[Param("p", f"v{i}")])
        assert await _analyzed(pg_database) == set()

        page = await store.search_runs([exp], filter_string="params.p = 'v1'",
                                       view_type=ViewType.ACTIVE_ONLY)
        assert [r.params[0].value for r in page.items] == ["v1"]
        deadline = time.monotonic() + 10
        while (done := await _analyzed(pg_database)) != SEARCHED:
            assert time.monotonic() < deadline, f"analyzed only {done}"
            await asyncio.sleep(0.05)
    finally:
        await store.aclose()


async def test_empty_tables_are_left_alone(pg_database: str) -> None:
    # An empty table has nothing to tell the planner; analyzed now, it would count as
    # done, and its first rows would wait for a refresh that needs them doubled.
    store = PostgresMetadataStore.from_uri(pg_database, pool_size=2)
    await store.open()
    try:
        exp = await store.create_experiment("stats", artifact_root=ROOT)
        await store.create_run(exp, user_id="u", run_name="r", start_time=0)
        await store.search_runs([exp])
        deadline = time.monotonic() + 10
        while "runs" not in (done := await _analyzed(pg_database)):
            assert time.monotonic() < deadline, f"analyzed only {done}"
            await asyncio.sleep(0.05)
        assert done == {"runs", "run_tags"}  # the run and its mlflow.runName tag
    finally:
        await store.aclose()


async def test_a_table_another_session_holds_is_skipped_not_waited_for(
        pg_database: str) -> None:
    # A VACUUM or an index build holds such a lock: waiting for it would keep a pool
    # connection (and, one check after another, the whole pool) from the requests.
    store = PostgresMetadataStore.from_uri(pg_database, pool_size=2, max_overflow=0)
    await store.open()
    holder = await asyncpg.connect(pg_database)
    try:
        exp = await store.create_experiment("stats", artifact_root=ROOT)
        await store.create_run(exp, user_id="u", run_name="r", start_time=0)
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE runs IN SHARE UPDATE EXCLUSIVE MODE")
        try:
            await store.search_runs([exp])
            deadline = time.monotonic() + 10
            while "run_tags" not in (done := await _analyzed(pg_database)):
                assert time.monotonic() < deadline, f"analyzed only {done}"
                await asyncio.sleep(0.05)
            while store.stats()["in_use"]:
                assert time.monotonic() < deadline, "a connection waits on the lock"
                await asyncio.sleep(0.05)
            assert "runs" not in await _analyzed(pg_database)
        finally:
            await tx.rollback()
    finally:
        await holder.close()
        await store.aclose()


async def test_a_role_that_may_not_analyze_says_so_once(
        pg_database: str, caplog: pytest.LogCaptureFixture) -> None:
    # PostgreSQL skips such a table with a notice the store never sees: claiming it
    # analyzed would mislead the operator.
    role = f"mlgate_stats_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_database)
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};"
                        f" GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    parts = urlsplit(pg_database)
    as_role = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    store = PostgresMetadataStore.from_uri(as_role, pool_size=2)
    await store.open()
    try:
        exp = await store.create_experiment("stats", artifact_root=ROOT)
        await store.create_run(exp, user_id="u", run_name="r", start_time=0)
        with caplog.at_level(logging.INFO, logger="mlgate.postgres"):
            await store.search_runs([exp])
            deadline = time.monotonic() + 10
            while not any("cannot ANALYZE" in r.message for r in caplog.records):
                assert time.monotonic() < deadline, "no word of the tables it cannot analyze"
                await asyncio.sleep(0.05)
        assert not any(r.message.startswith("analyzed") for r in caplog.records)
        assert await _analyzed(pg_database) == set()
    finally:
        await store.aclose()
        await admin.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        await admin.close()


async def test_start_up_warns_when_autovacuum_is_off(
        pg_database: str, caplog: pytest.LogCaptureFixture) -> None:
    # Nothing else reclaims the dead row each new latest point leaves in metric_series.
    conn = await asyncpg.connect(pg_database)
    try:
        on = await conn.fetchval("SELECT current_setting('autovacuum')::boolean"
                                 " AND current_setting('track_counts')::boolean")
    finally:
        await conn.close()
    store = PostgresMetadataStore.from_uri(pg_database, pool_size=1)
    with caplog.at_level(logging.WARNING, logger="mlgate.postgres"):
        await store.open()
    await store.aclose()
    warned = [r for r in caplog.records if "autovacuum is off" in r.message]
    assert len(warned) == (0 if on else 1)
    assert all(urlsplit(pg_database).path.lstrip("/") in r.message for r in warned)
