"""Operator commands for authentication: ``mlgate users``, ``teams``, ``tokens``, ``grants``,
``limits``.

They open the metadata store directly (migrating it first, as ``serve`` does), so they
work before the server runs and need no credentials. They make their changes through
:mod:`gateway.accounts`, as the admin API does, so input is checked the same way; running
servers take each change into account within a second (:mod:`gateway.security.watch`).
Passwords are read from a prompt (typed twice, not echoed) or, with ``--password-stdin``,
the first line of standard input; never from an argument, which ``ps`` and shell history
would show. ``create-admin`` also takes ``MLGATE_ADMIN_PASSWORD``, as ``serve`` does.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from auth import hashing
from auth.policy import TEAM, USER
from backends.errors import AlreadyExists, BackendError
from backends.metadata.interface.auth_entities import AuditRow, GrantRow
from backends.metadata.interface.entities import now_ms
from backends.metadata.interface.store import MetadataStore
from backends.registry import open_metadata_store
from gateway import accounts
from gateway.errors import MlflowError
from gateway.settings import Settings

__all__ = ["MIN_ADMIN_PASSWORD", "bootstrap_admin", "grants", "limits", "teams", "tokens",
           "users"]

log = logging.getLogger("mlgate")

MIN_ADMIN_PASSWORD = 12
ADMIN_PASSWORD_ENV = "MLGATE_ADMIN_PASSWORD"
T = TypeVar("T")


@dataclass(frozen=True)
class _Ctx:
    store: MetadataStore
    settings: Settings


def _run(uri: str | None, action: Callable[[_Ctx], Awaitable[T]]) -> T:
    """Run ``action`` on the store at ``uri`` (or MLGATE_BACKEND_STORE_URI); its errors,
    and the store's, end the command with their one-line message."""
    from gateway.settings import ConfigError

    try:
        settings = Settings.from_sources({"backend_store_uri": uri})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    context = click.get_current_context(silent=True)

    async def go() -> T:
        options = settings.metadata_store_options(one_connection=True)
        store = open_metadata_store(settings.backend_store_uri, **options)
        await store.open()
        try:
            result = await action(_Ctx(store, settings))
            if context is not None and context.info_name not in _READ_ONLY:
                await store.append_audit([_audit_row(context)])
            return result
        finally:
            await store.aclose()

    try:
        return asyncio.run(go())
    except BackendError as exc:
        raise click.ClickException(str(exc)) from None
    except MlflowError as exc:
        raise click.ClickException(exc.message) from None


_READ_ONLY = ("list", "members")


def _audit_row(context: click.Context) -> AuditRow:
    """A change made here goes into the audit log as the API's do: who ran it (``cli:`` and
    the OS user), the command, and what it names (never a password: those are not
    arguments)."""
    names = [str(context.params[p.name]) for p in context.command.params
             if isinstance(p, click.Argument) and p.name and context.params.get(p.name)]
    workspace = context.params.get("workspace")
    path: list[str] = []
    at: click.Context | None = context
    while at is not None and at.parent is not None:  # "users create", without "mlgate"
        path.insert(0, at.info_name or "")
        at = at.parent
    return (now_ms(), f"cli:{getpass.getuser()}",
            str(workspace) if workspace else None, " ".join(path), None,
            " ".join(names) or None, "ok", None, "local", None)


def _store_option(fn: Any) -> Any:
    return click.option("--backend-store-uri", "uri", default=None,
                        help="Metadata store URI [env: MLGATE_BACKEND_STORE_URI].")(fn)


def _password_option(fn: Any) -> Any:
    return click.option("--password-stdin", "from_stdin", is_flag=True,
                        help="Read the password from the first line of standard input "
                             "instead of prompting.")(fn)


def _read_password(from_stdin: bool, prompt: str = "Password") -> str:
    if not from_stdin:
        password: str = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
        return password
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")  # only the line's end
    if not password:
        raise click.UsageError("--password-stdin: standard input holds no password")
    return password


def _check_admin_password(password: str, source: str) -> None:
    if len(password) < MIN_ADMIN_PASSWORD:
        raise click.UsageError(f"{source}: an admin password must have at least "
                               f"{MIN_ADMIN_PASSWORD} characters")


async def bootstrap_admin(store: MetadataStore, username: str, password: str) -> bool:
    """Create admin ``username`` unless a user of that name exists. True if created.

    Replicas started together all get here at once: whichever loses the insert finds the
    user made, as a later start does, and carries on."""
    _check_admin_password(password, ADMIN_PASSWORD_ENV)
    try:
        await store.get_user(username)
        return False
    except BackendError:
        pass
    try:
        await store.create_user(username, hashing.hash_password(password), is_admin=True)
    except AlreadyExists:
        return False
    return True


# -- users ---------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """User accounts (with --auth)."""


@users.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@_password_option
@_store_option
def create_user(username: str, admin: bool, from_stdin: bool, uri: str | None) -> None:
    """Create a user; the password is prompted for (or read with --password-stdin)."""
    password = _read_password(from_stdin)
    if admin:
        _check_admin_password(password, "password")
    _run(uri, lambda c: accounts.create_user(c.store, username, password, is_admin=admin))
    click.echo(f"{'admin' if admin else 'user'} {username} created")


@users.command("create-admin")
@click.argument("username")
@_password_option
@_store_option
def create_admin(username: str, from_stdin: bool, uri: str | None) -> None:
    """Create an administrator unless USERNAME exists. The password comes from
    MLGATE_ADMIN_PASSWORD, --password-stdin or a prompt."""
    password = (_read_password(True) if from_stdin else os.environ.get(ADMIN_PASSWORD_ENV)
                or _read_password(False))
    created = _run(uri, lambda c: bootstrap_admin(c.store, username, password))
    click.echo(f"admin {username} created" if created else f"user {username} already exists")


@users.command("set-password")
@click.argument("username")
@_password_option
@_store_option
def set_password(username: str, from_stdin: bool, uri: str | None) -> None:
    """Set USERNAME's password; their sessions with the old one end within a second."""
    password = _read_password(from_stdin, "New password")
    _run(uri, lambda c: accounts.set_password(c.store, username, password))
    click.echo(f"password of {username} changed")


@users.command("set-admin")
@click.argument("username")
@click.option("--on/--off", "is_admin", required=True,
              help="Make USERNAME an administrator, or no longer one.")
@_store_option
def set_admin(username: str, is_admin: bool, uri: str | None) -> None:
    """Make USERNAME an administrator (--on) or an ordinary user (--off)."""
    _run(uri, lambda c: accounts.set_admin(c.store, username, is_admin))
    click.echo(f"{username} is {'an administrator' if is_admin else 'not an administrator'}")


@users.command("delete")
@click.argument("username")
@click.confirmation_option(prompt="Delete the user with their tokens, memberships and "
                                  "grants?")
@_store_option
def delete_user(username: str, uri: str | None) -> None:
    """Delete USERNAME with their tokens, team memberships and grants."""
    _run(uri, lambda c: accounts.delete_user(c.store, username))
    click.echo(f"user {username} deleted")


@users.command("list")
@_store_option
def list_users(uri: str | None) -> None:
    """List users: id, name, admin or user."""
    for user in _run(uri, lambda c: c.store.list_users()):
        click.echo(f"{user.user_id}\t{user.username}\t{'admin' if user.is_admin else 'user'}")


# -- teams ---------------------------------------------------------------------------------


@click.group()
def teams() -> None:
    """Teams: MLflow workspaces and their members."""


@teams.command("create")
@click.argument("name")
@click.option("--description", default="")
@_store_option
def create_team(name: str, description: str, uri: str | None) -> None:
    """Create a team (workspace)."""
    _run(uri, lambda c: accounts.create_team(c.store, name, description))
    click.echo(f"team {name} created")


@teams.command("delete")
@click.argument("name")
@click.confirmation_option(prompt="Delete the team with its members, roles and grants?")
@_store_option
def delete_team(name: str, uri: str | None) -> None:
    """Delete an empty team (no experiments or registered models) with its members, roles
    and grants."""
    _run(uri, lambda c: c.store.delete_workspace(name))
    click.echo(f"team {name} deleted")


@teams.command("list")
@_store_option
def list_teams(uri: str | None) -> None:
    """List teams: name and description."""
    for ws in _run(uri, lambda c: c.store.list_workspaces()):
        click.echo(f"{ws.name}\t{ws.description}".rstrip("\t"))


@teams.command("members")
@click.argument("name")
@_store_option
def list_members(name: str, uri: str | None) -> None:
    """List the members of team NAME: name and role."""

    async def go(c: _Ctx) -> list[Any]:
        await c.store.get_workspace(name)
        return await c.store.list_members(name)

    for user, role in _run(uri, go):
        click.echo(f"{user.username}\t{role}")


@teams.command("add-member")
@click.argument("name")
@click.argument("username")
@click.option("--role", default="member", help="member (the default) or manager.")
@_store_option
def add_member(name: str, username: str, role: str, uri: str | None) -> None:
    """Add USERNAME to team NAME (or change their role)."""
    _run(uri, lambda c: accounts.add_member(c.store, name, username, role))
    click.echo(f"{username} is a {role} of {name}")


@teams.command("remove-member")
@click.argument("name")
@click.argument("username")
@_store_option
def remove_member(name: str, username: str, uri: str | None) -> None:
    """Remove USERNAME from team NAME, with the grants made to them in it."""
    from gateway.security.state import policy_of

    async def go(c: _Ctx) -> int:
        _, dropped = await accounts.remove_member(c.store, policy_of(c.settings), name,
                                                  username)
        return len(dropped)

    dropped = _run(uri, go)
    click.echo(f"{username} removed from {name}"
               + (f" with {dropped} grant(s) there" if dropped else ""))


# -- API tokens ----------------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """API tokens (Authorization: Bearer, or MLFLOW_TRACKING_TOKEN for the mlflow client)."""


@tokens.command("create")
@click.argument("username")
@click.option("--name", default="", help="A label for the token.")
@click.option("--read-only", is_flag=True, help="The token may only read.")
@click.option("--workspace", default=None, help="The token works in this workspace only.")
@click.option("--expires-in-days", type=float, default=None, help="Default: never expires.")
@_store_option
def create_token(username: str, name: str, read_only: bool, workspace: str | None,
                 expires_in_days: float | None, uri: str | None) -> None:
    """Create a token for USERNAME and print it (it is shown only this once)."""

    async def go(c: _Ctx) -> str:
        user = await c.store.get_user(username)
        token, _ = await accounts.issue_token(c.store, user, name=name, read_only=read_only,
                                              workspace=workspace,
                                              expires_in_days=expires_in_days)
        return token

    click.echo(_run(uri, go))


@tokens.command("list")
@click.option("--username", default=None, help="Only this user's tokens.")
@_store_option
def list_tokens(username: str | None, uri: str | None) -> None:
    """List tokens (never their secrets): id, user id, name, state, access, workspace."""

    async def go(c: _Ctx) -> list[Any]:
        user_id = (await c.store.get_user(username)).user_id if username else None
        return list(await c.store.list_tokens(user_id))

    for t in _run(uri, go):
        state = "revoked" if t.revoked_at else "active"
        click.echo(f"{t.token_id}\tuser={t.user_id}\t{t.name}\t{state}"
                   f"\t{'read-only' if t.read_only else 'read-write'}\t{t.workspace or '*'}")


@tokens.command("revoke")
@click.argument("token_id")
@_store_option
def revoke_token(token_id: str, uri: str | None) -> None:
    """Revoke a token; running servers refuse it within a second."""
    _run(uri, lambda c: accounts.revoke_token(c.store, token_id))
    click.echo(f"token {token_id} revoked")


# -- grants --------------------------------------------------------------------------------


def _principal_options(fn: Any) -> Any:
    fn = click.option("--team", default=None, help="Grant to every member of this team.")(fn)
    return click.option("--user", default=None, help="Grant to this user.")(fn)


def _workspace_option(fn: Any) -> Any:
    return click.option("--workspace", default="default", show_default=True,
                        help="A registered model's workspace (an experiment's is its own).")(fn)


async def _principal(store: MetadataStore, user: str | None,
                     team: str | None) -> tuple[str, str]:
    """(principal type, principal) of exactly one of --user and --team."""
    if (user is None) == (team is None):
        raise click.UsageError("give exactly one of --user and --team")
    if user is not None:
        return USER, str((await store.get_user(user)).user_id)
    assert team is not None
    await store.get_workspace(team)
    return TEAM, team


@click.group()
def grants() -> None:
    """Grants on experiments and registered models, to users and teams: READ, USE, EDIT,
    MANAGE, or DENY (which beats every other grant)."""


@grants.command("set")
@_principal_options
@click.argument("resource_type", metavar="experiment|registered_model")
@click.argument("resource_id", metavar="ID_OR_NAME")
@click.argument("permission", metavar="PERMISSION")
@_workspace_option
@_store_option
def set_grant(user: str | None, team: str | None, resource_type: str, resource_id: str,
              permission: str, workspace: str, uri: str | None) -> None:
    """Give a user or team PERMISSION on an experiment (by id) or a registered model (by
    name), replacing the grant they had there."""

    async def go(c: _Ctx) -> GrantRow:
        kind, principal = await _principal(c.store, user, team)
        return await accounts.grant(c.store, kind, principal, resource_type, resource_id,
                                    permission, workspace=workspace)

    row = _run(uri, go)
    click.echo(f"{user or team} has {row.permission} on {row.resource_type} "
               f"{row.resource_id} ({row.workspace})")


@grants.command("revoke")
@_principal_options
@click.argument("resource_type", metavar="experiment|registered_model")
@click.argument("resource_id", metavar="ID_OR_NAME")
@_workspace_option
@_store_option
def revoke_grant(user: str | None, team: str | None, resource_type: str, resource_id: str,
                 workspace: str, uri: str | None) -> None:
    """Take back the grant a user or team has on an experiment or registered model."""

    async def go(c: _Ctx) -> bool:
        kind, principal = await _principal(c.store, user, team)
        _, found = await accounts.revoke_grant(c.store, kind, principal, resource_type,
                                               resource_id, workspace=workspace)
        return found

    if not _run(uri, go):
        raise click.ClickException(f"{user or team} has no grant on {resource_type} "
                                   f"{resource_id}")
    click.echo(f"grant of {user or team} on {resource_type} {resource_id} revoked")


@grants.command("list")
@_principal_options
@click.option("--on", "on", nargs=2, default=None, metavar="TYPE ID_OR_NAME",
              help="The grants on one experiment or registered model, with the role "
                   "permissions that cover it.")
@_workspace_option
@_store_option
def list_grants(user: str | None, team: str | None, on: tuple[str, str] | None,
                workspace: str, uri: str | None) -> None:
    """List grants to a user (--user), to a team (--team), or on a resource (--on):
    resource type, workspace, resource, principal, permission."""
    if sum(x is not None for x in (user, team, on)) != 1:
        raise click.UsageError("give exactly one of --user, --team and --on")

    async def go(c: _Ctx) -> list[tuple[GrantRow, str]]:
        if on is not None:
            rtype, rid = accounts.grant_target(*on)
            ws = await accounts.resource_workspace(c.store, rtype, rid, workspace)
            rows = await c.store.grants_on(rtype, ws, rid)
        else:
            rows = await c.store.grants_of(*await _principal(c.store, user, team))
        names = {str(u.user_id): u.username for u in await c.store.list_users()}
        return [(r, names.get(r.principal, r.principal) if r.principal_type == USER
                 else r.principal) for r in rows]

    for row, who in _run(uri, go):
        click.echo(f"{row.resource_type}\t{row.workspace}\t{row.resource_id}"
                   f"\t{row.principal_type}:{who}\t{row.permission}")


# -- rate limits ---------------------------------------------------------------------------


@click.group()
def limits() -> None:
    """Rate limits per team (workspace): requests and metric rows a second."""


@limits.command("set")
@click.argument("name")
@click.option("--requests", type=float, default=None,
              help="Requests a second the team may make (0: no limit).")
@click.option("--rows", type=float, default=None,
              help="Metric rows a second the team may write (0: no limit).")
@click.option("--caller-requests", type=float, default=None,
              help="Requests a second each of its tokens (or users) may make.")
@click.option("--caller-rows", type=float, default=None,
              help="Metric rows a second each of its tokens (or users) may write.")
@_store_option
def set_limits(name: str, requests: float | None, rows: float | None,
               caller_requests: float | None, caller_rows: float | None,
               uri: str | None) -> None:
    """Set team NAME's limits, replacing all of its earlier ones: a limit not given takes
    the server's default (--rate-limit-*)."""
    values: dict[str, object] = {
        "requests_per_second": requests, "rows_per_second": rows,
        "caller_requests_per_second": caller_requests, "caller_rows_per_second": caller_rows}
    _run(uri, lambda c: accounts.set_limits(c.store, name, values))
    click.echo(f"limits of {name} set")


@limits.command("unset")
@click.argument("name")
@_store_option
def unset_limits(name: str, uri: str | None) -> None:
    """Remove team NAME's own limits: it takes the server's defaults again."""
    async def go(c: _Ctx) -> None:
        if not await c.store.delete_limits(name):
            raise MlflowError(f"team {name} has no limits of its own")

    _run(uri, go)
    click.echo(f"limits of {name} removed")


@limits.command("list")
@_store_option
def list_limits(uri: str | None) -> None:
    """List the teams' own limits (per second; - takes the default, 0 is no limit):
    team, requests, rows, caller requests, caller rows."""
    for row in _run(uri, lambda c: c.store.list_limits()):
        click.echo("\t".join([row.workspace, *(
            "-" if v is None else f"{v:g}" for v in (
                row.requests_per_second, row.rows_per_second,
                row.caller_requests_per_second, row.caller_rows_per_second))]))
