"""Entities → MLflow's JSON (``MessageToDict(preserving_proto_field_name=True)``, int64 as numbers).

Unset proto fields are omitted; NaN is ``"NaN"``.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from backends.metadata.interface.entities import (
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    Run,
    RunInfo,
    Tag,
)

__all__ = [
    "experiment",
    "history_points",
    "json_response",
    "logged_model",
    "metric",
    "run",
    "run_info",
    "tags",
]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def tags(items: tuple[Tag, ...] | list[Tag]) -> list[dict[str, Any]]:
    return [_drop_none({"key": t.key, "value": t.value}) for t in items]


def _value(v: float) -> float | str:
    return "NaN" if math.isnan(v) else v


def metric(m: Metric, *, with_run_id: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"key": m.key, "value": _value(m.value), "timestamp": m.timestamp,
                           "step": m.step}
    if m.dataset_name is not None:
        out["dataset_name"] = m.dataset_name
    if m.dataset_digest is not None:
        out["dataset_digest"] = m.dataset_digest
    if m.model_id is not None:
        out["model_id"] = m.model_id
    if with_run_id and m.run_id is not None:
        out["run_id"] = m.run_id
    return out


def history_points(
    key: str, points: list[tuple[int, int, float | None]]
) -> list[dict[str, Any]]:
    """What :func:`metric` renders for each ``(timestamp, step, value)`` of ``key``'s history
    (``None``: NaN; no dataset, model or run fields), without a :class:`Metric` per point."""
    return [{"key": key, "value": "NaN" if value is None else value, "timestamp": ts,
             "step": step} for ts, step, value in points]


def experiment(e: Experiment) -> dict[str, Any]:
    out = _drop_none({
        "experiment_id": e.experiment_id,
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage,
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
    })
    if e.tags:
        out["tags"] = tags(e.tags)
    out["workspace"] = e.workspace
    return out


def run_info(i: RunInfo) -> dict[str, Any]:
    return _drop_none({
        "run_uuid": i.run_id,
        "experiment_id": i.experiment_id,
        "run_name": i.run_name,
        "user_id": i.user_id,
        "status": i.status,
        "start_time": i.start_time,
        "end_time": i.end_time,
        "artifact_uri": i.artifact_uri,
        "lifecycle_stage": i.lifecycle_stage,
        "run_id": i.run_id,
    })


def _dataset_input(d: DatasetInput) -> dict[str, Any]:
    ds = d.dataset
    out: dict[str, Any] = {}
    if d.tags:
        out["tags"] = tags(d.tags)
    out["dataset"] = _drop_none({
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type,
        "source": ds.source,
        "schema": ds.schema,
        "profile": ds.profile,
    })
    return out


def run(r: Run) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if r.metrics:
        data["metrics"] = [metric(m) for m in r.metrics]
    if r.params:
        data["params"] = [{"key": p.key, "value": p.value} for p in r.params]
    if r.tags:
        data["tags"] = tags(r.tags)
    inputs: dict[str, Any] = {}
    if r.dataset_inputs:
        inputs["dataset_inputs"] = [_dataset_input(d) for d in r.dataset_inputs]
    if r.model_inputs:
        inputs["model_inputs"] = [{"model_id": m.model_id} for m in r.model_inputs]
    out: dict[str, Any] = {"info": run_info(r.info), "data": data, "inputs": inputs}
    if r.model_outputs:
        out["outputs"] = {
            "model_outputs": [{"model_id": m.model_id, "step": m.step} for m in r.model_outputs]
        }
    else:
        out["outputs"] = {}
    return out


def logged_model(m: LoggedModel) -> dict[str, Any]:
    info: dict[str, Any] = _drop_none({
        "model_id": m.model_id,
        "experiment_id": m.experiment_id,
        "name": m.name,
        "creation_timestamp_ms": m.creation_timestamp_ms,
        "last_updated_timestamp_ms": m.last_updated_timestamp_ms,
        "artifact_uri": m.artifact_uri,
        "status": m.status,
        "model_type": m.model_type,
        "source_run_id": m.source_run_id,
        "status_message": m.status_message,
    })
    if m.tags:
        info["tags"] = tags(m.tags)
    data: dict[str, Any] = {}
    if m.params:
        data["params"] = [{"key": p.key, "value": p.value} for p in m.params]
    if m.metrics:
        data["metrics"] = [metric(x, with_run_id=True) for x in m.metrics]
    return {"info": info, "data": data}
