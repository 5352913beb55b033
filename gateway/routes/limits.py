"""Rate limits per workspace (mlgate's own, under ``/mlgate/v1``): administrators set and
remove them; a team's managers may read their team's. Enforcement is
:mod:`gateway.security.limits`; a change reaches every server process within a second.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from backends.metadata.interface.auth_entities import LimitRow
from gateway import accounts
from gateway.errors import MlflowError
from gateway.parsing import Field, Message, message_of
from gateway.render import json_response
from gateway.routes._common import store
from gateway.routing import Route
from gateway.security import Security, security_of

__all__ = ["ROUTES"]

MLGATE = ("/mlgate/v1",)

_ADMIN = Access(ResourceKind.SERVER, Action.MANAGE)
_ADMIN_READ = Access(ResourceKind.SERVER, Action.READ)
_TEAM_ADMIN = Access(ResourceKind.WORKSPACE, Action.MANAGE, "name")
_LIMITS = Message({name: Field("double") for name in accounts.LIMIT_FIELDS})


def _limits_on(request: web.Request) -> Security:
    sec = security_of(request)
    if sec is None:
        raise MlflowError("Rate limits are per workspace: this server has no workspaces "
                          "(mlgate serve --enable-workspaces or --auth).", "ENDPOINT_NOT_FOUND")
    return sec


def _json(row: LimitRow | None, effective: LimitRow) -> dict[str, Any]:
    """What was set (null: the server's default) and what is in force (0: no limit)."""
    return {"workspace": effective.workspace,
            "limits": {f: getattr(row, f) if row else None for f in accounts.LIMIT_FIELDS},
            "effective": {f: getattr(effective, f) for f in accounts.LIMIT_FIELDS}}


async def list_limits(request: web.Request) -> web.Response:
    sec = _limits_on(request)
    rows = await store(request).list_limits()
    return json_response({"limits": [_json(r, sec.limits.effective(r.workspace)) for r in rows],
                          "defaults": _json(None, sec.limits.effective(""))["effective"],
                          "processes": sec.limits.processes})


async def get_limits(request: web.Request) -> web.Response:
    sec = _limits_on(request)
    name = message_of(request)["name"]
    await store(request).get_workspace(name)
    row = next((r for r in await store(request).list_limits() if r.workspace == name), None)
    return json_response(_json(row, _effective(row, sec, name)))


def _effective(row: LimitRow | None, sec: Security, name: str) -> LimitRow:
    """In force once this change is loaded: the row over the server's defaults."""
    defaults = sec.limits.effective("")
    return LimitRow(name, *(
        (getattr(row, f) if row and getattr(row, f) is not None else getattr(defaults, f))
        for f in accounts.LIMIT_FIELDS))


async def set_limits(request: web.Request) -> web.Response:
    sec = _limits_on(request)
    msg = message_of(request)
    row = await accounts.set_limits(store(request), msg["name"], msg)
    sec.limits.reload()
    return json_response(_json(row, _effective(row, sec, row.workspace)))


async def delete_limits(request: web.Request) -> web.Response:
    sec = _limits_on(request)
    name = message_of(request)["name"]
    if not await store(request).delete_limits(name):
        raise MlflowError(f"Workspace '{name}' has no limits of its own.",
                          "RESOURCE_DOES_NOT_EXIST")
    sec.limits.reload()
    return web.Response(status=204)


ROUTES = [
    Route("GET", "/limits", list_limits, _ADMIN_READ, MLGATE),
    Route("GET", "/teams/{name}/limits", get_limits, _TEAM_ADMIN, MLGATE),
    Route("PUT", "/teams/{name}/limits", set_limits, _ADMIN, MLGATE, _LIMITS),
    Route("DELETE", "/teams/{name}/limits", delete_limits, _ADMIN, MLGATE),
]
