"""The metadata store interface. Every implementation passes ``tests/backends/test_metadata_contract.py``.

Stores validate what needs stored state (a run must be active, a param may not change);
request-shaped validation (key syntax, lengths, limits) lives in
:mod:`backends.metadata.interface.validation` and runs before a store is called.
All methods raise :mod:`backends.errors` exceptions, never driver exceptions.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from backends.errors import BackendError
from backends.metadata.interface.auth import AuthStore
from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.interface.entities import (
    DEFAULT_WORKSPACE,
    DatasetInput,
    DatasetSummary,
    Experiment,
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
)
from backends.metadata.interface.gc import GcStore
from backends.metadata.interface.registry import RegistryStore

__all__ = ["MetadataStore", "sample_indices"]


def sample_indices(count: int, buckets: int) -> list[int]:
    """Which of ``count`` ordered points a chart of ``buckets`` points shows, as stock's SQL
    picks them: NTILE(buckets) (the first ``count % buckets`` buckets one point larger),
    the first point of each, and the last point in place of the last bucket's."""
    if count <= buckets:
        return list(range(count))
    size, larger = divmod(count, buckets)
    picks = [b * size + min(b, larger) for b in range(buckets)]
    picks[-1] = count - 1
    return picks


class MetadataStore(RegistryStore, AuthStore, GcStore, ABC):
    """Experiments, runs and their data. Open with ``await store.open()`` (or ``async with``);
    whoever opens a store closes it with ``await store.aclose()``."""

    #: How many :meth:`log_batches` calls the batcher should have in flight at once: more
    #: than one only where concurrent transactions run in parallel (a database server).
    batch_writers: ClassVar[int] = 1

    @classmethod
    @abstractmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        """Build a store for ``uri`` without connecting. Raises ``ValueError`` for a malformed URI."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and bring the schema to the newest version (under a lock shared by every
        process using the same database), creating the ``Default`` experiment ``0``."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection. Safe to call twice."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database is at."""

    def stats(self) -> dict[str, Any]:
        """Figures for operators (connection pool use and the like), JSON-serialisable.
        Cheap and synchronous; stores with nothing to report return ``{}``."""
        return {}

    # -- experiments -------------------------------------------------------------------

    @abstractmethod
    async def create_experiment(
        self,
        name: str,
        *,
        artifact_root: str,
        artifact_location: str | None = None,
        tags: Sequence[Tag] = (),
        workspace: str = DEFAULT_WORKSPACE,
    ) -> str:
        """Create an experiment and return its id. Without ``artifact_location`` it is
        ``<artifact_root>/<id>``. Raises ``AlreadyExists`` when the name is taken in the
        workspace (deleted experiments keep their name)."""

    @abstractmethod
    async def get_experiment(self, experiment_id: str) -> Experiment:
        """Raises ``NotFound``; ``InvalidArgument`` when the id is not an integer."""

    @abstractmethod
    async def get_experiment_by_name(
        self, name: str, workspace: str = DEFAULT_WORKSPACE
    ) -> Experiment:
        """Raises ``NotFound``."""

    @abstractmethod
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
        """Filter and order in the database (grammar of :mod:`backends.metadata.sql.search`).
        With ``visibility``, only experiments it lets the caller read (part of the query,
        so pages are full). Raises ``InvalidArgument`` for a bad filter, order_by or page
        token."""

    @abstractmethod
    async def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        """Raises ``NotFound``, ``AlreadyExists``; ``InvalidArgument`` if deleted."""

    @abstractmethod
    async def delete_experiment(self, experiment_id: str) -> None:
        """Soft delete: the experiment and its runs become ``deleted``."""

    @abstractmethod
    async def restore_experiment(self, experiment_id: str) -> None:
        """Undo :meth:`delete_experiment`."""

    @abstractmethod
    async def set_experiment_tag(self, experiment_id: str, tag: Tag) -> None:
        """Upsert. Raises ``NotFound``; ``InvalidArgument`` if the experiment is deleted."""

    @abstractmethod
    async def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Raises ``NotFound`` for an unknown experiment or key."""

    # -- runs --------------------------------------------------------------------------

    @abstractmethod
    async def create_run(
        self,
        experiment_id: str,
        *,
        user_id: str,
        run_name: str,
        start_time: int,
        tags: Sequence[Tag] = (),
    ) -> Run:
        """Create a RUNNING run whose artifact URI is ``<experiment location>/<run_id>/artifacts``.
        ``run_name`` is also stored as the ``mlflow.runName`` tag. Raises ``NotFound``, or
        ``InvalidArgument`` when the experiment is deleted."""

    @abstractmethod
    async def get_run(self, run_id: str) -> Run:
        """The run with its latest metrics, params, tags, inputs and outputs. Raises ``NotFound``."""

    @abstractmethod
    async def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        """Update what is given; a new run name also updates the ``mlflow.runName`` tag."""

    @abstractmethod
    async def delete_run(self, run_id: str) -> None:
        """Soft delete. Raises ``NotFound``."""

    @abstractmethod
    async def restore_run(self, run_id: str) -> None:
        """Undo :meth:`delete_run`. Raises ``NotFound``."""

    @abstractmethod
    async def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[Tag] = (),
    ) -> None:
        """Write everything in **one transaction**: all of it or none of it.

        Metrics identical in (key, timestamp, step, value) to a stored one are skipped, and
        each key's latest value (max of step, timestamp, value) is kept up to date. A param
        already logged with the same value is accepted; with another value the whole batch
        fails with ``Conflict``. A ``mlflow.runName`` tag renames the run. Raises
        ``NotFound``, and ``InvalidArgument`` when the run is not active."""

    @abstractmethod
    async def log_batches(self, writes: Sequence[RunWrite]) -> list[BackendError | None]:
        """Write many requests' rows in **one transaction** (the batcher's group commit).

        Each write is checked as :meth:`log_batch` would check it, in order, against what is
        stored and what the earlier writes of the same call add; a write that fails gets its
        error in the returned list (same index) and writes nothing, the others are committed
        together. An error of the transaction itself (the database) is raised and nothing
        is written."""

    @abstractmethod
    async def delete_tag(self, run_id: str, key: str) -> None:
        """Raises ``NotFound`` for an unknown run or key, ``InvalidArgument`` if not active."""

    @abstractmethod
    async def get_metric_history(
        self,
        run_id: str,
        key: str,
        *,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[Metric]:
        """Every point of ``key`` ordered by (timestamp, step, value); paged when
        ``max_results`` is given. Raises ``NotFound`` for an unknown run."""

    async def get_metric_history_points(
        self,
        run_id: str,
        key: str,
        *,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[tuple[int, int, float | None]]:
        """:meth:`get_metric_history` as ``(timestamp, step, value)`` rows, ``None`` for a
        NaN value; same order, paging and errors. For callers rendering many points
        without a :class:`Metric` each; rows may be any tuple-like sequence. Implementations
        may override it with a leaner query; this default converts."""
        page = await self.get_metric_history(
            run_id, key, max_results=max_results, page_token=page_token)
        return Page([(m.timestamp, m.step, None if math.isnan(m.value) else m.value)
                     for m in page.items], page.next_page_token)

    @abstractmethod
    async def sample_metric_history(
        self,
        run_ids: Sequence[str],
        key: str,
        *,
        max_results: int,
        steps: tuple[int, int] | None = None,
    ) -> list[Metric]:
        """The web UI's chart points, sampled as stock's ``get_metric_history_bulk_interval``:
        per run, the points of ``key`` (with ``steps`` within the inclusive range, if given)
        ordered by (step, timestamp, value, NaN) and cut into ``max_results`` even buckets
        (:func:`sample_indices`); each bucket gives its first point and the last point is
        always kept. Metrics carry ``run_id``; unknown runs give none, as stock's."""

    @abstractmethod
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
        """Filter, order and page in the database; with ``visibility``, only runs of
        experiments it lets the caller read. Raises ``InvalidArgument`` for a bad filter,
        order_by or page token."""

    @abstractmethod
    async def log_inputs(
        self,
        run_id: str,
        *,
        datasets: Sequence[DatasetInput] = (),
        models: Sequence[ModelInput] = (),
    ) -> None:
        """Link datasets (deduplicated per experiment by name and digest) and models as the
        run's inputs, in one transaction."""

    @abstractmethod
    async def search_datasets(self, experiment_ids: Sequence[str]) -> list[DatasetSummary]:
        """The datasets the experiments' runs used as inputs, as stock's ``_search_datasets``:
        each distinct (experiment, name, digest, context), at most 1000. Unknown experiments
        give none; raises ``InvalidArgument`` for an id that is no integer."""

    @abstractmethod
    async def log_outputs(self, run_id: str, models: Sequence[ModelOutput]) -> None:
        """Record logged models as the run's outputs."""

    # -- logged models (MLflow 3) ------------------------------------------------------

    @abstractmethod
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
        """Create a PENDING model ``m-<hex>`` whose artifacts live at
        ``<experiment location>/models/<id>/artifacts``. Raises ``NotFound`` for an unknown
        experiment, ``InvalidArgument`` if it is deleted."""

    @abstractmethod
    async def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        """Raises ``NotFound`` (also for a deleted model unless ``allow_deleted``)."""

    @abstractmethod
    async def finalize_logged_model(self, model_id: str, status: str) -> LoggedModel:
        """Set the status (READY or UPLOAD_FAILED)."""

    @abstractmethod
    async def delete_logged_model(self, model_id: str) -> None:
        """Soft delete. Raises ``NotFound``."""

    @abstractmethod
    async def set_logged_model_tags(self, model_id: str, tags: Sequence[Tag]) -> None:
        """Upsert tags. Raises ``NotFound``."""

    @abstractmethod
    async def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        """Raises ``NotFound`` for an unknown model or key."""

    @abstractmethod
    async def log_logged_model_params(self, model_id: str, params: Sequence[Param]) -> None:
        """Insert params (a param already set to another value raises ``Conflict``)."""

    @abstractmethod
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
        """Non-deleted models of the experiments, filtered, ordered and paged in the database;
        with ``visibility``, only models of experiments it lets the caller read."""

    # -- uploads in flight (read by the artifact sweep, gateway/sweeper.py) -------------

    @abstractmethod
    async def heartbeat(self, owner: str, host: str, pid: int, alive_until_ms: int) -> None:
        """Note that gateway process ``owner`` is alive, and to take it as gone if it has not
        said so again by ``alive_until_ms``."""

    @abstractmethod
    async def heartbeats(self) -> dict[str, int]:
        """Until when each process's last heartbeat vouches for it (ms), by owner."""

    @abstractmethod
    async def forget_owner(self, owner: str) -> None:
        """Drop a process's heartbeat (it stopped, or it is long dead and owns nothing)."""

    @abstractmethod
    async def forget_owners_before(self, alive_until_ms: int) -> None:
        """Drop the heartbeats of processes taken as gone since before ``alive_until_ms``."""

    @abstractmethod
    async def begin_upload(self, upload: UploadInFlight) -> None:
        """Note an upload before it starts leaving anything in the artifact store."""

    @abstractmethod
    async def end_upload(self, upload_id: str) -> None:
        """Forget an upload: it finished, or what it left was removed. Idempotent."""

    @abstractmethod
    async def uploads_in_flight(self) -> list[UploadInFlight]:
        """Every upload noted and not yet forgotten, oldest first."""
