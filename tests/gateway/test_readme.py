"""CI runs the README's test command."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST_COMMAND = ".venv/bin/python -m pytest"


def test_ci_runs_the_readme_test_command() -> None:
    assert f"\n{TEST_COMMAND}\n" in README, "README no longer shows the test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci_lines, f".ci/run must run exactly {TEST_COMMAND!r} on a line"
