"""One frozen :class:`Settings`, built once at start from flags and environment.

Every setting is declared once in :data:`SETTINGS` (flag, environment variables, default,
help); the CLI's options, docs/configuration.md's table and deploy/mlgate.env.example come
from it (``python -m gateway.settings_doc`` writes the last two). Precedence: command-line flag,
then ``MLGATE_*``, then MLflow's variable where MLflow has one, then the default.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auth.login_limits import Network, parse_trusted_proxies
from backends.registry import (
    MissingDependency,
    UnsupportedScheme,
    artifact_scheme,
    open_artifact_store,
    open_metadata_store,
    redact_uri,
)
from gateway.serving import Limits

__all__ = ["SETTINGS", "ConfigError", "Setting", "Settings", "duration_ms"]


_DURATION = re.compile(r"((?P<days>[.\d]+?)d)?((?P<hours>[.\d]+?)h)?"
                       r"((?P<minutes>[.\d]+?)m)?((?P<seconds>[.\d]+?)s)?")


def duration_ms(text: str) -> int | None:
    """Stock gc's ``--older-than`` (``1d2h3m4s``, each part optional) in milliseconds, or
    None when ``text`` is not one."""
    match = _DURATION.fullmatch(text.strip())
    try:
        parts = {k: float(v) for k, v in match.groupdict().items() if v} if match else {}
        return int(timedelta(**parts).total_seconds() * 1000) if parts else None
    except (ValueError, OverflowError):
        return None


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
    Setting("allowed_hosts", "", "Host headers the server answers (DNS-rebinding "
            "protection, as stock's): comma-separated, as sent (with the port), `*` "
            "wildcards allowed, `*` alone for any. Empty: `localhost` and literal loopback, "
            "private (10/8, 172.16/12, 192.168/16, fc00::/7) and unspecified IP addresses, "
            "with any port: stock's list, read as addresses (stock's `10.*` pattern also "
            "admits a name like `10.evil.example`). `/health` and `/version` answer any host.",
            _env("ALLOWED_HOSTS", "MLFLOW_SERVER_ALLOWED_HOSTS")),
    Setting(
        "backend_store_uri",
        "sqlite:///mlgate.db",
        "Metadata store URI: sqlite:///path, postgresql://user@host/db or "
        "mysql://user@host/db (MariaDB). The default is a SQLite file in the working "
        "directory (not stock's mlflow.db, whose schema differs).",
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
    Setting("s3_endpoint_url", None, "Endpoint of an S3-compatible server (MinIO, SeaweedFS...) "
            "for an s3:// destination. Credentials come from AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY or botocore's other sources.",
            _env("S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")),
    Setting("azure_api_version", None, "Azure Blob REST API version to pin (for Azurite or "
            "Azure Stack); default: the SDK's. Credentials come from "
            "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCESS_KEY.",
            _env("AZURE_API_VERSION")),
    Setting("artifact_part_size", 8 * 1024 * 1024, "Bytes per S3 part or Azure block when an "
            "upload streams to object storage (S3: at least 5 MiB). One part is buffered at a "
            "time per part in flight.", _env("ARTIFACT_PART_SIZE"), type=int),
    Setting("artifact_upload_concurrency", 2, "Parts or blocks of one upload sent to object "
            "storage at once. Memory per upload is about part size x (this + 1).",
            _env("ARTIFACT_UPLOAD_CONCURRENCY"), type=int),
    Setting("artifact_multipart", "proxy", "MLflow's multipart upload API (mpu/*) on S3 and "
            "Azure: proxy = parts are PUT to the gateway, which forwards them (auth and "
            "audit see every byte); presigned = clients PUT parts straight to S3 via "
            "presigned URLs and download through presigned URLs, as stock; off = single "
            "streamed PUTs only.", _env("ARTIFACT_MULTIPART")),
    Setting("workers", 1, "Worker processes sharing the port.", _env("WORKERS", "MLFLOW_WORKERS"),
            type=int),
    Setting("event_loop", "auto", "The asyncio event loop each worker runs: uvloop, asyncio "
            "(the standard library's), or auto = uvloop where it is installed (a dependency "
            "except on Windows), else asyncio.", _env("EVENT_LOOP")),
    Setting("static_prefix", None, "A path every route is served under, as stock's: "
            "`--static-prefix /mlflow` serves the UI at `/mlflow/` and the API at "
            "`/mlflow/api/...`; `/mlflow` redirects (308) to `/mlflow/` and paths without "
            "the prefix are 404. Starts with `/`, does not end with one; letters, digits "
            "and `. _ ~ -` between the slashes.",
            _env("STATIC_PREFIX", "MLFLOW_STATIC_PREFIX")),
    Setting("static_dir", None, "Folder of the MLflow web UI's compiled files (holding "
            "`index.html`). Default: `mlflow/server/js/build` of the installed `mlflow` "
            "distribution, else the folder `mlgate ui install` fills (docs/operations.md, "
            "\"The web UI\").",
            _env("STATIC_DIR")),
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
    Setting("db_pool_size", 5, "Connections the PostgreSQL or MariaDB pool keeps open.",
            _env("DB_POOL_SIZE", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"), type=int),
    Setting("db_max_overflow", 10, "Extra database connections allowed under a burst, "
            "closed again once idle for --db-overflow-idle seconds. -1: no limit.",
            _env("DB_MAX_OVERFLOW", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"), type=int),
    Setting("db_overflow_idle", 10.0, "Seconds an extra (overflow) database connection may "
            "stay idle before it is closed; 0 closes it as soon as it is returned, as "
            "SQLAlchemy does.", _env("DB_OVERFLOW_IDLE"), type=float),
    Setting("db_pool_recycle", -1, "Seconds after which a database connection is closed and "
            "replaced instead of reused (below MySQL's wait_timeout, or a proxy's idle "
            "timeout, spares a request the reconnect). -1: never.",
            _env("DB_POOL_RECYCLE", "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE"), type=int),
    Setting("db_pool_timeout", 30.0, "Seconds a request waits for a database connection "
            "before it gets 503 TEMPORARILY_UNAVAILABLE.", _env("DB_POOL_TIMEOUT"),
            type=float),
    Setting("db_pgbouncer", False, "PostgreSQL is reached through PgBouncer in transaction "
            "pooling mode: disable the prepared-statement cache.", _env("DB_PGBOUNCER"),
            flag="--db-pgbouncer/--no-db-pgbouncer", type=bool),
    Setting("sqlite_synchronous", "full", "SQLite's synchronous mode: `full` (every commit "
            "reaches the disk before it is acknowledged; survives power loss) or `normal` (WAL "
            "is synced at checkpoints; survives a crash or kill of mlgate, may lose the last "
            "commits on power loss or an OS crash, and commits are much faster).",
            _env("SQLITE_SYNCHRONOUS")),
    Setting("batch_max_rows", 5000, "Rows (metrics, params, tags) the metric batcher commits "
            "in one transaction at most.", _env("BATCH_MAX_ROWS"), type=int),
    Setting("batch_max_delay_ms", 0.0, "How long the batcher lingers after the oldest pending "
            "write for more to join its transaction, unless `--batch-max-rows` are pending "
            "first. 0: commit as soon as the previous commit is done (batches still grow "
            "under load).", _env("BATCH_MAX_DELAY_MS"), type=float),
    Setting("batch_writers", 0, "Transactions the metric batcher may have in flight at once. "
            "0: the store's choice: 1 on SQLite, which writes one transaction at a time; 2 "
            "on PostgreSQL and MariaDB, whose servers then work on two cores.", _env("BATCH_WRITERS"),
            type=int),
    Setting("batch_queue_rows", 100_000, "Rows that may wait for the batcher; beyond it "
            "requests wait up to `--batch-queue-timeout`, then get 503 with `Retry-After`.",
            _env("BATCH_QUEUE_ROWS"), type=int),
    Setting("batch_queue_timeout", 5.0, "Seconds a write waits for room in a full batcher "
            "queue before it gets 503.", _env("BATCH_QUEUE_TIMEOUT"), type=float),
    Setting("shutdown_timeout", 30.0, "Seconds to finish in-flight requests on SIGTERM.",
            _env("SHUTDOWN_TIMEOUT"), type=float),
    Setting("drain_seconds", 0.0, "Seconds between SIGTERM and closing the listener: "
            "requests are still served but `/health` answers 503 (draining), so a load "
            "balancer's health check takes the replica out first. A second Ctrl-C ends the "
            "wait (docs/scale.md, \"Stopping a replica\").", _env("DRAIN_SECONDS"),
            type=float),
    Setting("keepalive_timeout", 5.0, "Seconds an open connection may wait for its next "
            "request (no byte of it yet) before it is closed.", _env("KEEPALIVE_TIMEOUT"),
            type=float),
    Setting("header_timeout", 10.0, "Seconds a request's line and headers may take to "
            "arrive, from their first byte; a slower client is disconnected.",
            _env("HEADER_TIMEOUT"), type=float),
    Setting("body_timeout", 30.0, "Seconds a request body may stop arriving (no byte while "
            "the gateway waits for one) before the connection is closed. A slow upload "
            "that keeps moving is never cut.", _env("BODY_TIMEOUT"), type=float),
    Setting("max_connections", 0, "Open connections per worker process. At the limit a new "
            "connection closes the oldest idle one (logged as `connection limit of N "
            "reached`); if none is idle it gets 503 `TEMPORARILY_UNAVAILABLE`. 0: half the "
            "file descriptors the process may open, less 256 (384 under the common "
            "`ulimit -n 1024`).",
            _env("MAX_CONNECTIONS"), type=int),
    Setting("sweep_interval", 10.0, "Seconds between sweeps of what uploads cut off by a "
            "crash leave in the artifacts destination (staging files, S3 multipart uploads, "
            "Azure staged blocks). A leftover goes once the gateway process that wrote it has "
            "missed three of its heartbeats (one per sweep). 0: no sweep (docs/storage.md, "
            "\"Leftovers of a crash\").", _env("SWEEP_INTERVAL"),
            type=float),
    Setting("abandoned_upload_age", 86400.0, "Seconds after which an unfinished upload no "
            "live gateway process owns (a client's `mpu/*` upload, or one another server started) "
            "is taken as abandoned and removed by the sweep.", _env("ABANDONED_UPLOAD_AGE"),
            type=float),
    Setting("gc_interval", 0.0, "Seconds between garbage collections in the server: runs, "
            "experiments and logged models deleted at least `--gc-older-than` ago go for good, "
            "with their artifacts, as `mlgate gc` does; one replica at a time "
            "(docs/operations.md, \"Garbage collection\"). 0: none.",
            _env("GC_INTERVAL"), type=float),
    Setting("gc_older_than", "30d", "How long ago a run, experiment or logged model must have "
            "been deleted for the server's garbage collection to take it, as `mlgate gc "
            "--older-than`: 1d2h3m4s, each part optional.", _env("GC_OLDER_THAN")),
    Setting("log_level", "info", "Log level: debug, info, warning, error.", _env("LOG_LEVEL")),
    Setting("access_log", "text", "One line per request on stderr (logger mlgate.access): "
            "off, text (key=value after the usual log prefix) or json (one JSON object a "
            "line). Each names the method, route template (never the raw path), status, "
            "bytes sent, duration, user, workspace, client address and request id.",
            _env("ACCESS_LOG")),
    Setting("metrics", True, "Count requests and serve Prometheus metrics at /metrics "
            "(administrators only with --auth).", _env("METRICS"),
            flag="--metrics/--no-metrics", type=bool),
    Setting("metrics_port", 0, "Also serve /metrics, unauthenticated, on this port of "
            "--metrics-host: for a scraper that holds no credentials. With --workers N, "
            "worker i listens on this port + i. 0: no such listener.",
            _env("METRICS_PORT"), type=int),
    Setting("metrics_host", "127.0.0.1", "Interface of the --metrics-port listener. Its "
            "/metrics needs no credentials: bind it where only the scraper reaches it.",
            _env("METRICS_HOST")),
    Setting("auth", False, "Authenticate every request (HTTP Basic or API token) and check "
            "permissions. Without it mlgate only listens on a loopback address unless "
            "--insecure-no-auth is given.", _env("AUTH"), flag="--auth/--no-auth", type=bool),
    Setting("insecure_no_auth", False, "Allow serving without authentication on a "
            "non-loopback address.", _env("INSECURE_NO_AUTH"),
            flag="--insecure-no-auth/--no-insecure-no-auth", type=bool),
    Setting("enable_workspaces", False, "Serve MLflow workspaces (teams): the "
            "X-MLFLOW-WORKSPACE header selects one. Always on with --auth.",
            _env("ENABLE_WORKSPACES", "MLFLOW_ENABLE_WORKSPACES"),
            flag="--enable-workspaces/--no-enable-workspaces", type=bool),
    Setting("admin_username", None, "With --auth: create this admin at start if no user "
            "has that name, with the password in MLGATE_ADMIN_PASSWORD (never a flag). "
            "There is no default admin or password.", _env("ADMIN_USERNAME")),
    Setting("auth_member_default", "NO_PERMISSIONS", "Permission a team member has on "
            "experiments and registered models of the team that nobody granted them: "
            "NO_PERMISSIONS, READ, USE, EDIT or MANAGE.", _env("AUTH_MEMBER_DEFAULT")),
    Setting("auth_cache_seconds", 30.0, "How long a verified password, a token and a "
            "user's roles are cached per process; 0 disables the cache.",
            _env("AUTH_CACHE_SECONDS"), type=float),
    Setting("auth_max_failures", 10, "Failed logins allowed per user name from one client "
            "address, and per user name from all addresses, within --auth-failure-window; "
            "more get 429 until the window passes. Other names' failures never count, and a "
            "name's own failures elsewhere do not hold up an address it recently logged in "
            "from.", _env("AUTH_MAX_FAILURES"), type=int),
    Setting("auth_failure_window", 300.0, "Seconds over which failed logins are counted.",
            _env("AUTH_FAILURE_WINDOW"), type=float),
    Setting("auth_trusted_proxies", "", "Reverse proxies whose `X-Forwarded-For` is "
            "believed: IP addresses or CIDR networks, comma-separated (`10.0.0.0/8, ::1`). "
            "The client address is then the right-most forwarded address that is not a "
            "trusted proxy. Empty: the socket's peer is the client.",
            _env("AUTH_TRUSTED_PROXIES")),
    Setting("auth_default_workspace_open", True, "Every user is a member of the default "
            "workspace, as every user is on stock MLflow: they may create experiments and "
            "registered models there and get MANAGE on them. Off: default is closed like any "
            "team.", _env("AUTH_DEFAULT_WORKSPACE_OPEN"),
            flag="--auth-default-workspace-open/--no-auth-default-workspace-open", type=bool),
    Setting("rate_limit_requests", 0.0, "Requests a second each workspace may make, across "
            "all server processes, unless an administrator set its own (`mlgate limits "
            "set`); more get 429 with `Retry-After`. 0: no limit. Needs --auth or workspaces.",
            _env("RATE_LIMIT_REQUESTS"), type=float),
    Setting("rate_limit_rows", 0.0, "Metric rows a second (the metrics of log-metric and "
            "log-batch) each workspace may write, as --rate-limit-requests.",
            _env("RATE_LIMIT_ROWS"), type=float),
    Setting("rate_limit_caller_requests", 0.0, "Requests a second each API token (or user, "
            "with a password) may make within a workspace, or outside any workspace. 0: no "
            "limit.", _env("RATE_LIMIT_CALLER_REQUESTS"), type=float),
    Setting("rate_limit_caller_rows", 0.0, "Metric rows a second each API token (or user) "
            "may write within a workspace. 0: no limit.", _env("RATE_LIMIT_CALLER_ROWS"),
            type=float),
    Setting("rate_limit_burst", 1.0, "Seconds of a rate limit that may be spent at once "
            "(the token bucket's size).", _env("RATE_LIMIT_BURST"), type=float),
)

_BY_NAME = {s.name: s for s in SETTINGS}
_PREFIX = re.compile(r"(/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+")


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
    allowed_hosts: str = ""
    backend_store_uri: str = "sqlite:///mlgate.db"
    artifacts_destination: str = "./mlartifacts"
    default_artifact_root: str | None = None
    serve_artifacts: bool = True
    s3_endpoint_url: str | None = None
    azure_api_version: str | None = None
    artifact_part_size: int = 8 * 1024 * 1024
    artifact_upload_concurrency: int = 2
    artifact_multipart: str = "proxy"
    workers: int = 1
    event_loop: str = "auto"
    static_prefix: str | None = None
    static_dir: str | None = None
    truncate_long_values: bool = False
    sqlite_readers: int = 4
    db_pool_size: int = 5
    db_max_overflow: int = 10
    db_overflow_idle: float = 10.0
    db_pool_recycle: int = -1
    db_pool_timeout: float = 30.0
    db_pgbouncer: bool = False
    sqlite_synchronous: str = "full"
    batch_max_rows: int = 5000
    batch_max_delay_ms: float = 0.0
    batch_writers: int = 0
    batch_queue_rows: int = 100_000
    batch_queue_timeout: float = 5.0
    shutdown_timeout: float = 30.0
    drain_seconds: float = 0.0
    keepalive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 0
    sweep_interval: float = 10.0
    abandoned_upload_age: float = 86400.0
    gc_interval: float = 0.0
    gc_older_than: str = "30d"
    log_level: str = "info"
    access_log: str = "text"
    metrics: bool = True
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    auth: bool = False
    insecure_no_auth: bool = False
    enable_workspaces: bool = False
    admin_username: str | None = None
    auth_member_default: str = "NO_PERMISSIONS"
    auth_cache_seconds: float = 30.0
    auth_max_failures: int = 10
    auth_failure_window: float = 300.0
    auth_trusted_proxies: str = ""
    auth_default_workspace_open: bool = True
    rate_limit_requests: float = 0.0
    rate_limit_rows: float = 0.0
    rate_limit_caller_requests: float = 0.0
    rate_limit_caller_rows: float = 0.0
    rate_limit_burst: float = 1.0

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
        self._check_event_loop()
        self._check_ui()
        if self.sqlite_readers < 1:
            raise ConfigError("--sqlite-readers: must be at least 1")
        if self.db_pool_size < 1:
            raise ConfigError("--db-pool-size: must be at least 1")
        if self.db_max_overflow < -1:
            raise ConfigError("--db-max-overflow: must be -1 (no limit) or more")
        if not self.db_overflow_idle >= 0:
            raise ConfigError("--db-overflow-idle: must be 0 or more")
        if not self.db_pool_timeout > 0:
            raise ConfigError("--db-pool-timeout: must be more than 0")
        if self.sqlite_synchronous.lower() not in ("full", "normal"):
            raise ConfigError(f"--sqlite-synchronous: expected full or normal, got "
                              f"{self.sqlite_synchronous!r}")
        if self.batch_max_rows < 1:
            raise ConfigError("--batch-max-rows: must be at least 1")
        if self.batch_queue_rows < self.batch_max_rows:
            raise ConfigError("--batch-queue-rows: must be at least --batch-max-rows")
        if self.batch_writers < 0:
            raise ConfigError("--batch-writers: must be 0 (the store's choice) or more")
        if self.batch_max_delay_ms < 0 or self.batch_queue_timeout < 0:
            raise ConfigError("--batch-max-delay-ms and --batch-queue-timeout must not be "
                              "negative")
        if min(self.keepalive_timeout, self.header_timeout, self.body_timeout) <= 0:
            raise ConfigError("--keepalive-timeout, --header-timeout and --body-timeout must "
                              "be more than 0")
        if self.drain_seconds < 0:
            raise ConfigError("--drain-seconds: must be 0 (no drain) or more")
        if self.max_connections < 0:
            raise ConfigError("--max-connections: must be 0 (from the descriptor limit) or "
                              "more")
        if self.sweep_interval < 0:
            raise ConfigError("--sweep-interval: must be 0 (no sweep) or more")
        if self.abandoned_upload_age <= 0:
            raise ConfigError("--abandoned-upload-age: must be more than 0")
        if self.gc_interval < 0:
            raise ConfigError("--gc-interval: must be 0 (no collection) or more")
        if self.gc_older_than_ms is None:
            raise ConfigError(f"--gc-older-than: {self.gc_older_than!r} is not a duration "
                              "such as 30d, 12h or 2d8h5m20s")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"--log-level: unknown level {self.log_level!r}")
        self._check_observability()
        if self.auth_member_default.upper() not in ("NO_PERMISSIONS", "READ", "USE", "EDIT",
                                                    "MANAGE"):
            raise ConfigError(f"--auth-member-default: unknown permission "
                              f"{self.auth_member_default!r}")
        if self.auth_cache_seconds < 0 or self.auth_failure_window <= 0 \
                or self.auth_max_failures < 1:
            raise ConfigError("--auth-cache-seconds must not be negative; "
                              "--auth-failure-window and --auth-max-failures must be positive")
        if min(self.rate_limit_requests, self.rate_limit_rows, self.rate_limit_caller_requests,
               self.rate_limit_caller_rows) < 0 or not self.rate_limit_burst > 0:
            raise ConfigError("--rate-limit-*: limits must not be negative, and "
                              "--rate-limit-burst must be more than 0")
        if max(self.rate_limit_requests, self.rate_limit_rows, self.rate_limit_caller_requests,
               self.rate_limit_caller_rows) > 0 and not self.workspaces_enabled:
            raise ConfigError("--rate-limit-*: limits are per workspace and per token; "
                              "they need --auth or --enable-workspaces")
        try:
            parse_trusted_proxies(self.auth_trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"--auth-trusted-proxies: {exc}") from None
        self._check_uri("--backend-store-uri", self.backend_store_uri, metadata=True)
        self._check_artifacts()
        if self.default_artifact_root is not None:
            root = self.default_artifact_root
            if not root.strip():
                raise ConfigError("--default-artifact-root: must not be empty")
            scheme = urlsplit(root).scheme
            if scheme not in ("", "file", "mlflow-artifacts", "s3", "wasbs", "gs", "http",
                              "https", "hdfs", "dbfs", "abfss"):
                raise ConfigError(f"--default-artifact-root: unsupported scheme {scheme!r}")

    def _check_observability(self) -> None:
        if self.access_log.lower() not in ("off", "text", "json"):
            raise ConfigError(f"--access-log: expected off, text or json, got "
                              f"{self.access_log!r}")
        if self.metrics_port:
            if not self.metrics:
                raise ConfigError("--metrics-port: metrics are off (--no-metrics)")
            if not 0 < self.metrics_port <= 65536 - self.workers:
                raise ConfigError(f"--metrics-port: {self.metrics_port} is not a TCP port "
                                  f"(0: none; with --workers {self.workers}, at most "
                                  f"{65536 - self.workers})")
            ours = range(self.metrics_port, self.metrics_port + self.workers)
            if self.port in ours and self.metrics_host in (self.host, "0.0.0.0", "::"):
                raise ConfigError("--metrics-port: the API listens on that port")
        if not self.metrics_host.strip():
            raise ConfigError("--metrics-host: must not be empty")

    def _check_ui(self) -> None:
        prefix = self.static_prefix
        if prefix is not None:
            # Stock's three rules, and no character a URL path would carry encoded or
            # aiohttp's router would read as a pattern.
            if not prefix.startswith("/"):
                raise ConfigError("--static-prefix: must begin with a '/'")
            if prefix.endswith("/"):
                raise ConfigError("--static-prefix: must not end with a '/'")
            if not _PREFIX.fullmatch(prefix):
                raise ConfigError("--static-prefix: only letters, digits and . _ ~ - between "
                                  "slashes, and no '.' or '..' segment")
        if self.static_dir is not None and not Path(self.static_dir).is_dir():
            raise ConfigError(f"--static-dir: {self.static_dir!r} is not a folder")

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

    def _check_event_loop(self) -> None:
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError("--event-loop: expected auto, uvloop or asyncio, got "
                              f"{self.event_loop!r}")
        try:
            self.loop_factory()
        except ImportError:
            raise ConfigError("--event-loop uvloop: uvloop is not installed "
                              "(pip install uvloop); or --event-loop asyncio") from None

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """What makes each worker's event loop (None: asyncio's default)."""
        if self.event_loop == "asyncio":
            return None
        try:
            import uvloop
        except ImportError:
            if self.event_loop == "uvloop":
                raise
            return None
        return uvloop.new_event_loop

    def _check_artifacts(self) -> None:
        if self.artifact_multipart not in ("proxy", "presigned", "off"):
            raise ConfigError("--artifact-multipart: expected proxy, presigned or off, got "
                              f"{self.artifact_multipart!r}")
        if self.artifact_upload_concurrency < 1:
            raise ConfigError("--artifact-upload-concurrency: must be at least 1")
        if self.artifact_part_size < 1:
            raise ConfigError("--artifact-part-size: must be positive")
        uri = self.artifacts_destination
        if not uri or not uri.strip():
            raise ConfigError("--artifacts-destination: must not be empty")
        try:
            open_artifact_store(uri, **self.artifact_store_options())
        except (UnsupportedScheme, MissingDependency, ValueError) as exc:
            raise ConfigError(f"--artifacts-destination: {exc}") from None

    @property
    def connection_limits(self) -> Limits:
        return Limits(keepalive_timeout=self.keepalive_timeout,
                      header_timeout=self.header_timeout, body_timeout=self.body_timeout,
                      max_connections=self.max_connections)

    @property
    def trusted_proxies(self) -> tuple[Network, ...]:
        """``auth_trusted_proxies`` parsed, for :func:`auth.login_limits.client_address`."""
        return parse_trusted_proxies(self.auth_trusted_proxies)

    @property
    def workspaces_enabled(self) -> bool:
        return self.enable_workspaces or self.auth

    def check_exposure(self) -> None:
        """Refuse to serve without authentication on anything but a loopback address."""
        if self.auth or self.insecure_no_auth:
            return
        if self.host not in ("127.0.0.1", "localhost", "::1") \
                and not self.host.startswith("127."):
            raise ConfigError(
                f"--host {self.host}: refusing to serve without authentication on a "
                "non-loopback address; add --auth (recommended) or --insecure-no-auth")

    @property
    def gc_older_than_ms(self) -> int | None:
        """``gc_older_than`` in milliseconds, None when malformed."""
        return duration_ms(self.gc_older_than)

    def artifact_store_options(self) -> dict[str, Any]:
        """Keyword options for :func:`backends.registry.open_artifact_store` on
        ``artifacts_destination``: the object stores' tuning and endpoints; none for a
        local folder."""
        scheme = artifact_scheme(self.artifacts_destination)
        if scheme == "s3":
            return {"endpoint_url": self.s3_endpoint_url, "part_size": self.artifact_part_size,
                    "upload_concurrency": self.artifact_upload_concurrency}
        if scheme in ("wasbs", "wasb", "azure", "az"):
            return {"api_version": self.azure_api_version,
                    "block_size": self.artifact_part_size,
                    "upload_concurrency": self.artifact_upload_concurrency}
        return {}

    def metadata_store_options(self, *, one_connection: bool = False) -> dict[str, Any]:
        """Keyword options for :func:`backends.registry.open_metadata_store`; each store takes
        the ones it knows. ``one_connection``: one reader and a pool of one, for a command or
        process that uses the store one call at a time (upgrade, the admin commands, the
        audit writer)."""
        return {
            "readers": 1 if one_connection else self.sqlite_readers,
            "synchronous": self.sqlite_synchronous.lower(),
            "pool_size": 1 if one_connection else self.db_pool_size,
            "max_overflow": self.db_max_overflow,
            "pool_recycle": self.db_pool_recycle,
            "pool_timeout": self.db_pool_timeout,
            "overflow_idle": self.db_overflow_idle,
            "pgbouncer": self.db_pgbouncer,
        }

    def public_dict(self) -> dict[str, Any]:
        """Settings with secrets redacted, for logs."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["backend_store_uri"] = redact_uri(self.backend_store_uri)
        out["artifacts_destination"] = redact_uri(self.artifacts_destination)
        return out


def setting(name: str) -> Setting:
    return _BY_NAME[name]
