"""Loads the versioned SQL migrations shipped in ``migrations/<dialect>/NNNN_name.sql``."""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["load_migrations"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, script) pairs in version order. Versions must be 1, 2, 3, … without gaps."""
    folder = resources.files("backends.metadata") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1..N: {[v for v, _ in found]}")
    return found
