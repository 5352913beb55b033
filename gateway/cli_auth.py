"""Operator commands for authentication: ``mlgate users``, ``mlgate tokens``, ``mlgate teams``.

They open the metadata store directly (migrating it first, as ``serve`` does), so they
work before the server runs and need no credentials. Passwords are read from
``MLGATE_ADMIN_PASSWORD`` or prompted for, never taken as an argument.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from auth import hashing
from auth.permissions import TeamRole
from backends.errors import BackendError
from backends.metadata.base import MetadataStore
from backends.registry import open_metadata_store

__all__ = ["MIN_ADMIN_PASSWORD", "bootstrap_admin", "teams", "tokens", "users"]

log = logging.getLogger("mlgate")

MIN_ADMIN_PASSWORD = 12
ADMIN_PASSWORD_ENV = "MLGATE_ADMIN_PASSWORD"
T = TypeVar("T")


def _run(uri: str | None, action: Callable[[MetadataStore], Awaitable[T]]) -> T:
    from gateway.settings import ConfigError, Settings

    try:
        settings = Settings.from_sources({"backend_store_uri": uri})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    async def go() -> T:
        options = settings.metadata_store_options(one_connection=True)
        store = open_metadata_store(settings.backend_store_uri, **options)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(go())
    except BackendError as exc:
        raise click.ClickException(str(exc)) from None


def _store_option(fn: Any) -> Any:
    return click.option("--backend-store-uri", "uri", default=None,
                        help="Metadata store URI [env: MLGATE_BACKEND_STORE_URI].")(fn)


async def bootstrap_admin(store: MetadataStore, username: str, password: str) -> bool:
    """Create admin ``username`` unless a user of that name exists. True if created."""
    if len(password) < MIN_ADMIN_PASSWORD:
        raise click.UsageError(
            f"{ADMIN_PASSWORD_ENV}: the admin password must have at least "
            f"{MIN_ADMIN_PASSWORD} characters")
    try:
        await store.get_user(username)
        return False
    except BackendError:
        pass
    await store.create_user(username, hashing.hash_password(password), is_admin=True)
    return True


@click.group()
def users() -> None:
    """User accounts (with --auth)."""


@users.command("create-admin")
@click.argument("username")
@_store_option
def create_admin(username: str, uri: str | None) -> None:
    """Create an administrator. The password comes from MLGATE_ADMIN_PASSWORD or a prompt."""
    password = os.environ.get(ADMIN_PASSWORD_ENV) or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    created = _run(uri, lambda s: bootstrap_admin(s, username, password))
    click.echo(f"admin {username} created" if created else f"user {username} already exists")


@users.command("list")
@_store_option
def list_users(uri: str | None) -> None:
    """List users."""
    for user in _run(uri, lambda s: s.list_users()):
        click.echo(f"{user.user_id}\t{user.username}\t{'admin' if user.is_admin else 'user'}")


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
    from gateway.routes.auth_admin import issue_token

    async def go(store: MetadataStore) -> str:
        user = await store.get_user(username)
        token, _ = await issue_token(store, user, name=name, read_only=read_only,
                                     workspace=workspace, expires_in_days=expires_in_days)
        return token

    click.echo(_run(uri, go))


@tokens.command("list")
@click.option("--username", default=None)
@_store_option
def list_tokens(username: str | None, uri: str | None) -> None:
    """List tokens (never their secrets)."""

    async def go(store: MetadataStore) -> list[Any]:
        user_id = (await store.get_user(username)).user_id if username else None
        return list(await store.list_tokens(user_id))

    for t in _run(uri, go):
        state = "revoked" if t.revoked_at else "active"
        click.echo(f"{t.token_id}\tuser={t.user_id}\t{t.name}\t{state}"
                   f"\t{'read-only' if t.read_only else 'read-write'}\t{t.workspace or '*'}")


@tokens.command("revoke")
@click.argument("token_id")
@_store_option
def revoke_token(token_id: str, uri: str | None) -> None:
    """Revoke a token (running servers notice within --auth-cache-seconds)."""
    import time

    _run(uri, lambda s: s.revoke_token(token_id, int(time.time() * 1000)))
    click.echo(f"token {token_id} revoked")


@click.group()
def teams() -> None:
    """Teams: MLflow workspaces and their members."""


@teams.command("create")
@click.argument("name")
@click.option("--description", default="")
@_store_option
def create_team(name: str, description: str, uri: str | None) -> None:
    """Create a team (workspace)."""
    from gateway.security import WORKSPACE_NAME

    if not WORKSPACE_NAME.match(name) or not 2 <= len(name) <= 63:
        raise click.UsageError(f"invalid team name {name!r}")
    _run(uri, lambda s: s.create_workspace(name, description))
    click.echo(f"team {name} created")


@teams.command("list")
@_store_option
def list_teams(uri: str | None) -> None:
    """List teams."""
    for ws in _run(uri, lambda s: s.list_workspaces()):
        click.echo(ws.name)


@teams.command("add-member")
@click.argument("name")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in TeamRole]), default="member")
@_store_option
def add_member(name: str, username: str, role: str, uri: str | None) -> None:
    """Add USERNAME to team NAME (or change their role)."""

    async def go(store: MetadataStore) -> None:
        user = await store.get_user(username)
        await store.set_member(name, user.user_id, role)

    _run(uri, go)
    click.echo(f"{username} is a {role} of {name}")


@teams.command("remove-member")
@click.argument("name")
@click.argument("username")
@_store_option
def remove_member(name: str, username: str, uri: str | None) -> None:
    """Remove USERNAME from team NAME."""

    async def go(store: MetadataStore) -> bool:
        user = await store.get_user(username)
        return await store.remove_member(name, user.user_id)

    click.echo("removed" if _run(uri, go) else f"{username} was not a member of {name}")
