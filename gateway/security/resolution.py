"""What the ids a request names are, for the permission check: each run, logged model,
artifact path and model version source resolved to the experiment or registered model that
is judged for it (:mod:`auth.policy`), with that resource's workspace and grants.

Which experiment a run or logged model belongs to, and which workspace an experiment
belongs to, never change, so they are kept until the LRU drops them. Grants and the list of
workspaces are kept for ``--auth-cache-seconds``; the admin routes invalidate what they
change in this process at once, and every process drops them within a second of a change
made anywhere (:class:`~gateway.security.watch.AuthWatch`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from auth.access import ResourceKind
from auth.permissions import Permission
from auth.policy import Grant, Principal, Resource
from backends import errors as be
from backends.metadata.interface import registry_validation as rv
from backends.metadata.interface.store import MetadataStore
from gateway.artifact_paths import store_path, validate_path
from gateway.security.caches import TTLCache

__all__ = ["Resolver", "Target"]

# An experiment id as the server writes it. The stores read ids with int(), which also takes
# "01", "+1", " 1" or "١", but grants are kept under the canonical text: another spelling
# would find none of them (a DENY among them), so it names no experiment here.
_EXPERIMENT_ID = re.compile(r"0|[1-9][0-9]{0,17}")


class Target(NamedTuple):
    """A resource a request names, resolved: ``kind`` and ``id`` as the request names it
    (and the audit log records it), ``resource`` what the check judges for it."""

    kind: str
    id: str
    resource: Resource
    foreign: bool = False  # lives in another workspace than the request's


class Resolver:
    def __init__(self, store: MetadataStore, ttl: float) -> None:
        self.store = store
        self._grants: TTLCache[tuple[str, str, str], tuple[Grant, ...]] = TTLCache(ttl)
        self._workspaces: TTLCache[str, bool] = TTLCache(ttl)
        self._owners: TTLCache[tuple[str, str], str] = TTLCache(None, 100_000)
        self._experiment_ws: TTLCache[str, str] = TTLCache(None, 100_000)

    # -- invalidation --------------------------------------------------------------------

    def invalidate_grants(self, resource_type: str | None = None, workspace: str = "",
                          resource_id: str = "") -> None:
        if resource_type is None:
            self._grants.clear()
        else:
            self._grants.discard((resource_type, workspace, resource_id))

    def invalidate_workspaces(self) -> None:
        self._workspaces.clear()

    # -- lookups -------------------------------------------------------------------------

    async def workspace_exists(self, name: str) -> bool:
        if self._workspaces.get(name) is None:
            epoch = self._workspaces.epoch
            try:
                await self.store.get_workspace(name)
            except be.NotFound:
                return False
            self._workspaces.put(name, True, epoch)
        return True

    async def grants(self, resource_type: str, workspace: str,
                     resource_id: str) -> tuple[Grant, ...]:
        key = (resource_type, workspace, resource_id)
        found = self._grants.get(key)
        if found is None:
            epoch = self._grants.epoch
            rows = await self.store.grants_on(resource_type, workspace, resource_id)
            found = tuple(Grant(Principal(r.principal_type, r.principal),
                                Permission.parse(r.permission)) for r in rows)
            self._grants.put(key, found, epoch)
        return found

    async def experiment_workspace(self, experiment_id: str) -> str | None:
        if not _EXPERIMENT_ID.fullmatch(experiment_id):
            return None
        ws = self._experiment_ws.get(experiment_id)
        if ws is None:
            ws = await self.store.experiment_workspace(experiment_id)
            if ws is not None:
                self._experiment_ws.put(experiment_id, ws)
        return ws

    async def _owner(self, kind: str, key: str) -> str | None:
        """The experiment id of run or logged model ``key``; None if there is none."""
        exp = self._owners.get((kind, key))
        if exp is None:
            exp = await (self.store.run_experiment(key) if kind == "run"
                         else self.store.logged_model_experiment(key))
            if exp is not None:
                self._owners.put((kind, key), exp)
        return exp

    # -- targets -------------------------------------------------------------------------

    async def experiment(self, experiment_id: str, workspace: str,
                         kind: str = "experiment", key: str | None = None) -> Target | None:
        ws = await self.experiment_workspace(experiment_id)
        if ws is None:
            return None
        grants = await self.grants("experiment", ws, experiment_id)
        return Target(kind, key or experiment_id,
                      Resource(ResourceKind.EXPERIMENT, ws, grants), ws != workspace)

    async def registered_model(self, name: str, workspace: str) -> Target:
        grants = await self.grants("registered_model", workspace, name)
        return Target("registered_model", name,
                      Resource(ResourceKind.REGISTERED_MODEL, workspace, grants))

    async def target(self, kind: ResourceKind, key: str, workspace: str, *,
                     by_name: bool = False, resource_type: str | None = None,
                     ) -> Target | None:
        """What ``key`` names as a ``kind``; None when nothing by that id exists. ``by_name``:
        an experiment named by its name; ``resource_type``: a grant's target type."""
        if kind is ResourceKind.PUBLIC or kind is ResourceKind.SERVER:
            return Target(kind.value, key, Resource(kind, workspace))
        if kind is ResourceKind.EXPERIMENT:
            if by_name:
                found = await self.store.experiment_id_by_name(workspace, key)
                return None if found is None else await self.experiment(found, workspace)
            return await self.experiment(key, workspace)
        if kind is ResourceKind.RUN or kind is ResourceKind.LOGGED_MODEL:
            name = "run" if kind is ResourceKind.RUN else "logged_model"
            exp = await self._owner(name, key)
            return None if exp is None else await self.experiment(exp, workspace, name, key)
        if kind is ResourceKind.REGISTERED_MODEL:
            return await self.registered_model(key, workspace)
        if kind is ResourceKind.WORKSPACE:
            return Target("workspace", key, Resource(ResourceKind.WORKSPACE, key))
        if kind is ResourceKind.ARTIFACT_PATH:
            # Judged as the handler will use it: decoded and checked (400), as a store key.
            head = store_path(validate_path(key)).split("/", 1)[0]
            owner = await self.experiment(head, workspace) if head.isdigit() else None
            if owner is None:
                # The destination root, or a folder of no experiment: administrators only.
                return Target("artifact", key, Resource(ResourceKind.SERVER, workspace))
            return Target("artifact", key, owner.resource, owner.foreign)
        if kind is ResourceKind.GRANT_TARGET:
            if resource_type == "experiment":
                return await self.experiment(key, workspace)
            if resource_type == "registered_model":
                return await self.registered_model(key, workspace)
            return None
        if kind is ResourceKind.MODEL_SOURCE:
            named = rv.models_uri_target(key)
            if named is None:  # not a models:/ URI: the handler checks it lies in its run
                return Target("model_source", key, Resource(ResourceKind.PUBLIC, workspace))
            source_kind = (ResourceKind.REGISTERED_MODEL if named[0] == "registered_model"
                           else ResourceKind.LOGGED_MODEL)
            return await self.target(source_kind, named[1], workspace)
        return Target(kind.value, key, Resource(ResourceKind.SERVER, workspace))  # admins
