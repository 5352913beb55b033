"""Request-level validation of tracking entities, with MLflow's limits and messages (§3a).

Pure functions raising :class:`backends.errors.InvalidArgument`; callers run them before
touching a store, so a bad request fails alone and changes nothing.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Sequence
from typing import Any

from backends.errors import InvalidArgument
from backends.metadata.interface.entities import DatasetInput, Metric, Param, Tag

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ENTITY_KEY_LENGTH",
    "MAX_PARAM_VAL_LENGTH",
    "MAX_TAG_VAL_LENGTH",
    "int64",
    "validate_batch",
    "validate_dataset_inputs",
    "validate_experiment_name",
    "validate_experiment_tag",
    "validate_metric",
    "validate_param",
    "validate_run_id",
    "validate_tag",
]

# What an INTEGER/BIGINT column holds: beyond it SQLite raises OverflowError and PostgreSQL
# refuses the value, so ids and numbers from requests are checked against it first.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_ENTITY_KEY_LENGTH = 250
MAX_DATASET_NAME_SIZE = 500
MAX_DATASET_DIGEST_SIZE = 36
MAX_DATASET_SCHEMA_SIZE = 1048575
MAX_DATASET_SOURCE_SIZE = 65535
MAX_DATASET_PROFILE_SIZE = 16777215
MAX_INPUT_TAG_KEY_SIZE = 255
MAX_INPUT_TAG_VALUE_SIZE = 500
MAX_DATASETS_PER_BATCH = 1000

_NAME = re.compile(r"^[/\w.\- :]*$")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
_BAD_CHARS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
    " spaces ( ), colon(:) and slashes (/)."
)


def invalid_value(path: str, value: Any, message: str | None = None) -> str:
    formatted = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if message:
        return f"Invalid value {formatted} for parameter '{path}' supplied: {message}"
    return f"Invalid value {formatted} for parameter '{path}' supplied."


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_name(name: str, path: str) -> None:
    problem = _name_problem(name)
    if problem is not None:
        raise InvalidArgument(invalid_value(path, name, problem))


@functools.lru_cache(maxsize=4096)  # the same few keys arrive over and over
def _name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return _BAD_CHARS
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(("..", "/")):
        return ("Names may be treated as files in certain cases, and must not resolve to other "
                f"names when treated as such. This name would resolve to {norm!r}")
    return None


def _limit(what: str, limit: int, value: str, *, truncate: bool = False) -> str:
    if len(value) <= limit:
        return value
    if truncate:
        return value[:limit]
    raise InvalidArgument(f"'{what}' exceeds the maximum length of {limit} characters")


def int64(value: str | int) -> int:
    """``value`` read with ``int()``, as the stores read ids; ``ValueError`` (or ``TypeError``)
    if it is not an integer or does not fit a 64-bit column."""
    number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{value!r} is outside the 64-bit integer range")
    return number


def validate_run_id(run_id: str) -> None:
    if not _RUN_ID.match(run_id):
        raise InvalidArgument(f"Invalid run ID: '{run_id}'")


def validate_metric(m: Metric, path: str = "") -> Metric:
    if _name_problem(m.key) is not None:
        _check_name(m.key, _join(path, "name"))
    if not 0 <= m.timestamp <= INT64_MAX:
        raise InvalidArgument(invalid_value(
            _join(path, "timestamp"), m.timestamp,
            f"metric '{m.key}' (value={m.value}). "
            "Timestamp must be a nonnegative long (64-bit integer) ",
        ))
    if not INT64_MIN <= m.step <= INT64_MAX:
        raise InvalidArgument(invalid_value(
            _join(path, "step"), m.step,
            f"metric '{m.key}' (value={m.value}). Step must be a valid long (64-bit integer).",
        ))
    _limit("Metric name", MAX_ENTITY_KEY_LENGTH, m.key)
    return m


def validate_param(p: Param, path: str = "", *, truncate: bool = False) -> Param:
    _check_name(p.key, _join(path, "key"))
    return Param(
        _limit("Param key", MAX_ENTITY_KEY_LENGTH, p.key),
        _limit("Param value", MAX_PARAM_VAL_LENGTH, p.value, truncate=truncate),
    )


def validate_tag(t: Tag, path: str = "", *, truncate: bool = False) -> Tag:
    _check_name(t.key, _join(path, "key"))
    return Tag(
        _limit(_join(path, "key"), MAX_ENTITY_KEY_LENGTH, t.key),
        _limit(_join(path, "value"), MAX_TAG_VAL_LENGTH, t.value, truncate=truncate),
    )


def validate_experiment_name(name: str) -> None:
    if not name or not name.strip():
        raise InvalidArgument("Invalid experiment name: ''")
    _limit("name", MAX_EXPERIMENT_NAME_LENGTH, name)


def validate_experiment_tag(t: Tag) -> None:
    _check_name(t.key, "key")
    _limit("key", MAX_EXPERIMENT_TAG_KEY_LENGTH, t.key)
    _limit("value", MAX_EXPERIMENT_TAG_VAL_LENGTH, t.value)


def validate_batch(
    metrics: Sequence[Metric],
    params: Sequence[Param],
    tags: Sequence[Tag],
    *,
    truncate: bool = False,
) -> tuple[list[Metric], list[Param], list[Tag]]:
    """Check a log-batch's limits and every entity; return the (possibly truncated) entities."""
    if len(metrics) > MAX_METRICS_PER_BATCH:
        raise InvalidArgument(
            f"A batch logging request can contain at most {MAX_METRICS_PER_BATCH} metrics. "
            f"Got {len(metrics)} metrics. Please split up metrics across multiple requests "
            "and try again."
        )
    for what, items in (("params", params), ("tags", tags)):
        if len(items) > MAX_PARAMS_TAGS_PER_BATCH:
            raise InvalidArgument(
                f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} "
                f"{what}. Got {len(items)} {what}. Please split up {what} across multiple "
                "requests and try again."
            )
    total = len(metrics) + len(params) + len(tags)
    if total > MAX_ENTITIES_PER_BATCH:
        raise InvalidArgument(
            f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} total "
            f"metrics, params, and tags. Got {len(metrics)} metrics, {len(params)} params, "
            f"and {len(tags)} tags. Please split up metrics, params, and tags across multiple "
            "requests and try again."
        )
    # A batch repeats a few metric names many times: each name is checked once, each point
    # only for its numbers (validate_metric, with its messages, when one is out of range).
    good_keys: set[str] = set()
    for i, m in enumerate(metrics):
        if m.key not in good_keys:
            validate_metric(m, f"metrics[{i}]")
            good_keys.add(m.key)
        elif not (0 <= m.timestamp < 2**63 and -(2**63) <= m.step < 2**63):
            validate_metric(m, f"metrics[{i}]")
    out_metrics = list(metrics)
    out_params = [validate_param(p, f"params[{i}]", truncate=truncate)
                  for i, p in enumerate(params)]
    out_tags = [validate_tag(t, f"tags[{i}]", truncate=truncate) for i, t in enumerate(tags)]
    seen: dict[str, str] = {}
    for p in out_params:
        if p.key in seen and seen[p.key] != p.value:
            raise InvalidArgument(
                "Duplicate parameter keys have been submitted: "
                f"[{p.key}]. Please ensure the request contains only one param value per "
                "param key."
            )
        seen[p.key] = p.value
    return out_metrics, out_params, out_tags


def validate_dataset_inputs(inputs: Sequence[DatasetInput]) -> None:
    if len(inputs) > MAX_DATASETS_PER_BATCH:
        raise InvalidArgument(
            f"Dataset inputs must contain at most {MAX_DATASETS_PER_BATCH} entries"
        )
    for item in inputs:
        ds = item.dataset
        for what, value, limit in (
            ("Dataset name", ds.name, MAX_DATASET_NAME_SIZE),
            ("Dataset digest", ds.digest, MAX_DATASET_DIGEST_SIZE),
            ("Dataset source", ds.source, MAX_DATASET_SOURCE_SIZE),
            ("Dataset schema", ds.schema or "", MAX_DATASET_SCHEMA_SIZE),
            ("Dataset profile", ds.profile or "", MAX_DATASET_PROFILE_SIZE),
        ):
            if len(value) > limit:
                raise InvalidArgument(f"{what} exceeds the maximum length of {limit}")
        for t in item.tags:
            if len(t.key) > MAX_INPUT_TAG_KEY_SIZE:
                raise InvalidArgument(
                    f"Input tag key exceeds the maximum length of {MAX_INPUT_TAG_KEY_SIZE}")
            if len(t.value) > MAX_INPUT_TAG_VALUE_SIZE:
                raise InvalidArgument(
                    f"Input tag value exceeds the maximum length of {MAX_INPUT_TAG_VALUE_SIZE}")
