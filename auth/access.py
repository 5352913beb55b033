"""The vocabulary of access control: what a request touches and what it does to it.

Pure data; no I/O and no aiohttp. The gateway's route table declares an :class:`Access` for
every route, and the auth middleware asks :func:`is_allowed` about it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Access", "Action", "ResourceKind"]


class ResourceKind(enum.StrEnum):
    PUBLIC = "public"  # no resource: health, version, server-info
    WORKSPACE = "workspace"  # creating top-level resources, workspace-wide searches
    EXPERIMENT = "experiment"
    RUN = "run"
    LOGGED_MODEL = "logged_model"
    REGISTERED_MODEL = "registered_model"
    ARTIFACT_PATH = "artifact_path"  # a path under the artifacts destination
    GRANT_TARGET = "grant_target"  # the experiment or model a permission change is about
    SERVER = "server"  # server-wide administration: users, teams, audit


class Action(enum.StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    MANAGE = "manage"


@dataclass(frozen=True)
class Access:
    """What a route needs: ``action`` on the ``resource`` named by request field ``locator``
    (for example ``run_id`` in the body, or the ``path`` in the URL)."""

    resource: ResourceKind
    action: Action
    locator: str | None = None
    # A change that needs no more than ``action`` (a user's own API tokens): audited like
    # every write although READ suffices.
    writes: bool = False
