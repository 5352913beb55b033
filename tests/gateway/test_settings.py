"""Settings: flags over MLGATE_* over MLflow's variables over defaults, validated at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import ConfigError, Settings


def test_defaults() -> None:
    s = Settings.from_sources({}, env={})
    assert (s.host, s.port) == ("127.0.0.1", 5000)
    assert s.backend_store_uri == "sqlite:///mlgate.db"
    assert s.artifacts_destination == "./mlartifacts"
    assert s.serve_artifacts is True
    assert s.artifact_root == "mlflow-artifacts:"


def test_precedence() -> None:
    env = {"MLFLOW_PORT": "6000", "MLGATE_HOST": "0.0.0.0", "MLFLOW_HOST": "10.0.0.1"}
    s = Settings.from_sources({"port": None}, env=env)
    assert (s.host, s.port) == ("0.0.0.0", 6000)
    s = Settings.from_sources({"port": 7000}, env=env)
    assert s.port == 7000
    s = Settings.from_sources({}, env={"MLFLOW_SERVE_ARTIFACTS": "false"})
    assert s.serve_artifacts is False


def test_auth_onboarding_and_proxies() -> None:
    s = Settings.from_sources({}, env={})
    assert s.auth_default_workspace_open is True and s.trusted_proxies == ()
    s = Settings.from_sources({}, env={"MLGATE_AUTH_DEFAULT_WORKSPACE_OPEN": "false",
                                       "MLGATE_AUTH_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert s.auth_default_workspace_open is False
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "::1/128"]


def test_settings_are_frozen() -> None:
    s = Settings.from_sources({}, env={})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"backend_store_uri": "mssql://x/y"}, "unsupported backend store URI"),
        ({"backend_store_uri": "sqlite://host/x.db"}, "has a host"),
        ({"backend_store_uri": "sqlite:///no/such/dir/x.db"}, "does not exist"),
        ({"backend_store_uri": ""}, "must not be empty"),
        ({"artifacts_destination": "ftp://x/y"}, "unsupported artifacts destination"),
        ({"port": 70000}, "not a TCP port"),
        ({"workers": 0}, "at least 1"),
        ({"event_loop": "trio"}, "expected auto, uvloop or asyncio"),
        ({"serve_artifacts": "perhaps"}, "expected true or false"),
        ({"default_artifact_root": "weird://x"}, "unsupported scheme"),
        ({"sqlite_synchronous": "off"}, "expected full or normal"),
        ({"batch_max_rows": 0}, "--batch-max-rows"),
        ({"batch_max_rows": 10, "batch_queue_rows": 5}, "--batch-queue-rows"),
        ({"batch_max_delay_ms": -1}, "must not be negative"),
        ({"batch_writers": -1}, "--batch-writers"),
        ({"auth_trusted_proxies": "10.0.0.1, proxy.local"}, "--auth-trusted-proxies"),
    ],
)
def test_bad_settings_fail_at_start(flags: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_sources(flags, env={})


def test_postgres_password_is_redacted() -> None:
    s = Settings(backend_store_uri="postgresql://u:hunter2@h/db")
    assert "hunter2" not in str(s.public_dict())


def test_cli_bad_uri_fails_at_boot_with_a_clear_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--backend-store-uri", "bogus://x"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )
    assert proc.returncode != 0
    assert "unsupported backend store URI" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("mode", "pragma"), [("full", 2), ("normal", 1)])
async def test_sqlite_synchronous_reaches_the_connections(
    tmp_path: Path, mode: str, pragma: int
) -> None:
    from backends.registry import open_metadata_store

    settings = Settings.from_sources(
        {"backend_store_uri": f"sqlite:///{tmp_path}/s.db", "sqlite_synchronous": mode},
        env={})
    store = open_metadata_store(settings.backend_store_uri, **settings.metadata_store_options())
    await store.open()
    try:
        async with store._tx() as db:  # type: ignore[attr-defined]
            row = await (await db.execute("PRAGMA synchronous")).fetchone()
    finally:
        await store.aclose()
    assert row[0] == pragma
