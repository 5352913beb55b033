"""The SQLite writer's executemany: one-row INSERTs become multi-row statements (a few GIL
handoffs instead of one per row) with exactly the effects of row-by-row execution. And
small write transactions run on the event loop, with waits (another process's lock, the
commit) on the writer's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.metadata.dialects.sqlite import SqliteMetadataStore, _SyncConn
from backends.metadata.interface.entities import Metric, RunWrite


@pytest.fixture
def conn() -> sqlite3.Connection:
    raw = sqlite3.connect(":memory:")
    raw.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, n INTEGER)")
    raw.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, k TEXT, v INTEGER)")
    return raw


@pytest.mark.parametrize("limit", [3, 7, 250_000])  # variables per statement: 1, 2, many rows
async def test_multi_row_inserts_match_row_by_row(conn: sqlite3.Connection, limit: int) -> None:
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    rows = [(f"k{i % 37}", i, 1) for i in range(1000)]
    upsert = ("INSERT INTO t (k, v, n) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE"
              " SET v = excluded.v, n = t.n + 1 WHERE excluded.v > t.v")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    await _SyncConn(conn).executemany(upsert, iter(rows))  # any iterable
    await _SyncConn(conn).executemany("INSERT INTO log (k, v) VALUES (?, ?)",
                                      [(k, v) for k, v, _ in rows])
    conn.set_trace_callback(None)

    expected = sqlite3.connect(":memory:")
    expected.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, n INTEGER)")
    expected.executemany(upsert, rows)
    assert conn.execute("SELECT * FROM t ORDER BY k").fetchall() == \
        expected.execute("SELECT * FROM t ORDER BY k").fetchall()
    assert conn.execute("SELECT k, v FROM log ORDER BY id").fetchall() == \
        [(k, v) for k, v, _ in rows]
    per_statement = max(1, min(500, limit // 3))
    assert len([s for s in statements if s.startswith("INSERT INTO t")]) == \
        -(-len(rows) // per_statement)


async def test_other_statements_run_row_by_row(conn: sqlite3.Connection) -> None:
    conn.executemany("INSERT INTO t (k, v, n) VALUES (?, ?, 0)", [("a", 1), ("b", 2)])
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    await _SyncConn(conn).executemany("UPDATE t SET v = ? WHERE k = ?", [(5, "a"), (6, "b")])
    await _SyncConn(conn).executemany(
        "INSERT INTO log (k, v) SELECT k, v FROM t WHERE k = ?", [("a",), ("b",)])
    conn.set_trace_callback(None)
    assert conn.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [("a", 5), ("b", 6)]
    assert conn.execute("SELECT k, v FROM log ORDER BY id").fetchall() == [("a", 5), ("b", 6)]
    assert len(statements) == 4


# -- small write transactions on the event loop ----------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[SqliteMetadataStore, str, Path]]:
    path = tmp_path / "w.db"
    store = SqliteMetadataStore.from_uri(f"sqlite:///{path}")
    await store.open()
    exp = await store.create_experiment("e", artifact_root="mlflow-artifacts:")
    run_id = (await store.create_run(exp, user_id="u", run_name="r", start_time=1)).info.run_id
    yield store, run_id, path
    await store.aclose()


def _write(run_id: str, n: int, first_step: int = 0) -> list[RunWrite]:
    return [RunWrite(run_id, (Metric("m", float(i), i, first_step + i),)) for i in range(n)]


async def test_small_batches_run_on_the_loop_large_ones_on_the_thread(
    store: tuple[SqliteMetadataStore, str, Path],
) -> None:
    s, run_id, _ = store
    loop_thread = threading.get_ident()
    seen: list[bool] = []
    traced = s._writer._conn  # type: ignore[union-attr]
    traced.set_trace_callback(
        lambda sql: seen.append(threading.get_ident() == loop_thread)
        if sql.startswith("INSERT INTO metric_points") else None)
    assert await s.log_batches(_write(run_id, 3)) == [None] * 3
    assert await s.log_batches(_write(run_id, 300, 100)) == [None] * 300
    traced.set_trace_callback(None)
    assert seen == [True, False]
    assert len((await s.get_metric_history(run_id, "m")).items) == 303


async def test_a_write_lock_held_elsewhere_is_awaited_off_the_loop(
    store: tuple[SqliteMetadataStore, str, Path],
) -> None:
    """Another process's write lock: the small batch waits for it on the writer's thread,
    and the event loop keeps serving meanwhile."""
    s, run_id, path = store
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writing = asyncio.create_task(s.log_batches(_write(run_id, 2)))
    started = time.monotonic()
    await asyncio.sleep(0.3)
    assert time.monotonic() - started < 0.5, "the event loop was blocked"
    assert not writing.done()
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(writing, 5) == [None, None]
    assert len((await s.get_metric_history(run_id, "m")).items) == 2


async def test_cancelled_while_waiting_leaves_no_transaction_open(
    store: tuple[SqliteMetadataStore, str, Path],
) -> None:
    s, run_id, path = store
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writing = asyncio.create_task(s.log_batches(_write(run_id, 2)))
    await asyncio.sleep(0.2)
    writing.cancel()
    await asyncio.sleep(0.1)
    other.execute("COMMIT")  # the BEGIN on the writer's thread now gets the lock
    other.close()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert not s._writer._conn.in_transaction  # type: ignore[union-attr]
    assert (await s.get_metric_history(run_id, "m")).items == []  # rolled back
    assert await s.log_batches(_write(run_id, 2, 10)) == [None, None]
    assert len((await s.get_metric_history(run_id, "m")).items) == 2
