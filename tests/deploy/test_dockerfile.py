"""deploy/Dockerfile: dependencies install in a layer that code changes leave cached, the
helpers that run before mlgate is installed need nothing but the standard library, and the
image documents its admin variables without carrying a password.

No image is built here (CI has no Docker daemon); the layer order is read from the file, and
the steps the dependency layer runs are run by the tests on this machine's Python."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from deploy_checks import KNOWN_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CODE = ("gateway", "backends", "auth")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in text.splitlines() if line.strip()]


def _base_python() -> str:
    """An interpreter without this venv's packages: what the image has before its installs."""
    return str(Path(sys.base_prefix) / "bin" / "python3")


def test_dependencies_install_before_the_code_is_copied() -> None:
    steps = _instructions()
    deps = next((i for i, (op, args) in enumerate(steps)
                 if op == "RUN" and "pip install -r" in args), None)
    assert deps is not None, "no RUN installs the dependencies alone (pip install -r)"
    copied_before = [args.split()[:-1] for op, args in steps[:deps] if op == "COPY"]
    assert copied_before == [["pyproject.toml", "deploy/requirements.py"]], copied_before
    code_copies = [i for i, (op, args) in enumerate(steps) if op == "COPY"
                   and any(re.match(rf"{d}(/|\s|$)", args) for d in CODE)
                   and not args.startswith("gateway/ui_bundle.py")]
    assert code_copies and min(code_copies) > deps
    install = next(args for op, args in steps[min(code_copies):]
                   if op == "RUN" and "pip install" in args)
    assert "--no-deps" in install and "pip check" in install


def test_requirements_script_lists_the_image_extras() -> None:
    run = next(args for op, args in _instructions() if op == "RUN" and "requirements.py" in args)
    extras = re.search(r"requirements\.py pyproject\.toml ([\w ]+?) *>", run)
    assert extras is not None, run
    out = subprocess.run(
        [_base_python(), "-I", str(ROOT / "deploy" / "requirements.py"),
         str(ROOT / "pyproject.toml"), *extras.group(1).split()],
        capture_output=True, text=True, check=True).stdout.splitlines()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    expected = [*project["dependencies"],
                *(r for e in extras.group(1).split() for r in project["optional-dependencies"][e])]
    assert out == expected
    assert {"postgres", "s3", "azure"} <= set(extras.group(1).split())


def test_ui_layer_runs_on_the_standard_library_alone() -> None:
    """The UI layer runs gateway/ui_bundle.py as a file before mlgate is installed: its
    imports must all be the standard library's (-S: no site-packages at all)."""
    code = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='ui_bundle')"
    subprocess.run([_base_python(), "-I", "-S", "-c", code,
                    str(ROOT / "gateway" / "ui_bundle.py")], check=True)


def test_admin_variables_documented_not_set() -> None:
    header = DOCKERFILE.read_text(encoding="utf-8").split("\nFROM ", 1)[0]
    assert "MLGATE_ADMIN_USERNAME=" in header and "-e MLGATE_ADMIN_PASSWORD" in header
    assert "MLFLOW_TRACKING_USERNAME=" in header and "MLFLOW_TRACKING_PASSWORD=" in header
    env = " ".join(args for op, args in _instructions() if op == "ENV")
    assert "MLGATE_ADMIN_PASSWORD" not in env
    names = re.findall(r"(MLGATE_\w+)=", env)
    assert names and set(names) <= KNOWN_VARIABLES, names
