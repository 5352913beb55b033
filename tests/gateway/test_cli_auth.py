"""``mlgate users|teams|tokens|grants`` against a real store (SQLite and PostgreSQL): each
command changes what the admin API would, refuses what the admin API refuses with the same
words, and ends with a one-line error and a non-zero exit, never a traceback. Passwords come
from a prompt or standard input, never an argument."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from access_world import store_uris
from click.testing import CliRunner, Result

from auth import hashing
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_metadata_store
from gateway.cli import main

T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


def mlgate(uri: str, *args: str, input: str | None = None,
           env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--backend-store-uri", uri], input=input,
                              env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def fails(result: Result, code: int = 1) -> str:
    """The one-line error of a command that failed cleanly with ``code``."""
    assert result.exit_code == code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # click's exit, not an exception
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix("Error: ")


def on_store(uri: str, action: Callable[[MetadataStore], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_metadata_store(uri)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.aclose()

    return asyncio.run(go())


def password_of(uri: str, username: str) -> str:
    return on_store(uri, lambda s: s.get_user(username)).password_hash


# -- users ---------------------------------------------------------------------------------


def test_users_create_from_stdin_or_prompt_and_never_from_a_flag(store_uri: str) -> None:
    assert ok(mlgate(store_uri, "users", "create", "b1", "--password-stdin",
                     input="b1 pass word\nignored\n")) == "user b1 created\n"
    assert hashing.verify_password(password_of(store_uri, "b1"), "b1 pass word")
    # The prompt asks twice, does not echo, and asks again when the two differ.
    result = mlgate(store_uri, "users", "create", "b2", input="one-password-1\ntwo-password-1\nb2-password-12\nb2-password-12\n")
    assert ok(result).endswith("Repeat for confirmation: \nuser b2 created\n")
    assert "one-password-1" not in result.output and "b2-password-12" not in result.output
    assert "do not match" in result.output
    assert hashing.verify_password(password_of(store_uri, "b2"), "b2-password-12")
    users = ok(mlgate(store_uri, "users", "list")).splitlines()
    assert [ln.split("\t")[1:] for ln in users] == [["b1", "user"], ["b2", "user"]]

    assert "No such option" in fails(mlgate(store_uri, "users", "create", "b3", "--password",
                                            "x"), 2)
    assert fails(mlgate(store_uri, "users", "create", "b3", "--password-stdin", input="\n"),
                 2) == "--password-stdin: standard input holds no password"
    assert fails(mlgate(store_uri, "users", "create", "b1", "--password-stdin",
                        input="other-password-1\n")) == "User 'b1' already exists."
    assert "at least 12 characters" in fails(
        mlgate(store_uri, "users", "create", "boss", "--admin", "--password-stdin",
               input="short\n"), 2)
    assert ok(mlgate(store_uri, "users", "create", "boss", "--admin", "--password-stdin",
                     input="a-long-admin-password\n")) == "admin boss created\n"
    assert on_store(store_uri, lambda s: s.get_user("boss")).is_admin


def test_create_admin_keeps_its_env_password_and_is_idempotent(store_uri: str) -> None:
    env = {"MLGATE_ADMIN_PASSWORD": "root-password-123"}
    assert ok(mlgate(store_uri, "users", "create-admin", "root", env=env)) \
        == "admin root created\n"
    assert ok(mlgate(store_uri, "users", "create-admin", "root", env=env)) \
        == "user root already exists\n"
    root = on_store(store_uri, lambda s: s.get_user("root"))
    assert root.is_admin and hashing.verify_password(root.password_hash, "root-password-123")
    assert ok(mlgate(store_uri, "users", "create-admin", "ops", "--password-stdin",
                     input="ops-password-123\n")) == "admin ops created\n"


def test_users_set_password_set_admin_and_delete(store_uri: str) -> None:
    ok(mlgate(store_uri, "users", "create", "b1", "--password-stdin", input="first-password-1\n"))
    assert ok(mlgate(store_uri, "users", "set-password", "b1",
                     input="second-password-1\nsecond-password-1\n")).endswith("password of b1 changed\n")
    assert hashing.verify_password(password_of(store_uri, "b1"), "second-password-1")
    ok(mlgate(store_uri, "users", "set-password", "b1", "--password-stdin", input="third-password-1\n"))
    assert hashing.verify_password(password_of(store_uri, "b1"), "third-password-1")
    assert fails(mlgate(store_uri, "users", "set-password", "nobody", "--password-stdin",
                        input="x-password-1234\n")) == "User with username=nobody not found"

    assert ok(mlgate(store_uri, "users", "set-admin", "b1", "--on")) \
        == "b1 is an administrator\n"
    assert on_store(store_uri, lambda s: s.get_user("b1")).is_admin
    ok(mlgate(store_uri, "users", "set-admin", "b1", "--off"))
    assert not on_store(store_uri, lambda s: s.get_user("b1")).is_admin
    assert "Missing option" in fails(mlgate(store_uri, "users", "set-admin", "b1"), 2)
    assert fails(mlgate(store_uri, "users", "set-admin", "nobody", "--on")) \
        == "User with username=nobody not found"

    # Deleting asks first; it takes the user's tokens along.
    ok(mlgate(store_uri, "tokens", "create", "b1"))
    refused = mlgate(store_uri, "users", "delete", "b1", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert on_store(store_uri, lambda s: s.get_user("b1")).username == "b1"
    assert ok(mlgate(store_uri, "users", "delete", "b1", input="y\n")).endswith(
        "user b1 deleted\n")
    assert on_store(store_uri, lambda s: s.list_tokens()) == []
    assert fails(mlgate(store_uri, "users", "delete", "b1", "--yes")) \
        == "User with username=b1 not found"

    # Each change made here is in the audit log, as the API's are; lists and failures not.
    import getpass

    audit = on_store(store_uri, lambda s: s.query_audit(limit=100))
    assert {r.username for r in audit} == {f"cli:{getpass.getuser()}"}
    assert [(r.action, r.resource_id) for r in sorted(audit, key=lambda r: r.ts)] == [
        ("users create", "b1"), ("users set-password", "b1"), ("users set-password", "b1"),
        ("users set-admin", "b1"), ("users set-admin", "b1"), ("tokens create", "b1"),
        ("users delete", "b1")]


# -- teams ---------------------------------------------------------------------------------


def test_teams_members_and_what_leaving_takes(store_uri: str) -> None:
    ok(mlgate(store_uri, "users", "create", "b1", "--password-stdin", input="b1-password-12\n"))
    assert ok(mlgate(store_uri, "teams", "create", "team-a", "--description", "A")) \
        == "team team-a created\n"
    assert ok(mlgate(store_uri, "teams", "list")) == "default\nteam-a\tA\n"
    # The admin API's words for what it refuses.
    assert fails(mlgate(store_uri, "teams", "create", "api")).startswith(
        "Invalid workspace name 'api'")
    assert fails(mlgate(store_uri, "teams", "create", "team-a")) \
        == "Workspace 'team-a' already exists."
    assert fails(mlgate(store_uri, "teams", "add-member", "team-a", "b1", "--role", "boss")) \
        == "'role' must be member or manager."
    assert fails(mlgate(store_uri, "teams", "add-member", "team-a", "nobody")) \
        == "User with username=nobody not found"
    assert fails(mlgate(store_uri, "teams", "add-member", "no-team", "b1")) \
        == "Workspace 'no-team' not found."

    assert ok(mlgate(store_uri, "teams", "add-member", "team-a", "b1")) \
        == "b1 is a member of team-a\n"
    ok(mlgate(store_uri, "teams", "add-member", "team-a", "b1", "--role", "manager"))
    assert ok(mlgate(store_uri, "teams", "members", "team-a")) == "b1\tmanager\n"

    # Leaving the team takes the grants made to them in it, as the admin API does.
    async def experiment(store: MetadataStore) -> str:
        from backends.metadata.interface.auth_entities import GrantRow

        exp = await store.create_experiment("e", artifact_root="mlflow-artifacts:",
                                            workspace="team-a")
        user = await store.get_user("b1")
        await store.set_grant(GrantRow("experiment", "team-a", exp, "user", str(user.user_id),
                                       "MANAGE"))
        return exp

    exp = on_store(store_uri, experiment)
    assert ok(mlgate(store_uri, "teams", "remove-member", "team-a", "b1")) \
        == "b1 removed from team-a with 1 grant(s) there\n"
    assert on_store(store_uri, lambda s: s.grants_on("experiment", "team-a", exp)) == []
    assert fails(mlgate(store_uri, "teams", "remove-member", "team-a", "b1")) \
        == "b1 is not a member of team-a."
    assert ok(mlgate(store_uri, "teams", "members", "team-a")) == ""

    assert "still holds experiments" in fails(
        mlgate(store_uri, "teams", "delete", "team-a", "--yes"))
    ok(mlgate(store_uri, "teams", "create", "team-b"))
    assert ok(mlgate(store_uri, "teams", "delete", "team-b", "--yes")) \
        == "team team-b deleted\n"
    assert fails(mlgate(store_uri, "teams", "members", "team-b")) \
        == "Workspace 'team-b' not found."


# -- tokens --------------------------------------------------------------------------------


def test_tokens_create_list_and_revoke(store_uri: str) -> None:
    ok(mlgate(store_uri, "users", "create", "b1", "--password-stdin", input="b1-password-12\n"))
    token = ok(mlgate(store_uri, "tokens", "create", "b1", "--name", "ci", "--read-only",
                      "--workspace", "default", "--expires-in-days", "2")).strip()
    parsed = hashing.parse_token(token)
    assert parsed is not None
    token_id, secret = parsed
    row = on_store(store_uri, lambda s: s.get_token(token_id))
    assert hashing.token_matches(row.digest, secret)
    assert (row.name, row.read_only, row.workspace) == ("ci", True, "default")
    assert ok(mlgate(store_uri, "tokens", "list", "--username", "b1")).split("\t")[2:4] \
        == ["ci", "active"]
    assert secret not in ok(mlgate(store_uri, "tokens", "list"))
    assert fails(mlgate(store_uri, "tokens", "create", "b1", "--expires-in-days", "0")) \
        == "'expires_in_days' must be a positive number."
    assert fails(mlgate(store_uri, "tokens", "create", "nobody")) \
        == "User with username=nobody not found"

    assert ok(mlgate(store_uri, "tokens", "revoke", token_id)) == f"token {token_id} revoked\n"
    assert on_store(store_uri, lambda s: s.get_token(token_id)).revoked_at is not None
    assert "revoked" in ok(mlgate(store_uri, "tokens", "list"))
    assert fails(mlgate(store_uri, "tokens", "revoke", "no-such-token")) \
        == "Token 'no-such-token' not found"


# -- grants --------------------------------------------------------------------------------


def test_grants_set_list_and_revoke(store_uri: str) -> None:
    ok(mlgate(store_uri, "users", "create", "b1", "--password-stdin", input="b1-password-12\n"))
    ok(mlgate(store_uri, "teams", "create", "team-a"))
    exp = on_store(store_uri, lambda s: s.create_experiment(
        "e", artifact_root="mlflow-artifacts:", workspace="team-a"))

    assert ok(mlgate(store_uri, "grants", "set", "--user", "b1", "experiment", exp, "read")) \
        == f"b1 has READ on experiment {exp} (team-a)\n"
    ok(mlgate(store_uri, "grants", "set", "--user", "b1", "experiment", exp, "EDIT"))
    ok(mlgate(store_uri, "grants", "set", "--team", "team-a", "registered_model", "m1", "DENY",
              "--workspace", "team-a"))
    assert ok(mlgate(store_uri, "grants", "list", "--user", "b1")) \
        == f"experiment\tteam-a\t{exp}\tuser:b1\tEDIT\n"
    assert ok(mlgate(store_uri, "grants", "list", "--on", "registered_model", "m1",
                     "--workspace", "team-a")) \
        == "registered_model\tteam-a\tm1\tteam:team-a\tDENY\n"
    assert ok(mlgate(store_uri, "grants", "list", "--on", "experiment", exp)).count("\n") == 1

    # Refused as the admin API refuses them.
    assert fails(mlgate(store_uri, "grants", "set", "--user", "b1", "experiment", exp,
                        "OWNER")).startswith("Invalid permission 'OWNER'.")
    assert fails(mlgate(store_uri, "grants", "set", "--user", "b1", "experiment", exp,
                        "NO_PERMISSIONS")) == ("Permission NO_PERMISSIONS cannot be granted; "
                                               "use one of READ, USE, EDIT, MANAGE, DENY.")
    assert fails(mlgate(store_uri, "grants", "set", "--user", "b1", "run", "r1", "READ")) \
        == "Invalid resource type 'run'. mlgate grants on: experiment, registered_model."
    assert fails(mlgate(store_uri, "grants", "set", "--user", "b1", "experiment", "999",
                        "READ")) == "No Experiment with id=999 exists"
    assert fails(mlgate(store_uri, "grants", "set", "--user", "nobody", "experiment", exp,
                        "READ")) == "User with username=nobody not found"
    assert fails(mlgate(store_uri, "grants", "set", "--team", "no-team", "experiment", exp,
                        "READ")) == "Workspace 'no-team' not found."
    assert fails(mlgate(store_uri, "grants", "set", "--user", "b1", "--team", "team-a",
                        "experiment", exp, "READ"), 2) == "give exactly one of --user and --team"
    assert fails(mlgate(store_uri, "grants", "list"), 2) \
        == "give exactly one of --user, --team and --on"

    assert ok(mlgate(store_uri, "grants", "revoke", "--user", "b1", "experiment", exp)) \
        == f"grant of b1 on experiment {exp} revoked\n"
    assert fails(mlgate(store_uri, "grants", "revoke", "--user", "b1", "experiment", exp)) \
        == f"b1 has no grant on experiment {exp}"
    assert ok(mlgate(store_uri, "grants", "list", "--user", "b1")) == ""


def test_an_unreachable_store_is_one_line(tmp_path: Path) -> None:
    dsn = "postgresql://nobody@127.0.0.1:1/none"
    message = fails(mlgate(dsn, "users", "list"))
    assert "127.0.0.1" in message or "connect" in message.lower()
    assert fails(mlgate("ftp://x", "users", "list"), 2).startswith("--backend-store-uri")


def test_limits_set_list_and_unset(store_uri: str) -> None:
    ok(mlgate(store_uri, "teams", "create", "team-a"))
    ok(mlgate(store_uri, "limits", "set", "team-a", "--requests", "50", "--caller-rows", "0"))
    ok(mlgate(store_uri, "limits", "set", "default", "--rows", "2000.5"))
    assert ok(mlgate(store_uri, "limits", "list")).splitlines() == [
        "default\t-\t2000.5\t-\t-", "team-a\t50\t-\t-\t0"]
    assert fails(mlgate(store_uri, "limits", "set", "team-a", "--rows", "-1")) == (
        "'rows_per_second' must be a number from 0 (no limit) to 1e+09.")
    assert fails(mlgate(store_uri, "limits", "set", "nope", "--rows", "1")) == (
        "Workspace 'nope' not found.")
    ok(mlgate(store_uri, "limits", "unset", "team-a"))
    assert fails(mlgate(store_uri, "limits", "unset", "team-a")) == (
        "team team-a has no limits of its own")
    assert ok(mlgate(store_uri, "limits", "list")).splitlines() == ["default\t-\t2000.5\t-\t-"]
    audited = on_store(store_uri, lambda s: s.query_audit())
    assert [r.action for r in audited if r.action.startswith("limits")] == [
        "limits set", "limits set", "limits unset"]
