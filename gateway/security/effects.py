"""Grants that follow from what a handler did, called by the handlers themselves: the
creator of an experiment or registered model manages it; a renamed model keeps its grants;
a deleted one loses them. No-ops with auth off."""

from __future__ import annotations

from aiohttp import web

from auth.permissions import Permission
from auth.policy import USER
from backends.metadata.interface.auth_entities import GrantRow
from gateway.security.middleware import identity_of, note_created, workspace_of
from gateway.security.state import Security, security_of

__all__ = ["grant_creator", "grants_deleted", "grants_renamed"]


def _auth(request: web.Request) -> Security | None:
    sec = security_of(request)
    return sec if sec is not None and sec.auth_on else None


async def grant_creator(request: web.Request, resource_type: str, resource_id: str) -> None:
    """The caller created ``resource_id``: MANAGE on it, and its id in the audit record."""
    note_created(request, resource_id)
    sec, identity = _auth(request), identity_of(request)
    if sec is not None and identity is not None:
        await sec.set_grant(GrantRow(resource_type, workspace_of(request), resource_id, USER,
                                     str(identity.user_id), Permission.MANAGE.name))


async def grants_renamed(request: web.Request, resource_type: str, old: str, new: str) -> None:
    sec = _auth(request)
    if sec is not None:
        workspace = workspace_of(request)
        await sec.store.move_grants(resource_type, workspace, old, new)
        sec.invalidate_grants(resource_type, workspace, old)
        sec.invalidate_grants(resource_type, workspace, new)


async def grants_deleted(request: web.Request, resource_type: str, resource_id: str) -> None:
    sec = _auth(request)
    if sec is not None:
        workspace = workspace_of(request)
        await sec.store.delete_grants_on(resource_type, workspace, resource_id)
        sec.invalidate_grants(resource_type, workspace, resource_id)
