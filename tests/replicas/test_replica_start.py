"""Replicas started together on an empty PostgreSQL database: the schema is migrated once
(under the migration lock), the first admin is created once, and every replica serves.

Before the fix the admin bootstrap raced itself: each replica found no admin, each tried
to create it, and the losers exited with ``AlreadyExists: User 'admin' already exists.``
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from conftest import (
    ServerProcess,
    _healthy,
    _server_env,
    free_port,
    mlgate_command,
    stop_server,
)
from pgtools import PgDatabases, run_sync

from backends.metadata._migrations import load_migrations
from backends.metadata.dialects.postgres import PostgresMetadataStore
from gateway.cli_auth import bootstrap_admin

REPLICAS = 8
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-123"
MIGRATED = re.compile(r"migrated \S+ to schema version (\d+)")


async def test_admin_bootstrap_racing_itself_creates_one_admin(pg_database: str) -> None:
    """Four bootstraps at once, as replicas starting together run them: all succeed, one
    admin."""
    store = PostgresMetadataStore.from_uri(pg_database, pool_size=2)
    await store.open()
    try:
        created = await asyncio.gather(
            *(bootstrap_admin(store, ADMIN, ADMIN_PASSWORD) for _ in range(4)))
        assert sorted(created) == [False, False, False, True]
        assert [u.username for u in await store.list_users()] == [ADMIN]
    finally:
        await store.aclose()


def _start_all(dsn: str, workdir: Path) -> list[ServerProcess]:
    """REPLICAS ``mlgate serve`` processes started at the same moment (each waited for
    afterwards): the races happen at start, so no replica may begin ahead of the others."""
    procs = []
    for i in range(REPLICAS):
        port = free_port()
        folder = workdir / f"r{i}"
        folder.mkdir()
        cmd = mlgate_command(port, folder, "--auth", "--admin-username", ADMIN,
                             "--db-pool-size", "1", "--db-max-overflow", "2",
                             backend_store_uri=dsn)
        log_path = folder / "mlgate.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                env=_server_env({"MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD}))
        procs.append(ServerProcess(f"http://127.0.0.1:{port}", proc, folder, log_path))
    return procs


def test_eight_replicas_started_at_once_migrate_once_and_all_serve(
        pg_databases: PgDatabases, tmp_path: Path) -> None:
    dsn = pg_databases.create("start", migrated=False)
    servers = _start_all(dsn, tmp_path)
    try:
        for server in servers:
            _wait_healthy(server)
        time.sleep(0.5)  # a replica that would exit late (after its first answer)
        exited = [s for s in servers if s.proc.poll() is not None]
        assert not exited, "\n".join(s.output() for s in exited)
        outputs = [s.output() for s in servers]
        migrations = Counter(int(v) for out in outputs for v in MIGRATED.findall(out))
        newest = len(load_migrations("postgres"))
        assert migrations == Counter(range(1, newest + 1)), migrations
        assert not [o for o in outputs if "Traceback" in o]

        async def look() -> tuple[list[int], list[str]]:
            conn = await asyncpg.connect(dsn)
            try:
                versions = [r[0] for r in await conn.fetch("SELECT version FROM mlgate_schema")]
                admins = [r[0] for r in await conn.fetch(
                    "SELECT username FROM auth_users WHERE is_admin = 1")]
                return versions, admins
            finally:
                await conn.close()

        versions, admins = run_sync(look())
        assert versions == [newest]
        assert admins == [ADMIN]
        created = sum(o.count(f"created admin user {ADMIN}") for o in outputs)
        assert created == 1
    finally:
        for server in servers:
            stop_server(server)
        pg_databases.drop(dsn)


def _wait_healthy(server: ServerProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy(server.url):
        if server.proc.poll() is not None:
            pytest.fail(f"a replica exited with {server.proc.returncode}:\n{server.output()}",
                        pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"a replica was not healthy in {timeout} s:\n{server.output()}",
                        pytrace=False)
        time.sleep(0.1)
