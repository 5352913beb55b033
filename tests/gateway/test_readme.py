"""The README works as written: CI runs its test command, every command its shell blocks
name exists (``mlgate`` subcommands and their options included), and its auth quick start
runs end to end against a server started as it says."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from base64 import b64encode
from pathlib import Path

import click
import pytest
from conftest import MLGATE_START_TIMEOUT, free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST_COMMAND = ".venv/bin/python -m pytest -n 2 --dist loadfile"
VENV_BIN = Path(sys.executable).parent  # the venv the tests run in: the README's .venv
SHELL_BUILTINS = {"export", "cd", "source", "."}


def test_ci_runs_the_readme_test_command() -> None:
    assert f"\n{TEST_COMMAND}\n" in README, "README no longer shows the test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci_lines, f".ci/run must run exactly {TEST_COMMAND!r} on a line"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _commands(block: str) -> list[list[str]]:
    """Each simple command of a shell block, as words: continuations joined, comments
    dropped, split at ``&&``, ``||``, ``|`` and ``;``."""
    commands: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
        lexer.whitespace_split = True
        words: list[str] = []
        for word in lexer:
            if word and set(word) <= set("|&;"):
                commands.append(words)
                words = []
            else:
                words.append(word)
        commands.append(words)
    return [c for c in commands if c]


def _check_mlgate(args: list[str]) -> None:
    from gateway.cli import main

    command: click.Command = main
    path = ["mlgate"]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name, args = args[0], args[1:]
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"`{' '.join(path)} {name}`: no such command"
        command, path = sub, [*path, name]
    assert not isinstance(command, click.Group), f"`{' '.join(path)}` needs a subcommand"
    try:  # parses (options, arguments) without running the command
        command.make_context(" ".join(path), list(args))
    except click.UsageError as exc:
        pytest.fail(f"`{' '.join(path)} {' '.join(args)}`: {exc}", pytrace=False)


def _check(words: list[str]) -> None:
    program, args = words[0], words[1:]
    if program in SHELL_BUILTINS:
        return
    if program.startswith(".venv/bin/"):
        name = program.removeprefix(".venv/bin/")
        assert (VENV_BIN / name).exists(), f"{program}: not in the virtualenv"
        if name == "mlgate":
            _check_mlgate(args)
        return
    assert "/" not in program, f"{program}: the README names a path that is not .venv/bin/"
    assert shutil.which(program), f"{program}: not on PATH"
    if program == "bash" and args and not args[0].startswith("-"):
        assert (ROOT / args[0]).is_file(), f"bash {args[0]}: no such file"


def test_every_readme_command_exists() -> None:
    commands = [c for block in _blocks(README, "bash") for c in _commands(block)]
    assert len(commands) > 10
    assert sum(c[0] == ".venv/bin/mlgate" for c in commands) > 5
    for words in commands:
        _check(words)


def test_the_command_check_catches_what_does_not_exist() -> None:
    for bad in ([".venv/bin/mlgate", "users", "invent"], [".venv/bin/mlgate", "teams"],
                [".venv/bin/mlgate", "serve", "--no-such-flag"], ["mlgate", "serve"],
                ["no-such-program-here"], ["bash", ".ci/no-such-script"]):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            _check(bad)


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def _exports(block: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for words in _commands(block):
        assert words[0] == "export", words
        env.update(word.split("=", 1) for word in words[1:])  # type: ignore[arg-type]
    return env


def test_auth_quick_start_runs_end_to_end(tmp_path: Path) -> None:
    section = _section("Serving a team")
    setup, client = _blocks(section, "bash")
    (script,) = _blocks(section, "python")
    *prepare, serve = setup.strip().splitlines()
    assert serve.startswith(".venv/bin/mlgate serve"), serve
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLGATE_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(prepare)], check=False,
                          cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    port = free_port()
    admin_password = _exports(prepare[0])["MLGATE_ADMIN_PASSWORD"]
    server = start_server([*shlex.split(serve), "--port", str(port)], f"http://127.0.0.1:{port}",
                          tmp_path, timeout=MLGATE_START_TIMEOUT,
                          env={**env, "MLGATE_ADMIN_PASSWORD": admin_password}, name="mlgate")
    try:
        client_env = _exports(client)
        assert client_env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
        client_env["MLFLOW_TRACKING_URI"] = server.url
        ran = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path,
                             env={**env, **client_env}, capture_output=True, text=True,
                             timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        # The experiment is b1's, in team-a: the admin finds it there and not in default.
        name = re.search(r'set_experiment\("([^"]+)"\)', script)[1]  # type: ignore[index]
        basic = b64encode(f"admin:{admin_password}".encode()).decode()

        def lookup(workspace: str) -> int:
            request = urllib.request.Request(
                f"{server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}",
                headers={"Authorization": f"Basic {basic}", "X-MLFLOW-WORKSPACE": workspace})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    json.load(answer)
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert lookup("team-a") == 200
        assert lookup("default") == 404
    finally:
        stop_server(server)
