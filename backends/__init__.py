"""Metadata and artifact stores. Importing this package imports no driver."""

from __future__ import annotations

from backends.registry import open_artifact_store, open_metadata_store

__all__ = ["open_artifact_store", "open_metadata_store"]
