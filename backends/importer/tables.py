"""What each stock table becomes in mlgate's schema, in the order they are imported.

Each :class:`Table` names a stock table, the columns read from it (with what to read in
their place on an older revision that lacks them), and how a chunk of its rows is written
into mlgate's tables. Writes ignore rows already there (``ON CONFLICT DO NOTHING``), so a
chunk written twice changes nothing; experiments are upserted, so stock's Default
experiment replaces the one mlgate creates.

Stock keys some things differently: datasets by a uuid (mlgate: an integer id found by
experiment, name and digest), metric points by (run, key, ...) (mlgate: a series id per run
and key), dataset inputs and their tags by an input uuid (mlgate: run and dataset), logged
model statuses by number (mlgate: the proto's name). :class:`Context` holds the lookups
that translate them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.importer.sources import StockReader
from backends.metadata.sql.connection import Connection

__all__ = ["TABLES", "Column", "Context", "Rows", "Table", "select_list"]

_MAX_FLOAT = 1.7976931348623157e308
_LOGGED_MODEL_STATUS = {0: "LOGGED_MODEL_STATUS_UNSPECIFIED", 1: "LOGGED_MODEL_PENDING",
                        2: "LOGGED_MODEL_READY", 3: "LOGGED_MODEL_UPLOAD_FAILED"}
_CHUNK = 400  # keys per IN (...) list


@dataclass(frozen=True)
class Column:
    name: str
    missing: str = "NULL"  # SQL read instead when the source's revision lacks the column


@dataclass
class Context:
    """Lookups shared by the tables' writers; filled by their ``prepare`` steps."""

    reader: StockReader
    copy_points: Callable[[Connection, list[tuple[Any, ...]]], Awaitable[None]] | None = None
    run_experiment: dict[str, int] = field(default_factory=dict)
    series: dict[tuple[str, str], int] = field(default_factory=dict)
    dataset_key: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # uuid → key
    dataset_id: dict[tuple[int, str, str], int] = field(default_factory=dict)
    dataset_input: dict[str, tuple[str, str]] = field(default_factory=dict)  # → (run, uuid)


# A chunk of source rows: the table's columns, then the row's position (ignored here).
Rows = Sequence[Sequence[Any]]
Writer = Callable[[Context, Connection, Rows], Awaitable[None]]
# A table's preparation runs on the event loop (it may read the source), and reaches the
# destination through the callable it is given, which runs a body in a transaction there.
OnDestination = Callable[[Callable[[Connection], Coroutine[Any, Any, Any]]], Awaitable[Any]]
Prepare = Callable[[Context, OnDestination], Awaitable[None]]


@dataclass(frozen=True)
class Table:
    entity: str  # the progress record's and the report's name
    source: str  # the stock table
    columns: tuple[Column, ...]
    write: Writer
    prepare: Prepare | None = None  # before the first chunk (and again on a resume)


def _cols(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n) for n in names)


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _point(value: float | None, is_nan: Any) -> tuple[float, int]:
    """A value as mlgate stores it: stock already keeps NaN as 0 with is_nan and ±inf as
    ±max float; a logged model's metric (a nullable column without is_nan) may be NULL,
    NaN or infinite."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0, 1
    if math.isinf(value):
        return (_MAX_FLOAT if value > 0 else -_MAX_FLOAT), 0
    return float(value), int(bool(is_nan))


# -- experiments and runs ------------------------------------------------------------------


async def _workspaces(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO auth_workspaces (name, description, created_at) VALUES (?, ?, 0)"
        " ON CONFLICT (name) DO NOTHING", [(r[0], r[1] or "") for r in rows])


async def _experiments(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO experiments (experiment_id, workspace, name, artifact_location,"
        " lifecycle_stage, creation_time, last_update_time) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (experiment_id) DO UPDATE SET workspace = excluded.workspace,"
        " name = excluded.name, artifact_location = excluded.artifact_location,"
        " lifecycle_stage = excluded.lifecycle_stage, creation_time = excluded.creation_time,"
        " last_update_time = excluded.last_update_time",
        [(int(r[0]), r[6] or "default", r[1], r[2] or "", r[3] or "active", r[4], r[5])
         for r in rows])


async def _experiment_tags(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (experiment_id, key) DO NOTHING",
        [(int(r[2]), r[0], r[1]) for r in rows])


async def _runs(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
        " end_time, artifact_uri, lifecycle_stage, deleted_time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
        [(r[0], int(r[8]), r[1] or "", r[2] or "", r[3] or "RUNNING", r[4], r[5], r[7] or "",
          r[6] or "active", r[9]) for r in rows])


async def _load_run_experiments(ctx: Context, on_destination: OnDestination) -> None:
    rows = await on_destination(lambda db: db.fetch_rows("SELECT run_id, experiment_id FROM runs"))
    ctx.run_experiment = {r[0]: int(r[1]) for r in rows}


async def _params(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO run_params (run_id, key, value, experiment_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (run_id, key) DO NOTHING",
        [(r[2], r[0], r[1], ctx.run_experiment[r[2]]) for r in rows])


async def _tags(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (run_id, key) DO NOTHING", [(r[2], r[0], r[1]) for r in rows])


# -- metrics -------------------------------------------------------------------------------


async def _latest_metrics(ctx: Context, db: Connection, rows: Rows) -> None:
    # Series ids come from the destination in the order inserted: runs/get lists a run's
    # metrics by series id, as stock lists its latest_metrics rows in theirs.
    await db.executemany(
        "INSERT INTO metric_series (run_id, key, latest_value, latest_is_nan,"
        " latest_timestamp, latest_step) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, key) DO NOTHING",
        [(r[5], r[0], *_point(r[1], r[4]), r[2] or 0, r[3] or 0) for r in rows])


async def _load_series(ctx: Context, on_destination: OnDestination) -> None:
    rows = await on_destination(
        lambda db: db.fetch_rows("SELECT run_id, key, series_id FROM metric_series"))
    ctx.series = {(r[0], r[1]): int(r[2]) for r in rows}


async def _missing_series(ctx: Context, db: Connection, rows: Rows) -> None:
    """Series for points whose run has no latest_metrics row (a source written by something
    other than stock's store): the latest of this chunk's points, raised by later chunks."""
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    for r in rows:
        pair = (r[5], r[0])
        if pair in ctx.series:
            continue
        value, is_nan = _point(r[1], r[4])
        best = latest.get(pair)
        if best is None or (r[3], r[2], value) > (best[5], best[4], best[2]):
            latest[pair] = (r[5], r[0], value, is_nan, r[2], r[3])
    if not latest:
        return
    await db.executemany(
        "INSERT INTO metric_series (run_id, key, latest_value, latest_is_nan,"
        " latest_timestamp, latest_step) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, key) DO UPDATE SET latest_value = excluded.latest_value,"
        " latest_is_nan = excluded.latest_is_nan, latest_timestamp = excluded.latest_timestamp,"
        " latest_step = excluded.latest_step", list(latest.values()))
    for run_id, key in latest:
        found = await db.fetch_rows(
            "SELECT series_id FROM metric_series WHERE run_id = ? AND key = ?", (run_id, key))
        ctx.series[(run_id, key)] = int(found[0][0])


async def _metrics(ctx: Context, db: Connection, rows: Rows) -> None:
    series = ctx.series
    if any((r[5], r[0]) not in series for r in rows):
        await _missing_series(ctx, db, rows)
    # Stock stores NaN as 0 with is_nan and ±inf as ±max float, as mlgate does.
    points = [(series[(r[5], r[0])], r[2], r[3], float(r[1]), int(r[4])) for r in rows]
    if ctx.copy_points is not None:
        await ctx.copy_points(db, points)
        return
    await db.executemany(
        "INSERT INTO metric_points (series_id, timestamp, step, value, is_nan)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", points)


# -- datasets and inputs -------------------------------------------------------------------


async def _datasets(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO datasets (experiment_id, name, digest, source_type, source, schema,"
        " profile) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (experiment_id, name, digest) DO NOTHING",
        [(int(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows])


async def _load_datasets(ctx: Context, on_destination: OnDestination) -> None:
    if "datasets" in await ctx.reader.tables():
        ctx.dataset_key = {r[0]: (int(r[1]), r[2], r[3]) for r in await ctx.reader.fetch(
            "SELECT dataset_uuid, experiment_id, name, digest FROM datasets")}
    rows = await on_destination(
        lambda db: db.fetch_rows("SELECT experiment_id, name, digest, dataset_id FROM datasets"))
    ctx.dataset_id = {(int(r[0]), r[1], r[2]): int(r[3]) for r in rows}


async def _inputs(ctx: Context, db: Connection, rows: Rows) -> None:
    # r: input_uuid, source_type, source_id, destination_type, destination_id, step
    datasets = [r for r in rows if r[1] == "DATASET" and r[3] == "RUN"]
    if datasets:
        run_ids = sorted({r[4] for r in datasets})
        position: dict[str, int] = {}
        for i in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[i:i + _CHUNK]
            for found in await db.fetch_rows(
                    "SELECT run_id, MAX(position) FROM run_dataset_inputs"
                    f" WHERE run_id IN ({_marks(len(chunk))}) GROUP BY run_id", chunk):
                position[found[0]] = int(found[1]) + 1
        out = []
        for r in datasets:
            dataset_id = ctx.dataset_id[ctx.dataset_key[r[2]]]
            at = position.get(r[4], 0)
            position[r[4]] = at + 1
            out.append((r[4], dataset_id, at))
        await db.executemany(
            "INSERT INTO run_dataset_inputs (run_id, dataset_id, position) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING", out)
    await db.executemany(
        "INSERT INTO run_model_inputs (run_id, model_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(r[2], r[4]) for r in rows if r[1] == "RUN_INPUT" and r[3] == "MODEL_INPUT"])
    await db.executemany(
        "INSERT INTO run_model_outputs (run_id, model_id, step) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [(r[2], r[4], int(r[5] or 0)) for r in rows
         if r[1] == "RUN_OUTPUT" and r[3] == "MODEL_OUTPUT"])


async def _load_inputs(ctx: Context, on_destination: OnDestination) -> None:
    await _load_datasets(ctx, on_destination)
    if "inputs" in await ctx.reader.tables():
        ctx.dataset_input = {r[0]: (r[1], r[2]) for r in await ctx.reader.fetch(
            "SELECT input_uuid, destination_id, source_id FROM inputs"
            " WHERE source_type = 'DATASET' AND destination_type = 'RUN'")}


async def _input_tags(ctx: Context, db: Connection, rows: Rows) -> None:
    out = []
    for input_uuid, name, value, *_ in rows:
        found = ctx.dataset_input.get(input_uuid)
        if found is not None:  # stock writes tags only for dataset inputs
            run_id, dataset_uuid = found
            out.append((run_id, ctx.dataset_id[ctx.dataset_key[dataset_uuid]], name, value))
    await db.executemany(
        "INSERT INTO run_dataset_input_tags (run_id, dataset_id, key, value)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", out)


# -- logged models -------------------------------------------------------------------------


async def _logged_models(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,"
        " creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage,"
        " model_type, source_run_id, status_message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_id) DO NOTHING",
        [(r[0], int(r[1]), r[2], r[3], r[4], r[5],
          _LOGGED_MODEL_STATUS.get(int(r[6] or 0), "LOGGED_MODEL_STATUS_UNSPECIFIED"),
          r[7] or "active", r[8], r[9], r[10]) for r in rows])


async def _logged_model_params(ctx: Context, db: Connection,
                               rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO logged_model_params (model_id, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (model_id, key) DO NOTHING", [(r[0], r[1], r[2]) for r in rows])


async def _logged_model_tags(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO logged_model_tags (model_id, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (model_id, key) DO NOTHING", [(r[0], r[1], r[2]) for r in rows])


async def _logged_model_metrics(ctx: Context, db: Connection,
                                rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO logged_model_metrics (model_id, key, timestamp, step, run_id, value,"
        " is_nan, dataset_name, dataset_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (model_id, key, timestamp, step, run_id) DO NOTHING",
        [(r[0], r[1], r[2], r[3], r[5], *_point(r[4], 0), r[6], r[7]) for r in rows])


# -- model registry (prompts are registered models with mlflow.prompt.is_prompt) ------------


async def _registered_models(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO registered_models (workspace, name, creation_timestamp,"
        " last_updated_timestamp, description) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace, name) DO NOTHING",
        [(r[4] or "default", r[0], r[1] or 0, r[2] or r[1] or 0, r[3]) for r in rows])


async def _registered_model_tags(ctx: Context, db: Connection,
                                 rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO registered_model_tags (workspace, name, key, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (workspace, name, key) DO NOTHING",
        [(r[3] or "default", r[2], r[0], r[1]) for r in rows])


def _model_id(source: str | None) -> str | None:
    """The logged model a version was registered from (``models:/m-<id>``): stock keeps no
    column for it, mlgate does (to find what references a logged model's artifacts)."""
    if source and source.startswith("models:/m-"):
        rest = source.removeprefix("models:/")
        return rest.split("/", 1)[0]
    return None


async def _model_versions(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO model_versions (workspace, name, version, creation_timestamp,"
        " last_updated_timestamp, description, user_id, current_stage, source,"
        " storage_location, run_id, run_link, status, status_message, model_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace, name, version) DO NOTHING",
        [(r[13] or "default", r[0], int(r[1]), r[2] or 0, r[3] or r[2] or 0, r[4], r[5],
          r[6] or "None", r[7], r[12], r[8], r[11], r[9] or "READY", r[10], _model_id(r[7]))
         for r in rows])


async def _model_version_tags(ctx: Context, db: Connection,
                              rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO model_version_tags (workspace, name, version, key, value)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace, name, version, key) DO NOTHING",
        [(r[4] or "default", r[2], int(r[3]), r[0], r[1]) for r in rows])


async def _aliases(ctx: Context, db: Connection, rows: Rows) -> None:
    await db.executemany(
        "INSERT INTO registered_model_aliases (workspace, name, alias, version)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (workspace, name, alias) DO NOTHING",
        [(r[3] or "default", r[2], r[0], int(r[1])) for r in rows])


_WS = Column("workspace", "'default'")

TABLES: tuple[Table, ...] = (
    Table("workspaces", "workspaces", _cols("name", "description"), _workspaces),
    Table("experiments", "experiments",
          (*_cols("experiment_id", "name", "artifact_location", "lifecycle_stage",
                  "creation_time", "last_update_time"), _WS), _experiments),
    Table("experiment_tags", "experiment_tags", _cols("key", "value", "experiment_id"),
          _experiment_tags),
    Table("runs", "runs",
          _cols("run_uuid", "name", "user_id", "status", "start_time", "end_time",
                "lifecycle_stage", "artifact_uri", "experiment_id", "deleted_time"), _runs),
    Table("params", "params", _cols("key", "value", "run_uuid"), _params,
          _load_run_experiments),
    Table("tags", "tags", _cols("key", "value", "run_uuid"), _tags),
    Table("latest_metrics", "latest_metrics",
          _cols("key", "value", "timestamp", "step", "is_nan", "run_uuid"), _latest_metrics),
    Table("metrics", "metrics", _cols("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
          _metrics, _load_series),
    Table("datasets", "datasets",
          _cols("dataset_uuid", "experiment_id", "name", "digest", "dataset_source_type",
                "dataset_source", "dataset_schema", "dataset_profile"), _datasets),
    Table("inputs", "inputs",
          (*_cols("input_uuid", "source_type", "source_id", "destination_type",
                  "destination_id"), Column("step", "0")), _inputs, _load_inputs),
    Table("input_tags", "input_tags", _cols("input_uuid", "name", "value"), _input_tags,
          _load_inputs),
    Table("logged_models", "logged_models",
          _cols("model_id", "experiment_id", "name", "artifact_location",
                "creation_timestamp_ms", "last_updated_timestamp_ms", "status",
                "lifecycle_stage", "model_type", "source_run_id", "status_message"),
          _logged_models),
    Table("logged_model_params", "logged_model_params",
          _cols("model_id", "param_key", "param_value"), _logged_model_params),
    Table("logged_model_tags", "logged_model_tags", _cols("model_id", "tag_key", "tag_value"),
          _logged_model_tags),
    Table("logged_model_metrics", "logged_model_metrics",
          _cols("model_id", "metric_name", "metric_timestamp_ms", "metric_step",
                "metric_value", "run_id", "dataset_name", "dataset_digest"),
          _logged_model_metrics),
    Table("registered_models", "registered_models",
          (*_cols("name", "creation_time", "last_updated_time", "description"), _WS),
          _registered_models),
    Table("registered_model_tags", "registered_model_tags",
          (*_cols("key", "value", "name"), _WS), _registered_model_tags),
    Table("model_versions", "model_versions",
          (*_cols("name", "version", "creation_time", "last_updated_time", "description",
                  "user_id", "current_stage", "source", "run_id", "status", "status_message",
                  "run_link"), Column("storage_location"), _WS), _model_versions),
    Table("model_version_tags", "model_version_tags",
          (*_cols("key", "value", "name", "version"), _WS), _model_version_tags),
    Table("registered_model_aliases", "registered_model_aliases",
          (*_cols("alias", "version", "name"), _WS), _aliases),
)


def select_list(table: Table, present: set[str]) -> Sequence[str]:
    """The SQL read for each of ``table``'s columns, given the source's columns."""
    return [f'"{c.name}"' if c.name in present else c.missing for c in table.columns]
