"""Plain data passed between the gateway and the metadata stores.

Field names follow MLflow's protobuf names so rendering is a straight mapping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "DEFAULT_WORKSPACE",
    "Dataset",
    "DatasetInput",
    "DatasetSummary",
    "Experiment",
    "LifecycleStage",
    "LoggedModel",
    "LoggedModelStatus",
    "Metric",
    "ModelInput",
    "ModelOutput",
    "Page",
    "Param",
    "Run",
    "RunInfo",
    "RunStatus",
    "RunWrite",
    "Tag",
    "UploadInFlight",
    "ViewType",
    "now_ms",
]


def now_ms() -> int:
    """Now as MLflow stores every timestamp: milliseconds since the epoch."""
    return int(time.time() * 1000)


T = TypeVar("T")

DEFAULT_WORKSPACE = "default"


class ViewType(enum.IntEnum):
    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


class RunStatus(enum.IntEnum):
    RUNNING = 1
    SCHEDULED = 2
    FINISHED = 3
    FAILED = 4
    KILLED = 5


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Param:
    key: str
    value: str


@dataclass(slots=True, unsafe_hash=True)
class Metric:
    """One metric point. ``value`` may be NaN or ±inf; stores keep NaN distinct from 0.

    Treated as immutable like the other entities, but not ``frozen``: a frozen dataclass
    sets each of its eight fields through ``object.__setattr__``, three times the cost of a
    plain one, and log-batch builds a thousand per request."""

    key: str
    value: float
    timestamp: int
    step: int = 0
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunWrite:
    """The writes of one log-metric/log-param/set-tag/log-batch request, as the batcher
    hands them to :meth:`MetadataStore.log_batches`."""

    run_id: str
    metrics: Sequence[Metric] = ()
    params: Sequence[Param] = ()
    tags: Sequence[Tag] = ()

    @property
    def rows(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int | None
    last_update_time: int | None
    workspace: str = DEFAULT_WORKSPACE
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class DatasetInput:
    dataset: Dataset
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """A dataset an experiment's runs used, with the context one of them gave it."""

    experiment_id: str
    name: str
    digest: str
    context: str | None  # the input's mlflow.data.context tag, None without one


@dataclass(frozen=True, slots=True)
class ModelInput:
    model_id: str


@dataclass(frozen=True, slots=True)
class ModelOutput:
    model_id: str
    step: int


@dataclass(frozen=True, slots=True)
class Run:
    info: RunInfo
    metrics: tuple[Metric, ...] = ()  # the latest value of each key
    params: tuple[Param, ...] = ()
    tags: tuple[Tag, ...] = ()
    dataset_inputs: tuple[DatasetInput, ...] = ()
    model_inputs: tuple[ModelInput, ...] = ()
    model_outputs: tuple[ModelOutput, ...] = ()


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    next_page_token: str | None = None


class LoggedModelStatus(enum.IntEnum):
    LOGGED_MODEL_STATUS_UNSPECIFIED = 0
    LOGGED_MODEL_PENDING = 1
    LOGGED_MODEL_READY = 2
    LOGGED_MODEL_UPLOAD_FAILED = 3


@dataclass(frozen=True, slots=True)
class LoggedModel:
    """An MLflow 3 logged model. ``metrics`` carry model_id, run_id and dataset fields."""

    model_id: str
    experiment_id: str
    name: str
    artifact_uri: str
    creation_timestamp_ms: int
    last_updated_timestamp_ms: int
    status: str
    model_type: str = ""
    source_run_id: str | None = None
    status_message: str | None = None
    lifecycle_stage: str = LifecycleStage.ACTIVE
    tags: tuple[Tag, ...] = ()
    params: tuple[Param, ...] = ()
    metrics: tuple[Metric, ...] = ()


@dataclass(frozen=True, slots=True)
class UploadInFlight:
    """An upload that leaves something in the artifact store until it ends (an S3 multipart
    upload, Azure staged blocks), noted by the gateway process ``owner`` before it began."""

    upload_id: str
    path: str  # relative to the artifact store's root
    owner: str  # "" for a client's upload (mpu/*), which no process owns
    started_ms: int
