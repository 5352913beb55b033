"""Artifact stores: local disk, S3, Azure Blob. Bytes always stream."""

from __future__ import annotations

from backends.artifacts.base import ArtifactStore, ByteStream, FileInfo

__all__ = ["ArtifactStore", "ByteStream", "FileInfo"]
