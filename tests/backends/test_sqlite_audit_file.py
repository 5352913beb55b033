"""On SQLite the audit log has its own database file beside the metadata database, so its
inserts neither wait for nor hold the metadata writer (which the metric batcher needs)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from backends.metadata.auth_entities import AuditRow
from backends.metadata.sqlite import SqliteMetadataStore


def _row(i: int, resource: str = "r") -> AuditRow:
    return (1000 + i, "alice", "default", "POST /x", "run", resource, "ok", 200, "127.0.0.1")


def _count(path: Path | str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    finally:
        conn.close()


async def test_records_live_in_their_own_file(tmp_path: Path) -> None:
    store = SqliteMetadataStore.from_uri(f"sqlite:///{tmp_path}/mlgate.db")
    await store.open()
    try:
        assert store.audit_path == str(tmp_path / "mlgate-audit.db")
        await store.append_audit([_row(i) for i in range(5)])
        got = await store.query_audit(username="alice")
        assert [r.ts for r in got] == [1000, 1001, 1002, 1003, 1004]
        assert [r.resource_id for r in await store.query_audit(resource_id="r")] == ["r"] * 5
    finally:
        await store.aclose()
    assert _count(tmp_path / "mlgate-audit.db") == 5
    assert _count(tmp_path / "mlgate.db") == 0


async def test_audit_writes_do_not_wait_for_the_metadata_writer(tmp_path: Path) -> None:
    store = SqliteMetadataStore.from_uri(f"sqlite:///{tmp_path}/mlgate.db")
    await store.open()
    other = sqlite3.connect(tmp_path / "mlgate.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the metadata write lock
        await asyncio.wait_for(store.append_audit([_row(0)]), 2)
        assert len(await store.query_audit()) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.aclose()


async def test_records_of_the_metadata_database_move_over_once(tmp_path: Path) -> None:
    """Records that earlier versions kept in the metadata database move to the audit file
    when it is first opened, with their ids; a move cut short and redone stores none
    twice."""
    uri = f"sqlite:///{tmp_path}/mlgate.db"
    store = SqliteMetadataStore.from_uri(uri)
    await store.open()
    await store.aclose()
    legacy = sqlite3.connect(tmp_path / "mlgate.db", isolation_level=None)
    legacy.executemany(
        "INSERT INTO audit_log (audit_id, ts, username, workspace, action, resource_type,"
        " resource_id, outcome, status, client_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(i + 1, *_row(i)) for i in range(3)])
    legacy.close()
    audit = sqlite3.connect(tmp_path / "mlgate-audit.db", isolation_level=None)
    audit.execute(  # the first record had been copied when a move was cut short
        "INSERT INTO audit_log (audit_id, ts, username, workspace, action, resource_type,"
        " resource_id, outcome, status, client_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (1, *_row(0)))
    audit.close()

    store = SqliteMetadataStore.from_uri(uri)
    await store.open()
    try:
        await store.append_audit([_row(9)])
        got = await store.query_audit()
        assert [(r.audit_id, r.ts) for r in got] == [(1, 1000), (2, 1001), (3, 1002), (4, 1009)]
    finally:
        await store.aclose()
    assert _count(tmp_path / "mlgate.db") == 0
