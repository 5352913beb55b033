"""Metadata stores: experiments, runs, params, metrics, tags, datasets."""

from __future__ import annotations

from backends.metadata.base import MetadataStore
from backends.metadata.entities import (
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
