"""Metadata stores: experiments, runs, params, metrics, tags, datasets."""

from __future__ import annotations

from backends.metadata.interface.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    Metric,
    ModelInput,
    ModelOutput,
    Page,
    Param,
    Run,
    RunInfo,
    Tag,
    ViewType,
)
from backends.metadata.interface.store import MetadataStore

__all__ = [
    "Dataset",
    "DatasetInput",
    "Experiment",
    "MetadataStore",
    "Metric",
    "ModelInput",
    "ModelOutput",
    "Page",
    "Param",
    "Run",
    "RunInfo",
    "Tag",
    "ViewType",
]
