"""On SQLite the audit log has its own database file beside the metadata database, so its
inserts neither wait for nor hold the metadata writer (which the metric batcher needs)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from backends.metadata._migrations import load_migrations
from backends.metadata.dialects import sqlite as sqlite_module
from backends.metadata.dialects.sqlite import SqliteMetadataStore
from backends.metadata.interface.auth_entities import AuditRow


def _row(i: int, resource: str = "r") -> AuditRow:
    return (1000 + i, "alice", "default", "POST /x", "run", resource, "ok", 200, "127.0.0.1",
            f"req-{i}")


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
        [(i + 1, *_row(i)[:-1]) for i in range(3)])
    legacy.close()
    audit = sqlite3.connect(tmp_path / "mlgate-audit.db", isolation_level=None)
    audit.execute(  # the first record had been copied when a move was cut short
        "INSERT INTO audit_log (audit_id, ts, username, workspace, action, resource_type,"
        " resource_id, outcome, status, client_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (1, *_row(0)[:-1]))
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


def _lookup_rows(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return [(k, int(i)) for k, i in conn.execute(
            "SELECT k, audit_id FROM audit_lookup ORDER BY k, audit_id")]
    finally:
        conn.close()


async def test_users_and_resources_are_found_through_the_bulk_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit rows are appended without per-row indexes on user and resource; a query by
    either first adds the rows appended since to audit_lookup (in key order), so it sees
    every record; appending also does so every _AUDIT_INDEX_EVERY seconds."""
    store = SqliteMetadataStore.from_uri(f"sqlite:///{tmp_path}/mlgate.db")
    await store.open()
    audit_file = tmp_path / "mlgate-audit.db"
    try:
        await store.append_audit([_row(i, resource=f"run{i % 3}") for i in range(6)])
        assert _lookup_rows(audit_file) == []  # not yet: the bulk step comes later
        got = await store.query_audit(resource_id="run1")
        assert [r.ts for r in got] == [1001, 1004]
        assert len(_lookup_rows(audit_file)) == 12  # a user key and a resource key per row
        await store.append_audit([_row(6, resource="run1"),
                                  (1007, None, "default", "login", None, None, "failed", 401,
                                   "10.0.0.9", None)])
        assert [r.ts for r in await store.query_audit(resource_id="run1")] == [1001, 1004, 1006]
        assert [r.ts for r in await store.query_audit(username="alice")] == list(range(1000, 1007))
        assert [r.ts for r in await store.query_audit(
            username="alice", resource_type="run", resource_id="run0", since=1001)] == [1003]
        assert await store.query_audit(resource_type="experiment", resource_id="run1") == []
        assert [r.ts for r in await store.query_audit(resource_type="run")] == list(range(1000, 1007))
        assert len(_lookup_rows(audit_file)) == 14  # nothing twice; the login has no keys

        monkeypatch.setattr(sqlite_module, "_AUDIT_INDEX_EVERY", 0.0)
        await store.append_audit([_row(8, resource="run2")])
        assert ("rrun2", 9) in _lookup_rows(audit_file)  # indexed by the append itself
    finally:
        await store.aclose()


async def test_an_audit_file_of_the_first_schema_is_looked_up_after_the_upgrade(
        tmp_path: Path) -> None:
    """A file made by the version with per-row indexes: its rows are found by user and
    resource once the lookup table takes over."""
    path = tmp_path / "mlgate-audit.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(load_migrations("sqlite_audit")[0][1])
    old.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL)")
    old.execute("INSERT INTO mlgate_schema VALUES (1)")
    old.executemany(
        "INSERT INTO audit_log (ts, username, workspace, action, resource_type, resource_id,"
        " outcome, status, client_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_row(i, resource=f"run{i % 2}")[:-1] for i in range(4)])  # no request ids then
    old.close()
    store = SqliteMetadataStore.from_uri(f"sqlite:///{tmp_path}/mlgate.db")
    await store.open()
    try:
        assert [r.ts for r in await store.query_audit(resource_id="run1")] == [1001, 1003]
        assert [r.ts for r in await store.query_audit(username="alice")] == [1000, 1001, 1002, 1003]
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert "audit_log_resource" not in names and "audit_log_user" not in names


async def test_moved_records_below_the_lookup_mark_are_looked_up(tmp_path: Path) -> None:
    """Records moved in from the metadata database may have ids below what audit_lookup
    already covers; the move lowers the mark, so a query finds them too."""
    uri = f"sqlite:///{tmp_path}/mlgate.db"
    store = SqliteMetadataStore.from_uri(uri)
    await store.open()
    try:
        await store.append_audit([_row(i) for i in range(5)])  # ids 1..5
        assert len(await store.query_audit(resource_id="r")) == 5  # lookup covers 1..5
    finally:
        await store.aclose()
    audit = sqlite3.connect(tmp_path / "mlgate-audit.db", isolation_level=None)
    audit.execute("DELETE FROM audit_log WHERE audit_id <= 2")  # as if never copied here
    audit.execute("DELETE FROM audit_lookup WHERE audit_id <= 2")
    audit.close()
    legacy = sqlite3.connect(tmp_path / "mlgate.db", isolation_level=None)
    legacy.executemany(
        "INSERT INTO audit_log (audit_id, ts, username, workspace, action, resource_type,"
        " resource_id, outcome, status, client_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(i + 1, *_row(100 + i, resource="moved")[:-1]) for i in range(2)])
    legacy.close()
    store = SqliteMetadataStore.from_uri(uri)
    await store.open()
    try:
        assert [r.audit_id for r in await store.query_audit(resource_id="moved")] == [1, 2]
        assert [r.audit_id for r in await store.query_audit(username="alice")] == [1, 2, 3, 4, 5]
    finally:
        await store.aclose()
