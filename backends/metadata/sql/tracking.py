"""The metadata store's logic in SQL, for every dialect.

:class:`SqlMetadataStore` implements every operation of :class:`MetadataStore` over a small
connection protocol (:mod:`backends.metadata.sql.connection`: ``execute`` returning a cursor
with ``fetchone``, ``fetchall`` and ``rowcount``; ``executemany``). Statements use ``?``
placeholders; a driver whose placeholders differ translates them. What the databases spell
differently (upserts, search details) comes from ``_dialect``
(:class:`backends.metadata.sql.dialect.Dialect`). Subclasses own connecting, migrating, and the two
ways in: ``_tx()`` (one write transaction) and ``_read()`` (one read snapshot).

Key/value tables are read in insertion order (the dialect's ``insertion_order``), because
MLflow returns params and tags in the order they were logged.
"""

from __future__ import annotations

import math
import uuid
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from backends import errors
from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.interface.entities import (
    DEFAULT_WORKSPACE,
    Dataset,
    DatasetInput,
    DatasetSummary,
    Experiment,
    LifecycleStage,
    LoggedModel,
    Metric,
    ModelInput,
    ModelOutput,
    Page,
    Param,
    Run,
    RunInfo,
    RunWrite,
    Tag,
    UploadInFlight,
    ViewType,
    now_ms,
)
from backends.metadata.interface.store import MetadataStore, sample_indices
from backends.metadata.interface.validation import int64
from backends.metadata.sql import logged_model_search, search, tracking_search
from backends.metadata.sql.auth import SqlAuthMixin
from backends.metadata.sql.connection import Connection, Row, UniqueViolation
from backends.metadata.sql.dialect import Dialect
from backends.metadata.sql.gc import SqlGcMixin
from backends.metadata.sql.registry import SqlRegistryMixin

__all__ = ["RUN_INFO_COLUMNS", "RunCore", "SqlMetadataStore", "run_info",
           "series_points"]

_MAX_FLOAT = 1.7976931348623157e308
_CHUNK = 500  # ids per IN (...) list
MAX_DATASET_SUMMARIES = 1000  # stock's cap on search_datasets
# Rows up to which a batch counts as small for _in_tx (SQLite runs it on the event loop:
# ~0.25 ms for 30 log-metric requests; a 5,000-point log-batch stays on the thread).
_SMALL_BATCH_ROWS = 256
RUN_NAME_TAG = "mlflow.runName"
# Each is a bound parameter, and PostgreSQL takes at most 32,767 per statement (40,000 ids
# were a 500); stock, through psycopg2's client-side binding, has no such bound.
MAX_SEARCH_EXPERIMENTS = 10_000
T = TypeVar("T")


def _child_uri(base: str, *segments: str) -> str:
    """``base`` with ``segments`` appended to its path, as stock's ``append_to_uri_path``
    does: a query or fragment in ``base`` stays after the path, so it cannot push a run id
    out of it (text concatenation made ``…/artifacts#`` + ``/<run>/artifacts`` still point
    at ``…/artifacts``). A plain path (no scheme, or a Windows drive) is joined as text."""
    parts = urlsplit(base)
    if len(parts.scheme) <= 1:
        return "/".join([base.rstrip("/"), *segments])
    path = "/".join([parts.path.rstrip("/"), *segments])
    if not path.startswith("/"):
        path = "/" + path  # "mlflow-artifacts:" + "1" is "mlflow-artifacts:/1"
    return urlunsplit(parts._replace(path=path))


def stored_value(value: float) -> tuple[float, int]:
    """(value, is_nan) as stored: NaN is 0 with a flag, ±inf is clamped to ±max float."""
    if math.isnan(value):
        return 0.0, 1
    if math.isinf(value):
        return (_MAX_FLOAT if value > 0 else -_MAX_FLOAT), 0
    return value, 0


PreparedMetric = tuple[str, str, float, int, int, int]
# A run as a page loads it first: its info, params and tags (in insertion order), latest
# metrics (in series order), and whether it may have dataset or model inputs or outputs
# (when False, no query for them is made).
RunCore = tuple[RunInfo, tuple[Param, ...], tuple[Tag, ...], tuple[Metric, ...], bool]
# The columns of a RunInfo, from the runs table as ``r``.
RUN_INFO_COLUMNS = ("r.run_id, r.experiment_id, r.run_name, r.user_id, r.status, r.start_time,"
                    " r.end_time, r.artifact_uri, r.lifecycle_stage")


def prepared_metrics(
    rows: Iterable[tuple[str, Metric]],
) -> tuple[list[PreparedMetric], dict[tuple[str, str], PreparedMetric]]:
    """Each (run id, metric) row as stored: (run id, key, value, is NaN, timestamp, step);
    and by (run id, key), the batch's latest point of that series."""
    prepared = []
    # Latest = max of (step, timestamp, value), as stock keeps it: each series' batch
    # maximum (the first of equals, as row-by-row upserts would keep) is upserted once.
    latest: dict[tuple[str, str], PreparedMetric] = {}
    isfinite = math.isfinite
    for run_id, m in rows:
        value, is_nan = m.value, 0
        if not isfinite(value):  # a call less per point for the usual number
            value, is_nan = stored_value(value)
        row = (run_id, m.key, value, is_nan, m.timestamp, m.step)
        prepared.append(row)
        best = latest.get((run_id, m.key))
        if best is None or (m.step, m.timestamp, value) > (best[5], best[4], best[2]):
            latest[(run_id, m.key)] = row
    return prepared, latest


def loaded_value(value: float, is_nan: int) -> float:
    return math.nan if is_nan else value


def run_info(r: Sequence[Any]) -> RunInfo:
    """The RunInfo of a row that starts with :data:`RUN_INFO_COLUMNS`."""
    return RunInfo(run_id=r[0], experiment_id=str(r[1]), run_name=r[2], user_id=r[3],
                   status=r[4], start_time=r[5], end_time=r[6], artifact_uri=r[7],
                   lifecycle_stage=r[8])


def _check_experiment_count(experiment_ids: Sequence[str]) -> None:
    if len(experiment_ids) > MAX_SEARCH_EXPERIMENTS:
        raise errors.InvalidArgument(
            f"The search names {len(experiment_ids)} experiments; at most"
            f" {MAX_SEARCH_EXPERIMENTS} are allowed.")


def series_points(series_id: int, steps: tuple[int, int] | None) -> tuple[str, tuple[int, ...]]:
    """``(condition, parameters)`` selecting one series' points, within ``steps`` if given."""
    if steps is None:
        return "series_id = ?", (series_id,)
    return "series_id = ? AND step BETWEEN ? AND ?", (series_id, *steps)


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SqlMetadataStore(SqlRegistryMixin, SqlAuthMixin, SqlGcMixin, MetadataStore):
    """Every metadata operation, in SQL. Subclasses provide connections."""

    _dialect: Dialect
    # Try tracking_search.build_search_runs_numbers_sql first when ordering by a metric (needs an
    # index on metric_series (key, latest_value), which only the PostgreSQL schema keeps).
    _numbers_first_search = False
    _artifact_root: str = "mlflow-artifacts:"
    # How `mlgate backup` (backends.backup) snapshots the store: "sqlite" (its files) or
    # "postgresql" (COPY of each table); None: it cannot, and refuses the store.
    backup_format: str | None = None
    # Whether `mlgate import` (backends.importer) can write into the store: its staging
    # tables and bulk copies are written for SQLite and PostgreSQL only.
    import_target = True

    @abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Connection]:
        """One write transaction: committed on normal exit, rolled back on an exception."""

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection holding one consistent read snapshot."""

    async def _in_tx(self, body: Callable[[Connection], Coroutine[Any, Any, T]], *,
                     small: bool = False) -> T:
        """``body`` run in one write transaction (``_tx``). SQLite runs it without a trip
        to its connection's thread per statement; ``small`` (a few hundred rows at most)
        lets it run the body on the event loop."""
        async with self._tx() as db:
            return await body(db)

    async def _maybe_refresh_statistics(self) -> None:
        """Called before a run search: a store whose planner needs fresh statistics
        refreshes them here (SQLite). The default does nothing."""

    # -- where `mlgate import` (backends.importer) writes differently ---------------------

    # Writes imported metric points (series_id, timestamp, step, value, is_nan) in the
    # caller's transaction, skipping those already stored, faster than INSERTs do; None:
    # the importer INSERTs them.
    _copy_imported_points: Callable[[Connection, list[tuple[Any, ...]]],
                                    Awaitable[None]] | None = None

    async def _follow_explicit_ids(self, db: Connection) -> None:
        """Make the experiment ids the database generates next follow those an import
        wrote explicitly. The default does nothing: SQLite's AUTOINCREMENT (and MySQL's
        AUTO_INCREMENT) follow explicit ids by themselves."""

    async def _ensure_default_experiment(self, db: Connection) -> None:
        cur = await db.execute("SELECT 1 FROM experiments WHERE experiment_id = 0")
        if await cur.fetchone() is None:
            now = now_ms()
            await db.execute(
                "INSERT INTO experiments (experiment_id, workspace, name, artifact_location,"
                " lifecycle_stage, creation_time, last_update_time)"
                " VALUES (0, ?, 'Default', ?, 'active', ?, ?)",
                (DEFAULT_WORKSPACE, _child_uri(self._artifact_root, "0"), now, now),
            )

    # -- experiments ---------------------------------------------------------------------

    @staticmethod
    def _exp_id(experiment_id: str) -> int:
        try:
            return int64(str(experiment_id).strip())
        except ValueError:
            raise errors.InvalidArgument(
                f"Invalid experiment ID '{experiment_id}'. Experiment ID must be a valid integer."
            ) from None

    async def create_experiment(
        self,
        name: str,
        *,
        artifact_root: str,
        artifact_location: str | None = None,
        tags: Sequence[Tag] = (),
        workspace: str = DEFAULT_WORKSPACE,
    ) -> str:
        now = now_ms()
        async with self._tx() as db:
            try:
                exp_id = await self._dialect.insert_returning(
                    db,
                    "INSERT INTO experiments (workspace, name, artifact_location, lifecycle_stage,"
                    " creation_time, last_update_time) VALUES (?, ?, ?, 'active', ?, ?)",
                    (workspace, name, artifact_location or "", now, now), "experiment_id")
            except UniqueViolation:
                raise errors.AlreadyExists(
                    f"Experiment(name={name}) already exists. Error: UNIQUE constraint failed"
                ) from None
            if not artifact_location:
                await db.execute(
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                    (_child_uri(artifact_root, str(exp_id)), exp_id),
                )
            await db.executemany(
                self._dialect.upsert("experiment_tags", ("experiment_id", "key", "value"),
                    ("experiment_id", "key"), ("value",)),
                [(exp_id, t.key, t.value) for t in tags],
            )
        return str(exp_id)

    async def _load_experiments(
        self, db: Connection, ids: Sequence[int]
    ) -> list[Experiment]:
        rows: dict[int, Row] = {}
        tags: dict[int, list[Tag]] = {}
        for chunk in _chunks(list(ids)):
            cur = await db.execute(
                f"SELECT * FROM experiments WHERE experiment_id IN ({_marks(len(chunk))})", chunk
            )
            for row in await cur.fetchall():
                rows[row["experiment_id"]] = row
            cur = await db.execute(
                "SELECT experiment_id, key, value FROM experiment_tags"
                f" WHERE experiment_id IN ({_marks(len(chunk))}) ORDER BY {self._dialect.insertion_order}",
                chunk,
            )
            for row in await cur.fetchall():
                tags.setdefault(row[0], []).append(Tag(row[1], row[2]))
        return [
            Experiment(
                experiment_id=str(r["experiment_id"]),
                name=r["name"],
                artifact_location=r["artifact_location"],
                lifecycle_stage=r["lifecycle_stage"],
                creation_time=r["creation_time"],
                last_update_time=r["last_update_time"],
                workspace=r["workspace"],
                tags=tuple(tags.get(r["experiment_id"], ())),
            )
            for i in ids
            if (r := rows.get(i)) is not None
        ]

    async def get_experiment(self, experiment_id: str) -> Experiment:
        exp_id = self._exp_id(experiment_id)
        async with self._read() as db:
            found = await self._load_experiments(db, [exp_id])
        if not found:
            raise errors.NotFound(f"No Experiment with id={experiment_id} exists")
        return found[0]

    async def get_experiment_by_name(
        self, name: str, workspace: str = DEFAULT_WORKSPACE
    ) -> Experiment:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT experiment_id FROM experiments WHERE workspace = ? AND name = ?",
                (workspace, name),
            )
            row = await cur.fetchone()
            found = await self._load_experiments(db, [row[0]]) if row else []
        if not found:
            raise errors.NotFound(f"Could not find experiment with name '{name}'")
        return found[0]

    async def search_experiments(
        self,
        *,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        filter_string: str = "",
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
        workspace: str = DEFAULT_WORKSPACE,
        visibility: Visibility | None = None,
    ) -> Page[Experiment]:
        offset = search.decode_page_token(page_token)
        sql, params = tracking_search.build_search_experiments_sql(
            self._dialect, workspace, filter_string, view_type, order_by, max_results, offset,
            visibility,
        )
        async with self._read() as db:
            ids = [row[0] for row in await (await db.execute(sql, params)).fetchall()]
            items = await self._load_experiments(db, ids[:max_results])
        token = search.encode_page_token(offset + max_results) if len(ids) > max_results else None
        return Page(items, token)

    async def _active_experiment(self, db: Connection, exp_id: int) -> Row:
        cur = await db.execute("SELECT * FROM experiments WHERE experiment_id = ?", (exp_id,))
        row = await cur.fetchone()
        if row is None:
            raise errors.NotFound(f"No Experiment with id={exp_id} exists")
        return row

    async def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        exp_id = self._exp_id(experiment_id)
        async with self._tx() as db:
            row = await self._active_experiment(db, exp_id)
            if row["lifecycle_stage"] != LifecycleStage.ACTIVE:
                raise errors.InvalidArgument(
                    "Cannot rename a non-active experiment.")
            try:
                await db.execute(
                    "UPDATE experiments SET name = ?, last_update_time = ? WHERE experiment_id = ?",
                    (new_name, now_ms(), exp_id),
                )
            except UniqueViolation:
                raise errors.AlreadyExists(
                    f"Experiment(name={new_name}) already exists.") from None

    async def _set_experiment_stage(self, experiment_id: str, stage: str) -> None:
        exp_id = self._exp_id(experiment_id)
        now = now_ms()
        async with self._tx() as db:
            await self._active_experiment(db, exp_id)
            await db.execute(
                "UPDATE experiments SET lifecycle_stage = ?, last_update_time = ?"
                " WHERE experiment_id = ?",
                (stage, now, exp_id),
            )
            deleted_time = now if stage == LifecycleStage.DELETED else None
            await db.execute(
                "UPDATE runs SET lifecycle_stage = ?, deleted_time = ? WHERE experiment_id = ?"
                " AND lifecycle_stage != ?",
                (stage, deleted_time, exp_id, stage),
            )

    async def delete_experiment(self, experiment_id: str) -> None:
        await self._set_experiment_stage(experiment_id, LifecycleStage.DELETED)

    async def restore_experiment(self, experiment_id: str) -> None:
        await self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE)

    async def set_experiment_tag(self, experiment_id: str, tag: Tag) -> None:
        exp_id = self._exp_id(experiment_id)
        async with self._tx() as db:
            row = await self._active_experiment(db, exp_id)
            if row["lifecycle_stage"] != LifecycleStage.ACTIVE:
                raise errors.InvalidArgument(
                    f"The experiment {exp_id} must be in the 'active' state. "
                    f"Current state is {row['lifecycle_stage']}."
                )
            await db.execute(
                self._dialect.upsert("experiment_tags", ("experiment_id", "key", "value"),
                    ("experiment_id", "key"), ("value",)),
                (exp_id, tag.key, tag.value),
            )

    async def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        exp_id = self._exp_id(experiment_id)
        async with self._tx() as db:
            row = await self._active_experiment(db, exp_id)
            if row["lifecycle_stage"] != LifecycleStage.ACTIVE:
                raise errors.InvalidArgument(
                    f"The experiment {exp_id} must be in the 'active' state. "
                    f"Current state is {row['lifecycle_stage']}."
                )
            cur = await db.execute(
                "DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?", (exp_id, key)
            )
            if cur.rowcount == 0:
                raise errors.NotFound(f"No tag with name: {key} in experiment with id {exp_id}")

    # -- runs ----------------------------------------------------------------------------

    async def create_run(
        self,
        experiment_id: str,
        *,
        user_id: str,
        run_name: str,
        start_time: int,
        tags: Sequence[Tag] = (),
    ) -> Run:
        exp_id = self._exp_id(experiment_id)
        run_id = uuid.uuid4().hex
        async with self._tx() as db:
            exp = await self._active_experiment(db, exp_id)
            if exp["lifecycle_stage"] != LifecycleStage.ACTIVE:
                raise errors.InvalidArgument(
                    f"The experiment {exp_id} must be in the 'active' state. "
                    f"Current state is {exp['lifecycle_stage']}."
                )
            artifact_uri = _child_uri(exp["artifact_location"], run_id, "artifacts")
            await db.execute(
                "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
                " artifact_uri, lifecycle_stage) VALUES (?, ?, ?, ?, 'RUNNING', ?, ?, 'active')",
                (run_id, exp_id, run_name, user_id, start_time, artifact_uri),
            )
            all_tags = {t.key: t.value for t in tags}
            all_tags[RUN_NAME_TAG] = run_name
            await db.executemany(
                "INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in all_tags.items()],
            )
            runs = await self._load_runs(db, [run_id])
        return runs[0]

    async def _load_runs(self, db: Connection, run_ids: Sequence[str]) -> list[Run]:
        cores = await self._load_run_cores(db, run_ids)
        linked = [rid for rid in dict.fromkeys(run_ids) if rid in cores and cores[rid][4]]
        dataset_inputs, model_inputs, model_outputs = await self._load_run_links(db, linked)
        return [
            Run(
                info=cores[rid][0],
                metrics=cores[rid][3],
                params=cores[rid][1],
                tags=cores[rid][2],
                dataset_inputs=tuple(dataset_inputs.get(rid, ())),
                model_inputs=tuple(model_inputs.get(rid, ())),
                model_outputs=tuple(model_outputs.get(rid, ())),
            )
            for rid in run_ids
            if rid in cores
        ]

    async def _load_run_cores(self, db: Connection, run_ids: Sequence[str]) -> dict[str, RunCore]:
        """By run id, each existing run's :data:`RunCore`. This one reads each table with
        a query of its own and flags every run as linked; a network store overrides it with
        one statement per page, as a round trip there costs more than the queries."""
        infos: dict[str, RunInfo] = {}
        params: dict[str, list[Param]] = {}
        tags: dict[str, list[Tag]] = {}
        metrics: dict[str, list[Metric]] = {}
        # fetch_rows (positional rows) where names are not needed: a search loads up to
        # 1000 runs this way.
        for ids in _chunks(list(run_ids)):
            marks, chunk = self._dialect.among(ids)
            for r in await db.fetch_rows(
                    f"SELECT {RUN_INFO_COLUMNS} FROM runs r WHERE run_id {marks}", chunk):
                infos[r[0]] = run_info(r)
            for r in await db.fetch_rows(
                f"SELECT run_id, key, value FROM run_params WHERE run_id {marks}"
                f" ORDER BY {self._dialect.insertion_order}", chunk):
                params.setdefault(r[0], []).append(Param(r[1], r[2]))
            for r in await db.fetch_rows(
                f"SELECT run_id, key, value FROM run_tags WHERE run_id {marks}"
                f" ORDER BY {self._dialect.insertion_order}", chunk):
                tags.setdefault(r[0], []).append(Tag(r[1], r[2]))
            for r in await db.fetch_rows(
                "SELECT run_id, key, latest_value, latest_is_nan, latest_timestamp, latest_step"
                f" FROM metric_series WHERE run_id {marks}"
                f" ORDER BY {self._dialect.unindexed('series_id')}", chunk):
                metrics.setdefault(r[0], []).append(
                    Metric(r[1], loaded_value(r[2], r[3]), r[4], r[5])
                )
        return {rid: (info, tuple(params.get(rid, ())), tuple(tags.get(rid, ())),
                      tuple(metrics.get(rid, ())), True) for rid, info in infos.items()}

    async def _load_run_links(self, db: Connection, run_ids: Sequence[str]) -> tuple[
        dict[str, list[DatasetInput]], dict[str, list[ModelInput]], dict[str, list[ModelOutput]]
    ]:
        """By run id, the dataset inputs, model inputs and model outputs of ``run_ids``."""
        dataset_inputs: dict[str, list[DatasetInput]] = {}
        model_inputs: dict[str, list[ModelInput]] = {}
        model_outputs: dict[str, list[ModelOutput]] = {}
        for ids in _chunks(list(run_ids)):
            marks, chunk = self._dialect.among(ids)
            cur = await db.execute(
                "SELECT i.run_id, d.*, i.position FROM run_dataset_inputs i"
                " JOIN datasets d ON d.dataset_id = i.dataset_id"
                f" WHERE i.run_id {marks} ORDER BY i.run_id, i.position", chunk)
            ds_rows = list(await cur.fetchall())
            input_tags: dict[tuple[str, int], list[Tag]] = {}
            if ds_rows:  # dataset input tags exist only with dataset inputs
                for r in await db.fetch_rows(
                    "SELECT run_id, dataset_id, key, value FROM run_dataset_input_tags"
                    f" WHERE run_id {marks} ORDER BY {self._dialect.insertion_order}", chunk):
                    input_tags.setdefault((r[0], r[1]), []).append(Tag(r[2], r[3]))
            for r in ds_rows:
                ds = Dataset(r["name"], r["digest"], r["source_type"], r["source"],
                             r["schema"], r["profile"])
                dataset_inputs.setdefault(r["run_id"], []).append(
                    DatasetInput(ds, tuple(input_tags.get((r["run_id"], r["dataset_id"]), ())))
                )
            for r in await db.fetch_rows(
                f"SELECT run_id, model_id FROM run_model_inputs WHERE run_id {marks}"
                " ORDER BY model_id", chunk):
                model_inputs.setdefault(r[0], []).append(ModelInput(r[1]))
            for r in await db.fetch_rows(
                f"SELECT run_id, model_id, step FROM run_model_outputs WHERE run_id {marks}"
                " ORDER BY step, model_id", chunk):
                model_outputs.setdefault(r[0], []).append(ModelOutput(r[1], r[2]))
        return dataset_inputs, model_inputs, model_outputs

    async def get_run(self, run_id: str) -> Run:
        async with self._read() as db:
            runs = await self._load_runs(db, [run_id])
        if not runs:
            raise _run_missing(run_id)
        return runs[0]

    async def _run_row(self, db: Connection, run_id: str) -> Row:
        cur = await db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = await cur.fetchone()
        if row is None:
            raise _run_missing(run_id)
        return row

    async def _active_run(self, db: Connection, run_id: str) -> Row:
        row = await self._run_row(db, run_id)
        if (error := _run_unwritable(run_id, row["lifecycle_stage"])) is not None:
            raise error
        return row

    async def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        async with self._tx() as db:
            await self._active_run(db, run_id)
            sets: list[str] = []
            values: list[Any] = []
            if status is not None:
                sets.append("status = ?")
                values.append(status)
            if end_time is not None:
                sets.append("end_time = ?")
                values.append(end_time)
            if run_name:
                sets.append("run_name = ?")
                values.append(run_name)
                await self._upsert_tags(db, [(run_id, Tag(RUN_NAME_TAG, run_name))])
            if sets:
                await db.execute(
                    f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", (*values, run_id)
                )
            runs = await self._load_runs(db, [run_id])
        return runs[0].info

    async def _set_run_stage(self, run_id: str, stage: str) -> None:
        async with self._tx() as db:
            await self._run_row(db, run_id)
            await db.execute(
                "UPDATE runs SET lifecycle_stage = ?, deleted_time = ? WHERE run_id = ?",
                (stage, now_ms() if stage == LifecycleStage.DELETED else None, run_id),
            )

    async def delete_run(self, run_id: str) -> None:
        await self._set_run_stage(run_id, LifecycleStage.DELETED)

    async def restore_run(self, run_id: str) -> None:
        await self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    async def _upsert_tags(self, db: Connection, rows: Sequence[tuple[str, Tag]]) -> None:
        """Later rows win, as if each were set in turn."""
        # In run order, so that concurrent batches naming the same runs lock their rows in
        # the same order instead of deadlocking (InnoDB). Within a run the logged order
        # stays: it is the order tags are read back in.
        rows = sorted(rows, key=lambda r: r[0])
        await db.executemany(
            self._dialect.upsert("run_tags", ("run_id", "key", "value"), ("run_id", "key"),
                ("value",)),
            [(run_id, t.key, t.value) for run_id, t in rows],
        )
        for run_id, t in rows:
            if t.key == RUN_NAME_TAG:
                await db.execute("UPDATE runs SET run_name = ? WHERE run_id = ?",
                                 (t.value, run_id))

    async def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[Tag] = (),
    ) -> None:
        [error] = await self.log_batches([RunWrite(run_id, metrics, params, tags)])
        if error is not None:
            raise error

    async def log_batches(self, writes: Sequence[RunWrite]) -> list[errors.BackendError | None]:
        return await self._in_tx(lambda db: self._log_batches_in(db, writes),
                                 small=sum(w.rows for w in writes) <= _SMALL_BATCH_ROWS)

    async def _log_batches_in(
        self, db: Connection, writes: Sequence[RunWrite]
    ) -> list[errors.BackendError | None]:
        """The body of :meth:`log_batches`, inside a write transaction on ``db``."""
        verdicts: list[errors.BackendError | None] = [None] * len(writes)
        states = await self._run_states(db, {w.run_id for w in writes})
        logged = await self._logged_params(
            db, {(w.run_id, p.key) for w in writes for p in w.params})
        model_ids = {m.model_id for w in writes for m in w.metrics if m.model_id}
        known_models = await self._known_models(db, model_ids)
        accepted: list[RunWrite] = []
        new_params: list[tuple[str, str, str, int]] = []
        for i, w in enumerate(writes):
            state = states.get(w.run_id)
            error = _check_write(w, None if state is None else state[0], logged, known_models)
            if error is not None:
                verdicts[i] = error
                continue
            assert state is not None
            for p in w.params:
                if (w.run_id, p.key) not in logged:
                    logged[(w.run_id, p.key)] = p.value
                    new_params.append((w.run_id, p.key, p.value, state[1]))
            accepted.append(w)
        if new_params:
            new_params.sort(key=lambda p: p[0])  # run order: see _upsert_tags
            await db.executemany(
                "INSERT INTO run_params (run_id, key, value, experiment_id)"
                " VALUES (?, ?, ?, ?)", new_params)
        metric_rows = [(w.run_id, m) for w in accepted for m in w.metrics]
        if metric_rows:
            await self._insert_metrics(db, metric_rows)
            await self._insert_model_metrics(db, metric_rows)
        tag_rows = [(w.run_id, t) for w in accepted for t in w.tags]
        if tag_rows:
            await self._upsert_tags(db, tag_rows)
        return verdicts

    async def _run_states(self, db: Connection,
                          run_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """run id -> (lifecycle stage, experiment id), for the runs that exist."""
        states: dict[str, tuple[str, int]] = {}
        for ids in _chunks(sorted(run_ids)):
            among, chunk = self._dialect.among(ids)  # one statement whatever the batch's run count
            cur = await db.execute(
                f"SELECT run_id, lifecycle_stage, experiment_id FROM runs WHERE run_id {among}",
                chunk,
            )
            states.update({r[0]: (r[1], r[2]) for r in await cur.fetchall()})
        return states

    @staticmethod
    async def _logged_params(
        db: Connection, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        by_run: dict[str, list[str]] = {}
        for run_id, key in keys:
            by_run.setdefault(run_id, []).append(key)
        logged: dict[tuple[str, str], str] = {}
        for run_id, run_keys in by_run.items():
            for chunk in _chunks(sorted(run_keys)):
                cur = await db.execute(
                    "SELECT key, value FROM run_params WHERE run_id = ?"
                    f" AND key IN ({_marks(len(chunk))})",
                    (run_id, *chunk),
                )
                logged.update({(run_id, r[0]): r[1] for r in await cur.fetchall()})
        return logged

    @staticmethod
    async def _known_models(db: Connection, model_ids: Iterable[str]) -> set[str]:
        known: set[str] = set()
        for chunk in _chunks(sorted(model_ids)):
            cur = await db.execute(
                f"SELECT model_id FROM logged_models WHERE model_id IN ({_marks(len(chunk))})",
                chunk,
            )
            known.update(r[0] for r in await cur.fetchall())
        return known

    async def _insert_metrics(
        self, db: Connection, rows: Sequence[tuple[str, Metric]]
    ) -> None:
        """Upsert each (run, key) series with its latest point, then insert the points;
        identical points are skipped by the primary key."""
        prepared, latest = prepared_metrics(rows)
        await db.executemany(
            self._dialect.upsert(
                "metric_series",
                ("run_id", "key", "latest_value", "latest_is_nan", "latest_timestamp",
                 "latest_step"),
                ("run_id", "key"),
                ("latest_value", "latest_is_nan", "latest_timestamp", "latest_step"),
                when="({new}.latest_step, {new}.latest_timestamp, {new}.latest_value)"
                     " > ({old}.latest_step, {old}.latest_timestamp, {old}.latest_value)"),
            [latest[k] for k in sorted(latest)],  # key order (see _upsert_tags)
        )
        series: dict[tuple[str, str], int] = {}
        pairs = sorted(latest)
        for chunk in _chunks(pairs, _CHUNK // 2):
            # A list of row values, not IN (VALUES ...), which MySQL 8 spells VALUES ROW().
            # SQLite would check the list against every entry of the (run_id, key) index;
            # the runs' own condition makes it search that index by run.
            among, runs = self._dialect.among(sorted({run_id for run_id, _ in chunk}))
            cur = await db.execute(
                f"SELECT run_id, key, series_id FROM metric_series WHERE run_id {among}"
                f" AND (run_id, key) IN ({', '.join(['(?, ?)'] * len(chunk))})",
                [*runs, *(v for pair in chunk for v in pair)],
            )
            for r in await cur.fetchall():
                series[(r[0], r[1])] = r[2]
        await db.executemany(
            self._dialect.insert_ignore("metric_points",
                ("series_id", "timestamp", "step", "value", "is_nan")),
            sorted((series[(run_id, key)], ts, step, value, is_nan)  # see _upsert_tags
                   for run_id, key, value, is_nan, ts, step in prepared),
        )

    async def delete_tag(self, run_id: str, key: str) -> None:
        async with self._tx() as db:
            await self._active_run(db, run_id)
            cur = await db.execute(
                "DELETE FROM run_tags WHERE run_id = ? AND key = ?", (run_id, key)
            )
            if cur.rowcount == 0:
                raise errors.NotFound(f"No tag with name: {key} in run with id {run_id}")

    async def get_metric_history(
        self,
        run_id: str,
        key: str,
        *,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[Metric]:
        page = await self.get_metric_history_points(
            run_id, key, max_results=max_results, page_token=page_token)
        nan = math.nan
        return Page([Metric(key, nan if value is None else value, ts, step, run_id=run_id)
                     for ts, step, value in page.items], page.next_page_token)

    async def get_metric_history_points(
        self,
        run_id: str,
        key: str,
        *,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[tuple[int, int, float | None]]:
        offset = search.decode_page_token(page_token)
        # No portable "no limit"; the one row more tells whether a page follows, and may
        # not pass the 64-bit LIMIT (max_results may be 2**63 - 1).
        limit = 2**62 if max_results is None else min(max_results + 1, 2**62)
        async with self._read() as db:
            await self._run_row(db, run_id)
            items = await self._history_rows(db, run_id, key, limit, offset)
        token = None
        if max_results is not None and len(items) > max_results:
            items = items[:max_results]
            token = search.encode_page_token(offset + max_results)
        return Page(items, token)

    # The points of one series in history order. The series id is a scalar subquery, not a
    # join: both databases then read the points straight off the primary key (whose last
    # column is is_nan) in this order, without a sort.
    _HISTORY_POINTS = (
        " FROM metric_points WHERE series_id ="
        " (SELECT series_id FROM metric_series WHERE run_id = ? AND key = ?)"
        " ORDER BY timestamp, step, value, is_nan"
    )

    async def _history_rows(
        self, db: Connection, run_id: str, key: str, limit: int, offset: int
    ) -> list[Any]:
        """``(timestamp, step, value or None for NaN)`` rows of one page of a history, as the
        driver gives them (no copy per point)."""
        # The CASE gets an alias: PostgreSQL would name it "value" (after its ELSE), and
        # ORDER BY value would then sort by it instead of reading the primary key in order.
        return await db.fetch_rows(
            "SELECT timestamp, step, CASE WHEN is_nan <> 0 THEN NULL ELSE value END AS point"
            f"{self._HISTORY_POINTS} LIMIT ? OFFSET ?",
            (run_id, key, limit, offset),
        )

    async def sample_metric_history(
        self,
        run_ids: Sequence[str],
        key: str,
        *,
        max_results: int,
        steps: tuple[int, int] | None = None,
    ) -> list[Metric]:
        async def sample(db: Connection) -> list[Metric]:
            out: list[Metric] = []
            for run_id in run_ids:
                rows = await db.fetch_rows(
                    "SELECT series_id FROM metric_series WHERE run_id = ? AND key = ?",
                    (run_id, key))
                if rows:
                    out += [Metric(key, loaded_value(value, is_nan), ts, step, run_id=run_id)
                            for ts, step, value, is_nan in
                            await self._sampled_points(db, rows[0][0], max_results, steps)]
            return out

        async with self._read() as db:
            return await sample(db)

    async def _sampled_points(self, db: Connection, series_id: int, buckets: int,
                              steps: tuple[int, int] | None) -> Sequence[Any]:
        """``(timestamp, step, value, is_nan)`` of the points of one series that
        :func:`sample_indices` picks, in (step, timestamp, value, is_nan) order: numbered by
        a window over that order, then filtered, all in the database."""
        where, params = series_points(series_id, steps)
        count = (await db.fetch_rows(f"SELECT count(*) FROM metric_points WHERE {where}",
                                     params))[0][0]
        picks = sample_indices(count, buckets)
        if not picks:
            return []
        # Planned for these picks: a generic plan searches the 320 parameters one by one
        # for each point instead of hashing them (PostgreSQL, 100k points: 0.4-0.8 s, not 70 ms).
        await self._plan_for_these_values(db)
        return await db.fetch_rows(
            "SELECT timestamp, step, value, is_nan FROM (SELECT timestamp, step, value, is_nan,"
            " row_number() OVER (ORDER BY step, timestamp, value, is_nan) - 1 AS i"
            f" FROM metric_points WHERE {where}) numbered WHERE i IN ({_marks(len(picks))})"
            " ORDER BY i",
            (*params, *picks))

    async def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str = "",
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
        visibility: Visibility | None = None,
    ) -> Page[Run]:
        _check_experiment_count(experiment_ids)
        offset = search.decode_page_token(page_token)
        exp_ids = [self._exp_id(e) for e in experiment_ids]
        await self._maybe_refresh_statistics()
        args = (self._dialect, exp_ids, filter_string, view_type, order_by, max_results,
                offset, visibility)
        numbers = tracking_search.build_search_runs_numbers_sql(*args) \
            if self._numbers_first_search else None

        async def page(db: Connection) -> tuple[list[Run], bool]:
            await self._plan_for_these_values(db)
            ids: list[str] = []
            if numbers is not None:
                ids = [row[0] for row in await db.fetch_rows(*numbers)]
            if len(ids) <= max_results:  # no fast path, or the page reaches past the numbers
                sql, params = tracking_search.build_search_runs_sql(*args)
                ids = [row[0] for row in await db.fetch_rows(sql, params)]
            await self._plan_for_page_load(db)
            return await self._load_runs(db, ids[:max_results]), len(ids) > max_results

        async with self._read() as db:
            runs, more = await page(db)
        token = search.encode_page_token(offset + max_results) if more else None
        return Page(runs, token)

    async def _plan_for_page_load(self, db: Connection) -> None:
        """Plan the queries that load a search's page (PostgreSQL: generic plans)."""

    async def _plan_for_these_values(self, db: Connection) -> None:
        """Make the database plan the next queries of this transaction for their actual
        parameter values (a search's best plan depends on how many runs an experiment has
        and on the page size). SQLite always does."""

    async def log_inputs(
        self,
        run_id: str,
        *,
        datasets: Sequence[DatasetInput] = (),
        models: Sequence[ModelInput] = (),
    ) -> None:
        async with self._tx() as db:
            run = await self._active_run(db, run_id)
            exp_id = run["experiment_id"]
            cur = await db.execute(
                "SELECT COALESCE(MAX(position), -1) FROM run_dataset_inputs WHERE run_id = ?",
                (run_id,),
            )
            row = await cur.fetchone()
            position = int(row[0]) + 1 if row else 0
            for item in datasets:
                ds = item.dataset
                await db.execute(
                    self._dialect.insert_ignore("datasets",
                        ("experiment_id", "name", "digest", "source_type", "source", "schema",
                         "profile"),
                        ("experiment_id", "name", "digest")),
                    (exp_id, ds.name, ds.digest, ds.source_type, ds.source, ds.schema,
                     ds.profile),
                )
                cur = await db.execute(
                    "SELECT dataset_id FROM datasets WHERE experiment_id = ? AND name = ?"
                    " AND digest = ?", (exp_id, ds.name, ds.digest))
                ds_row = await cur.fetchone()
                assert ds_row is not None
                dataset_id = ds_row[0]
                cur = await db.execute(
                    self._dialect.insert_ignore("run_dataset_inputs",
                        ("run_id", "dataset_id", "position")),
                    (run_id, dataset_id, position),
                )
                if cur.rowcount:
                    position += 1
                await db.executemany(
                    self._dialect.upsert("run_dataset_input_tags",
                        ("run_id", "dataset_id", "key", "value"), ("run_id", "dataset_id", "key"),
                        ("value",)),
                    [(run_id, dataset_id, t.key, t.value) for t in item.tags],
                )
            await db.executemany(
                self._dialect.insert_ignore("run_model_inputs", ("run_id", "model_id")),
                [(run_id, m.model_id) for m in models],
            )

    async def search_datasets(self, experiment_ids: Sequence[str]) -> list[DatasetSummary]:
        exp_ids = sorted({self._exp_id(e) for e in experiment_ids})
        if not exp_ids:
            return []
        # The context tag is a left join: an input without one is listed with None.
        async with self._read() as db:
            rows = await db.fetch_rows(
                "SELECT DISTINCT d.dataset_id, d.experiment_id, d.name, d.digest, t.value"
                " FROM datasets d JOIN run_dataset_inputs i ON i.dataset_id = d.dataset_id"
                " LEFT JOIN run_dataset_input_tags t ON t.run_id = i.run_id"
                " AND t.dataset_id = i.dataset_id AND t.key = ?"
                f" WHERE d.experiment_id IN ({_marks(len(exp_ids))})"
                f" ORDER BY d.dataset_id, t.value LIMIT {MAX_DATASET_SUMMARIES}",
                (tracking_search.DATASET_CONTEXT_TAG, *exp_ids))
        return [DatasetSummary(str(r[1]), r[2], r[3], r[4]) for r in rows]

    async def log_outputs(self, run_id: str, models: Sequence[ModelOutput]) -> None:
        async with self._tx() as db:
            await self._active_run(db, run_id)
            await db.executemany(
                self._dialect.upsert("run_model_outputs", ("run_id", "model_id", "step"),
                    ("run_id", "model_id"), ("step",)),
                [(run_id, m.model_id, m.step) for m in models],
            )

    # -- uploads in flight ---------------------------------------------------------------

    async def heartbeat(self, owner: str, host: str, pid: int, alive_until_ms: int) -> None:
        async with self._tx() as db:
            await db.execute(
                self._dialect.upsert("mlgate_processes",
                    ("owner", "host", "pid", "started_ms", "alive_until_ms"), ("owner",),
                    ("alive_until_ms",)),
                (owner, host, pid, now_ms(), alive_until_ms))

    async def heartbeats(self) -> dict[str, int]:
        async with self._read() as db:
            cur = await db.execute("SELECT owner, alive_until_ms FROM mlgate_processes")
            return {row[0]: int(row[1]) for row in await cur.fetchall()}

    async def forget_owner(self, owner: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM mlgate_processes WHERE owner = ?", (owner,))

    async def forget_owners_before(self, alive_until_ms: int) -> None:
        async with self._tx() as db:
            await db.execute(
                "DELETE FROM mlgate_processes WHERE alive_until_ms < ?", (alive_until_ms,))

    async def begin_upload(self, upload: UploadInFlight) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO mlgate_uploads (upload_id, path, owner, started_ms)"
                " VALUES (?, ?, ?, ?)",
                (upload.upload_id, upload.path, upload.owner, upload.started_ms))

    async def end_upload(self, upload_id: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM mlgate_uploads WHERE upload_id = ?", (upload_id,))

    async def uploads_in_flight(self) -> list[UploadInFlight]:
        async with self._read() as db:
            cur = await db.execute(
                "SELECT upload_id, path, owner, started_ms FROM mlgate_uploads"
                " ORDER BY started_ms, upload_id")
            return [UploadInFlight(r[0], r[1], r[2], int(r[3])) for r in await cur.fetchall()]

    # -- logged models -------------------------------------------------------------------

    async def _insert_model_metrics(self, db: Connection,
                                    rows: Sequence[tuple[str, Metric]]) -> None:
        """Metrics that name a logged model also go to its metrics (models checked by the
        caller)."""
        linked = []
        for run_id, m in rows:
            if m.model_id:
                value, is_nan = stored_value(m.value)
                linked.append((m.model_id, m.key, m.timestamp, m.step, run_id, value, is_nan,
                               m.dataset_name, m.dataset_digest))
        if not linked:
            return
        await db.executemany(
            self._dialect.upsert("logged_model_metrics",
                ("model_id", "key", "timestamp", "step", "run_id", "value", "is_nan",
                 "dataset_name", "dataset_digest"),
                ("model_id", "key", "timestamp", "step", "run_id"),
                ("value", "is_nan", "dataset_name", "dataset_digest")),
            linked,
        )

    async def _load_models(
        self, db: Connection, model_ids: Sequence[str]
    ) -> list[LoggedModel]:
        rows: dict[str, Row] = {}
        tags: dict[str, list[Tag]] = {}
        params: dict[str, list[Param]] = {}
        metrics: dict[str, list[Metric]] = {}
        for chunk in _chunks(list(model_ids)):
            marks = _marks(len(chunk))
            cur = await db.execute(f"SELECT * FROM logged_models WHERE model_id IN ({marks})",
                                   chunk)
            rows.update({r["model_id"]: r for r in await cur.fetchall()})
            cur = await db.execute(
                f"SELECT model_id, key, value FROM logged_model_tags WHERE model_id IN ({marks})"
                " ORDER BY key", chunk)  # stock returns a logged model's tags by key
            for r in await cur.fetchall():
                tags.setdefault(r[0], []).append(Tag(r[1], r[2]))
            cur = await db.execute(
                "SELECT model_id, key, value FROM logged_model_params"
                f" WHERE model_id IN ({marks}) ORDER BY {self._dialect.insertion_order}", chunk)
            for r in await cur.fetchall():
                params.setdefault(r[0], []).append(Param(r[1], r[2]))
            cur = await db.execute(
                "SELECT * FROM logged_model_metrics"
                f" WHERE model_id IN ({marks}) ORDER BY key, timestamp, step, run_id", chunk)
            for r in await cur.fetchall():
                metrics.setdefault(r["model_id"], []).append(Metric(
                    r["key"], loaded_value(r["value"], r["is_nan"]), r["timestamp"], r["step"],
                    model_id=r["model_id"], dataset_name=r["dataset_name"],
                    dataset_digest=r["dataset_digest"], run_id=r["run_id"],
                ))
        out = []
        for mid in model_ids:
            row = rows.get(mid)
            if row is None:
                continue
            r = row
            out.append(LoggedModel(
                model_id=mid,
                experiment_id=str(r["experiment_id"]),
                name=r["name"],
                artifact_uri=r["artifact_location"],
                creation_timestamp_ms=r["creation_timestamp_ms"],
                last_updated_timestamp_ms=r["last_updated_timestamp_ms"],
                status=r["status"],
                model_type=r["model_type"] or "",
                source_run_id=r["source_run_id"],
                status_message=r["status_message"],
                lifecycle_stage=r["lifecycle_stage"],
                tags=tuple(tags.get(mid, ())),
                params=tuple(params.get(mid, ())),
                metrics=tuple(metrics.get(mid, ())),
            ))
        return out

    async def create_logged_model(
        self,
        experiment_id: str,
        *,
        name: str,
        model_type: str = "",
        source_run_id: str | None = None,
        params: Sequence[Param] = (),
        tags: Sequence[Tag] = (),
    ) -> LoggedModel:
        exp_id = self._exp_id(experiment_id)
        model_id = f"m-{uuid.uuid4().hex}"
        now = now_ms()
        async with self._tx() as db:
            exp = await self._active_experiment(db, exp_id)
            if exp["lifecycle_stage"] != LifecycleStage.ACTIVE:
                raise errors.InvalidArgument(
                    f"The experiment {exp_id} must be in the 'active' state. "
                    f"Current state is {exp['lifecycle_stage']}."
                )
            location = _child_uri(exp["artifact_location"], "models", model_id, "artifacts")
            await db.execute(
                "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,"
                " creation_timestamp_ms, last_updated_timestamp_ms, status, model_type,"
                " source_run_id) VALUES (?, ?, ?, ?, ?, ?, 'LOGGED_MODEL_PENDING', ?, ?)",
                (model_id, exp_id, name, location, now, now, model_type, source_run_id),
            )
            await db.executemany(
                self._dialect.upsert("logged_model_params", ("model_id", "key", "value"),
                    ("model_id", "key"), ("value",)), [(model_id, p.key, p.value) for p in params])
            await db.executemany(
                self._dialect.upsert("logged_model_tags", ("model_id", "key", "value"),
                    ("model_id", "key"), ("value",)),
                [(model_id, t.key, t.value) for t in tags])
            return (await self._load_models(db, [model_id]))[0]

    async def _model_row(self, db: Connection, model_id: str,
                         allow_deleted: bool = False) -> Row:
        cur = await db.execute("SELECT * FROM logged_models WHERE model_id = ?", (model_id,))
        row = await cur.fetchone()
        if row is None or (not allow_deleted and row["lifecycle_stage"] != LifecycleStage.ACTIVE):
            raise errors.NotFound(f"Logged model with ID '{model_id}' not found.")
        return row

    async def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        async with self._read() as db:
            await self._model_row(db, model_id, allow_deleted)
            return (await self._load_models(db, [model_id]))[0]

    async def finalize_logged_model(self, model_id: str, status: str) -> LoggedModel:
        async with self._tx() as db:
            await self._model_row(db, model_id)
            await db.execute(
                "UPDATE logged_models SET status = ?, last_updated_timestamp_ms = ?"
                " WHERE model_id = ?", (status, now_ms(), model_id))
            return (await self._load_models(db, [model_id]))[0]

    async def delete_logged_model(self, model_id: str) -> None:
        async with self._tx() as db:
            await self._model_row(db, model_id)
            await db.execute(
                "UPDATE logged_models SET lifecycle_stage = 'deleted',"
                " last_updated_timestamp_ms = ? WHERE model_id = ?", (now_ms(), model_id))

    async def set_logged_model_tags(self, model_id: str, tags: Sequence[Tag]) -> None:
        async with self._tx() as db:
            await self._model_row(db, model_id)
            await db.executemany(
                self._dialect.upsert("logged_model_tags", ("model_id", "key", "value"),
                    ("model_id", "key"), ("value",)),
                [(model_id, t.key, t.value) for t in tags])
            await db.execute("UPDATE logged_models SET last_updated_timestamp_ms = ?"
                             " WHERE model_id = ?", (now_ms(), model_id))

    async def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        async with self._tx() as db:
            await self._model_row(db, model_id)
            cur = await db.execute(
                "DELETE FROM logged_model_tags WHERE model_id = ? AND key = ?", (model_id, key))
            if cur.rowcount == 0:
                raise errors.NotFound(
                    f"No tag with key {key!r} found for model with ID {model_id!r}.")

    async def log_logged_model_params(self, model_id: str, params: Sequence[Param]) -> None:
        async with self._tx() as db:
            await self._model_row(db, model_id)
            cur = await db.execute(
                "SELECT key, value FROM logged_model_params WHERE model_id = ?", (model_id,))
            existing = {r[0]: r[1] for r in await cur.fetchall()}
            for p in params:
                if p.key in existing and existing[p.key] != p.value:
                    raise errors.Conflict(
                        f"Changing param values is not allowed. Param with key='{p.key}' was "
                        f"already logged with value='{existing[p.key]}' for model ID="
                        f"'{model_id}'. Attempted logging new value '{p.value}'.")
            await db.executemany(
                self._dialect.insert_ignore("logged_model_params", ("model_id", "key", "value")),
                    [(model_id, p.key, p.value) for p in params])

    async def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str = "",
        datasets: Sequence[dict[str, str]] = (),
        max_results: int = 100,
        order_by: Sequence[dict[str, object]] = (),
        page_token: str | None = None,
        visibility: Visibility | None = None,
    ) -> Page[LoggedModel]:
        _check_experiment_count(experiment_ids)
        exp_ids = [self._exp_id(e) for e in experiment_ids]
        offset = logged_model_search.decode_page_token(
            page_token, exp_ids, filter_string, order_by)
        sql, params = logged_model_search.build_search_logged_models_sql(
            self._dialect, exp_ids, filter_string, datasets, order_by, max_results, offset,
            visibility)
        async with self._read() as db:
            ids = [row[0] for row in await (await db.execute(sql, params)).fetchall()]
            models = await self._load_models(db, ids[:max_results])
        token = None
        if len(ids) > max_results:
            token = logged_model_search.encode_page_token(
                offset + max_results, exp_ids, filter_string, order_by)
        return Page(models, token)


def _run_missing(run_id: str) -> errors.NotFound:
    return errors.NotFound(f"Run with id={run_id} not found")


def _run_unwritable(run_id: str, stage: str | None) -> errors.BackendError | None:
    """Why a run with this lifecycle stage (None: no such run) takes no writes, or None."""
    if stage is None:
        return _run_missing(run_id)
    if stage != LifecycleStage.ACTIVE:
        return errors.InvalidArgument(
            f"The run {run_id} must be in the 'active' state. Current state is {stage}."
        )
    return None


def _check_write(
    write: RunWrite,
    stage: str | None,
    logged: dict[tuple[str, str], str],
    known_models: set[str],
) -> errors.BackendError | None:
    """What :meth:`SqlMetadataStore.log_batch` would refuse about ``write``, or None."""
    run_id = write.run_id
    if (error := _run_unwritable(run_id, stage)) is not None:
        return error
    for p in write.params:
        old = logged.get((run_id, p.key))
        if old is not None and old != p.value:
            return errors.Conflict(
                f"Changing param values is not allowed. Param with key='{p.key}' was already "
                f"logged with value='{old}' for run ID='{run_id}'. Attempted logging new value "
                f"'{p.value}'."
            )
    for m in write.metrics:
        if m.model_id and m.model_id not in known_models:
            return errors.NotFound(f"Logged model with ID '{m.model_id}' not found.")
    return None
