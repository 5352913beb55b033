"""deploy/compose.yaml: valid against the Compose Specification's JSON schema, its variables
well-formed, and it refuses to start without the admin's password.

compose-spec.json is the schema from the compose-spec/compose-spec repository on GitHub
(schema/compose-spec.json, Apache-2.0), as of commit a08f8d51631b7127ddac3d2c65537db429d0f1d0
(2025-10-28), the schema `docker compose config` itself validates against. It is vendored so
the check runs offline and without Docker; when the Compose plugin is installed, the last
test also runs `docker compose config` itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_checks import KNOWN_VARIABLES, require

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = Path(__file__).with_name("compose-spec.json")
# Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
# ${VAR?error}, ${VAR:+replacement}, ${VAR+replacement}.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VARIABLE = re.compile(rf"\$\$|\${_NAME}|\$\{{{_NAME}(?:(?::?[-?+])[^}}]*)?\}}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    jsonschema = require("jsonschema")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # Its "$schema" is draft-07 written without the trailing "#", which jsonschema does not
    # recognise by name.
    assert "draft-07" in schema["$schema"]
    validator_class = jsonschema.Draft7Validator
    validator_class.check_schema(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
              for e in validator_class(schema).iter_errors(_compose())]
    assert not errors, "\n".join(errors)

    # ... and the check can fail: a misspelt key is refused.
    broken = _compose()
    broken["services"]["gateway"]["enviroment"] = broken["services"]["gateway"].pop("environment")
    assert list(validator_class(schema).iter_errors(broken))


def test_variables_are_well_formed() -> None:
    """Every `$` is one of Compose's interpolation forms (a typo would reach the container
    as literal text, or stop compose with a less helpful message)."""
    for text in _strings(_compose()):
        rest = _VARIABLE.sub("", text)
        assert "$" not in rest, f"not a Compose variable: {text!r}"


def test_admin_password_is_required_and_settings_are_known() -> None:
    env = _compose()["services"]["gateway"]["environment"]
    assert re.fullmatch(r"\$\{MLGATE_ADMIN_PASSWORD:\?[^}]+\}", env["MLGATE_ADMIN_PASSWORD"]), \
        "compose must refuse to start without MLGATE_ADMIN_PASSWORD (${VAR:?message})"
    assert env["MLGATE_AUTH"] == "true" and env["MLGATE_ADMIN_USERNAME"]
    unknown = [k for k in env if k.startswith("MLGATE_") and k not in KNOWN_VARIABLES]
    assert not unknown, f"compose sets variables mlgate does not read: {unknown}"


def test_usage_example_passes_credentials() -> None:
    """The header's client example sends the admin's credentials (the server answers 401
    otherwise), in the variables the mlflow client reads."""
    header = COMPOSE.read_text(encoding="utf-8").split("\nname:", 1)[0]
    example = next(line for line in header.splitlines() if "MLFLOW_TRACKING_URI=" in line)
    example_block = header[header.index(example):]
    assert "MLFLOW_TRACKING_USERNAME=" in example_block
    assert 'MLFLOW_TRACKING_PASSWORD="$MLGATE_ADMIN_PASSWORD"' in example_block


def test_docker_compose_config_when_installed() -> None:
    """Compose's own reading: refused without the admin password, accepted with it."""
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                       check=False).returncode == 0
    if not plugin:
        # Not a CI failure: the schema test above is the offline equivalent.
        pytest.skip("the Docker Compose plugin is not installed")
    assert docker is not None
    env = {k: v for k, v in os.environ.items() if k != "MLGATE_ADMIN_PASSWORD"}
    command = [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "MLGATE_ADMIN_PASSWORD" in refused.stderr
    env["MLGATE_ADMIN_PASSWORD"] = "a-long-admin-secret"
    accepted = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert accepted.returncode == 0, accepted.stderr
