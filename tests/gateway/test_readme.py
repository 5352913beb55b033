"""docs/settings.md documents every setting, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.settings import SETTINGS, Setting

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETTINGS_DOC = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
ENV_EXAMPLE = ROOT / "deploy" / "mlgate.env.example"
TEST_COMMAND = ".venv/bin/python -m pytest"


def _settings_rows() -> dict[str, str]:
    """Rows of the README's settings table, keyed by their first cell."""
    section = SETTINGS_DOC.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return {
        line.split("|")[1].strip(): line
        for line in section.splitlines()
        if line.startswith("| `--")
    }


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_readme_lists_setting(setting: Setting) -> None:
    rows = _settings_rows()
    row = next((r for first, r in rows.items() if f"`{setting.option.split('/')[0]}`" in first),
               None)
    assert row is not None, f"README's settings table has no row for {setting.option}"
    for flag in setting.option.split("/"):
        assert f"`{flag}`" in row, f"{flag} missing from its README row"
    for var in setting.envvars:
        assert f"`{var}`" in row, f"{var} missing from the README row of {setting.option}"


def test_settings_are_documented_once() -> None:
    section = SETTINGS_DOC.split("## Settings", 1)[1].split("\n## ", 1)[0]
    firsts = [line.split("|")[1].strip() for line in section.splitlines()
              if line.startswith("| `--")]
    assert len(firsts) == len(set(firsts)), "README's settings table repeats a row"
    assigned = re.findall(r"^#?\s*(MLGATE_[A-Z_]+)=", ENV_EXAMPLE.read_text(encoding="utf-8"),
                          re.MULTILINE)
    repeated = {v for v in assigned if assigned.count(v) > 1}
    assert not repeated, f"{ENV_EXAMPLE.name} repeats {sorted(repeated)}"


def test_readme_settings_table_has_no_stale_rows() -> None:
    options = {f"`{s.option.split('/')[0]}`" for s in SETTINGS}
    stale = [first for first in _settings_rows() if first.split(" / ")[0] not in options]
    assert not stale, f"README lists settings that gateway/settings.py does not have: {stale}"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_env_example_lists_setting(setting: Setting) -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for var in setting.envvars[:1]:  # the MLGATE_* name; MLflow's aliases are optional there
        found = re.search(rf"^#?\s*{var}=", text, re.MULTILINE)
        assert found, f"{var} missing from {ENV_EXAMPLE.name}"


def test_ci_runs_the_readme_test_command() -> None:
    assert f"\n{TEST_COMMAND}\n" in README, "README no longer shows the test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci_lines, f".ci/run must run exactly {TEST_COMMAND!r} on a line"
