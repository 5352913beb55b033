"""The model registry interface, part of every :class:`~backends.metadata.interface.store.MetadataStore`.

Registered models and their versions live in a workspace (``default`` unless given); names
are unique per workspace. Request-shaped validation (names, aliases, tag lengths, sources)
runs before a store is called (:mod:`backends.metadata.interface.registry_validation`). Methods raise
:mod:`backends.errors`: ``NotFound`` for an unknown model or version, ``AlreadyExists`` for
a taken name, ``InvalidArgument`` for input that contradicts stored state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.interface.entities import DEFAULT_WORKSPACE, Page, Tag
from backends.metadata.interface.registry_entities import ModelVersion, RegisteredModel

__all__ = ["RegistryStore"]


class RegistryStore(ABC):
    """Registered models, model versions, their tags, aliases and stages."""

    @abstractmethod
    async def create_registered_model(
        self, name: str, *, tags: Sequence[Tag] = (), description: str | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> RegisteredModel:
        """Create a registered model. ``AlreadyExists`` when the name is taken (stock's
        message distinguishes a model from a prompt)."""

    @abstractmethod
    async def get_registered_model(
        self, name: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> RegisteredModel:
        """The model with its tags, aliases and latest version per stage. ``NotFound``."""

    @abstractmethod
    async def update_registered_model(
        self, name: str, description: str | None, *, workspace: str = DEFAULT_WORKSPACE
    ) -> RegisteredModel:
        """Set the description. ``NotFound``."""

    @abstractmethod
    async def rename_registered_model(
        self, name: str, new_name: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> RegisteredModel:
        """Rename the model and everything under it. ``NotFound``; ``AlreadyExists``."""

    @abstractmethod
    async def delete_registered_model(
        self, name: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Delete the model, its versions, tags and aliases. ``NotFound``."""

    @abstractmethod
    async def search_registered_models(
        self, *, filter_string: str = "", max_results: int = 100,
        order_by: Sequence[str] = (), page_token: str | None = None,
        workspace: str = DEFAULT_WORKSPACE, visibility: Visibility | None = None,
    ) -> Page[RegisteredModel]:
        """One page of models matching stock's filter grammar; prompts are left out unless
        the filter asks for them. ``InvalidArgument`` for a bad filter, order or token."""

    @abstractmethod
    async def get_latest_versions(
        self, name: str, stages: Sequence[str] = (), *, workspace: str = DEFAULT_WORKSPACE
    ) -> list[ModelVersion]:
        """The newest version in each of ``stages`` (all stages when empty)."""

    @abstractmethod
    async def set_registered_model_tag(
        self, name: str, tag: Tag, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Upsert a tag. ``NotFound``."""

    @abstractmethod
    async def delete_registered_model_tag(
        self, name: str, key: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Delete a tag; a missing key is not an error (as stock). ``NotFound`` for the model."""

    @abstractmethod
    async def set_registered_model_alias(
        self, name: str, alias: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Point ``alias`` at ``version`` (moving it if set). ``NotFound`` for the version."""

    @abstractmethod
    async def delete_registered_model_alias(
        self, name: str, alias: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Remove an alias; a missing alias is not an error. ``NotFound`` for the model."""

    @abstractmethod
    async def get_model_version_by_alias(
        self, name: str, alias: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> ModelVersion:
        """The version ``alias`` points at (``latest``: the highest version). An unknown
        alias is ``InvalidArgument``, as in stock."""

    @abstractmethod
    async def create_model_version(
        self, name: str, source: str, *, run_id: str | None = None,
        tags: Sequence[Tag] = (), run_link: str | None = None,
        description: str | None = None, model_id: str | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> ModelVersion:
        """Create the next version (never reusing a deleted number). A ``models:/m-…``
        source stores the logged model's artifact location and fills ``run_id`` from it;
        with ``model_id`` the logged model's ``mlflow.modelVersions`` tag gets the version
        in the same transaction. ``NotFound`` for the model; ``InvalidArgument`` for a
        source naming an unknown logged model or version."""

    @abstractmethod
    async def get_model_version(
        self, name: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> ModelVersion:
        """``NotFound`` for an unknown or deleted version; ``InvalidArgument`` for a
        non-integer ``version``."""

    @abstractmethod
    async def update_model_version(
        self, name: str, version: str | int, description: str | None, *,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> ModelVersion:
        """Set the description. ``NotFound``."""

    @abstractmethod
    async def transition_model_version_stage(
        self, name: str, version: str | int, stage: str, *,
        archive_existing_versions: bool = False, workspace: str = DEFAULT_WORKSPACE,
    ) -> ModelVersion:
        """Move the version to ``stage`` (any case); with ``archive_existing_versions`` (only
        for Staging/Production) the other versions in that stage become Archived."""

    @abstractmethod
    async def delete_model_version(
        self, name: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Delete the version and the aliases pointing at it. ``NotFound``."""

    @abstractmethod
    async def get_model_version_download_uri(
        self, name: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> str:
        """The version's storage location (its source when none was resolved)."""

    @abstractmethod
    async def search_model_versions(
        self, *, filter_string: str = "", max_results: int = 200_000,
        order_by: Sequence[str] = (), page_token: str | None = None,
        workspace: str = DEFAULT_WORKSPACE, visibility: Visibility | None = None,
    ) -> Page[ModelVersion]:
        """One page of live versions matching stock's filter grammar."""

    @abstractmethod
    async def set_model_version_tag(
        self, name: str, version: str | int, tag: Tag, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Upsert a tag. ``NotFound``."""

    @abstractmethod
    async def delete_model_version_tag(
        self, name: str, version: str | int, key: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        """Delete a tag; a missing key is not an error. ``NotFound`` for the version."""
