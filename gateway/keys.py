"""Typed application keys for the objects shared across handlers."""

from __future__ import annotations

from aiohttp import web

from backends.artifacts.base import ArtifactStore
from backends.metadata.base import MetadataStore
from gateway.batcher import Batcher
from gateway.settings import Settings
from gateway.sweeper import Sweeper

__all__ = ["ARTIFACTS", "BATCHER", "METADATA", "SETTINGS", "SWEEPER"]

SETTINGS = web.AppKey("settings", Settings)
METADATA = web.AppKey("metadata", MetadataStore)
ARTIFACTS = web.AppKey("artifacts", ArtifactStore)
BATCHER = web.AppKey("batcher", Batcher)
SWEEPER = web.AppKey("sweeper", Sweeper)
