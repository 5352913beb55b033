"""Typed application keys for the objects shared across handlers."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from backends.artifacts.base import ArtifactStore
from backends.metadata.interface.store import MetadataStore
from gateway.batcher import Batcher
from gateway.gc import GcSweeper
from gateway.settings import Settings
from gateway.sweeper import Sweeper

__all__ = ["ARTIFACTS", "BATCHER", "GC_SWEEPER", "METADATA", "SETTINGS", "SWEEPER", "UI_BUNDLE"]

SETTINGS = web.AppKey("settings", Settings)
METADATA = web.AppKey("metadata", MetadataStore)
ARTIFACTS = web.AppKey("artifacts", ArtifactStore)
BATCHER = web.AppKey("batcher", Batcher)
SWEEPER = web.AppKey("sweeper", Sweeper)
GC_SWEEPER = web.AppKey("gc_sweeper", GcSweeper)  # serve --gc-interval's collections
# The web UI's folder, resolved once at start (gateway.ui_bundle); None: not installed.
UI_BUNDLE: web.AppKey[Path | None] = web.AppKey("ui_bundle")
