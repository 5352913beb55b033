"""The MariaDB store's backend store URIs, as MLflow users write them, opened against the test
server: the SQLAlchemy spellings, ``charset`` and unknown options (warned, not fatal),
``ssl_*`` options (never a silent fall back to plain text), and start-up errors that name the
URI without its password."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest
from mytools import admin_dsn

from backends import errors
from backends.metadata.dialects.mysql import MysqlMetadataStore
from backends.metadata.interface.entities import Param, RunWrite
from backends.registry import open_metadata_store

SCHEMES = ["mysql", "mysql+pymysql", "mysql+mysqldb", "mysql+asyncmy", "mysql+aiomysql",
           "mariadb", "mariadb+mariadbconnector", "mariadb+pymysql"]


def _with(uri: str, *, scheme: str | None = None, query: str = "",
          netloc: str | None = None) -> str:
    parts = urlsplit(uri)
    return urlunsplit((scheme or parts.scheme, netloc or parts.netloc, parts.path, query, ""))


def _server_has_tls() -> bool:
    parts = urlsplit(admin_dsn())
    conn = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=parts.username or "root", password=parts.password or "")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW VARIABLES LIKE 'have_ssl'")
            row = cur.fetchone()
            return bool(row and row[1] == "YES")
    finally:
        conn.close()


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_every_mlflow_spelling_opens(my_database: str, scheme: str) -> None:
    store = open_metadata_store(_with(my_database, scheme=scheme), pool_size=1)
    assert isinstance(store, MysqlMetadataStore)
    await store.open()
    try:
        assert (await store.get_experiment("0")).name == "Default"
    finally:
        await store.aclose()


async def test_charset_utf8_is_ignored_with_a_warning_and_an_emoji_round_trips(
        my_database: str, caplog: pytest.LogCaptureFixture) -> None:
    uri = _with(my_database, query="charset=utf8&binary_prefix=true&colour=blue")
    with caplog.at_level(logging.WARNING, logger="mlgate.mysql"):
        store = MysqlMetadataStore.from_uri(uri, pool_size=1)
    messages = [r.getMessage() for r in caplog.records]
    assert any("charset=utf8" in m and "utf8mb4" in m for m in messages), messages
    assert any("'colour'" in m and "not known" in m for m in messages), messages
    assert not any("binary_prefix" in m for m in messages), messages  # SQLAlchemy's, harmless
    await store.open()
    try:
        exp_id = await store.create_experiment("emoji 😀", artifact_root="mlflow-artifacts:")
        run_id = (await store.create_run(exp_id, user_id="u", run_name="r😀", start_time=1)
                  ).info.run_id
        assert await store.log_batches([RunWrite(run_id, params=(Param("p", "🦄 x"),))]) == [None]
        run = await store.get_run(run_id)
        assert {p.key: p.value for p in run.params} == {"p": "🦄 x"}
        assert run.info.run_name == "r😀"
        assert (await store.get_experiment(exp_id)).name == "emoji 😀"
    finally:
        await store.aclose()


async def test_ssl_required_is_never_plain_text(my_database: str) -> None:
    store = MysqlMetadataStore.from_uri(_with(my_database, query="ssl_mode=REQUIRED"),
                                        pool_size=1, pool_timeout=5)
    if not _server_has_tls():
        with pytest.raises(errors.Unavailable, match="does not offer TLS"):
            await store.open()
        return
    await store.open()  # the server has TLS: the connection must use it
    try:
        async with store._read() as db:
            row = await (await db.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).fetchone()
            assert row is not None and row[1]
    finally:
        await store.aclose()


@pytest.mark.parametrize("query, option", [
    ("ssl_ca=/nonexistent/ca.pem", "ssl_ca"),
    ("ssl_cert=/nonexistent/cert.pem&ssl_key=/nonexistent/key.pem", "ssl_cert"),
    ("ssl_mode=SOMETIMES", "ssl_mode"),
    ("connect_timeout=soon", "connect_timeout"),
])
def test_a_bad_option_is_a_value_error_naming_it(my_database: str, query: str,
                                                 option: str) -> None:
    """The CLI reports a ValueError from the URI as a usage error; anything else would be a
    traceback at start."""
    with pytest.raises(ValueError, match=option):
        MysqlMetadataStore.from_uri(_with(my_database, query=query))


def test_a_certificate_file_that_is_not_pem_is_a_value_error(
        my_database: str, tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="ssl_cert"):
        MysqlMetadataStore.from_uri(_with(my_database, query=f"ssl_cert={bad}"))


@pytest.mark.parametrize("where", ["wrong password", "unreachable host"])
async def test_start_up_errors_name_the_redacted_uri(
        my_database: str, where: str, caplog: pytest.LogCaptureFixture) -> None:
    parts = urlsplit(my_database)
    host = f"{parts.hostname}:{parts.port or 3306}" if where == "wrong password" else "127.0.0.1:1"
    uri = _with(my_database, netloc=f"{parts.username or 'root'}:n0t-the-pa55word@{host}")
    store = MysqlMetadataStore.from_uri(uri, pool_size=1, pool_timeout=5)
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.Unavailable) as info:
        await store.open()
    message = str(info.value)
    assert f":***@{host}{parts.path}" in message, message
    assert "n0t-the-pa55word" not in message
    assert not [r for r in caplog.records if "n0t-the-pa55word" in r.getMessage()]


def test_a_uri_without_a_database_is_refused(my_database: str) -> None:
    parts = urlsplit(my_database)
    for path in ("", "/"):
        uri = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        with pytest.raises(ValueError, match="names no database"):
            open_metadata_store(uri)


async def test_mlflow_mysql_ssl_variables_are_read(
        my_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow adds MLFLOW_MYSQL_SSL_CA/CERT/KEY to every mysql connection; a configuration
    relying on them must not connect in plain text."""
    monkeypatch.setenv("MLFLOW_MYSQL_SSL_CA", "/nonexistent/mlflow-ca.pem")
    with pytest.raises(ValueError, match="mlflow-ca.pem"):
        MysqlMetadataStore.from_uri(my_database)
    # The URI's own option wins.
    with pytest.raises(ValueError, match="uri-ca.pem"):
        MysqlMetadataStore.from_uri(_with(my_database, query="ssl_ca=/nonexistent/uri-ca.pem"))
    # A readable CA: TLS is then required of the server.
    monkeypatch.setenv("MLFLOW_MYSQL_SSL_CA", ssl.get_default_verify_paths().openssl_cafile)
    store = MysqlMetadataStore.from_uri(my_database, pool_size=1, pool_timeout=5)
    if not _server_has_tls():
        with pytest.raises(errors.Unavailable, match="does not offer TLS"):
            await store.open()
