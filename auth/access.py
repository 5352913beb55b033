"""The vocabulary of access control: what a request touches and what it does to it.

Pure data; no I/O and no aiohttp. The gateway's route table declares an :class:`Access` for
every route, and the auth middleware asks :func:`is_allowed` about it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Access", "Action", "Ref", "ResourceKind", "named"]


class ResourceKind(enum.StrEnum):
    PUBLIC = "public"  # no resource: health, version, server-info
    WORKSPACE = "workspace"  # creating top-level resources, workspace-wide searches
    EXPERIMENT = "experiment"
    RUN = "run"
    LOGGED_MODEL = "logged_model"
    REGISTERED_MODEL = "registered_model"
    ARTIFACT_PATH = "artifact_path"  # a path under the artifacts destination
    GRANT_TARGET = "grant_target"  # the experiment or model a permission change is about
    MODEL_SOURCE = "model_source"  # a model version's source URI: a run, model or path
    SERVER = "server"  # server-wide administration: users, teams, audit


class Action(enum.StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    MANAGE = "manage"


@dataclass(frozen=True)
class Ref:
    """Another resource a request names besides the route's own (a logged model in a
    metric, a model version's source run): the caller needs ``action`` on it too. ``field``
    is a dotted path into the request's message; lists on the way are walked, so
    ``metrics.model_id`` is the ``model_id`` of every metric."""

    resource: ResourceKind
    field: str
    action: Action = Action.READ
    # An id sent empty names a resource that does not exist (refused), instead of none.
    strict: bool = False
    # The request's own resource, one of several it reads (a GraphQL document's runs and
    # experiments): answered as the route's own is, 404 where the caller may not learn of it.
    primary: bool = False


@dataclass(frozen=True)
class Access:
    """What a route needs: ``action`` on the ``resource`` named by message field ``locator``
    (for example ``run_id`` in the body, or the ``path`` in the URL), and each of ``refs``.
    A request whose locator names nothing is refused, unless the route has a ``default``."""

    resource: ResourceKind
    action: Action
    locator: str | None = None
    # A change that needs no more than ``action`` (a user's own API tokens): audited like
    # every write although READ suffices.
    writes: bool = False
    default: str | None = None
    refs: tuple[Ref, ...] = ()
    creates: ResourceKind | None = None  # with CREATE on a workspace: what it creates


def named(message: Mapping[str, Any], path: str, *, empty: bool = False) -> list[str]:
    """Every non-empty value (``empty``: every value) at the dotted ``path`` of a parsed
    message (plain dicts and lists, as the parser makes them), lists walked."""
    if "." not in path:  # the usual case: one field of the message itself
        value = message.get(path)
        if type(value) is str:
            return [value] if empty or value else []
        if value is None:
            return []
        values: list[Any] = value if type(value) is list else [value]
        return [v if type(v) is str else str(v) for v in values
                if v is not None and (empty or v != "")]
    values = [message]
    for part in path.split("."):
        found: list[Any] = []
        for value in values:
            item = value.get(part) if type(value) is dict else None
            if type(item) is list:
                found += item
            elif item is not None:
                found.append(item)
        values = found
    return [v if type(v) is str else str(v) for v in values if empty or v != ""]
