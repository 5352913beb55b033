"""The admin API on a need-to-know basis (issue 20, item 4), through a real socket on SQLite
and PostgreSQL.

Two teams: team-a (``a1``, ``a2``) and team-b (``b1``, ``b-mgr`` its manager), ``ab`` in
both, ``loner`` in none. A user sees themselves; an administrator sees everyone; a manager
sees and manages the members of the teams they manage, and of those members only their part
in those teams. A workspace is seen by its members and administrators. Whatever is refused
is refused alike whether it exists or not.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from access_world import ADMIN_PASSWORD, PASSWORD, basic, seed_admin, store_uris
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

API = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
MLGATE = "/mlgate/v1"
OUTSIDERS = ("b1", "b-mgr", "loner")  # of team-a


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    text: str


@dataclass
class Server:
    client: TestClient[web.Request, web.Application]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    async def call(self, method: str, path: str, who: str | dict[str, str] = "root",
                   body: Any = None, query: dict[str, str] | None = None,
                   workspace: str | None = None) -> Reply:
        headers = dict(self.headers[who] if isinstance(who, str) else who)
        if workspace:
            headers["X-MLFLOW-WORKSPACE"] = workspace
        resp = await self.client.request(method, path, json=body, params=query, headers=headers)
        text = await resp.text()
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = text
        return Reply(resp.status, data, text)

    async def ok(self, method: str, path: str, who: str | dict[str, str] = "root",
                 body: Any = None, query: dict[str, str] | None = None,
                 workspace: str | None = None) -> Any:
        reply = await self.call(method, path, who, body, query, workspace)
        assert reply.status in (200, 201, 204), (method, path, who, reply)
        return reply.body

    async def add_user(self, name: str, *teams: str, role: str = "member") -> None:
        await self.ok("POST", f"{API}/users/create",
                      body={"username": name, "password": PASSWORD})
        for team in teams:
            await self.ok("POST", f"{MLGATE}/teams/{team}/members",
                          body={"username": name, "role": role})
        self.headers[name] = basic(name, PASSWORD)

    async def grant(self, who: str, user: str, rtype: str, rid: str, permission: str,
                    workspace: str) -> None:
        await self.ok("POST", f"{API3}/users/permissions/grant", who, {
            "username": user, "resource_type": rtype, "resource_id": rid,
            "permission": permission}, workspace=workspace)


@dataclass(frozen=True)
class World:
    server: Server
    exp_a: str  # a1's experiment in team-a
    exp_b: str  # b-mgr's experiment in team-b
    model_a: str  # a1's registered model in team-a
    role_a: int  # a team-a role held by ab
    role_b: int  # a team-b role held by ab and b1


async def _build(server: Server) -> World:
    for team in ("team-a", "team-b"):
        await server.ok("POST", f"{API3}/workspaces", body={"name": team})
    await server.add_user("a1", "team-a")
    await server.add_user("a2", "team-a")
    await server.add_user("b1", "team-b")
    await server.add_user("b-mgr", "team-b", role="manager")
    await server.add_user("ab", "team-a", "team-b")
    await server.add_user("loner")
    exp_a = (await server.ok("POST", f"{API}/experiments/create", "a1", {"name": "secret-a"},
                             workspace="team-a"))["experiment_id"]
    exp_b = (await server.ok("POST", f"{API}/experiments/create", "b-mgr", {"name": "b-exp"},
                             workspace="team-b"))["experiment_id"]
    model_a = "secret-model-a"
    await server.ok("POST", f"{API}/registered-models/create", "a1", {"name": model_a},
                    workspace="team-a")
    # ab holds a grant in each team; b1 holds one in team-a too (shared by a1).
    await server.grant("a1", "ab", "experiment", exp_a, "READ", "team-a")
    await server.grant("a1", "b1", "experiment", exp_a, "READ", "team-a")
    await server.grant("b-mgr", "ab", "experiment", exp_b, "EDIT", "team-b")
    roles = {}
    for team in ("team-a", "team-b"):
        role = (await server.ok("POST", f"{API3}/roles/create", body={
            "name": f"readers-{team}", "workspace": team}, workspace=team))["role"]
        roles[team] = role["id"]
        await server.ok("POST", f"{API3}/roles/assign",
                        body={"username": "ab", "role_id": role["id"]}, workspace=team)
    await server.ok("POST", f"{API3}/roles/assign",
                    body={"username": "b1", "role_id": roles["team-b"]}, workspace="team-b")
    return World(server, str(exp_a), str(exp_b), model_a, roles["team-a"], roles["team-b"])


@pytest.fixture
async def world(aiohttp_client: Any, store_uri: str, tmp_path: Path) -> AsyncIterator[World]:
    await seed_admin(store_uri)
    app = create_app(Settings(backend_store_uri=store_uri,
                              artifacts_destination=str(tmp_path / "art"), auth=True,
                              auth_max_failures=100_000))
    server = Server(await aiohttp_client(app), {"root": basic("root", ADMIN_PASSWORD)})
    yield await _build(server)
    await server.client.close()  # shut the app down before its database is dropped


def _refused_alike(reply: Reply, twin: Reply, name: str, twin_name: str) -> None:
    """``reply`` (about something that exists) says what ``twin`` (about something that
    does not) says, but for the name."""
    def masked(message: str, word: str) -> str:
        return re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", "?", message)

    assert reply.status == twin.status and reply.status in (403, 404), (reply, twin)
    assert {**reply.body, "message": masked(reply.body["message"], name)} == {
        **twin.body, "message": masked(twin.body["message"], twin_name)}, (reply, twin)


# -- another team's manager --------------------------------------------------------------


async def test_another_teams_manager_sees_nothing_of_a_user(world: World) -> None:
    """b-mgr, with any workspace header, gets a1's record, permissions, effective
    permissions and roles refused, as for a user who does not exist."""
    server = world.server
    probes = [
        ("users/get", API, {}),
        ("users/permissions/list", API3, {}),
        ("users/roles/list", API3, {}),
        ("users/permissions/get", API3, {"resource_type": "experiment",
                                         "resource_id": world.exp_a}),
        ("users/permissions/get", API3, {"resource_type": "experiment",
                                         "resource_id": world.exp_b}),
        ("users/permissions/get", API3, {"resource_type": "registered_model",
                                         "resource_id": world.model_a}),
    ]
    for path, api, extra in probes:
        for workspace in ("team-b", None, "team-a"):
            reply = await server.call("GET", f"{api}/{path}", "b-mgr",
                                      query={"username": "a1", **extra}, workspace=workspace)
            twin = await server.call("GET", f"{api}/{path}", "b-mgr",
                                     query={"username": "nobody", **extra},
                                     workspace=workspace)
            _refused_alike(reply, twin, "a1", "nobody")
            assert reply.status == 403, (path, workspace, reply)
            if extra.get("resource_id") != world.model_a:  # else the message echoes it
                assert world.model_a not in reply.text, reply
    # A same-team member who manages nothing sees no more of a teammate.
    for path in ("users/get", "users/permissions/list"):
        api = API if path == "users/get" else API3
        reply = await server.call("GET", f"{api}/{path}", "a2", query={"username": "a1"},
                                  workspace="team-a")
        assert reply.status == 403, (path, reply)


async def test_a_managers_view_of_a_shared_member_stops_at_their_teams(world: World) -> None:
    """ab is in both teams: b-mgr sees ab's team-b grants, roles and team only, and ab's
    effective permission on team-b's experiment but not on team-a's; b1's team-a grant from
    a1 stays hidden too."""
    server = world.server
    listed = await server.ok("GET", f"{API3}/users/permissions/list", "b-mgr",
                             query={"username": "ab"}, workspace="team-b")
    assert {(p["workspace"], p["resource_id"]) for p in listed["permissions"]} == {
        ("team-b", world.exp_b)}
    listed = await server.ok("GET", f"{API3}/users/permissions/list", "b-mgr",
                             query={"username": "b1"}, workspace="team-b")
    assert listed["permissions"] == []  # b1's one grant, from a1, is in team-a
    roles = await server.ok("GET", f"{API3}/users/roles/list", "b-mgr",
                            query={"username": "ab"}, workspace="team-b")
    assert [r["id"] for r in roles["roles"]] == [world.role_b]
    got = await server.ok("GET", f"{API3}/users/permissions/get", "b-mgr", query={
        "username": "ab", "resource_type": "experiment", "resource_id": world.exp_b},
        workspace="team-b")
    assert got == {"allowed": True, "permission": "EDIT"}
    reply = await server.call("GET", f"{API3}/users/permissions/get", "b-mgr", query={
        "username": "ab", "resource_type": "experiment", "resource_id": world.exp_a})
    twin = await server.call("GET", f"{API3}/users/permissions/get", "b-mgr", query={
        "username": "ab", "resource_type": "experiment", "resource_id": "987654"})
    _refused_alike(reply, twin, world.exp_a, "987654")
    assert reply.status == 403
    reply = await server.call("GET", f"{API3}/users/permissions/get", "b-mgr", query={
        "username": "ab", "resource_type": "registered_model", "resource_id": world.model_a},
        workspace="team-a")
    assert reply.status == 403, reply
    users = await server.ok("GET", f"{API}/users/list", "b-mgr")
    by_name = {u["username"]: u for u in users["users"]}
    assert set(by_name) == {"b1", "b-mgr", "ab"}
    assert by_name["ab"]["roles"] == [{"workspace": "team-b", "name": "member"}]


async def test_a_manager_sees_and_manages_their_own_team(world: World) -> None:
    """b-mgr reads b1's record, adds a new user to team-b and then sees them, and removes a
    member, after which that user is out of sight."""
    server = world.server
    user = await server.ok("GET", f"{API}/users/get", "b-mgr", query={"username": "b1"},
                           workspace="team-b")
    assert user["user"]["username"] == "b1" and user["user"]["is_admin"] is False
    await server.ok("POST", f"{API}/users/create", "b-mgr",
                    {"username": "b2", "password": PASSWORD}, workspace="team-b")
    members = await server.ok("GET", f"{MLGATE}/teams/team-b/members", "b-mgr",
                              workspace="team-b")
    assert "b2" in {m["username"] for m in members["members"]}
    await server.ok("GET", f"{API}/users/get", "b-mgr", query={"username": "b2"})
    await server.ok("DELETE", f"{MLGATE}/teams/team-b/members/b2", "b-mgr")
    reply = await server.call("GET", f"{API}/users/get", "b-mgr", query={"username": "b2"})
    assert reply.status == 403, reply
    # Managing team-b is not managing team-a's members or roles.
    reply = await server.call("DELETE", f"{MLGATE}/teams/team-a/members/a1", "b-mgr")
    assert reply.status == 403, reply
    for method, path, body in (
            ("GET", "roles/get", None), ("GET", "roles/users/list", None),
            ("GET", "roles/permissions/list", None),
            ("POST", "roles/assign", {"username": "b1"}),
            ("DELETE", "roles/unassign", {"username": "ab"}),
            ("DELETE", "roles/delete", {})):
        query = {"role_id": str(world.role_a)} if method == "GET" else None
        reply = await server.call(method, f"{API3}/{path}", "b-mgr",
                                  None if body is None else {**body, "role_id": world.role_a},
                                  query, workspace="team-b")
        assert reply.status == 403, (path, reply)
    reply = await server.call("GET", f"{API3}/roles/list", "b-mgr",
                              query={"workspace": "team-a"}, workspace="team-b")
    assert reply.status == 403, reply
    await server.ok("GET", f"{API3}/roles/users/list", "b-mgr",
                    query={"role_id": str(world.role_b)}, workspace="team-b")


async def test_passwords_are_the_users_and_the_administrators(world: World) -> None:
    server = world.server
    for target in ("b1", "a1"):
        reply = await server.call("PATCH", f"{API}/users/update-password", "b-mgr", {
            "username": target, "password": "taken-over-123"}, workspace="team-b")
        assert reply.status == 403, (target, reply)
    await server.ok("GET", f"{API}/users/current", "b1")  # b1's password still works
    await server.ok("PATCH", f"{API}/users/update-password", body={
        "username": "b1", "password": "reset-by-admin-1"})


# -- listing users --------------------------------------------------------------------------


async def test_listing_every_user_is_for_administrators(world: World) -> None:
    server = world.server
    users = await server.ok("GET", f"{API}/users/list")
    by_name = {u["username"]: u for u in users["users"]}
    assert {"root", "a1", "a2", "b1", "b-mgr", "ab", "loner"} <= set(by_name)
    assert by_name["ab"]["roles"] == [{"workspace": "team-a", "name": "member"},
                                      {"workspace": "team-b", "name": "member"}]
    for who in ("a1", "b1", "loner"):
        users = await server.ok("GET", f"{API}/users/list", who)
        assert [u["username"] for u in users["users"]] == [who], (who, users)
    mine = await server.ok("GET", f"{API}/users/list", "ab")
    assert mine["users"][0]["roles"] == by_name["ab"]["roles"]  # all of one's own teams


async def test_a_user_sees_all_of_themselves(world: World) -> None:
    server = world.server
    await server.ok("GET", f"{API}/users/get", "ab", query={"username": "ab"})
    listed = await server.ok("GET", f"{API3}/users/permissions/list", "ab",
                             query={"username": "ab"})
    assert {p["resource_id"] for p in listed["permissions"]} >= {world.exp_a, world.exp_b}
    roles = await server.ok("GET", f"{API3}/users/roles/list", "ab", query={"username": "ab"})
    assert sorted(r["id"] for r in roles["roles"]) == sorted([world.role_a, world.role_b])
    got = await server.ok("GET", f"{API3}/users/permissions/get", "ab", query={
        "username": "ab", "resource_type": "experiment", "resource_id": world.exp_a})
    assert got["permission"] == "READ"
    # The administrator sees the same of anyone; of a name that does not exist, a 404.
    listed_by_admin = await server.ok("GET", f"{API3}/users/permissions/list",
                                      query={"username": "ab"})
    assert sorted(map(json.dumps, listed_by_admin["permissions"])) == sorted(
        map(json.dumps, listed["permissions"]))
    reply = await server.call("GET", f"{API}/users/get", query={"username": "nobody"})
    assert (reply.status, reply.body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


# -- workspaces --------------------------------------------------------------------------------


async def test_a_workspace_is_seen_by_its_members_and_administrators(world: World) -> None:
    server = world.server
    for who in OUTSIDERS:
        reply = await server.call("GET", f"{API3}/workspaces/team-a", who)
        twin = await server.call("GET", f"{API3}/workspaces/no-such-team", who)
        _refused_alike(reply, twin, "team-a", "no-such-team")
        assert (reply.status, reply.body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
        listed = await server.ok("GET", f"{API3}/workspaces", who)
        assert "team-a" not in {w["name"] for w in listed["workspaces"]}, who
    for who in ("a1", "a2", "ab", "root"):
        got = await server.ok("GET", f"{API3}/workspaces/team-a", who)
        assert got["workspace"]["name"] == "team-a"
    # The default workspace is open: every user is a member.
    await server.ok("GET", f"{API3}/workspaces/default", "loner")
    listed = await server.ok("GET", f"{API3}/workspaces", "b1")
    assert [w["name"] for w in listed["workspaces"]] == ["default", "team-b"]


async def test_a_team_is_granted_to_only_by_those_who_see_it(world: World) -> None:
    """b-mgr manages team-b's experiment, but granting it to team-a would tell that team-a
    exists: answered as for a team that does not."""
    server = world.server
    grant = {"resource_type": "experiment", "resource_id": world.exp_b, "permission": "READ"}
    reply = await server.call("POST", f"{MLGATE}/teams/team-a/permissions/grant", "b-mgr",
                              grant, workspace="team-b")
    twin = await server.call("POST", f"{MLGATE}/teams/no-such-team/permissions/grant",
                             "b-mgr", grant, workspace="team-b")
    _refused_alike(reply, twin, "team-a", "no-such-team")
    assert reply.status == 404
    await server.ok("POST", f"{MLGATE}/teams/team-b/permissions/grant", "b-mgr", grant,
                    workspace="team-b")
    await server.ok("POST", f"{MLGATE}/teams/team-a/permissions/grant", body=grant,
                    workspace="team-b")


# -- tokens --------------------------------------------------------------------------------------


async def test_tokens_are_their_owners_and_the_administrators(world: World) -> None:
    server = world.server
    made = await server.ok("POST", f"{MLGATE}/tokens", "b1", {"name": "ci"})
    token_id = made["info"]["token_id"]
    reply = await server.call("GET", f"{MLGATE}/tokens", "b-mgr", query={"username": "b1"})
    assert reply.status == 403, reply
    reply = await server.call("DELETE", f"{MLGATE}/tokens/{token_id}", "b-mgr")
    twin = await server.call("DELETE", f"{MLGATE}/tokens/0123456789abcdef", "b-mgr")
    _refused_alike(reply, twin, token_id, "0123456789abcdef")
    assert reply.status == 404
    await server.ok("GET", f"{API}/users/current", {"Authorization": f"Bearer {made['token']}"})
    listed = await server.ok("GET", f"{MLGATE}/tokens", query={"username": "b1"})
    assert [t["token_id"] for t in listed["tokens"]] == [token_id]
    await server.ok("DELETE", f"{MLGATE}/tokens/{token_id}", "b1")


async def test_leaving_a_team_takes_the_grants_made_there(world: World) -> None:
    """a2 creates an experiment in team-a (and so manages it); removed from team-a, a2 can
    neither read it nor pass it on. A grant to someone never in team-a (b1's READ on a1's
    experiment) is not touched by others leaving."""
    server = world.server
    exp = (await server.ok("POST", f"{API}/experiments/create", "a2", {"name": "a2-own"},
                           workspace="team-a"))["experiment_id"]
    await server.ok("GET", f"{API}/experiments/get", "a2", query={"experiment_id": exp},
                    workspace="team-a")
    await server.ok("DELETE", f"{MLGATE}/teams/team-a/members/a2")
    reply = await server.call("GET", f"{API}/experiments/get", "a2",
                              query={"experiment_id": exp}, workspace="team-a")
    assert reply.status in (403, 404), reply
    reply = await server.call("POST", f"{API3}/users/permissions/grant", "a2", {
        "username": "b1", "resource_type": "experiment", "resource_id": exp,
        "permission": "MANAGE"}, workspace="team-a")
    assert reply.status in (403, 404), reply
    await server.ok("GET", f"{API}/experiments/get", "b1", query={"experiment_id": world.exp_a},
                    workspace="team-a")
