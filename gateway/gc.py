"""Garbage collection: deletes for good the runs, experiments and logged models the API
marked deleted, and their artifacts (``mlgate gc``, and ``serve --gc-interval``).

What goes follows stock's ``mlflow gc``: runs deleted at least ``older_than`` ago (by the
time they were deleted), experiments deleted that long ago (by their last update) with all
their runs and logged models, and logged models deleted that long ago. Named runs,
experiments or models (``--run-ids``…) must be deleted and old enough, or nothing goes.
Unlike stock, naming some narrows the collection to them. A logged model that a model
version still names keeps its files and its row until that version goes.

Each thing goes in this order, so that a crash anywhere leaves only deleted things that
the API still answers for, and a second collection finishes the job:

1. its artifact folder (``<experiment>/<run_id>``, ``<experiment>/models/<model_id>``),
   checked again to be deleted just before: files without a row pointing at them would
   be found by no later collection, while a row without files reads as an empty folder;
2. a run's metric points, a chunk at a time, each chunk its own short write transaction,
   with a pause after it (:class:`Pace`), so the writers serving requests get their turn
   (SQLite has one writer);
3. the rows, a few runs per transaction (their points are gone, so it is quick).

Only one process collects at a time for a database: the ``gc`` lease
(:meth:`~backends.metadata.interface.gc.GcStore.take_lease`), renewed as it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.artifacts.base import ArtifactStore
from backends.metadata.interface.entities import now_ms
from backends.metadata.interface.gc import GcExperiment, GcLoggedModel, GcRun
from backends.metadata.interface.store import MetadataStore
from backends.registry import artifact_scheme, open_artifact_store
from gateway.artifact_paths import (
    Location,
    ServedRoots,
    logged_model_root,
    run_root,
    served_roots,
)
from gateway.errors import MlflowError
from gateway.settings import Settings, duration_ms

__all__ = ["BESIDE_SQLITE_SERVER", "IN_SERVER", "GcError", "GcPlan", "GcReport", "GcSweeper",
           "Pace", "collect", "parse_duration", "plan"]

log = logging.getLogger("mlgate.gc")

LEASE = "gc"
LEASE_SECONDS = 60.0
RUNS_PER_BATCH = 50


@dataclass(frozen=True)
class Pace:
    """How gc shares the writer: ``points`` per chunk, then a pause ``rest`` times as long as
    the chunk took (its wait for the lock included), at most ``max_pause`` seconds."""

    points: int = 2000
    rest: float = 1.0
    max_pause: float = 0.01


# In the server, chunks queue fairly behind request writes on the one writer connection.
IN_SERVER = Pace()
# From another process on SQLite the server's writer takes the lock back through SQLite's
# busy handler, whose sleeps grow (1, 2, 5, 10… ms): every chunk costs it more than the
# chunk, so chunks are small and the server gets the lock two thirds of the time.
BESIDE_SQLITE_SERVER = Pace(points=1000, rest=2.0, max_pause=0.02)
_DELETED = "deleted"


class GcError(ValueError):
    """What was asked cannot be collected (a named run is active, too young, unknown…)."""


def parse_duration(text: str) -> int:
    """Stock's ``--older-than`` (``1d2h3m4s``, each part optional) in milliseconds."""
    ms = duration_ms(text)
    if ms is None:
        raise GcError(f"Could not parse any time information from '{text}'. Examples of "
                      "valid strings: '8h', '2d8h5m20s', '2m4s'")
    return ms


@dataclass
class GcPlan:
    """What a collection deletes, and the models it keeps because a version names them."""

    runs: list[GcRun] = field(default_factory=list)
    logged_models: list[GcLoggedModel] = field(default_factory=list)
    experiments: list[GcExperiment] = field(default_factory=list)
    kept_models: list[GcLoggedModel] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [r.run_id for r in self.runs],
                "logged_models": [m.model_id for m in self.logged_models],
                "experiments": [e.experiment_id for e in self.experiments],
                "kept_logged_models": [m.model_id for m in self.kept_models]}


@dataclass
class GcReport:
    """What a collection deleted."""

    runs: list[str] = field(default_factory=list)
    logged_models: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    metric_points: int = 0
    artifact_folders: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "logged_models": self.logged_models,
                "experiments": self.experiments, "metric_points": self.metric_points,
                "artifact_folders": self.artifact_folders, "warnings": self.warnings}


async def plan(store: MetadataStore, *, older_than_ms: int | None = None,
               run_ids: Sequence[str] | None = None,
               experiment_ids: Sequence[str] | None = None,
               logged_model_ids: Sequence[str] | None = None) -> GcPlan:
    """What to delete, by stock's rules (see the module docstring). Raises :class:`GcError`
    for a named run, experiment or model that is unknown, not deleted, or too young."""
    threshold = now_ms() - (older_than_ms or 0)
    narrowed = any(x is not None for x in (run_ids, experiment_ids, logged_model_ids))

    def check(kind: str, ident: str, stage: str, when: int | None) -> None:
        if stage != _DELETED:
            raise GcError(f"{kind} {ident} is not in the deleted lifecycle stage. Only "
                          f"{kind.lower()}s in the deleted lifecycle stage can be deleted.")
        if older_than_ms is not None and (when is None or when > threshold):
            raise GcError(f"{kind} {ident} is not older than the required age.")

    def missing(kind: str, asked: Sequence[str], found: set[str]) -> None:
        unknown = [i for i in asked if i not in found]
        if unknown:
            raise GcError(f"{kind} {', '.join(unknown)} not found.")

    result = GcPlan()
    runs: dict[str, GcRun] = {}
    if run_ids is not None:
        named = await store.gc_runs(run_ids=run_ids)
        missing("Run", run_ids, {r.run_id for r in named})
        for r in named:
            check("Run", r.run_id, r.lifecycle_stage, r.deleted_time)
            runs[r.run_id] = r
    elif not narrowed:
        for r in await store.gc_runs():
            if r.deleted_time is not None and r.deleted_time <= threshold:
                runs[r.run_id] = r

    if experiment_ids is not None:
        experiments = await store.gc_experiments(experiment_ids)
        missing("Experiment", experiment_ids, {e.experiment_id for e in experiments})
        for e in experiments:
            check("Experiment", e.experiment_id, e.lifecycle_stage, e.last_update_time)
    elif not narrowed:
        experiments = [e for e in await store.gc_experiments()
                       if older_than_ms is None or (e.last_update_time or 0) < threshold]
    else:
        experiments = []
    exp_ids = [e.experiment_id for e in experiments]
    models: dict[str, GcLoggedModel] = {}
    if exp_ids:
        # Stock takes every deleted run of a collected experiment, however recent.
        for r in await store.gc_runs(experiment_ids=exp_ids):
            runs.setdefault(r.run_id, r)
        for m in await store.gc_logged_models(experiment_ids=exp_ids):
            models[m.model_id] = m

    if logged_model_ids is not None:
        named_models = await store.gc_logged_models(model_ids=logged_model_ids)
        missing("Logged model", logged_model_ids, {m.model_id for m in named_models})
        for m in named_models:
            check("Logged model", m.model_id, m.lifecycle_stage, m.last_updated_ms)
            models[m.model_id] = m
    elif not narrowed:
        for m in await store.gc_logged_models():
            if m.last_updated_ms <= threshold:
                models.setdefault(m.model_id, m)

    result.runs = sorted(runs.values(), key=lambda r: (r.deleted_time or 0, r.run_id))
    result.logged_models = [m for m in models.values() if not m.referenced]
    result.kept_models = [m for m in models.values() if m.referenced]
    result.experiments = experiments
    return result


class _Folders:
    """Where an owner's artifact folder is, and deleting it: in the artifacts destination
    for proxied roots, through a store opened on the root's parent for direct ones."""

    def __init__(self, settings: Settings, destination: ArtifactStore | None) -> None:
        self._settings = settings
        self._destination = destination
        self._direct: dict[str, ArtifactStore] = {}

    async def delete(self, root: Location) -> bool:
        """Delete the folder that holds ``root`` (``…/<run_id>`` for ``…/<run_id>/artifacts``).
        Returns whether anything was there."""
        folder = root.segments[:-1]
        if root.scheme == "mlflow-artifacts" and not root.host:
            if self._destination is None:
                raise GcError("artifacts are proxied but no artifacts destination is open")
            return await self._destination.delete_tree("/".join(folder))
        parent = Location(root.scheme, root.host, folder[:-1], root.plain)
        store = self._direct.get(parent.uri)
        if store is None:
            options = {}
            if artifact_scheme(parent.uri) == artifact_scheme(
                    self._settings.artifacts_destination):
                options = self._settings.artifact_store_options()
            store = open_artifact_store(parent.uri, **options)
            await store.open()
            self._direct[parent.uri] = store
        return await store.delete_tree(folder[-1])

    async def aclose(self) -> None:
        for store in self._direct.values():
            with contextlib.suppress(Exception):
                await store.aclose()
        self._direct.clear()


class _Lease:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self.holder = uuid.uuid4().hex
        self._renewed = 0.0

    async def take(self) -> bool:
        self._renewed = time.monotonic()
        return await self._store.take_lease(
            LEASE, self.holder, now_ms() + int(LEASE_SECONDS * 1000))

    async def keep(self) -> None:
        """Renew once a sixth of the lease has passed; raise if another process took it."""
        if time.monotonic() - self._renewed > LEASE_SECONDS / 6 and not await self.take():
            raise GcError("lost the gc lease to another process")

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self._store.release_lease(LEASE, self.holder)


async def collect(store: MetadataStore, artifacts: ArtifactStore | None, settings: Settings,
                  todo: GcPlan, *, pace: Pace = IN_SERVER,
                  progress: Callable[[int], None] | None = None) -> GcReport:
    """Delete what ``todo`` lists, in the order the module docstring gives. ``artifacts`` is
    the open artifacts destination (``None`` when the server does not proxy artifacts).
    ``progress`` is called with 1 after each run. Raises :class:`GcError` when another
    process holds the gc lease."""
    lease = _Lease(store)
    if not await lease.take():
        raise GcError("another gc is running on this database (it holds the gc lease)")
    folders = _Folders(settings, artifacts)
    report = GcReport()
    roots = served_roots(settings)
    try:
        pending: list[str] = []
        for run in todo.runs:
            await lease.keep()
            if await _purge_run(store, folders, roots, run, pace, report):
                pending.append(run.run_id)
            if len(pending) >= RUNS_PER_BATCH:
                report.runs += await store.purge_runs(pending)
                pending = []
            if progress is not None:
                progress(1)
        report.runs += await store.purge_runs(pending)
        for model in todo.logged_models:
            await lease.keep()
            await _delete_folder(folders, report, model.model_id, functools.partial(
                logged_model_root, model.artifact_location, roots, model.model_id))
        report.logged_models += await store.purge_logged_models(
            [m.model_id for m in todo.logged_models])
        if todo.experiments:
            report.experiments += await store.purge_experiments(
                [e.experiment_id for e in todo.experiments])
            kept = {e.experiment_id for e in todo.experiments} - set(report.experiments)
            for exp_id in sorted(kept):
                report.warnings.append(f"experiment {exp_id} kept: it still has runs or "
                                       "logged models (one a model version names)")
        for model in todo.kept_models:
            report.warnings.append(f"logged model {model.model_id} kept: a model version "
                                   "names it")
    finally:
        await folders.aclose()
        await lease.release()
    return report


async def _purge_run(store: MetadataStore, folders: _Folders, roots: ServedRoots, run: GcRun,
                     pace: Pace, report: GcReport) -> bool:
    """Artifacts, then points; False if the run was restored (or is gone) meanwhile."""
    now = await store.gc_runs(run_ids=[run.run_id])
    if not now or now[0].lifecycle_stage != _DELETED:
        return False
    await _delete_folder(folders, report, run.run_id,
                         functools.partial(run_root, run.artifact_uri, roots, run.run_id))
    while True:
        started = time.perf_counter()
        deleted = await store.purge_run_points(run.run_id, pace.points)
        report.metric_points += deleted
        if deleted < pace.points:
            return True
        await asyncio.sleep(min((time.perf_counter() - started) * pace.rest, pace.max_pause))


async def _delete_folder(folders: _Folders, report: GcReport, owner: str,
                         root: Callable[[], Location]) -> None:
    try:
        location = root()
    except MlflowError as exc:
        # Stock goes on without the files when it cannot resolve the root; so do we.
        report.warnings.append(f"{owner}: artifacts left in place: {exc.message}")
        return
    if await folders.delete(location):
        report.artifact_folders += 1


class GcSweeper:
    """``serve --gc-interval``: a collection of what was deleted ``older_than_ms`` ago, every
    ``interval`` seconds, in a task of its own. A replica that finds another holding the gc
    lease skips its turn."""

    def __init__(self, store: MetadataStore, artifacts: ArtifactStore | None,
                 settings: Settings, *, interval: float, older_than_ms: int) -> None:
        self._store = store
        self._artifacts = artifacts
        self._settings = settings
        self._interval = interval
        self._older_than_ms = older_than_ms
        self._task: asyncio.Task[None] | None = None
        self._counts = dict.fromkeys(("sweeps", "skipped", "errors"), 0)
        self._deleted = dict.fromkeys(("runs", "experiments", "logged_models", "metric_points",
                                       "artifact_folders"), 0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mlgate-gc")

    def stats(self) -> dict[str, Any]:
        """Collections finished, skipped (another replica held the lease) and failed, and
        what they deleted, since start."""
        return {**self._counts, "deleted": dict(self._deleted)}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
                self._counts["sweeps"] += 1
            except GcError as exc:
                self._counts["skipped"] += 1
                log.info("gc sweep skipped: %s", exc)
            except Exception:
                self._counts["errors"] += 1
                log.warning("gc sweep failed", exc_info=True)

    async def sweep(self) -> GcReport:
        todo = await plan(self._store, older_than_ms=self._older_than_ms)
        if not (todo.runs or todo.logged_models or todo.experiments):
            return GcReport()
        report = await collect(self._store, self._artifacts, self._settings, todo)
        for what, count in (("runs", len(report.runs)), ("experiments", len(report.experiments)),
                            ("logged_models", len(report.logged_models)),
                            ("metric_points", report.metric_points),
                            ("artifact_folders", report.artifact_folders)):
            self._deleted[what] += count
        log.info("gc sweep deleted %d runs (%d metric points, %d artifact folders), %d "
                 "logged models, %d experiments", len(report.runs), report.metric_points,
                 report.artifact_folders, len(report.logged_models), len(report.experiments))
        for warning in report.warnings:
            log.warning("gc: %s", warning)
        return report
