"""Throwaway MariaDB (or MySQL) databases for the tests.

The server comes from ``MLGATE_TEST_MYSQL_DSN`` (default ``mysql://root@127.0.0.1:3306``;
``.ci/run`` provides one). A test that needs it fails, never skips, when the server cannot be
reached. Each test gets its own database, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import unquote, urlsplit, urlunsplit

import pymysql
import pytest
from pgtools import run_sync

__all__ = ["DEFAULT_DSN", "ON_EVERY_DATABASE", "MyDatabases", "admin_dsn", "connect",
           "connection_ids", "kill_connections"]

DEFAULT_DSN = "mysql://root@127.0.0.1:3306"
PREFIX = "mlgate_test_"


def admin_dsn() -> str:
    return os.environ.get("MLGATE_TEST_MYSQL_DSN") or DEFAULT_DSN


def connect(database: str | None = None, **options: object) -> pymysql.Connection:
    """An autocommit connection to the test server as its admin user, to ``database`` if
    given; ``options`` go to ``pymysql.connect`` (a ``client_flag``, say)."""
    parts = urlsplit(admin_dsn())
    try:
        return pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                               user=unquote(parts.username or "root"),
                               password=unquote(parts.password or ""), database=database,
                               autocommit=True, connect_timeout=10, **options)
    except pymysql.err.MySQLError as exc:
        pytest.fail(
            f"MariaDB/MySQL is not reachable at MLGATE_TEST_MYSQL_DSN={admin_dsn()!r} ({exc}). "
            "Run the tests through .ci/run, or start a server.", pytrace=False)


def _execute(*statements: str) -> None:
    conn = connect()
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def connection_ids(database: str) -> set[int]:
    """The ids of the sessions connected to ``database`` (other than the asking one)."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist"
                        " WHERE db = %s AND id <> CONNECTION_ID()", (database,))
            return {int(row[0]) for row in cur.fetchall()}
    finally:
        conn.close()


def kill_connections(database: str) -> int:
    """``KILL`` every session connected to ``database``, as an operator or a server shutting
    down would; returns how many were killed."""
    conn = connect()
    killed = 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist"
                        " WHERE db = %s AND id <> CONNECTION_ID()", (database,))
            for (thread_id,) in cur.fetchall():
                try:
                    cur.execute(f"KILL {int(thread_id)}")
                    killed += 1
                except pymysql.err.OperationalError:
                    pass  # it ended on its own meanwhile
    finally:
        conn.close()
    return killed


def _drop(name: str) -> None:
    """Drop a database, ending the connections still on it first (as PostgreSQL's
    ``DROP DATABASE ... WITH (FORCE)``): a connection left in a transaction would make the
    DROP wait for its metadata lock."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (name,))
            for (thread_id,) in cur.fetchall():
                try:
                    cur.execute(f"KILL {int(thread_id)}")
                except pymysql.err.OperationalError:
                    pass  # it ended on its own meanwhile
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


class MyDatabases:
    """Creates and drops databases on the test server; one per session."""

    def __init__(self) -> None:
        self.session = uuid.uuid4().hex[:8]
        self.created: list[str] = []

    def create(self, label: str = "db", *, migrated: bool = True) -> str:
        """A new database (with mlgate's schema when ``migrated``); returns its URI."""
        name = f"{PREFIX}{self.session}_{label}_{uuid.uuid4().hex[:8]}"
        _execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
        self.created.append(name)
        parts = urlsplit(admin_dsn())
        uri = urlunsplit(("mysql", parts.netloc, "/" + name, parts.query, ""))
        if migrated:
            from backends.metadata.dialects.mysql import MysqlMetadataStore

            async def migrate() -> None:
                store = MysqlMetadataStore.from_uri(uri, pool_size=1)
                await store.open()
                await store.aclose()

            run_sync(migrate())
        return uri

    def drop(self, uri: str) -> None:
        name = urlsplit(uri).path.lstrip("/")
        _drop(name)
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        if self.created:
            for name in reversed(self.created):
                _drop(name)
            self.created.clear()


# For a module whose tests start servers through conftest's mlgate_factory: run each on
# SQLite, PostgreSQL and MariaDB.
ON_EVERY_DATABASE = pytest.mark.parametrize(
    "mlgate_factory", ["sqlite", "postgres", "mariadb"], indirect=True)
