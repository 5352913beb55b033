"""docs/configuration.md's settings table and deploy/mlgate.env.example are what
gateway.settings_doc generates from the settings declaration, so neither can miss, repeat or
misplace a setting."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gateway.settings import SETTINGS, Setting
from gateway.settings_doc import configuration_table, env_example, main, with_table

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / "deploy" / "mlgate.env.example"
REGENERATE = "regenerate with `.venv/bin/python -m gateway.settings_doc` and commit the result"


def test_configuration_table_is_generated() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert with_table(text) == text, \
        f"docs/configuration.md's settings table is stale: {REGENERATE}"


def test_env_example_is_generated() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert text == env_example(), f"deploy/mlgate.env.example is stale: {REGENERATE}"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_once_in_both(setting: Setting) -> None:
    # Each variable's line sits right under its own description and flag.
    entries = re.findall(rf"^# flag (\S+)(?:; also ([^\n]+))?\n# {setting.envvars[0]}=(.*)$",
                         env_example(), re.MULTILINE)
    assert len(entries) == 1, entries
    flag, aliases, _ = entries[0]
    assert flag == setting.option
    assert (aliases.split(", ") if aliases else []) == list(setting.envvars[1:])
    rows = [row for row in configuration_table().splitlines()
            if row.startswith(f"| `{setting.option.split('/')[0]}` ")]
    assert len(rows) == 1, rows
    for name in [*setting.option.split("/"), *setting.envvars]:
        assert f"`{name}`" in rows[0]


def test_regeneration_command_rewrites_stale_files(tmp_path: Path) -> None:
    for name in ("docs/configuration.md", "deploy/mlgate.env.example"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    assert main(["--root", str(tmp_path), "--check"]) == 0

    doc = tmp_path / "docs/configuration.md"
    doc.write_text(doc.read_text(encoding="utf-8").replace("| `--port` |", "| `--prot` |"))
    (tmp_path / "deploy/mlgate.env.example").write_text("# MLGATE_HOST=\n")
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    assert doc.read_text(encoding="utf-8") == CONFIGURATION.read_text(encoding="utf-8")
