"""Registry entities → MLflow's JSON, as ``RegisteredModel.to_proto`` / ``ModelVersion.to_proto``
render them: ``version`` is a string, empty lists and unset fields are omitted, an empty
registered-model description is omitted while a version's empty description is kept."""

from __future__ import annotations

from typing import Any

from backends.metadata.interface.registry_entities import ModelVersion, RegisteredModel
from gateway.render import tags

__all__ = ["model_version", "registered_model"]


def model_version(v: ModelVersion) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name, "version": str(v.version),
                           "creation_timestamp": v.creation_timestamp}
    optional = {
        "last_updated_timestamp": v.last_updated_timestamp,
        "description": v.description,
        "user_id": v.user_id,
        "current_stage": v.current_stage,
        "source": v.source,
        "run_id": v.run_id,
        "status": v.status,
    }
    out.update({k: val for k, val in optional.items() if val is not None})
    if v.status_message:
        out["status_message"] = v.status_message
    if v.tags:
        out["tags"] = tags(v.tags)
    if v.run_link is not None:
        out["run_link"] = v.run_link
    if v.aliases:
        out["aliases"] = list(v.aliases)
    return out


def registered_model(m: RegisteredModel) -> dict[str, Any]:
    out: dict[str, Any] = {"name": m.name, "creation_timestamp": m.creation_timestamp}
    if m.last_updated_timestamp:
        out["last_updated_timestamp"] = m.last_updated_timestamp
    if m.description:
        out["description"] = m.description
    if m.latest_versions:
        out["latest_versions"] = [model_version(v) for v in m.latest_versions]
    if m.tags:
        out["tags"] = tags(m.tags)
    if m.aliases:
        out["aliases"] = [{"alias": a.alias, "version": str(a.version)} for a in m.aliases]
    return out
