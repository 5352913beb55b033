"""Helpers shared by the tracking route modules."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from backends.metadata.interface.entities import Tag
from backends.metadata.interface.store import MetadataStore
from gateway.errors import invalid_parameter
from gateway.keys import METADATA, SETTINGS
from gateway.parsing import Field, Message, missing
from gateway.settings import Settings

__all__ = [
    "KEY_VALUE",
    "max_results",
    "require",
    "run_id_of",
    "settings",
    "store",
    "tags_of",
]

KEY_VALUE = Message({"key": Field("string"), "value": Field("string")})

SEARCH_MAX_RESULTS_THRESHOLD = 50000


def store(request: web.Request) -> MetadataStore:
    return request.app[METADATA]


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def require(msg: dict[str, Any], name: str) -> Any:
    """The field's value; a missing or empty one is stock's 'Missing value' 400."""
    value = msg.get(name)
    if value is None or value == "":
        raise missing(name)
    return value


def run_id_of(msg: dict[str, Any]) -> str:
    """``run_id``, or the legacy alias ``run_uuid`` the client also sends."""
    value = msg.get("run_id") or msg.get("run_uuid")
    if not value:
        raise missing("run_id")
    return str(value)


def tags_of(items: list[dict[str, Any]] | None, path: str = "tags") -> list[Tag]:
    out = []
    for i, item in enumerate(items or []):
        key = item.get("key")
        if not key:
            raise missing(f"{path}[{i}].key")
        out.append(Tag(key, item.get("value", "")))
    return out


def max_results(value: int | None, *, default: int | None,
                limit: int = SEARCH_MAX_RESULTS_THRESHOLD) -> int:
    if value is None:
        if default is None:
            raise invalid_parameter(
                "Invalid value None for parameter 'max_results' supplied. It must be a "
                "positive integer")
        return default
    if value < 1:
        raise invalid_parameter(
            f"Invalid value {value} for parameter 'max_results' supplied. It must be a "
            "positive integer")
    if value > limit:
        raise invalid_parameter(
            f"Invalid value {value} for parameter 'max_results' supplied. It must be at "
            f"most {limit}")
    return value
