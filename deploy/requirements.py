"""Print what pyproject.toml requires, the base dependencies and those of the named extras,
one a line: ``python requirements.py pyproject.toml postgres s3 azure``.

The container image installs these in a layer built from pyproject.toml alone, so a change to
the code does not reinstall them. Standard library only: it runs before mlgate is installed.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"{pyproject} has no extra {', '.join(unknown)}")
    return [*project["dependencies"], *(r for e in extras for r in optional[e])]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
