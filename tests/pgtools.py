"""Throwaway PostgreSQL databases for the tests.

The server comes from ``MLGATE_TEST_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; ``.ci/run`` provides one). A test that
needs PostgreSQL fails, never skips, when the server cannot be reached.

One template database per test session holds the migrated schema; every test gets its own
database copied from it (``CREATE DATABASE ... TEMPLATE``, tens of milliseconds) and dropped
at the end with ``WITH (FORCE)``, so leftover connections cannot keep it alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

__all__ = ["DEFAULT_DSN", "PgDatabases", "admin_dsn", "dsn_for", "run_sync"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFIX = "mlgate_test_"

T = TypeVar("T")


def admin_dsn() -> str:
    return os.environ.get("MLGATE_TEST_PG_DSN") or DEFAULT_DSN


def dsn_for(database: str, base: str | None = None) -> str:
    """``base`` (default: the admin DSN) pointing at ``database``."""
    parts = urlsplit(base or admin_dsn())
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a private event loop in a worker thread (safe inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin() -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(admin_dsn(), timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at MLGATE_TEST_PG_DSN={admin_dsn()!r} "
            f"({type(exc).__name__}: {exc}). Run the tests through .ci/run, or start a server.",
            pytrace=False,
        )
    return conn


async def _execute(*statements: str) -> None:
    conn = await _admin()
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


class PgDatabases:
    """Creates and drops databases on the test server; one per session."""

    def __init__(self) -> None:
        self.session = uuid.uuid4().hex[:8]
        self.template: str | None = None
        self.created: list[str] = []

    def _name(self, label: str) -> str:
        return f"{PREFIX}{self.session}_{label}_{uuid.uuid4().hex[:8]}"

    def _migrated_template(self) -> str:
        if self.template is None:
            from backends.metadata.dialects.postgres import PostgresMetadataStore

            name = f"{PREFIX}{self.session}_template"
            run_sync(_execute(f'CREATE DATABASE "{name}"'))
            self.created.append(name)

            async def migrate() -> None:
                store = PostgresMetadataStore.from_uri(dsn_for(name), pool_size=1)
                await store.open()
                await store.aclose()

            run_sync(migrate())
            self.template = name
        return self.template

    def create(self, label: str = "db", *, migrated: bool = True) -> str:
        """A new database (with mlgate's schema when ``migrated``); returns its DSN."""
        name = self._name(label)
        template = f' TEMPLATE "{self._migrated_template()}"' if migrated else ""
        run_sync(_execute(f'CREATE DATABASE "{name}"{template}'))
        self.created.append(name)
        return dsn_for(name)

    def drop(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        run_sync(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        if self.created:
            run_sync(_execute(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'
                                for n in reversed(self.created))))
            self.created.clear()
