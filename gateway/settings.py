"""One frozen :class:`Settings`, built once at start from flags and environment.

Every setting is declared once in :data:`SETTINGS` (flag, environment variables, default,
help); the CLI's options and the README's table come from it. Precedence: command-line flag,
then ``MLGATE_*``, then MLflow's variable where MLflow has one, then the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backends.registry import (
    MissingDependency,
    UnsupportedScheme,
    open_artifact_store,
    open_metadata_store,
    redact_uri,
)

__all__ = ["SETTINGS", "ConfigError", "Setting", "Settings"]


class ConfigError(ValueError):
    """A setting is invalid; the message says which and why."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    envvars: tuple[str, ...] = ()
    flag: str | None = None  # e.g. "--serve-artifacts/--no-serve-artifacts"; None → "--<name>"
    type: type = str

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def _env(name: str, mlflow: str | None = None) -> tuple[str, ...]:
    return ("MLGATE_" + name,) + ((mlflow,) if mlflow else ())


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Interface to listen on.", _env("HOST", "MLFLOW_HOST")),
    Setting("port", 5000, "Port to listen on.", _env("PORT", "MLFLOW_PORT"), type=int),
    Setting(
        "backend_store_uri",
        "sqlite:///mlgate.db",
        "Metadata store URI: sqlite:///path or postgresql://user@host/db. The default is a "
        "SQLite file in the working directory (not stock's mlflow.db, whose schema differs).",
        _env("BACKEND_STORE_URI", "MLFLOW_BACKEND_STORE_URI"),
    ),
    Setting(
        "artifacts_destination",
        "./mlartifacts",
        "Where proxied artifacts are stored: a local path, s3://bucket/prefix or wasbs://...",
        _env("ARTIFACTS_DESTINATION", "MLFLOW_ARTIFACTS_DESTINATION"),
    ),
    Setting(
        "default_artifact_root",
        None,
        "Artifact root of new experiments. Default: mlflow-artifacts:/ when serving "
        "artifacts, else the artifacts destination.",
        _env("DEFAULT_ARTIFACT_ROOT", "MLFLOW_DEFAULT_ARTIFACT_ROOT"),
    ),
    Setting(
        "serve_artifacts",
        True,
        "Serve the mlflow-artifacts proxy.",
        _env("SERVE_ARTIFACTS", "MLFLOW_SERVE_ARTIFACTS"),
        flag="--serve-artifacts/--no-serve-artifacts",
        type=bool,
    ),
    Setting("workers", 1, "Worker processes sharing the port.", _env("WORKERS", "MLFLOW_WORKERS"),
            type=int),
    Setting(
        "truncate_long_values",
        False,
        "Silently truncate over-long param (6000) and tag (8000) values as stock does. Off by "
        "default: mlgate rejects them with 400 instead of losing data.",
        _env("TRUNCATE_LONG_VALUES", "MLFLOW_TRUNCATE_LONG_VALUES"),
        flag="--truncate-long-values/--no-truncate-long-values",
        type=bool,
    ),
    Setting("sqlite_readers", 4, "Read connections of the SQLite store.",
            _env("SQLITE_READERS"), type=int),
    Setting("shutdown_timeout", 30.0, "Seconds to finish in-flight requests on SIGTERM.",
            _env("SHUTDOWN_TIMEOUT"), type=float),
    Setting("log_level", "info", "Log level: debug, info, warning, error.", _env("LOG_LEVEL")),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _coerce(setting: Setting, raw: Any) -> Any:
    if raw is None or setting.type is str:
        return raw
    if setting.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{setting.option.split('/')[0]}: expected true or false, got {raw!r}")
    try:
        return setting.type(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{setting.option}: expected {setting.type.__name__}, got {raw!r}"
        ) from None


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str = "sqlite:///mlgate.db"
    artifacts_destination: str = "./mlartifacts"
    default_artifact_root: str | None = None
    serve_artifacts: bool = True
    workers: int = 1
    truncate_long_values: bool = False
    sqlite_readers: int = 4
    shutdown_timeout: float = 30.0
    log_level: str = "info"

    @classmethod
    def from_sources(
        cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Merge flags (``None`` = not given), environment and defaults, then validate."""
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = flags.get(setting.name)
            if raw is None:
                raw = next((env[v] for v in setting.envvars if env.get(v, "") != ""), None)
            values[setting.name] = setting.default if raw is None else _coerce(setting, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def artifact_root(self) -> str:
        """The root new experiments' artifact locations are built under."""
        if self.default_artifact_root:
            return self.default_artifact_root.rstrip("/") or "/"
        if self.serve_artifacts:
            return "mlflow-artifacts:"
        return str(Path(self.artifacts_destination).resolve())

    def validate(self) -> None:
        """Raise :class:`ConfigError` for anything that would fail later."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port: {self.port} is not a TCP port")
        if self.workers < 1:
            raise ConfigError("--workers: must be at least 1")
        if self.sqlite_readers < 1:
            raise ConfigError("--sqlite-readers: must be at least 1")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"--log-level: unknown level {self.log_level!r}")
        self._check_uri("--backend-store-uri", self.backend_store_uri, metadata=True)
        self._check_uri("--artifacts-destination", self.artifacts_destination, metadata=False)
        if self.default_artifact_root is not None:
            root = self.default_artifact_root
            if not root.strip():
                raise ConfigError("--default-artifact-root: must not be empty")
            scheme = urlsplit(root).scheme
            if scheme not in ("", "file", "mlflow-artifacts", "s3", "wasbs", "gs", "http",
                              "https", "hdfs", "dbfs", "abfss"):
                raise ConfigError(f"--default-artifact-root: unsupported scheme {scheme!r}")

    @staticmethod
    def _check_uri(option: str, uri: str, *, metadata: bool) -> None:
        if not uri or not uri.strip():
            raise ConfigError(f"{option}: must not be empty")
        try:
            if metadata:
                open_metadata_store(uri)
            else:
                open_artifact_store(uri)
        except (UnsupportedScheme, MissingDependency, ValueError) as exc:
            raise ConfigError(f"{option}: {exc}") from None

    def public_dict(self) -> dict[str, Any]:
        """Settings with secrets redacted, for logs."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["backend_store_uri"] = redact_uri(self.backend_store_uri)
        out["artifacts_destination"] = redact_uri(self.artifacts_destination)
        return out


def setting(name: str) -> Setting:
    return _BY_NAME[name]
