"""Who a request comes from: an :class:`Identity` (a user, maybe through an API token whose
:class:`TokenScope` narrows what it may do)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from auth.permissions import TeamRole

__all__ = ["Identity", "InvalidToken", "TokenRecord", "TokenScope"]


class InvalidToken(Exception):
    """A token mlgate issued, but expired, revoked or with a wrong secret (401)."""


@dataclass(frozen=True)
class TokenScope:
    """Restrictions of an API token: read-only, and/or one workspace."""

    read_only: bool = False
    workspace: str | None = None


@dataclass(frozen=True)
class TokenRecord:
    """A stored token as the verifier needs it. Validated on construction."""

    token_id: str
    user_id: int
    digest: str  # hex SHA-256 of the secret
    scope: TokenScope = TokenScope()
    expires_at: int | None = None  # ms since the epoch; None: never
    revoked: bool = False

    def __post_init__(self) -> None:
        if not self.token_id or len(self.digest) != 64:
            raise ValueError("malformed token record")

    def check_usable(self, now_ms: int | None = None) -> None:
        """Raises :class:`InvalidToken` if revoked or expired."""
        if self.revoked:
            raise InvalidToken("token revoked")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if self.expires_at is not None and now >= self.expires_at:
            raise InvalidToken("token expired")


@dataclass(frozen=True)
class Identity:
    """An authenticated user. ``teams`` maps workspace name → role; ``scope`` is set when
    the request came with an API token."""

    user_id: int
    username: str
    is_admin: bool = False
    teams: Mapping[str, TeamRole] = field(default_factory=lambda: MappingProxyType({}))
    scope: TokenScope | None = None
    roles: frozenset[int] = frozenset()  # ids of the MLflow roles assigned to the user
    token_id: str | None = None  # the API token it came with (its rate limits count by it)

    def role_in(self, workspace: str) -> TeamRole | None:
        """The team role held in ``workspace``. Permission decisions use
        :func:`auth.policy.role_of`, which also counts an open default workspace."""
        return self.teams.get(workspace)

    def with_scope(self, scope: TokenScope, token_id: str | None = None) -> Identity:
        return Identity(self.user_id, self.username, self.is_admin, self.teams, scope,
                        self.roles, token_id)
