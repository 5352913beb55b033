"""Identities, roles and permission checks. Pure: imports neither aiohttp nor backends."""

from __future__ import annotations

from auth.access import Access, Action, ResourceKind
from auth.identity import Identity, InvalidToken, TokenRecord, TokenScope
from auth.login_limits import LoginLimiter, client_address, parse_trusted_proxies
from auth.permissions import Permission, TeamRole, required_permission
from auth.policy import (
    DEFAULT_WORKSPACE,
    Grant,
    Policy,
    Principal,
    Resource,
    effective_permission,
    is_allowed,
    refusal,
    role_of,
)

__all__ = [
    "DEFAULT_WORKSPACE",
    "Access",
    "Action",
    "Grant",
    "Identity",
    "InvalidToken",
    "LoginLimiter",
    "Permission",
    "Policy",
    "Principal",
    "Resource",
    "ResourceKind",
    "TeamRole",
    "TokenRecord",
    "TokenScope",
    "client_address",
    "effective_permission",
    "is_allowed",
    "parse_trusted_proxies",
    "refusal",
    "required_permission",
    "role_of",
]
