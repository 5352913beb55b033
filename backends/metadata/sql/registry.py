"""The model registry in SQL, for every dialect.

:class:`SqlRegistryMixin` implements :class:`backends.metadata.interface.registry.RegistryStore`
over the connection protocol of :mod:`backends.metadata.sql.connection` (``?`` placeholders;
upserts come from the dialect). :class:`SqlMetadataStore` inherits it,
so registry writes share the tracking store's transactions: creating a version from a
logged model and tagging that model with ``mlflow.modelVersions`` is one transaction.

Deleted versions keep a redacted ``Deleted_Internal`` row, as stock does, so version numbers
are never reused. Tags read back in the order first set; aliases in alias order, as stock.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from backends import errors
from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.interface.entities import (
    DEFAULT_WORKSPACE,
    LifecycleStage,
    Page,
    Tag,
    now_ms,
)
from backends.metadata.interface.registry import RegistryStore
from backends.metadata.interface.registry_entities import (
    ACTIVE_STAGES,
    ALL_STAGES,
    IS_PROMPT_TAG,
    MODEL_VERSIONS_TAG,
    STAGE_ARCHIVED,
    STAGE_DELETED,
    ModelVersion,
    RegisteredModel,
    RegisteredModelAlias,
    canonical_stage,
)
from backends.metadata.interface.validation import int64
from backends.metadata.sql import registry_search, search
from backends.metadata.sql.connection import UniqueViolation
from backends.metadata.sql.dialect import Dialect

__all__ = ["SqlRegistryMixin"]

_CHUNK = 400


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _version_number(version: str | int) -> int:
    try:
        return int64(version)
    except (TypeError, ValueError):
        raise errors.InvalidArgument(
            f"Parameter 'version' must be an integer, got '{version}'.") from None


def _rm_not_found(name: str) -> errors.NotFound:
    return errors.NotFound(f"Registered Model with name={name} not found")


def _mv_not_found(name: str, version: str | int) -> errors.NotFound:
    return errors.NotFound(f"Model Version (name={name}, version={version}) not found")


def _stage(stage: str) -> str:
    found = canonical_stage(stage)
    if found is None:
        raise errors.InvalidArgument(
            f"Invalid Model Version stage: {stage}. Value must be one of "
            f"{', '.join(ALL_STAGES)}.")
    return found


def _parse_models_uri(source: str) -> tuple[str | None, str | None, int | None]:
    """``models:/m-<id>`` → (model_id, None, None); ``models:/<name>/<n>`` → (None, name, n)."""
    path = source[len("models:"):].lstrip("/")
    if path.startswith("m-") and "/" not in path:
        return path, None, None
    name, _, version = path.rpartition("/")
    if name and version.isascii() and version.isdigit():
        try:
            return None, name, int64(version)
        except ValueError:
            pass
    raise errors.InvalidArgument(
        f"Invalid model version source: '{source}'. The model_id request parameter must "
        "identify the resource that contains the source.")


class SqlRegistryMixin(RegistryStore):
    """Every registry operation, in SQL. Mixed into ``SqlMetadataStore``."""

    _dialect: Dialect

    @abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Any]:
        """One write transaction."""

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Any]:
        """One read snapshot."""

    # -- loading -------------------------------------------------------------------------

    async def _rm_row(self, db: Any, workspace: str, name: str) -> Any:
        cur = await db.execute(
            "SELECT * FROM registered_models WHERE workspace = ? AND name = ?",
            (workspace, name))
        row = await cur.fetchone()
        if row is None:
            raise _rm_not_found(name)
        return row

    async def _mv_row(self, db: Any, workspace: str, name: str, version: int) -> Any:
        cur = await db.execute(
            "SELECT * FROM model_versions WHERE workspace = ? AND name = ? AND version = ?"
            " AND current_stage != ?", (workspace, name, version, STAGE_DELETED))
        row = await cur.fetchone()
        if row is None:
            raise _mv_not_found(name, version)
        return row

    async def _aliases(self, db: Any, workspace: str,
                       names: Sequence[str]) -> dict[str, list[RegisteredModelAlias]]:
        out: dict[str, list[RegisteredModelAlias]] = {}
        for i in range(0, len(names), _CHUNK):
            chunk = list(names[i:i + _CHUNK])
            cur = await db.execute(
                "SELECT name, alias, version FROM registered_model_aliases WHERE workspace = ?"
                f" AND name IN ({_marks(len(chunk))}) ORDER BY name, alias",
                (workspace, *chunk))
            for r in await cur.fetchall():
                out.setdefault(r[0], []).append(RegisteredModelAlias(r[1], int(r[2])))
        return out

    async def _versions_from_rows(self, db: Any, workspace: str, rows: Sequence[Any], *,
                                  with_aliases: bool = True) -> list[ModelVersion]:
        """Versions with their tags; aliases only ``with_aliases``: stock fills them in for
        single-version answers and get-latest-versions, not in lists or latest_versions."""
        names = sorted({r["name"] for r in rows})
        tags: dict[tuple[str, int], list[Tag]] = {}
        for i in range(0, len(names), _CHUNK):
            chunk = names[i:i + _CHUNK]
            cur = await db.execute(
                "SELECT name, version, key, value FROM model_version_tags WHERE workspace = ?"
                f" AND name IN ({_marks(len(chunk))}) ORDER BY tag_id", (workspace, *chunk))
            for r in await cur.fetchall():
                tags.setdefault((r[0], int(r[1])), []).append(Tag(r[2], r[3]))
        aliases = await self._aliases(db, workspace, names) if with_aliases else {}
        return [
            ModelVersion(
                name=r["name"], version=int(r["version"]),
                creation_timestamp=r["creation_timestamp"],
                last_updated_timestamp=r["last_updated_timestamp"],
                current_stage=r["current_stage"], description=r["description"],
                user_id=r["user_id"], source=r["source"],
                storage_location=r["storage_location"], run_id=r["run_id"],
                run_link=r["run_link"], status=r["status"],
                status_message=r["status_message"], model_id=r["model_id"],
                workspace=r["workspace"],
                tags=tuple(tags.get((r["name"], int(r["version"])), ())),
                aliases=tuple(a.alias for a in aliases.get(r["name"], ())
                              if a.version == int(r["version"])),
            )
            for r in rows
        ]

    async def _load_version(self, db: Any, workspace: str, name: str,
                            version: int) -> ModelVersion:
        row = await self._mv_row(db, workspace, name, version)
        return (await self._versions_from_rows(db, workspace, [row]))[0]

    async def _load_registered_models(
        self, db: Any, workspace: str, names: Sequence[str], *, by_stage_name: bool = False,
        with_version_aliases: bool = False,
    ) -> list[RegisteredModel]:
        """Registered models in ``names`` order. ``latest_versions`` are in order of each
        stage's first version (``get``), or by stage name (``search``), as stock's two code
        paths return them."""
        rows: dict[str, Any] = {}
        tags: dict[str, list[Tag]] = {}
        version_rows: list[Any] = []
        for i in range(0, len(names), _CHUNK):
            chunk = list(names[i:i + _CHUNK])
            marks = _marks(len(chunk))
            cur = await db.execute(
                f"SELECT * FROM registered_models WHERE workspace = ? AND name IN ({marks})",
                (workspace, *chunk))
            rows.update({r["name"]: r for r in await cur.fetchall()})
            cur = await db.execute(
                "SELECT name, key, value FROM registered_model_tags WHERE workspace = ?"
                f" AND name IN ({marks}) ORDER BY tag_id", (workspace, *chunk))
            for r in await cur.fetchall():
                tags.setdefault(r[0], []).append(Tag(r[1], r[2]))
            cur = await db.execute(
                "SELECT * FROM model_versions WHERE workspace = ?"
                f" AND name IN ({marks}) AND current_stage != ? ORDER BY name, version",
                (workspace, *chunk, STAGE_DELETED))
            version_rows.extend(await cur.fetchall())
        latest: dict[str, dict[str, Any]] = {}
        for r in version_rows:
            latest.setdefault(r["name"], {})[r["current_stage"]] = r  # ascending: max wins
        chosen = [r for n in latest for r in (
            [latest[n][s] for s in sorted(latest[n])] if by_stage_name
            else list(latest[n].values()))]
        versions = await self._versions_from_rows(db, workspace, chosen,
                                                  with_aliases=with_version_aliases)
        by_name: dict[str, list[ModelVersion]] = {}
        for v in versions:
            by_name.setdefault(v.name, []).append(v)
        aliases = await self._aliases(db, workspace, list(rows))
        return [
            RegisteredModel(
                name=n, creation_timestamp=rows[n]["creation_timestamp"],
                last_updated_timestamp=rows[n]["last_updated_timestamp"],
                description=rows[n]["description"], workspace=workspace,
                latest_versions=tuple(by_name.get(n, ())), tags=tuple(tags.get(n, ())),
                aliases=tuple(aliases.get(n, ())),
            )
            for n in names if n in rows
        ]

    async def _touch_rm(self, db: Any, workspace: str, name: str, now: int) -> None:
        await db.execute(
            "UPDATE registered_models SET last_updated_timestamp = ?"
            " WHERE workspace = ? AND name = ?", (now, workspace, name))

    # -- registered models ---------------------------------------------------------------

    async def create_registered_model(
        self, name: str, *, tags: Sequence[Tag] = (), description: str | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> RegisteredModel:
        now = now_ms()
        async with self._tx() as db:
            cur = await db.execute(
                self._dialect.insert_ignore("registered_models",
                    ("workspace", "name", "creation_timestamp", "last_updated_timestamp",
                     "description"), ("workspace", "name")),
                (workspace, name, now, now, description))
            if cur.rowcount == 0:  # the name is taken
                existing = (await self._load_registered_models(db, workspace, [name]))[0]
                new_prompt = any(t.key == IS_PROMPT_TAG and t.value.lower() == "true"
                                 for t in tags)
                old, new = ("Prompt" if existing.is_prompt else "Registered Model",
                            "Prompt" if new_prompt else "Registered Model")
                if old != new:
                    raise errors.AlreadyExists(
                        f"Tried to create a {new.lower()} with name {name!r}, but the name is "
                        f"already taken by a {old.lower()}. MLflow does not allow creating a "
                        "model and a prompt with the same name.")
                raise errors.AlreadyExists(f"{new} (name={name}) already exists.")
            await db.executemany(
                self._dialect.upsert("registered_model_tags",
                    ("workspace", "name", "key", "value"), ("workspace", "name", "key"),
                    ("value",)),
                [(workspace, name, t.key, t.value) for t in tags])
            return (await self._load_registered_models(db, workspace, [name]))[0]

    async def get_registered_model(
        self, name: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> RegisteredModel:
        async with self._read() as db:
            found = await self._load_registered_models(db, workspace, [name])
        if not found:
            raise _rm_not_found(name)
        return found[0]

    async def update_registered_model(
        self, name: str, description: str | None, *, workspace: str = DEFAULT_WORKSPACE
    ) -> RegisteredModel:
        async with self._tx() as db:
            await self._rm_row(db, workspace, name)
            await db.execute(
                "UPDATE registered_models SET description = ?, last_updated_timestamp = ?"
                " WHERE workspace = ? AND name = ?", (description, now_ms(), workspace, name))
            return (await self._load_registered_models(db, workspace, [name]))[0]

    async def rename_registered_model(
        self, name: str, new_name: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> RegisteredModel:
        now = now_ms()
        async with self._tx() as db:
            await self._rm_row(db, workspace, name)
            try:
                # ON UPDATE CASCADE carries the new name to versions, tags and aliases.
                await db.execute(
                    "UPDATE registered_models SET name = ?, last_updated_timestamp = ?"
                    " WHERE workspace = ? AND name = ?", (new_name, now, workspace, name))
            except UniqueViolation:
                raise errors.AlreadyExists(
                    f"Registered Model (name={new_name}) already exists.") from None
            await db.execute(
                "UPDATE model_versions SET last_updated_timestamp = ?"
                " WHERE workspace = ? AND name = ?", (now, workspace, new_name))
            return (await self._load_registered_models(db, workspace, [new_name]))[0]

    async def delete_registered_model(
        self, name: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        async with self._tx() as db:
            await self._rm_row(db, workspace, name)
            # Children go by ON DELETE CASCADE; delete them explicitly as well so the result
            # does not depend on the connection's foreign-key setting.
            for table in ("model_version_tags", "registered_model_aliases",
                          "registered_model_tags", "model_versions", "registered_models"):
                await db.execute(f"DELETE FROM {table} WHERE workspace = ? AND name = ?",
                                 (workspace, name))

    async def search_registered_models(
        self, *, filter_string: str = "", max_results: int = 100,
        order_by: Sequence[str] = (), page_token: str | None = None,
        workspace: str = DEFAULT_WORKSPACE, visibility: Visibility | None = None,
    ) -> Page[RegisteredModel]:
        if max_results > registry_search.MAX_REGISTERED_MODELS:
            raise errors.InvalidArgument(
                "Invalid value for request parameter max_results. It must be at most "
                f"{registry_search.MAX_REGISTERED_MODELS}, but got value {max_results}")
        offset = search.decode_page_token(page_token)
        sql, params = registry_search.build_search_registered_models_sql(
            workspace, filter_string, order_by, max_results, offset, visibility)
        async with self._read() as db:
            names = [r[0] for r in await (await db.execute(sql, params)).fetchall()]
            items = await self._load_registered_models(db, workspace, names[:max_results],
                                            by_stage_name=True)
        token = (search.encode_page_token(offset + max_results)
                 if len(names) > max_results else None)
        return Page(items, token)

    async def get_latest_versions(
        self, name: str, stages: Sequence[str] = (), *, workspace: str = DEFAULT_WORKSPACE
    ) -> list[ModelVersion]:
        wanted = {_stage(s) for s in stages} if stages else set(ALL_STAGES)
        async with self._read() as db:
            found = await self._load_registered_models(db, workspace, [name],
                                                       with_version_aliases=True)
        if not found:
            raise _rm_not_found(name)
        return [v for v in found[0].latest_versions if v.current_stage in wanted]

    async def set_registered_model_tag(
        self, name: str, tag: Tag, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        async with self._tx() as db:
            await self._rm_row(db, workspace, name)
            await db.execute(
                self._dialect.upsert("registered_model_tags",
                    ("workspace", "name", "key", "value"), ("workspace", "name", "key"),
                    ("value",)),
                (workspace, name, tag.key, tag.value))

    async def delete_registered_model_tag(
        self, name: str, key: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        async with self._tx() as db:
            await self._rm_row(db, workspace, name)
            await db.execute(
                "DELETE FROM registered_model_tags WHERE workspace = ? AND name = ? AND key = ?",
                (workspace, name, key))

    # -- aliases -------------------------------------------------------------------------

    async def set_registered_model_alias(
        self, name: str, alias: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        number = _version_number(version)
        async with self._tx() as db:
            await self._mv_row(db, workspace, name, number)
            await db.execute(
                self._dialect.upsert("registered_model_aliases",
                    ("workspace", "name", "alias", "version"), ("workspace", "name", "alias"),
                    ("version",)), (workspace, name, alias, number))

    async def delete_registered_model_alias(
        self, name: str, alias: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        async with self._tx() as db:
            await self._rm_row(db, workspace, name)
            await db.execute(
                "DELETE FROM registered_model_aliases WHERE workspace = ? AND name = ?"
                " AND alias = ?", (workspace, name, alias))

    async def get_model_version_by_alias(
        self, name: str, alias: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> ModelVersion:
        if alias.lower() == "latest":
            versions = await self.get_latest_versions(name, workspace=workspace)
            if not versions:
                raise errors.NotFound(f"Latest version not found for model {name}.")
            return max(versions, key=lambda v: v.version)
        async with self._read() as db:
            await self._rm_row(db, workspace, name)
            cur = await db.execute(
                "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ?"
                " AND alias = ?", (workspace, name, alias))
            row = await cur.fetchone()
            if row is None:
                raise errors.InvalidArgument(f"Registered model alias {alias} not found.")
            return await self._load_version(db, workspace, name, int(row[0]))

    # -- model versions ------------------------------------------------------------------

    async def create_model_version(
        self, name: str, source: str, *, run_id: str | None = None,
        tags: Sequence[Tag] = (), run_link: str | None = None,
        description: str | None = None, model_id: str | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> ModelVersion:
        is_prompt = any(t.key == IS_PROMPT_TAG and t.value.lower() == "true" for t in tags)
        now = now_ms()
        async with self._tx() as db:
            storage_location = source
            if source.startswith("models:"):
                source_model_id, src_name, src_version = _parse_models_uri(source)
                if source_model_id is not None:
                    model = await self._logged_model_for_source(db, source_model_id, source)
                    storage_location = model["artifact_location"]
                    run_id = run_id or model["source_run_id"]
                else:
                    assert src_name is not None and src_version is not None
                    try:
                        src = await self._mv_row(db, workspace, src_name, src_version)
                    except errors.NotFound as exc:
                        raise errors.InvalidArgument(
                            "Unable to fetch model from model URI source artifact location "
                            f"'{source}'.Error: {exc}") from None
                    storage_location = src["storage_location"] or src["source"]
            if not run_id and model_id:
                run_id = (await self._logged_model_for_source(db, model_id, source))[
                    "source_run_id"]
            # Touching the model first row-locks it (PostgreSQL), so concurrent creators of
            # the same model queue here and each reads the max version the previous one left.
            await self._touch_rm(db, workspace, name, now)
            await self._rm_row(db, workspace, name)
            cur = await db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM model_versions"
                " WHERE workspace = ? AND name = ?", (workspace, name))
            row = await cur.fetchone()
            version = int(row[0]) + 1 if row else 1
            try:
                await db.execute(
                    "INSERT INTO model_versions (workspace, name, version, creation_timestamp,"
                    " last_updated_timestamp, description, current_stage, source,"
                    " storage_location, run_id, run_link, status, model_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'None', ?, ?, ?, ?, 'READY', ?)",
                    (workspace, name, version, now, now, description, source, storage_location,
                     run_id, run_link, model_id))
            except UniqueViolation:
                # The write transaction serialises creators, so this means a concurrent
                # writer outside it; the client retries on 503.
                raise errors.Unavailable(
                    f"Model Version creation error (name={name}); retry") from None
            await db.executemany(
                self._dialect.upsert("model_version_tags",
                    ("workspace", "name", "version", "key", "value"),
                    ("workspace", "name", "version", "key"), ("value",)),
                [(workspace, name, version, t.key, t.value) for t in tags])
            if model_id and not is_prompt:
                await self._record_version_on_logged_model(db, model_id, name, version, now)
            return await self._load_version(db, workspace, name, version)

    async def _logged_model_for_source(self, db: Any, model_id: str, source: str) -> Any:
        cur = await db.execute("SELECT * FROM logged_models WHERE model_id = ?", (model_id,))
        row = await cur.fetchone()
        if row is None or row["lifecycle_stage"] != LifecycleStage.ACTIVE:
            raise errors.InvalidArgument(
                "Unable to fetch model from model URI source artifact location "
                f"'{source}'.Error: Logged model with ID '{model_id}' not found.")
        return row

    async def _record_version_on_logged_model(
        self, db: Any, model_id: str, name: str, version: int, now: int
    ) -> None:
        """Append {name, version} to the logged model's ``mlflow.modelVersions`` tag, as
        stock's handler does after creating the version (here in the same transaction)."""
        cur = await db.execute(
            "SELECT value FROM logged_model_tags WHERE model_id = ? AND key = ?",
            (model_id, MODEL_VERSIONS_TAG))
        row = await cur.fetchone()
        entry = {"name": name, "version": version}
        entries: list[Any] = [entry]
        if row is not None and row[0]:
            try:
                existing = json.loads(row[0])
            except ValueError:
                existing = None
            if isinstance(existing, list):
                entries = existing if entry in existing else [*existing, entry]
        await db.execute(
            self._dialect.upsert("logged_model_tags", ("model_id", "key", "value"),
                ("model_id", "key"), ("value",)),
            (model_id, MODEL_VERSIONS_TAG, json.dumps(entries)))
        await db.execute(
            "UPDATE logged_models SET last_updated_timestamp_ms = ? WHERE model_id = ?",
            (now, model_id))

    async def get_model_version(
        self, name: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> ModelVersion:
        number = _version_number(version)
        async with self._read() as db:
            return await self._load_version(db, workspace, name, number)

    async def update_model_version(
        self, name: str, version: str | int, description: str | None, *,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> ModelVersion:
        number = _version_number(version)
        async with self._tx() as db:
            await self._mv_row(db, workspace, name, number)
            await db.execute(
                "UPDATE model_versions SET description = ?, last_updated_timestamp = ?"
                " WHERE workspace = ? AND name = ? AND version = ?",
                (description, now_ms(), workspace, name, number))
            return await self._load_version(db, workspace, name, number)

    async def transition_model_version_stage(
        self, name: str, version: str | int, stage: str, *,
        archive_existing_versions: bool = False, workspace: str = DEFAULT_WORKSPACE,
    ) -> ModelVersion:
        canonical = _stage(stage)
        if archive_existing_versions and canonical not in ACTIVE_STAGES:
            raise errors.InvalidArgument(
                "Model version transition cannot archive existing model versions because "
                f"'{stage}' is not an Active stage. Valid stages are {list(ACTIVE_STAGES)}")
        number = _version_number(version)
        now = now_ms()
        async with self._tx() as db:
            await self._mv_row(db, workspace, name, number)
            if archive_existing_versions:
                await db.execute(
                    "UPDATE model_versions SET current_stage = ?, last_updated_timestamp = ?"
                    " WHERE workspace = ? AND name = ? AND version != ? AND current_stage = ?",
                    (STAGE_ARCHIVED, now, workspace, name, number, canonical))
            await db.execute(
                "UPDATE model_versions SET current_stage = ?, last_updated_timestamp = ?"
                " WHERE workspace = ? AND name = ? AND version = ?",
                (canonical, now, workspace, name, number))
            await self._touch_rm(db, workspace, name, now)
            return await self._load_version(db, workspace, name, number)

    async def delete_model_version(
        self, name: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        number = _version_number(version)
        now = now_ms()
        async with self._tx() as db:
            await self._mv_row(db, workspace, name, number)
            await db.execute(
                "DELETE FROM registered_model_aliases WHERE workspace = ? AND name = ?"
                " AND version = ?", (workspace, name, number))
            # Stock keeps the row with its fields redacted, so the number is never reused.
            await db.execute(
                "UPDATE model_versions SET current_stage = ?, last_updated_timestamp = ?,"
                " description = NULL, user_id = NULL, source = 'REDACTED-SOURCE-PATH',"
                " run_id = 'REDACTED-RUN-ID', run_link = 'REDACTED-RUN-LINK',"
                " status_message = NULL WHERE workspace = ? AND name = ? AND version = ?",
                (STAGE_DELETED, now, workspace, name, number))
            await self._touch_rm(db, workspace, name, now)

    async def get_model_version_download_uri(
        self, name: str, version: str | int, *, workspace: str = DEFAULT_WORKSPACE
    ) -> str:
        number = _version_number(version)
        async with self._read() as db:
            row = await self._mv_row(db, workspace, name, number)
        return str(row["storage_location"] or row["source"])

    async def search_model_versions(
        self, *, filter_string: str = "", max_results: int = registry_search.MAX_MODEL_VERSIONS,
        order_by: Sequence[str] = (), page_token: str | None = None,
        workspace: str = DEFAULT_WORKSPACE, visibility: Visibility | None = None,
    ) -> Page[ModelVersion]:
        if max_results < 1:
            raise errors.InvalidArgument(
                "Invalid value for max_results. It must be a positive integer,"
                f" but got {max_results}")
        if max_results > registry_search.MAX_MODEL_VERSIONS:
            raise errors.InvalidArgument(
                "Invalid value for request parameter max_results. It must be at most "
                f"{registry_search.MAX_MODEL_VERSIONS}, but got value {max_results}")
        offset = search.decode_page_token(page_token)
        sql, params = registry_search.build_search_model_versions_sql(
            workspace, filter_string, order_by, max_results, offset, visibility)
        async with self._read() as db:
            keys = [(r[0], int(r[1])) for r in await (await db.execute(sql, params)).fetchall()]
            page = keys[:max_results]
            rows = await self._version_rows(db, workspace, page)
            items = await self._versions_from_rows(db, workspace, rows, with_aliases=False)
        token = (search.encode_page_token(offset + max_results)
                 if len(keys) > max_results else None)
        return Page(items, token)

    async def _version_rows(self, db: Any, workspace: str,
                            keys: Iterable[tuple[str, int]]) -> list[Any]:
        wanted = list(keys)
        found: dict[tuple[str, int], Any] = {}
        names = sorted({n for n, _ in wanted})
        for i in range(0, len(names), _CHUNK):
            chunk = names[i:i + _CHUNK]
            cur = await db.execute(
                "SELECT * FROM model_versions WHERE workspace = ?"
                f" AND name IN ({_marks(len(chunk))})", (workspace, *chunk))
            for r in await cur.fetchall():
                found[(r["name"], int(r["version"]))] = r
        return [found[k] for k in wanted if k in found]

    async def set_model_version_tag(
        self, name: str, version: str | int, tag: Tag, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        number = _version_number(version)
        async with self._tx() as db:
            await self._mv_row(db, workspace, name, number)
            await db.execute(
                self._dialect.upsert("model_version_tags",
                    ("workspace", "name", "version", "key", "value"),
                    ("workspace", "name", "version", "key"), ("value",)),
                (workspace, name, number, tag.key, tag.value))

    async def delete_model_version_tag(
        self, name: str, version: str | int, key: str, *, workspace: str = DEFAULT_WORKSPACE
    ) -> None:
        number = _version_number(version)
        async with self._tx() as db:
            await self._mv_row(db, workspace, name, number)
            await db.execute(
                "DELETE FROM model_version_tags WHERE workspace = ? AND name = ?"
                " AND version = ? AND key = ?", (workspace, name, number, key))
