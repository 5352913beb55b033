"""Identities, roles and permission checks. Pure: imports neither aiohttp nor backends."""

from __future__ import annotations

from auth.access import Access, Action, ResourceKind
from auth.identity import Identity, InvalidToken, TokenRecord, TokenScope
from auth.permissions import Permission, TeamRole, required_permission
from auth.policy import Grant, Policy, Principal, Resource, effective_permission, is_allowed

__all__ = [
    "Access",
    "Action",
    "Grant",
    "Identity",
    "InvalidToken",
    "Permission",
    "Policy",
    "Principal",
    "Resource",
    "ResourceKind",
    "TeamRole",
    "TokenRecord",
    "TokenScope",
    "effective_permission",
    "is_allowed",
    "required_permission",
]
