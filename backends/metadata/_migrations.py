"""Loads the versioned SQL migrations shipped in ``migrations/<dialect>/NNNN_name.sql``."""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["load_migrations"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Versions taken by work not merged yet, which may be missing for a while without breaking
# the sequence: PostgreSQL's 0013 belongs to another branch of issue 24, which added 0014.
# Delete an entry once its file is in: a database migrated past a missing version would
# never run it.
_RESERVED: dict[str, frozenset[int]] = {"postgres": frozenset({13})}


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, script) pairs in version order. Versions must be 1, 2, 3, … without gaps
    (but for a reserved one) or repeats."""
    folder = resources.files("backends.metadata") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _ in found]
    expected = [v for v in range(1, (versions[-1] if versions else 0) + 1)
                if v in versions or v not in _RESERVED.get(dialect, ())]
    if versions != expected:
        raise RuntimeError(f"{dialect} migrations are not numbered 1..N: {versions}")
    return found
