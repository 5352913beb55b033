"""The importer's list of stock schema revisions is the installed mlflow's migration chain
from MLflow 2.0's revision to its head, in order: a new mlflow release that adds a
migration fails here until the importer has been checked against it."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow.store.db_migrations

from backends.importer.revisions import SUPPORTED, UnsupportedRevision, check_revision


def _chain() -> list[str]:
    folder = Path(mlflow.store.db_migrations.__file__).parent / "versions"
    down: dict[str, str | None] = {}
    for path in folder.glob("*.py"):
        text = path.read_text()
        revision = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.MULTILINE)
        parent = re.search(r"^down_revision\s*=\s*['\"]?(\w+)", text, re.MULTILINE)
        if revision:
            down[revision.group(1)] = parent.group(1) if parent else None
    parents = {p for p in down.values() if p}
    (head,) = [r for r in down if r not in parents]
    chain: list[str] = []
    at: str | None = head
    while at is not None and at in down:
        chain.append(at)
        at = down[at] if down[at] != "None" else None
    return chain[::-1]


def test_supported_revisions_are_mlflow_2_0_to_head() -> None:
    chain = _chain()
    assert list(SUPPORTED) == chain[chain.index("97727af70f4d"):]


def test_unknown_and_missing_revisions_are_refused() -> None:
    assert check_revision(SUPPORTED[-1]) == SUPPORTED[-1]
    for bad in (None, "cc1f77228345", "ffffffffffff"):  # none, MLflow 1.x, unknown
        try:
            check_revision(bad)
        except UnsupportedRevision as exc:
            assert "MLflow" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
