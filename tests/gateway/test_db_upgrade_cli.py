"""``mlgate db upgrade`` on both metadata stores."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pgtools import PgDatabases

from backends.metadata._migrations import load_migrations


@pytest.fixture(params=["sqlite", "postgres"])
def empty_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/upgrade.db"
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    dsn = databases.create("cli", migrated=False)
    parts = urlsplit(dsn)
    # A password in the URI (ignored by a trust-auth server) must not be printed.
    user = (parts.username or "postgres") + ":not-to-be-printed"
    netloc = f"{user}@{parts.hostname}:{parts.port or 5432}"
    yield urlunsplit(("postgresql+psycopg2", netloc, parts.path, "sslmode=disable", ""))
    databases.drop(dsn)


def _upgrade(uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "db", "upgrade", uri],
                          check=False, capture_output=True, text=True, timeout=120)


def test_db_upgrade_migrates_and_is_idempotent(empty_uri: str) -> None:
    newest = load_migrations("sqlite" if empty_uri.startswith("sqlite") else "postgres")[-1][0]
    for _ in range(2):
        done = _upgrade(empty_uri)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(f"is at schema version {newest}")
        assert "not-to-be-printed" not in done.stdout + done.stderr


def test_db_upgrade_unreachable_database_is_one_line() -> None:
    done = _upgrade("postgresql://u:not-to-be-printed@127.0.0.1:1/db")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Cannot connect to the database postgresql://u:***@127.0.0.1:1/db" in done.stderr
    assert "not-to-be-printed" not in done.stdout + done.stderr
