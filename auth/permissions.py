"""MLflow's permission levels (``READ``, ``USE``, ``EDIT``, ``MANAGE``) plus an explicit
``DENY`` and ``NO_PERMISSIONS``, and what each level lets a caller do."""

from __future__ import annotations

import enum

from auth.access import Action

__all__ = ["GRANTABLE", "Permission", "TeamRole", "required_permission"]


class Permission(enum.Enum):
    """Ordered by :attr:`rank`. ``DENY`` is a grant that overrides every positive one."""

    DENY = -1
    NO_PERMISSIONS = 0
    READ = 1
    USE = 2
    EDIT = 3
    MANAGE = 4

    @property
    def rank(self) -> int:
        # _value_, not value: on Python 3.11 an enum's value property is a descriptor call
        # several times as slow, and every permission check reads a rank or two.
        return self._value_

    @classmethod
    def parse(cls, name: str) -> Permission:
        """``ValueError`` for an unknown name (case-insensitive)."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(
                f"Invalid permission '{name}'. Valid permissions are: "
                f"{', '.join(p.name for p in cls)}") from None

    def allows(self, action: Action) -> bool:
        return self.rank >= required_permission(action).rank


# What a grant on an experiment or a registered model may say.
GRANTABLE = frozenset({Permission.READ, Permission.USE, Permission.EDIT, Permission.MANAGE,
                       Permission.DENY})

_REQUIRED = {
    Action.READ: Permission.READ,
    Action.CREATE: Permission.EDIT,
    Action.UPDATE: Permission.EDIT,
    Action.DELETE: Permission.MANAGE,
    Action.MANAGE: Permission.MANAGE,
}


def required_permission(action: Action) -> Permission:
    """The lowest level that allows ``action`` on an experiment or registered model (and
    everything they hold): read → READ, update → EDIT, delete and manage → MANAGE."""
    return _REQUIRED[action]


class TeamRole(enum.StrEnum):
    """A user's role in a team (an MLflow workspace)."""

    MEMBER = "member"  # may create resources; gets the member default on the others
    MANAGER = "manager"  # MANAGE on everything in the workspace, manages its members
