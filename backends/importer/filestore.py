"""Reading a stock FileStore (``mlruns/`` or ``file:///…/mlruns``) as if it were a database.

The folder is read once into a private SQLite file with the columns of stock's database
(the importer's :data:`TABLES` read nothing else), and the import reads that file like any
stock SQLite source. The folder is walked in sorted order, so the same folder always makes
the same file and an interrupted import resumes at the same positions.

On the way, artifact URIs inside the folder (``file:///…/mlruns/<exp>/<run>/artifacts``)
become proxied ones (``mlflow-artifacts:/<exp>/<run>/artifacts``): the importer copies
those trees into mlgate's artifact store under the same paths (:func:`artifact_paths`).
Metric points logged twice (the FileStore appends lines) come over once, as a database
keeps them.
"""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from backends import errors
from backends.importer.revisions import SUPPORTED
from backends.importer.sources import SqliteReader

__all__ = ["FileStoreReader", "artifact_paths", "filestore_root"]

_MAX_FLOAT = 1.7976931348623157e308
_RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# Files under these are artifacts; everything else in the folder is metadata.
_ARTIFACTS = re.compile(r"^[^/]+/(?:[0-9a-f]{32}|models/m-[^/]+)/artifacts/")

_SCHEMA = """
CREATE TABLE alembic_version (version_num TEXT);
CREATE TABLE workspaces (name TEXT PRIMARY KEY, description TEXT);
CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT, artifact_location TEXT,
    lifecycle_stage TEXT, creation_time INTEGER, last_update_time INTEGER, workspace TEXT);
CREATE TABLE experiment_tags (key TEXT, value TEXT, experiment_id INTEGER,
    PRIMARY KEY (key, experiment_id));
CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, name TEXT, user_id TEXT, status TEXT,
    start_time INTEGER, end_time INTEGER, lifecycle_stage TEXT, artifact_uri TEXT,
    experiment_id INTEGER, deleted_time INTEGER);
CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT, PRIMARY KEY (key, run_uuid));
CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT, PRIMARY KEY (key, run_uuid));
CREATE TABLE metrics (key TEXT, value REAL, timestamp INTEGER, run_uuid TEXT, step INTEGER,
    is_nan INTEGER, PRIMARY KEY (key, timestamp, step, run_uuid, value, is_nan));
CREATE TABLE latest_metrics (key TEXT, value REAL, timestamp INTEGER, step INTEGER,
    is_nan INTEGER, run_uuid TEXT, PRIMARY KEY (key, run_uuid));
CREATE TABLE datasets (dataset_uuid TEXT, experiment_id INTEGER, name TEXT, digest TEXT,
    dataset_source_type TEXT, dataset_source TEXT, dataset_schema TEXT, dataset_profile TEXT,
    PRIMARY KEY (experiment_id, name, digest));
CREATE TABLE inputs (input_uuid TEXT, source_type TEXT, source_id TEXT,
    destination_type TEXT, destination_id TEXT, step INTEGER,
    PRIMARY KEY (source_type, source_id, destination_type, destination_id));
CREATE TABLE input_tags (input_uuid TEXT, name TEXT, value TEXT, PRIMARY KEY (input_uuid, name));
CREATE TABLE logged_models (model_id TEXT PRIMARY KEY, experiment_id INTEGER, name TEXT,
    artifact_location TEXT, creation_timestamp_ms INTEGER, last_updated_timestamp_ms INTEGER,
    status INTEGER, lifecycle_stage TEXT, model_type TEXT, source_run_id TEXT,
    status_message TEXT);
CREATE TABLE logged_model_params (model_id TEXT, param_key TEXT, param_value TEXT,
    PRIMARY KEY (model_id, param_key));
CREATE TABLE logged_model_tags (model_id TEXT, tag_key TEXT, tag_value TEXT,
    PRIMARY KEY (model_id, tag_key));
CREATE TABLE logged_model_metrics (model_id TEXT, metric_name TEXT,
    metric_timestamp_ms INTEGER, metric_step INTEGER, metric_value REAL, run_id TEXT,
    dataset_name TEXT, dataset_digest TEXT,
    PRIMARY KEY (model_id, metric_name, metric_timestamp_ms, metric_step, run_id));
CREATE TABLE registered_models (name TEXT, creation_time INTEGER, last_updated_time INTEGER,
    description TEXT, workspace TEXT, PRIMARY KEY (workspace, name));
CREATE TABLE registered_model_tags (key TEXT, value TEXT, name TEXT, workspace TEXT,
    PRIMARY KEY (workspace, key, name));
CREATE TABLE model_versions (name TEXT, version INTEGER, creation_time INTEGER,
    last_updated_time INTEGER, description TEXT, user_id TEXT, current_stage TEXT, source TEXT,
    run_id TEXT, status TEXT, status_message TEXT, run_link TEXT, storage_location TEXT,
    workspace TEXT, PRIMARY KEY (workspace, name, version));
CREATE TABLE model_version_tags (key TEXT, value TEXT, name TEXT, version INTEGER,
    workspace TEXT, PRIMARY KEY (workspace, key, name, version));
CREATE TABLE registered_model_aliases (alias TEXT, version INTEGER, name TEXT, workspace TEXT,
    PRIMARY KEY (workspace, name, alias));
"""


def filestore_root(uri: str) -> Path | None:
    """The folder of a FileStore URI (``file:///…`` or a plain path holding experiment
    folders), or ``None`` when ``uri`` is not one."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
    elif parts.scheme == "" or (len(parts.scheme) == 1 and uri[1:3] == ":\\"):
        path = Path(uri)
    else:
        return None
    return path if (path / "0" / "meta.yaml").is_file() or (path / "models").is_dir() \
        or any(path.glob("*/meta.yaml")) else None


def artifact_paths(path: str) -> bool:
    """Whether a file of the folder (path relative to it) is an artifact."""
    return _ARTIFACTS.match(path) is not None


class FileStoreReader(SqliteReader):
    """A FileStore folder, read into a private SQLite file at ``open()`` (removed at
    ``aclose()``)."""

    def __init__(self, uri: str, root: Path) -> None:
        self._root = root.resolve()
        self._tmp = tempfile.TemporaryDirectory(prefix="mlgate-filestore-")
        super().__init__(uri, str(Path(self._tmp.name) / "filestore.db"))

    async def open(self) -> None:
        try:
            await asyncio.to_thread(_load, self._root, Path(self._path))
        except ImportError:
            raise errors.InvalidArgument(
                "reading a FileStore needs PyYAML: pip install 'mlgate[filestore]'") from None
        await super().open()

    async def aclose(self) -> None:
        await super().aclose()
        self._tmp.cleanup()


# -- the folder's contents --------------------------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as f:
        found = yaml.safe_load(f)
    return found if isinstance(found, dict) else {}


def _values(folder: Path) -> Iterator[tuple[str, str]]:
    """(key, value) of each file under ``folder``; a key with slashes is a nested path."""
    if not folder.is_dir():
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield path.relative_to(folder).as_posix(), path.read_text(encoding="utf-8")


def _point(text: str) -> tuple[float, int]:
    value = float(text)
    if math.isnan(value):
        return 0.0, 1
    if math.isinf(value):
        return (_MAX_FLOAT if value > 0 else -_MAX_FLOAT), 0
    return value, 0


class _Uris:
    """Artifact URIs inside the folder, as proxied URIs under the same relative path."""

    def __init__(self, root: Path) -> None:
        self._prefixes = (root.as_uri().rstrip("/") + "/", str(root).rstrip("/") + "/")

    def __call__(self, uri: Any) -> Any:
        if isinstance(uri, str):
            for prefix in self._prefixes:
                if uri.startswith(prefix):
                    return "mlflow-artifacts:/" + uri[len(prefix):]
        return uri


def _load(root: Path, target: Path) -> None:
    uris = _Uris(root)
    db = sqlite3.connect(target)
    try:
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO alembic_version VALUES (?)", (SUPPORTED[-1],))
        folders = [p for p in root.iterdir() if p.is_dir() and (p / "meta.yaml").is_file()]
        trash = root / ".trash"
        if trash.is_dir():
            folders += [p for p in trash.iterdir() if (p / "meta.yaml").is_file()]
        for folder in sorted(folders, key=lambda p: int(p.name)):
            _experiment(db, folder, uris)
        _registry(db, root / "models", uris)
        db.commit()
    finally:
        db.close()


def _experiment(db: sqlite3.Connection, folder: Path, uris: _Uris) -> None:
    meta = _yaml(folder / "meta.yaml")
    exp_id = int(meta.get("experiment_id", folder.name))
    workspace = meta.get("workspace") or "default"
    db.execute("INSERT OR IGNORE INTO workspaces VALUES (?, '')", (workspace,))
    db.execute("INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?)",
               (exp_id, meta.get("name"), uris(meta.get("artifact_location")),
                meta.get("lifecycle_stage") or "active", meta.get("creation_time"),
                meta.get("last_update_time"), workspace))
    db.executemany("INSERT INTO experiment_tags VALUES (?, ?, ?)",
                   [(k, v, exp_id) for k, v in _values(folder / "tags")])
    for run in sorted(p for p in folder.iterdir() if _RUN_ID.match(p.name)):
        if (run / "meta.yaml").is_file():
            _run(db, exp_id, run, uris)
    datasets = folder / "datasets"
    if datasets.is_dir():
        for ds in sorted(datasets.iterdir()):
            if (ds / "meta.yaml").is_file():
                m = _yaml(ds / "meta.yaml")
                db.execute("INSERT OR IGNORE INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (ds.name, exp_id, m.get("name"), m.get("digest"),
                            m.get("source_type"), m.get("source"), m.get("schema"),
                            m.get("profile")))
    models = folder / "models"
    if models.is_dir():
        for model in sorted(models.iterdir()):
            if (model / "meta.yaml").is_file():
                _logged_model(db, exp_id, model, uris)


def _run(db: sqlite3.Connection, exp_id: int, folder: Path, uris: _Uris) -> None:
    meta = _yaml(folder / "meta.yaml")
    run_id = meta.get("run_id") or folder.name
    status = meta.get("status")
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (run_id, meta.get("run_name") or "", meta.get("user_id") or "",
                _RUN_STATUS.get(status, status) if isinstance(status, int) else status,
                meta.get("start_time"), meta.get("end_time"),
                meta.get("lifecycle_stage") or "active", uris(meta.get("artifact_uri")),
                exp_id, meta.get("deleted_time")))
    db.executemany("INSERT OR IGNORE INTO params VALUES (?, ?, ?)",
                   [(k, v, run_id) for k, v in _values(folder / "params")])
    db.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?, ?)",
                   [(k, v, run_id) for k, v in _values(folder / "tags")])
    for key, text in _values(folder / "metrics"):
        points = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 2:
                value, is_nan = _point(fields[1])
                step = int(fields[2]) if len(fields) > 2 else 0
                points.append((key, value, int(fields[0]), run_id, step, is_nan))
        db.executemany("INSERT OR IGNORE INTO metrics VALUES (?, ?, ?, ?, ?, ?)", points)
        if points:  # stock's latest: the greatest (step, timestamp, value)
            best = max(points, key=lambda p: (p[4], p[2], p[1]))
            db.execute("INSERT INTO latest_metrics VALUES (?, ?, ?, ?, ?, ?)",
                       (key, best[1], best[2], best[4], best[5], run_id))
    for kind in ("inputs", "outputs"):
        base = folder / kind
        if not base.is_dir():
            continue
        for item in sorted(base.iterdir()):
            if not (item / "meta.yaml").is_file():
                continue
            m = _yaml(item / "meta.yaml")
            source_type = m.get("source_type")
            row: tuple[Any, ...]
            if source_type == "DATASET":  # the FileStore writes the run as neither end
                row = (item.name, "DATASET", m.get("source_id"), "RUN", run_id, 0)
            else:
                row = (item.name, source_type, run_id, m.get("destination_type"),
                       m.get("destination_id"), int(m.get("step") or 0))
            db.execute("INSERT OR IGNORE INTO inputs VALUES (?, ?, ?, ?, ?, ?)", row)
            tags = m.get("tags") or {}
            db.executemany("INSERT OR IGNORE INTO input_tags VALUES (?, ?, ?)",
                           [(item.name, k, str(v)) for k, v in sorted(tags.items())])


def _logged_model(db: sqlite3.Connection, exp_id: int, folder: Path, uris: _Uris) -> None:
    meta = _yaml(folder / "meta.yaml")
    model_id = meta.get("model_id") or folder.name
    db.execute("INSERT INTO logged_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (model_id, exp_id, meta.get("name"), uris(meta.get("artifact_location")),
                meta.get("creation_timestamp"), meta.get("last_updated_timestamp"),
                meta.get("status"), meta.get("lifecycle_stage") or "active",
                meta.get("model_type"), meta.get("source_run_id"), meta.get("status_message")))
    db.executemany("INSERT OR IGNORE INTO logged_model_params VALUES (?, ?, ?)",
                   [(model_id, k, v) for k, v in _values(folder / "params")])
    db.executemany("INSERT OR IGNORE INTO logged_model_tags VALUES (?, ?, ?)",
                   [(model_id, k, v) for k, v in _values(folder / "tags")])
    for key, text in _values(folder / "metrics"):
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 4:
                value = float(f[1])
                db.execute(
                    "INSERT OR IGNORE INTO logged_model_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (model_id, key, int(f[0]), int(f[2]), value, f[3],
                     f[4] if len(f) > 4 else None, f[5] if len(f) > 5 else None))


def _registry(db: sqlite3.Connection, models: Path, uris: _Uris) -> None:
    if not models.is_dir():
        return
    for folder in sorted(models.iterdir()):
        if not (folder / "meta.yaml").is_file():
            continue
        meta = _yaml(folder / "meta.yaml")
        name = meta.get("name") or folder.name
        workspace = meta.get("workspace") or "default"
        db.execute("INSERT INTO registered_models VALUES (?, ?, ?, ?, ?)",
                   (name, meta.get("creation_timestamp"), meta.get("last_updated_timestamp"),
                    meta.get("description"), workspace))
        db.executemany("INSERT INTO registered_model_tags VALUES (?, ?, ?, ?)",
                       [(k, v, name, workspace) for k, v in _values(folder / "tags")])
        versions = [p for p in folder.iterdir() if p.name.startswith("version-")
                    and (p / "meta.yaml").is_file()]
        for version in sorted(versions, key=lambda p: int(p.name.removeprefix("version-"))):
            m = _yaml(version / "meta.yaml")
            n = int(m.get("version") or version.name.removeprefix("version-"))
            db.execute("INSERT INTO model_versions VALUES"
                       " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (name, n, m.get("creation_timestamp"), m.get("last_updated_timestamp"),
                        m.get("description"), m.get("user_id"), m.get("current_stage"),
                        uris(m.get("source")), m.get("run_id"), m.get("status"),
                        m.get("status_message"), m.get("run_link"),
                        uris(m.get("storage_location")), workspace))
            db.executemany("INSERT INTO model_version_tags VALUES (?, ?, ?, ?, ?)",
                           [(k, v, name, n, workspace) for k, v in _values(version / "tags")])
        db.executemany("INSERT INTO registered_model_aliases VALUES (?, ?, ?, ?)",
                       [(alias, int(v.strip()), name, workspace)
                        for alias, v in _values(folder / "aliases")])
