"""The SQLite writer's executemany: one-row INSERTs become multi-row statements (a few GIL
handoffs instead of one per row) with exactly the effects of row-by-row execution."""

from __future__ import annotations

import sqlite3

import pytest

from backends.metadata.sqlite import _SyncConn


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
