"""Maps URI schemes to store implementations, imported on first use.

A scheme whose driver is missing raises :class:`MissingDependency` naming the extra to
install, whether the implementation imports its driver at the top (PostgreSQL) or only when
it opens (S3, Azure: their entries name the driver's packages, looked up without importing
them). Registering one scheme twice is an error.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from backends.artifacts.base import ArtifactStore
    from backends.metadata.interface.store import MetadataStore

__all__ = [
    "AZURE_SCHEMES",
    "MYSQL_SCHEMES",
    "POSTGRES_SCHEMES",
    "MissingDependency",
    "UnsupportedScheme",
    "artifact_scheme",
    "metadata_scheme",
    "open_artifact_store",
    "open_metadata_store",
    "register_artifact_scheme",
    "register_metadata_scheme",
]


class UnsupportedScheme(ValueError):
    """The URI's scheme names no registered store."""


class MissingDependency(ImportError):
    """The store exists but its driver is not installed."""


@dataclass(frozen=True)
class _Entry:
    target: str  # "package.module:ClassName"
    extra: str | None  # the pip extra that brings the driver
    drivers: tuple[str, ...] = ()  # modules the store imports only when it opens


_METADATA: dict[str, _Entry] = {}
_ARTIFACTS: dict[str, _Entry] = {}


def _register(table: dict[str, _Entry], scheme: str, target: str, extra: str | None,
              drivers: tuple[str, ...]) -> None:
    if scheme in table:
        raise ValueError(f"scheme {scheme!r} is already registered to {table[scheme].target}")
    table[scheme] = _Entry(target, extra, drivers)


def register_metadata_scheme(scheme: str, target: str, extra: str | None = None,
                             drivers: tuple[str, ...] = ()) -> None:
    _register(_METADATA, scheme, target, extra, drivers)


def register_artifact_scheme(scheme: str, target: str, extra: str | None = None,
                             drivers: tuple[str, ...] = ()) -> None:
    _register(_ARTIFACTS, scheme, target, extra, drivers)


# The spellings MLflow users write, which the stores' from_uri accept too.
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg")
MYSQL_SCHEMES = ("mysql", "mysql+pymysql", "mysql+mysqldb", "mysql+asyncmy", "mysql+aiomysql",
                 "mariadb", "mariadb+mariadbconnector", "mariadb+pymysql")
AZURE_SCHEMES = ("wasbs", "wasb", "azure", "az")

register_metadata_scheme("sqlite", "backends.metadata.dialects.sqlite:SqliteMetadataStore")
for _pg in POSTGRES_SCHEMES:
    register_metadata_scheme(_pg, "backends.metadata.dialects.postgres:PostgresMetadataStore", "postgres")
for _my in MYSQL_SCHEMES:
    register_metadata_scheme(_my, "backends.metadata.dialects.mysql:MysqlMetadataStore", "mysql")
register_artifact_scheme("", "backends.artifacts.local:LocalArtifactStore")
register_artifact_scheme("file", "backends.artifacts.local:LocalArtifactStore")
register_artifact_scheme("s3", "backends.artifacts.s3:S3ArtifactStore", "s3",
                         ("aiobotocore", "botocore"))
for _az in AZURE_SCHEMES:
    register_artifact_scheme(_az, "backends.artifacts.azure:AzureArtifactStore", "azure",
                             ("azure.storage.blob", "azure.core"))


def metadata_scheme(uri: str) -> str:
    return urlsplit(uri).scheme.lower()


def artifact_scheme(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    # A Windows drive letter ("C:\\x") parses as a one-letter scheme: treat it as a path.
    return "" if len(scheme) == 1 else scheme


def _load(table: dict[str, _Entry], scheme: str, uri: str, kind: str) -> Any:
    entry = table.get(scheme)
    if entry is None:
        known = ", ".join(sorted(s + "://" for s in table if s))
        raise UnsupportedScheme(f"unsupported {kind} URI {redact_uri(uri)!r}: expected one of {known}")
    module_name, _, attr = entry.target.partition(":")
    for driver in entry.drivers:
        if not _installed(driver):
            raise MissingDependency(
                f"{scheme}:// needs the {driver!r} package: pip install 'mlgate[{entry.extra}]'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UnsupportedScheme(
                f"{kind} URI scheme {scheme}:// is not implemented in this version of mlgate"
            ) from None
        if entry.extra is None or exc.name is None or exc.name.startswith(("backends", "gateway")):
            raise
        raise MissingDependency(
            f"{scheme}:// needs the {exc.name!r} package: pip install 'mlgate[{entry.extra}]'"
        ) from exc
    return getattr(module, attr)


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without running it (importing
    aiobotocore or the Azure SDK takes most of a second)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing, or an import hook refused it
        return False


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def open_metadata_store(uri: str, **options: Any) -> MetadataStore:
    """Build (but do not open) the metadata store for ``uri``. The caller calls ``open()``."""
    cls = _load(_METADATA, metadata_scheme(uri), uri, "backend store")
    store: MetadataStore = cls.from_uri(uri, **options)
    return store


def open_artifact_store(uri: str, **options: Any) -> ArtifactStore:
    """Build (but do not open) the artifact store for ``uri``. The caller calls ``open()``."""
    cls = _load(_ARTIFACTS, artifact_scheme(uri), uri, "artifacts destination")
    store: ArtifactStore = cls.from_uri(uri, **options)
    return store
