"""Garbage collection's store methods (:class:`~backends.metadata.interface.gc.GcStore`) in SQL
that SQLite and PostgreSQL both run. Mixed into ``SqlMetadataStore``."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from backends import errors
from backends.metadata.interface.entities import LifecycleStage, now_ms
from backends.metadata.interface.gc import GcExperiment, GcLoggedModel, GcRun, GcStore
from backends.metadata.interface.registry_entities import STAGE_DELETED
from backends.metadata.interface.validation import int64
from backends.metadata.sql.dialect import Dialect

__all__ = ["SqlGcMixin"]

T = TypeVar("T")
_CHUNK = 500  # ids per IN (...) list
_DELETED = LifecycleStage.DELETED

_RUN_COLS = "run_id, experiment_id, artifact_uri, lifecycle_stage, deleted_time"
_EXP_COLS = "experiment_id, artifact_location, lifecycle_stage, last_update_time"


def _referenced(m: str) -> str:
    """Whether a model version that is not deleted names logged model ``m`` (a table or
    alias), by id or by its files: then they are not the model's alone."""
    return ("EXISTS (SELECT 1 FROM model_versions v"
            f" WHERE v.current_stage != '{STAGE_DELETED}' AND (v.model_id = {m}.model_id"
            f" OR v.source = 'models:/' || {m}.model_id OR v.source = {m}.artifact_location"
            f" OR v.storage_location = {m}.artifact_location"
            f" OR v.source LIKE {m}.artifact_location || '/%'))")


_MODEL_COLS = ("m.model_id, m.experiment_id, m.artifact_location, m.lifecycle_stage,"
               f" m.last_updated_timestamp_ms, {_referenced('m')}")

# A deleted run's series, and the first points of one series in primary key order. The
# ORDER BY makes each planner walk the key: on 10M points with stale statistics PostgreSQL
# took a join of the run's series to the whole table for a hash join and a sequential
# scan (1-2 s a chunk). How the DELETE finds the listed rows is the dialect's.
_RUN_SERIES = ("SELECT s.series_id FROM runs r JOIN metric_series s ON s.run_id = r.run_id"
               f" WHERE r.run_id = ? AND r.lifecycle_stage = '{_DELETED}' ORDER BY s.series_id")
_FIRST_POINTS = ("FROM metric_points WHERE series_id = ?"
                 " ORDER BY timestamp, step, value, is_nan LIMIT ?")

def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _exp_ids(ids: Sequence[str]) -> list[int]:
    try:
        return [int64(str(e).strip()) for e in ids]
    except ValueError:
        raise errors.InvalidArgument(
            f"Invalid experiment IDs {list(ids)}: each must be a valid integer.") from None


def _run(r: Any) -> GcRun:
    return GcRun(r[0], str(r[1]), r[2], r[3], r[4])


def _model(r: Any) -> GcLoggedModel:
    return GcLoggedModel(r[0], str(r[1]), r[2], r[3], r[4], bool(r[5]))


class SqlGcMixin(GcStore):
    """Every collection operation, in SQL."""

    _dialect: Dialect

    @abstractmethod
    async def _in_tx(self, body: Callable[[Any], Coroutine[Any, Any, T]], *,
                     small: bool = False) -> T: ...

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Any]: ...

    async def _after_purge(self) -> None:
        """Called after each chunk of points a collection deleted, outside its transaction;
        SQLite checkpoints there. Does nothing by default."""

    async def _select(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._read() as db:
            return list(await (await db.execute(sql, params)).fetchall())

    async def gc_runs(self, *, run_ids: Sequence[str] | None = None,
                      experiment_ids: Sequence[str] | None = None) -> list[GcRun]:
        order = " ORDER BY deleted_time, run_id"
        if run_ids is not None:
            rows = []
            for chunk in _chunks(list(dict.fromkeys(run_ids))):
                rows += await self._select(
                    f"SELECT {_RUN_COLS} FROM runs WHERE run_id IN ({_marks(len(chunk))})",
                    chunk)
            return sorted((_run(r) for r in rows),
                          key=lambda r: (r.deleted_time or 0, r.run_id))
        sql = f"SELECT {_RUN_COLS} FROM runs WHERE lifecycle_stage = '{_DELETED}'"
        if experiment_ids is None:
            return [_run(r) for r in await self._select(sql + order)]
        ids = _exp_ids(experiment_ids)
        if not ids:
            return []
        return [_run(r) for r in await self._select(
            f"{sql} AND experiment_id IN ({_marks(len(ids))}){order}", ids)]

    async def gc_experiments(self, experiment_ids: Sequence[str] | None = None
                             ) -> list[GcExperiment]:
        if experiment_ids is None:
            rows = await self._select(
                f"SELECT {_EXP_COLS} FROM experiments WHERE lifecycle_stage = '{_DELETED}'"
                " ORDER BY experiment_id")
        else:
            ids = _exp_ids(experiment_ids)
            rows = await self._select(
                f"SELECT {_EXP_COLS} FROM experiments WHERE experiment_id IN"
                f" ({_marks(len(ids))}) ORDER BY experiment_id", ids) if ids else []
        return [GcExperiment(str(r[0]), r[1], r[2], r[3]) for r in rows]

    async def gc_logged_models(self, *, model_ids: Sequence[str] | None = None,
                               experiment_ids: Sequence[str] | None = None
                               ) -> list[GcLoggedModel]:
        base = f"SELECT {_MODEL_COLS} FROM logged_models m"
        order = " ORDER BY m.model_id"
        if model_ids is not None:
            rows = []
            for chunk in _chunks(list(dict.fromkeys(model_ids))):
                rows += await self._select(
                    f"{base} WHERE m.model_id IN ({_marks(len(chunk))}){order}", chunk)
        elif experiment_ids is not None:
            ids = _exp_ids(experiment_ids)
            rows = await self._select(
                f"{base} WHERE m.experiment_id IN ({_marks(len(ids))}){order}",
                ids) if ids else []
        else:
            rows = await self._select(f"{base} WHERE m.lifecycle_stage = '{_DELETED}'{order}")
        return [_model(r) for r in rows]

    async def purge_run_points(self, run_id: str, limit: int) -> int:
        purge = self._dialect.delete_first_points(_FIRST_POINTS)

        async def body(db: Any) -> int:
            left = limit
            for row in await (await db.execute(_RUN_SERIES, (run_id,))).fetchall():
                left -= (await db.execute(purge, (row[0], left))).rowcount
                if left <= 0:
                    break
                # Emptied: the series row goes too, so the next chunk starts at the next.
                await db.execute("DELETE FROM metric_series WHERE series_id = ?", (row[0],))
            return limit - left

        deleted = await self._in_tx(body)
        await self._after_purge()
        return deleted

    async def purge_runs(self, run_ids: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(run_ids))

        async def body(db: Any) -> list[str]:
            gone: list[str] = []
            for chunk in _chunks(ids):
                gone += await self._dialect.delete_returning(
                    db, "runs", f"run_id IN ({_marks(len(chunk))})"
                    f" AND lifecycle_stage = '{_DELETED}'", chunk, "run_id")
            return gone

        return await self._in_tx(body) if ids else []

    async def purge_logged_models(self, model_ids: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(model_ids))

        async def body(db: Any) -> list[str]:
            gone: list[str] = []
            for chunk in _chunks(ids):
                gone += await self._dialect.delete_returning(
                    db, "logged_models", f"model_id IN ({_marks(len(chunk))})"
                    f" AND (lifecycle_stage = '{_DELETED}' OR experiment_id IN ("
                    " SELECT experiment_id FROM experiments"
                    f" WHERE lifecycle_stage = '{_DELETED}'))"
                    f" AND NOT {_referenced('logged_models')}", chunk, "model_id")
            return gone

        return await self._in_tx(body) if ids else []

    async def purge_experiments(self, experiment_ids: Sequence[str]) -> list[str]:
        ids = _exp_ids(experiment_ids)

        async def body(db: Any) -> list[str]:
            gone = await self._dialect.delete_returning(
                db, "experiments", f"experiment_id IN ({_marks(len(ids))})"
                f" AND lifecycle_stage = '{_DELETED}'"
                " AND NOT EXISTS (SELECT 1 FROM runs r"
                " WHERE r.experiment_id = experiments.experiment_id)"
                " AND NOT EXISTS (SELECT 1 FROM logged_models m"
                " WHERE m.experiment_id = experiments.experiment_id)", ids, "experiment_id")
            return [str(i) for i in gone]

        return await self._in_tx(body) if ids else []

    async def take_lease(self, name: str, holder: str, until_ms: int) -> bool:
        async def body(db: Any) -> bool:
            await db.execute(
                self._dialect.upsert(
                    "mlgate_leases", ("name", "holder", "until_ms"), ("name",),
                    ("holder", "until_ms"),
                    when="{old}.holder = {new}.holder OR {old}.until_ms < ?"),
                (name, holder, until_ms, now_ms()))
            # Read back, not the rowcount: MySQL counts a renewal to the same time as no row.
            cur = await db.execute("SELECT holder FROM mlgate_leases WHERE name = ?", (name,))
            row = await cur.fetchone()
            return row is not None and row[0] == holder

        return await self._in_tx(body, small=True)

    async def release_lease(self, name: str, holder: str) -> None:
        async def body(db: Any) -> None:
            await db.execute("DELETE FROM mlgate_leases WHERE name = ? AND holder = ?",
                             (name, holder))

        await self._in_tx(body, small=True)
