"""Identities, roles and permission checks. Pure: imports neither aiohttp nor backends."""

from __future__ import annotations

from auth.access import Access, Action, ResourceKind

__all__ = ["Access", "Action", "ResourceKind"]
