"""Plain data of the model registry: registered models, model versions, aliases.

Field names follow MLflow's ``model_registry.proto`` so rendering is a straight mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends.metadata.interface.entities import DEFAULT_WORKSPACE, Tag

__all__ = [
    "ACTIVE_STAGES",
    "ALL_STAGES",
    "IS_PROMPT_TAG",
    "MODEL_VERSIONS_TAG",
    "STAGE_ARCHIVED",
    "STAGE_DELETED",
    "STAGE_NONE",
    "STAGE_PRODUCTION",
    "STAGE_STAGING",
    "ModelVersion",
    "RegisteredModel",
    "RegisteredModelAlias",
    "canonical_stage",
]

STAGE_NONE = "None"
STAGE_STAGING = "Staging"
STAGE_PRODUCTION = "Production"
STAGE_ARCHIVED = "Archived"
STAGE_DELETED = "Deleted_Internal"  # a deleted version's row; never shown
ALL_STAGES = (STAGE_NONE, STAGE_STAGING, STAGE_PRODUCTION, STAGE_ARCHIVED)
ACTIVE_STAGES = (STAGE_STAGING, STAGE_PRODUCTION)

IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # logged-model tag listing its registered versions


def canonical_stage(stage: str) -> str | None:
    """The stage's canonical spelling (``staging`` → ``Staging``), or ``None`` if unknown."""
    for known in ALL_STAGES:
        if known.lower() == stage.lower():
            return known
    return None


@dataclass(frozen=True, slots=True)
class RegisteredModelAlias:
    alias: str
    version: int


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    creation_timestamp: int
    last_updated_timestamp: int
    current_stage: str = STAGE_NONE
    description: str | None = None
    user_id: str | None = None
    source: str | None = None
    storage_location: str | None = None
    run_id: str | None = None
    run_link: str | None = None
    status: str = "READY"
    status_message: str | None = None
    model_id: str | None = None
    workspace: str = DEFAULT_WORKSPACE
    tags: tuple[Tag, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """``latest_versions`` holds the newest version of each stage, in stock's order."""

    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None = None
    workspace: str = DEFAULT_WORKSPACE
    latest_versions: tuple[ModelVersion, ...] = ()
    tags: tuple[Tag, ...] = ()
    aliases: tuple[RegisteredModelAlias, ...] = ()

    @property
    def is_prompt(self) -> bool:
        return any(t.key == IS_PROMPT_TAG and (t.value or "").lower() == "true"
                   for t in self.tags)
