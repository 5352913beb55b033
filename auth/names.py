"""Which names a team (an MLflow workspace) and a user may have: the rules ``teams create``,
``users create``, the admin API and ``mlgate import`` all apply."""

from __future__ import annotations

import re

__all__ = ["MAX_USERNAME", "RESERVED_TEAM_NAMES", "WORKSPACE_NAME", "valid_team_name",
           "valid_username"]

WORKSPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Path segments a workspace name would shadow in the UI's and the API's URLs.
RESERVED_TEAM_NAMES = ("workspaces", "api", "ajax-api", "static-files")


def valid_team_name(name: str) -> bool:
    """2-63 lowercase letters, digits and inner hyphens, not a reserved name."""
    return (bool(WORKSPACE_NAME.match(name)) and 2 <= len(name) <= 63
            and name not in RESERVED_TEAM_NAMES)


MAX_USERNAME = 255  # stock's users.username column
# Control characters (a name is written into logs and audit lines), and ':' which HTTP Basic
# cannot carry in a user name.
_UNFIT_IN_USERNAME = re.compile(r"[\x00-\x1f\x7f-\x9f:]")


def valid_username(name: str) -> bool:
    """1-255 characters, none of them a control character or ':'; not only spaces."""
    return (0 < len(name) <= MAX_USERNAME and bool(name.strip())
            and not _UNFIT_IN_USERNAME.search(name))
