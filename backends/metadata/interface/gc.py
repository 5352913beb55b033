"""What garbage collection (``mlgate gc``) needs of a metadata store, part of every
:class:`~backends.metadata.interface.store.MetadataStore`.

Collection deletes for good what the API only marked deleted: runs, experiments and logged
models. It reads the candidates (:meth:`GcStore.gc_runs` …), then removes each one in short
write transactions, so that serving goes on beside it: a run's metric points a chunk at a
time (:meth:`GcStore.purge_run_points`), then the run rows (:meth:`GcStore.purge_runs`).
Every purge checks, in its own transaction, that its target is still deleted: a run or
experiment restored meanwhile is left alone from then on. The policy (what is old enough,
artifacts first) lives in ``gateway/gc.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["GcExperiment", "GcLoggedModel", "GcRun", "GcStore"]


@dataclass(frozen=True, slots=True)
class GcRun:
    run_id: str
    experiment_id: str
    artifact_uri: str
    lifecycle_stage: str
    deleted_time: int | None  # ms; set by delete_run and delete_experiment


@dataclass(frozen=True, slots=True)
class GcExperiment:
    experiment_id: str
    artifact_location: str
    lifecycle_stage: str
    last_update_time: int | None  # ms; delete_experiment sets it, as stock's gc reads it


@dataclass(frozen=True, slots=True)
class GcLoggedModel:
    model_id: str
    experiment_id: str
    artifact_location: str
    lifecycle_stage: str
    last_updated_ms: int
    referenced: bool  # a model version that is not deleted names it: its files stay


class GcStore(ABC):
    """Reading candidates for collection and removing them for good."""

    @abstractmethod
    async def gc_runs(self, *, run_ids: Sequence[str] | None = None,
                      experiment_ids: Sequence[str] | None = None) -> list[GcRun]:
        """With ``run_ids``: those runs whatever their stage (unknown ids are left out), so
        the caller can refuse an active one. Otherwise every deleted run, only those of
        ``experiment_ids`` if given. Oldest deletion first."""

    @abstractmethod
    async def gc_experiments(self, experiment_ids: Sequence[str] | None = None
                             ) -> list[GcExperiment]:
        """With ``experiment_ids``: those experiments whatever their stage (unknown ids are
        left out). Otherwise every deleted experiment. ``InvalidArgument`` for an id that
        is not an integer."""

    @abstractmethod
    async def gc_logged_models(self, *, model_ids: Sequence[str] | None = None,
                               experiment_ids: Sequence[str] | None = None
                               ) -> list[GcLoggedModel]:
        """With ``model_ids``: those models whatever their stage. With ``experiment_ids``:
        every model of those experiments, whatever its stage (the experiment goes). Otherwise
        every deleted model."""

    @abstractmethod
    async def purge_run_points(self, run_id: str, limit: int) -> int:
        """Delete at most ``limit`` metric points of run ``run_id`` in one write
        transaction, if the run is deleted, a metric at a time in key order; a metric left
        without points goes too (the run no longer lists it). Returns how many points
        went: 0 when none are left, or when the run is unknown or no longer deleted."""

    @abstractmethod
    async def purge_runs(self, run_ids: Sequence[str]) -> list[str]:
        """Delete the runs of ``run_ids`` that are deleted, with everything hanging off them
        (params, tags, metric series and any points left, inputs, outputs), in one write
        transaction. Returns the ids deleted."""

    @abstractmethod
    async def purge_logged_models(self, model_ids: Sequence[str]) -> list[str]:
        """Delete the logged models of ``model_ids`` that are deleted (or whose experiment
        is) and that no model version still names, with their params, tags and metrics.
        Returns the ids deleted."""

    @abstractmethod
    async def purge_experiments(self, experiment_ids: Sequence[str]) -> list[str]:
        """Delete the experiments of ``experiment_ids`` that are deleted and have no runs and
        no logged models left, with their tags and datasets. Returns the ids deleted."""

    @abstractmethod
    async def take_lease(self, name: str, holder: str, until_ms: int) -> bool:
        """Hold lease ``name`` until ``until_ms`` if it is free, expired or already
        ``holder``'s (then it is extended). True if ``holder`` now holds it. Processes
        sharing the database use it to run one collection at a time."""

    @abstractmethod
    async def release_lease(self, name: str, holder: str) -> None:
        """Give lease ``name`` up if ``holder`` holds it."""
