"""Helpers of the deploy/ checks. The tools they need are test dependencies (the dev extra),
so a missing one skips a developer's run but fails CI (``CI=true``), as tests/ui does.

Not a conftest.py: the tests import the top-level conftest by name, which a second one would
shadow."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

from gateway.settings import SETTINGS

__all__ = ["KNOWN_VARIABLES", "require"]

# Every MLGATE_* variable mlgate reads: the settings' and the admin's password.
KNOWN_VARIABLES = frozenset({var for s in SETTINGS for var in s.envvars}
                            | {"MLGATE_ADMIN_PASSWORD"})


def require(module: str) -> ModuleType:
    """Import a module a check needs, or skip (in CI: fail) without it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed (it is in the dev extra: pip install -e '.[dev]')"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; .ci/run installs it", pytrace=False)
        pytest.skip(reason)
