"""The reader for a stock backend store URI: one of the databases of
:mod:`backends.importer.sources`, or a FileStore folder (:mod:`backends.importer.filestore`)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

from backends.importer.filestore import FileStoreReader, filestore_root
from backends.importer.sources import MysqlReader, PostgresReader, SqliteReader, StockReader
from backends.registry import redact_uri

__all__ = ["open_reader"]


def open_reader(uri: str) -> StockReader:
    """The reader for a stock backend store URI (not connected). Raises ``ValueError`` for
    a URI it cannot read."""
    root = filestore_root(uri)
    if root is not None:
        return FileStoreReader(root.as_uri(), root)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().split("+", 1)[0]
    if scheme == "sqlite":
        path = unquote(parts.path).removeprefix("/")
        if parts.netloc or not path or path == ":memory:":
            raise ValueError(f"{uri!r}: expected sqlite:///relative.db or sqlite:////abs.db")
        return SqliteReader(uri, path)
    if scheme in ("postgresql", "postgres"):
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
        return PostgresReader(uri, dsn)
    if scheme in ("mysql", "mariadb"):
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database:
            raise ValueError(f"{redact_uri(uri)!r}: expected mysql://user@host/database")
        return MysqlReader(uri, parts.hostname, parts.port or 3306,
                           unquote(parts.username or "root"), unquote(parts.password or ""),
                           database)
    raise ValueError(f"{redact_uri(uri)!r}: mlgate import reads sqlite://, postgresql:// "
                     "and mysql:// stock databases and FileStore folders (mlruns/)")
