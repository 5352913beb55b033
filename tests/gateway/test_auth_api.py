"""Authentication, grants, workspaces and the audit log through a real socket, on SQLite and
PostgreSQL.

The permission matrix walks every route the app registers (both prefixes) for every
identity of issue 7 and checks allow / 401 / 403 against a table that reads like the
policy. The route handlers are swapped for a stub before the app starts, so the middleware
and the resource resolution (real database, real grants) are what is tested, and allowed
requests change nothing. A route registered without an access rule fails the matrix.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from access_world import ADMIN_PASSWORD, PASSWORD, seed_admin, settings_for, store_uris
from aiohttp import web
from aiohttp.test_utils import TestClient

from auth import hashing
from auth.access import Access, Action, ResourceKind
from backends.metadata.interface.auth_entities import GrantRow
from backends.registry import open_metadata_store
from gateway.app import create_app
from gateway.keys import METADATA
from gateway.routing import ROUTES
from gateway.security import SECURITY

API = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    client: TestClient
    app: web.Application
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    async def call(self, method: str, path: str, who: str | dict[str, str] | None = "root",
                   body: Any = None, query: dict[str, str] | None = None,
                   workspace: str | None = None) -> tuple[int, Any]:
        headers = dict(self.headers.get(who, {}) if isinstance(who, str) else (who or {}))
        if workspace:
            headers["X-MLFLOW-WORKSPACE"] = workspace
        resp = await self.client.request(method, path, json=body, params=query, headers=headers)
        text = await resp.text()
        try:
            import json

            return resp.status, json.loads(text) if text else {}
        except ValueError:
            return resp.status, text

    async def ok(self, method: str, path: str, who: str | dict[str, str] | None = "root",
                 body: Any = None, query: dict[str, str] | None = None,
                 workspace: str | None = None) -> Any:
        status, data = await self.call(method, path, who, body, query, workspace)
        assert status in (200, 201, 204), (method, path, status, data)
        return data

    async def add_user(self, name: str, *, team: str | None = "default") -> None:
        await self.ok("POST", f"{API}/users/create", body={"username": name,
                                                           "password": PASSWORD})
        if team:
            await self.ok("POST", f"/mlgate/v1/teams/{team}/members", body={"username": name})
        self.headers[name] = basic(name, PASSWORD)

    async def grant(self, user: str, rtype: str, rid: str, permission: str) -> None:
        await self.ok("POST", f"{API3}/users/permissions/grant", body={
            "username": user, "resource_type": rtype, "resource_id": rid,
            "permission": permission})

    async def experiment(self, who: str, name: str, workspace: str | None = None) -> str:
        """An experiment ``who`` creates (and so manages); its id."""
        data = await self.ok("POST", f"{API}/experiments/create", who, {"name": name},
                             workspace=workspace)
        return str(data["experiment_id"])

    async def run(self, who: str, experiment_id: str, workspace: str | None = None) -> str:
        """A run ``who`` creates in the experiment; its id."""
        data = await self.ok("POST", f"{API}/runs/create", who,
                             {"experiment_id": experiment_id}, workspace=workspace)
        return str(data["run"]["info"]["run_id"])

    async def token(self, user: str, **options: Any) -> str:
        data = await self.ok("POST", "/mlgate/v1/tokens", who=user, body=options)
        token: str = data["token"]
        return token


async def _start(aiohttp_client: Any, uri: str, tmp_path: Path, *, stub: bool = False,
                 **extra: Any) -> Server:
    await seed_admin(uri)
    app = create_app(settings_for(uri, tmp_path, **extra))
    if stub:
        async def reached(request: web.Request) -> web.Response:
            return web.json_response({"reached": True})

        for resource in app.router.resources():
            for route in resource:
                route._handler = reached  # type: ignore[attr-defined]
    client: TestClient = await aiohttp_client(app)
    return Server(client, app, {"root": basic("root", ADMIN_PASSWORD)})


# -- the permission matrix ---------------------------------------------------------------

IDENTITIES = ["anonymous", "wrong_password", "expired_token", "revoked_token",
              "read_only_token", "member_no_grant", "reader", "editor", "manager",
              "denied", "other_team", "admin"]
_NEEDED = {Action.READ: 1, Action.CREATE: 3, Action.UPDATE: 3, Action.DELETE: 4,
           Action.MANAGE: 4}
# The level each identity holds on the experiment and the registered model of the matrix.
_LEVEL = {"member_no_grant": 0, "reader": 1, "editor": 3, "manager": 4, "denied": 0,
          "other_team": 0, "read_only_token": 1}
_MEMBER = {"member_no_grant", "reader", "editor", "manager", "denied"}


def expected(identity: str, access: Access) -> int | str:
    """"allow", 401 or 403: the policy, as a table."""
    if access.resource is ResourceKind.PUBLIC or identity == "admin":
        return "allow"
    if identity in ("anonymous", "wrong_password", "expired_token", "revoked_token"):
        return 401
    if access.resource is ResourceKind.SERVER:
        return 403
    if access.writes and identity == "read_only_token":
        return 403  # a change, although READ suffices: not with a read-only token
    if access.resource is ResourceKind.WORKSPACE:
        if access.action is Action.READ:
            return "allow"
        if access.action is Action.CREATE:
            # The matrix's workspace is "default", open to every user (as on stock).
            return "allow" if identity in _MEMBER or identity == "other_team" else 403
        return 403  # managing a team: none of these identities manages one
    return "allow" if _LEVEL[identity] >= _NEEDED[access.action] else 403


@dataclass
class Fixture:
    exp: str
    exp_name: str
    run: str
    model_id: str
    rm: str


async def _matrix_world(server: Server) -> Fixture:
    # The resources live in the default workspace; "owner" creates them.
    for name in ("owner", "member_no_grant", "reader", "editor", "manager", "denied"):
        await server.add_user(name)
    await server.ok("POST", f"{API3}/workspaces", body={"name": "team-b"})
    await server.add_user("other_team", team="team-b")
    return Fixture("", "", "", "", "")


async def _fill(server: Server, fx: Fixture) -> None:
    """Create the matrix's resources through the real handlers (before stubbing)."""
    fx.exp_name = "matrix"
    fx.exp = await server.experiment("owner", fx.exp_name)
    fx.run = await server.run("owner", fx.exp)
    fx.model_id = (await server.ok("POST", f"{API}/logged-models", "owner", {
        "experiment_id": fx.exp, "name": "m"}))["model"]["info"]["model_id"]
    fx.rm = "matrix-model"
    await server.ok("POST", f"{API}/registered-models/create", "owner", {"name": fx.rm})
    for user, level in (("reader", "READ"), ("editor", "EDIT"), ("manager", "MANAGE"),
                        ("denied", "DENY")):
        await server.grant(user, "experiment", fx.exp, level)
        await server.grant(user, "registered_model", fx.rm, level)
    # The denied user's team may read; the user's own DENY must still win.
    await server.ok("POST", "/mlgate/v1/teams/default/permissions/grant", body={
        "resource_type": "experiment", "resource_id": fx.exp, "permission": "READ"})
    await server.ok("POST", "/mlgate/v1/teams/default/permissions/revoke", body={
        "resource_type": "experiment", "resource_id": fx.exp})


async def _identity_headers(server: Server) -> None:
    server.headers["wrong_password"] = basic("reader", "not-the-password")
    server.headers["admin"] = server.headers["root"]
    server.headers["anonymous"] = {}
    server.headers["read_only_token"] = bearer(await server.token("manager", read_only=True))
    revoked = await server.token("manager")
    tokens = (await server.ok("GET", "/mlgate/v1/tokens", "manager"))["tokens"]
    server_token_id = hashing.parse_token(revoked)
    assert server_token_id is not None
    await server.ok("DELETE", f"/mlgate/v1/tokens/{server_token_id[0]}", "manager")
    server.headers["revoked_token"] = bearer(revoked)
    assert len(tokens) == 2
    expired = await server.token("manager", expires_in_days=1e-9)
    await asyncio.sleep(0.01)
    server.headers["expired_token"] = bearer(expired)


def _request_for(route: web.AbstractRoute, fx: Fixture) -> tuple[str, dict[str, Any]]:
    assert route.resource is not None
    canonical = route.resource.canonical
    values = {"run_id": fx.run, "run_uuid": fx.run, "experiment_id": fx.exp,
              "experiment_name": fx.exp_name, "model_id": fx.model_id, "name": fx.rm,
              "resource_type": "experiment", "resource_id": fx.exp,
              "path": f"{fx.exp}/{fx.run}/artifacts/x.txt", "username": "owner",
              "token_id": "0" * 16, "tag_key": "k",
              "directory": f"{fx.exp}/{fx.run}/artifacts", "experiment_ids": [fx.exp],
              "run_ids": [fx.run]}
    path = canonical
    in_url = {key for key in values if "{" + key + "}" in path}
    for key in ("path", "directory", "model_id", "tag_key", "username", "token_id"):
        path = path.replace("{" + key + "}", values[key])
    if "/teams/{name}" in path or "/workspaces/{name}" in path:
        path = path.replace("{name}", "default")
    assert "{" not in path, path
    # A field named in the URL is not sent again (with another value it would be refused).
    return path, {k: v for k, v in values.items() if k not in in_url}


async def test_permission_matrix(aiohttp_client: Any, store_uri: str, tmp_path: Path) -> None:
    # Build the world with the real handlers, then restart the same database stubbed.
    server = await _start(aiohttp_client, store_uri, tmp_path)
    fx = await _matrix_world(server)
    await _fill(server, fx)
    await _identity_headers(server)
    headers = server.headers
    await server.client.close()

    app = create_app(settings_for(store_uri, tmp_path))
    stubbed = Server(await _stubbed_client(aiohttp_client, app), app, headers)
    grants = [g for rtype, rid in (("experiment", fx.exp), ("registered_model", fx.rm))
              for g in await app[METADATA].grants_on(rtype, "default", rid)]
    assert len(grants) == 10  # owner's MANAGE and four users' grants on each
    table = app[ROUTES]
    failures, checked = [], 0
    for resource in app.router.resources():
        for route in resource:
            if route.method == "HEAD":
                continue
            declared = table.get(route)
            assert declared is not None, f"{route.method} {resource.canonical} declares no access"
            access = declared.access
            path, values = _request_for(route, fx)
            # The gateway's own post-success steps (creator grants, grants swept on delete)
            # also follow the stub's 200s: put the fixture's grants back for every route.
            await _restore_grants(app, fx, grants)
            graphql = None
            if declared.reader is not None:
                # A GraphQL document: the ids are in its text, each checked for READ.
                access = Access(ResourceKind.RUN, Action.READ)
                graphql = {"query": (
                    f'{{ mlflowGetExperiment(input: {{experimentId: "{fx.exp}"}}) '
                    f'{{ experiment {{ name }} }} mlflowGetRun(input: {{runId: "{fx.run}"}}) '
                    "{ run { info { runId } } } }")}
            for identity in IDENTITIES:
                want = expected(identity, access)
                if graphql is not None:
                    status, body = await stubbed.call(route.method, path, identity, graphql)
                elif route.method == "GET":
                    status, body = await stubbed.call(route.method, path, identity,
                                                      query={k: str(v[0] if type(v) is list
                                                                     else v)
                                                             for k, v in values.items()})
                else:
                    status, body = await stubbed.call(route.method, path, identity, values)
                checked += 1
                ok = (status == 200 and body == {"reached": True}) if want == "allow" \
                    else status == want
                if ok and status == 401:
                    ok = body.get("error_code") == "UNAUTHENTICATED"
                if ok and status == 403:
                    # GraphQL refusals keep REST's status in GraphQL's shape (errors listed).
                    ok = (body.get("error_code") == "PERMISSION_DENIED" if graphql is None
                          else bool(body.get("errors")) and body.get("data") is None)
                if not ok:
                    failures.append(f"{identity:16} {route.method:6} {path}: want {want}, "
                                    f"got {status} {str(body)[:80]}")
    await stubbed.client.close()  # before the database is dropped
    assert not failures, f"{len(failures)} of {checked}:\n" + "\n".join(failures[:60])
    assert checked > 12 * 150


async def _restore_grants(app: web.Application, fx: Fixture, grants: list[GrantRow]) -> None:
    store = app[METADATA]
    for rtype, rid in (("experiment", fx.exp), ("registered_model", fx.rm)):
        await store.delete_grants_on(rtype, "default", rid)
    for g in grants:
        await store.set_grant(g)
    app[SECURITY].invalidate_grants("experiment", "default", fx.exp)
    app[SECURITY].invalidate_grants("registered_model", "default", fx.rm)


async def _stubbed_client(aiohttp_client: Any, app: web.Application) -> TestClient:
    async def reached(request: web.Request) -> web.Response:
        return web.json_response({"reached": True})

    for resource in app.router.resources():
        for route in resource:
            route._handler = reached  # type: ignore[attr-defined]
    client: TestClient = await aiohttp_client(app)
    return client


def test_expected_table_reads_like_the_policy() -> None:
    read_run = Access(ResourceKind.RUN, Action.READ, "run_id")
    delete_exp = Access(ResourceKind.EXPERIMENT, Action.DELETE, "experiment_id")
    assert expected("reader", read_run) == "allow"
    assert expected("reader", delete_exp) == 403
    assert expected("manager", delete_exp) == "allow"
    assert expected("anonymous", read_run) == 401
    assert expected("other_team", Access(ResourceKind.WORKSPACE, Action.CREATE)) == "allow"
    assert expected("read_only_token", Access(ResourceKind.WORKSPACE, Action.CREATE)) == 403


async def test_route_without_access_rule_fails_the_matrix(aiohttp_client: Any, tmp_path: Path
                                                          ) -> None:
    uri = f"sqlite:///{tmp_path}/x.db"
    await seed_admin(uri)
    app = create_app(settings_for(uri, tmp_path))

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="reached")

    app.router.add_get("/api/2.0/mlflow/sneaky", sneaky)
    assert any(r not in app[ROUTES] for res in app.router.resources() for r in res
               if r.method != "HEAD")  # what test_permission_matrix asserts on
    client = await aiohttp_client(app)
    resp = await client.get("/api/2.0/mlflow/sneaky", headers=basic("nobody", "x"))
    assert resp.status == 401
    # A real user is still refused; only admins pass a route with no rule.
    store = open_metadata_store(uri)
    await store.open()
    await store.create_user("bob", hashing.hash_password(PASSWORD))
    await store.aclose()
    resp = await client.get("/api/2.0/mlflow/sneaky", headers=basic("bob", PASSWORD))
    assert resp.status == 403
    resp = await client.get("/api/2.0/mlflow/sneaky", headers=basic("root", ADMIN_PASSWORD))
    assert resp.status == 200


# -- behaviour through the real handlers -------------------------------------------------


@pytest.fixture
async def server(aiohttp_client: Any, store_uri: str, tmp_path: Path) -> AsyncIterator[Server]:
    started = await _start(aiohttp_client, store_uri, tmp_path)
    yield started
    await started.client.close()  # shut the app down before its database is dropped


async def test_401_carries_the_basic_challenge(server: Server) -> None:
    resp = await server.client.get(f"{API}/experiments/get", params={"experiment_id": "0"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    assert (await resp.json())["error_code"] == "UNAUTHENTICATED"
    status, _ = await server.call("GET", "/health", who=None)
    assert status == 200
    status, info = await server.call("GET", f"{API3}/server-info", who=None)
    assert status == 200 and info["workspaces_enabled"] is True


async def test_header_bytes_that_are_not_utf8_are_refused_as_json(server: Server) -> None:
    """Credentials or a workspace no text holds (found by tests/gateway/test_fuzz.py): 401
    and 404 as MLflow JSON, never a 500."""
    async def raw(headers: bytes) -> tuple[int, dict[str, Any]]:
        assert server.client.port is not None
        reader, writer = await asyncio.open_connection(server.client.host, server.client.port)
        try:
            writer.write(f"GET {API}/experiments/get?experiment_id=0 HTTP/1.1\r\nHost: localhost\r\n"
                         .encode() + headers + b"Connection: close\r\n\r\n")
            response = await reader.read()
        finally:
            writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), json.loads(body)

    for credentials in (b"Bearer mlg_\xff", b"Basic \xff\xfe"):
        status, body = await raw(b"Authorization: " + credentials + b"\r\n")
        assert (status, body["error_code"]) == (401, "UNAUTHENTICATED")
    root = server.headers["root"]["Authorization"].encode()
    status, body = await raw(b"Authorization: " + root + b"\r\nX-MLFLOW-WORKSPACE: t\xffm\r\n")
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    # Regression (attack24): a name no workspace may have, 8 KB of it, was taken as an empty
    # workspace and written into the access log line and the audit record.
    await server.add_user("bob")
    status, body = await server.call("GET", f"{API}/experiments/search", "bob",
                                     query={"max_results": "10"}, workspace="w" * 8000)
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


async def test_creator_gets_manage_and_others_nothing(server: Server) -> None:
    await server.add_user("alice")
    await server.add_user("bob")
    exp = await server.experiment("alice", "a")
    await server.ok("POST", f"{API}/experiments/delete", "alice", {"experiment_id": exp})
    await server.ok("POST", f"{API}/experiments/restore", "alice", {"experiment_id": exp})
    status, body = await server.call("GET", f"{API}/experiments/get", "bob",
                                     query={"experiment_id": exp})
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED"
    perm = await server.ok("GET", f"{API3}/users/permissions/get", "alice", query={
        "username": "alice", "resource_type": "experiment", "resource_id": exp})
    assert perm == {"allowed": True, "permission": "MANAGE"}
    # Alice (MANAGE) may grant bob READ; bob may not grant himself more.
    await server.grant("bob", "experiment", exp, "READ")
    await server.ok("GET", f"{API}/experiments/get", "bob", query={"experiment_id": exp})
    status, _ = await server.call("POST", f"{API3}/users/permissions/grant", "bob", {
        "username": "bob", "resource_type": "experiment", "resource_id": exp,
        "permission": "MANAGE"})
    assert status == 403


async def test_model_version_needs_read_on_its_source(server: Server) -> None:
    """EDIT on a registered model is not enough to publish a run, logged model or model
    version the caller cannot read (stock 3.17's validate_can_create_model_version)."""
    await server.add_user("alice")
    await server.add_user("bob")
    exp = await server.experiment("alice", "alice-exp")
    run = await server.run("alice", exp)
    model = (await server.ok("POST", f"{API}/logged-models", "alice",
                             {"experiment_id": exp, "name": "lm"}))["model"]["info"]["model_id"]
    await server.ok("POST", f"{API}/registered-models/create", "alice", {"name": "alice-rm"})
    await server.ok("POST", f"{API}/model-versions/create", "alice", {
        "name": "alice-rm", "source": f"runs:/{run}/model", "run_id": run})
    await server.ok("POST", f"{API}/registered-models/create", "bob", {"name": "bob-rm"})
    own_exp = await server.experiment("bob", "bob-exp")
    own_run = await server.run("bob", own_exp)

    def version(source: str, **ids: str) -> dict[str, str]:
        return {"name": "bob-rm", "source": source, **ids}

    unreadable = [
        version(f"runs:/{run}/model", run_id=run),
        version(f"models:/{model}", model_id=model),
        version(f"models:/{model}"),
        version("models:/alice-rm/1"),
        version("models:/alice-rm@champion"),
        version("runs:/no-such-run/model", run_id="0" * 32),
        version(f"runs:/{own_run}/model", run_id=own_run, model_id=model),
        version("s3://bucket/model", run_id=""),
    ]
    for body in unreadable:
        status, data = await server.call("POST", f"{API}/model-versions/create", "bob", body)
        assert (status, data.get("error_code")) == (403, "PERMISSION_DENIED"), body
    listed = await server.ok("GET", f"{API}/model-versions/search", "root",
                             query={"filter": "name='bob-rm'"})
    assert listed.get("model_versions", []) == []  # nothing was created by the refusals
    await server.ok("POST", f"{API}/model-versions/create", "bob",
                    version(f"runs:/{own_run}/model", run_id=own_run))
    await server.grant("bob", "experiment", exp, "READ")
    await server.grant("bob", "registered_model", "alice-rm", "READ")
    for body in (unreadable[0], unreadable[1], unreadable[3]):
        await server.ok("POST", f"{API}/model-versions/create", "bob", body)
    # Readable now, so the source checks that come after the permission check answer.
    status, data = await server.call("POST", f"{API}/model-versions/create", "bob",
                                     unreadable[2])
    assert (status, data["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


async def test_failed_logins_are_rate_limited(aiohttp_client: Any, store_uri: str,
                                             tmp_path: Path) -> None:
    server = await _start(aiohttp_client, store_uri, tmp_path, auth_max_failures=3)
    for _ in range(3):
        status, _ = await server.call("GET", f"{API}/experiments/get",
                                      basic("root", "wrong"), query={"experiment_id": "0"})
        assert status == 401
    resp = await server.client.get(f"{API}/experiments/get", params={"experiment_id": "0"},
                                   headers=basic("root", ADMIN_PASSWORD))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    await server.client.close()


async def test_token_scopes(server: Server) -> None:
    await server.add_user("alice")
    await server.ok("POST", f"{API3}/workspaces", body={"name": "team-a"})
    await server.ok("POST", "/mlgate/v1/teams/team-a/members", body={"username": "alice"})
    scoped = bearer(await server.token("alice", workspace="team-a"))
    exp = (await server.ok("POST", f"{API}/experiments/create", scoped, {"name": "x"},
                           workspace="team-a"))["experiment_id"]
    status, _ = await server.call("POST", f"{API}/experiments/create", scoped, {"name": "y"})
    assert status == 403  # the default workspace is out of the token's scope
    read_only = bearer(await server.token("alice", read_only=True))
    await server.ok("GET", f"{API}/experiments/get", read_only, query={"experiment_id": exp},
                    workspace="team-a")
    status, _ = await server.call("POST", f"{API}/experiments/update", read_only,
                                  {"experiment_id": exp, "new_name": "z"}, workspace="team-a")
    assert status == 403
    status, _ = await server.call("POST", "/mlgate/v1/tokens", read_only, {})
    assert status == 403  # tokens cannot mint tokens



async def test_token_last_used_time_written_at_most_once_a_minute(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token's use is recorded, through the admission cache of metric logging too, and
    then not again before _TOUCH_EVERY has passed."""
    await server.add_user("alice")
    tok = bearer(await server.token("alice"))
    run_id = await server.run("alice", await server.experiment("alice", "used"))

    async def last_used() -> int | None:
        for _ in range(100):  # written by a background task
            tokens = (await server.ok("GET", "/mlgate/v1/tokens", "alice"))["tokens"]
            if tokens[0]["last_used_at"] is not None:
                return int(tokens[0]["last_used_at"])
            await asyncio.sleep(0.01)
        return None

    assert (await server.ok("GET", "/mlgate/v1/tokens", "alice"))["tokens"][0][
        "last_used_at"] is None
    log = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    for _ in range(3):  # the first admits through the caches, the next through its pass
        await server.ok("POST", f"{API}/runs/log-metric", tok, log)
    first = await last_used()
    assert first is not None
    await asyncio.sleep(0.01)
    await server.ok("POST", f"{API}/runs/log-metric", tok, log)
    await asyncio.sleep(0.05)
    assert await last_used() == first  # within the minute: not written again
    security = server.app[SECURITY]
    monkeypatch.setattr(security.authenticator, "_touch_due", {})  # as if the minute had passed
    await server.ok("POST", f"{API}/runs/log-metric", tok, log)
    for _ in range(100):
        later = await last_used()
        if later != first:
            break
        await asyncio.sleep(0.01)
    assert later is not None and later > first


async def _search_ids(server: Server, who: str, path: str, body: dict[str, Any], key: str,
                      id_of: Any, method: str = "POST",
                      workspace: str | None = None) -> list[list[str]]:
    pages, token = [], None
    while True:
        req = dict(body, **({"page_token": token} if token else {}))
        if method == "GET":
            data = await server.ok("GET", path, who, query={k: str(v) for k, v in req.items()},
                                   workspace=workspace)
        else:
            data = await server.ok("POST", path, who, req, workspace=workspace)
        pages.append([id_of(item) for item in data.get(key, [])])
        token = data.get("next_page_token")
        if not token:
            return pages


async def test_search_isolation_full_pages(server: Server, store_uri: str) -> None:
    """1,000 unreadable and 100 readable runs (and experiments, logged models, registered
    models), interleaved: every page of 10 holds 10 readable rows and nothing else."""
    await server.add_user("owner")
    await server.add_user("viewer")
    store = server.app[METADATA]
    viewer = await store.get_user("viewer")
    readable_runs: set[str] = set()
    readable_exps: set[str] = set()
    readable_models: set[str] = set()
    readable_rms: set[str] = set()
    exp_ids = []
    # 110 experiments, one of eleven readable, each with 10 runs, a logged model and a
    # registered model: 1,000 unreadable runs and 100 readable ones, interleaved by time.
    for i in range(110):
        exp_id = await store.create_experiment(f"e{i:03}", artifact_root="mlflow-artifacts:")
        exp_ids.append(exp_id)
        visible = i % 11 == 5
        rm = f"rm{i:03}"
        await store.create_registered_model(rm)
        if visible:
            readable_exps.add(exp_id)
            readable_rms.add(rm)
            for rtype, rid in (("experiment", exp_id), ("registered_model", rm)):
                await store.set_grant(GrantRow(rtype, "default", rid, "user",
                                               str(viewer.user_id), "READ"))
        model = await store.create_logged_model(exp_id, name=f"m{i}")
        if visible:
            readable_models.add(model.model_id)
        for j in range(10):
            run = await store.create_run(exp_id, user_id="owner", run_name=f"r{i}-{j}",
                                         start_time=1000 * j + i)
            if visible:
                readable_runs.add(run.info.run_id)
    assert len(readable_runs) == 100

    def full(pages: list[list[str]], readable: set[str]) -> None:
        flat = [x for page in pages for x in page]
        assert set(flat) == readable and len(flat) == len(readable)
        assert all(len(p) == 10 for p in pages[:-1]) and len(pages[-1]) <= 10

    runs = await _search_ids(server, "viewer", f"{API}/runs/search",
                             {"experiment_ids": exp_ids, "max_results": 10}, "runs",
                             lambda r: r["info"]["run_id"])
    full(runs, readable_runs)
    assert len(runs) == 10 and all(len(p) == 10 for p in runs)
    exps = await _search_ids(server, "viewer", f"{API}/experiments/search",
                             {"max_results": 10}, "experiments", lambda e: e["experiment_id"])
    full(exps, readable_exps)
    models = await _search_ids(server, "viewer", f"{API}/logged-models/search",
                               {"experiment_ids": exp_ids, "max_results": 10}, "models",
                               lambda m: m["info"]["model_id"])
    full(models, readable_models)
    rms = await _search_ids(server, "viewer", f"{API}/registered-models/search",
                            {"max_results": 10}, "registered_models", lambda m: m["name"],
                            method="GET")
    full(rms, readable_rms)
    # The admin sees everything.
    admin_runs = await _search_ids(server, "root", f"{API}/runs/search",
                                   {"experiment_ids": exp_ids, "max_results": 1000}, "runs",
                                   lambda r: r["info"]["run_id"])
    assert sum(len(p) for p in admin_runs) == 1100


async def test_roles_grant_through_searches_and_point_routes(server: Server) -> None:
    """A role's permission on every experiment ('*') reads like a grant on each, inside the
    searches' SQL too; a role DENY on one experiment wins over it; a user grant on a
    registered model literally named '*' stays a grant on that one model."""
    A = "team-a"
    await server.ok("POST", f"{API3}/workspaces", body={"name": A})
    await server.add_user("owner", team=A)
    await server.add_user("viewer", team=None)
    exps = []
    for i in range(25):
        exps.append(await server.experiment("owner", f"e{i:02}", workspace="team-a"))
    runs = [await server.run("owner", e, workspace="team-a") for e in exps]
    for name in ("*", "other"):
        await server.ok("POST", f"{API}/registered-models/create", "owner", {"name": name},
                        workspace="team-a")

    async def seen() -> tuple[set[str], set[str], set[str]]:
        pages = await _search_ids(server, "viewer", f"{API}/experiments/search",
                                  {"max_results": 10}, "experiments",
                                  lambda e: e["experiment_id"], workspace=A)
        found_runs = await _search_ids(server, "viewer", f"{API}/runs/search",
                                       {"experiment_ids": exps, "max_results": 10}, "runs",
                                       lambda r: r["info"]["run_id"], workspace=A)
        models = await _search_ids(server, "viewer", f"{API}/registered-models/search",
                                   {"max_results": 10}, "registered_models",
                                   lambda m: m["name"], method="GET", workspace=A)
        for found in (pages, found_runs, models):
            assert all(len(p) == 10 for p in found[:-1])  # full pages
        return ({x for p in pages for x in p}, {x for p in found_runs for x in p},
                {x for p in models for x in p})

    assert await seen() == (set(), set(), set())
    role = (await server.ok("POST", f"{API3}/roles/create",
                            body={"name": "readers", "workspace": "team-a"}, workspace=A))["role"]
    perm = (await server.ok("POST", f"{API3}/roles/permissions/add", body={
        "role_id": role["id"], "resource_type": "experiment", "resource_pattern": "*",
        "permission": "READ"}, workspace=A))["role_permission"]
    await server.ok("POST", f"{API3}/roles/assign",
                    body={"username": "viewer", "role_id": role["id"]}, workspace=A)
    assert await seen() == (set(exps), set(runs), set())
    await server.ok("GET", f"{API}/runs/get", "viewer", query={"run_id": runs[3]}, workspace=A)
    status, _ = await server.call("POST", f"{API}/runs/set-tag", "viewer",
                                  {"run_id": runs[3], "key": "k", "value": "v"}, workspace=A)
    assert status == 403  # READ does not write

    # A role DENY on one experiment wins over the role's READ on all of them.
    await server.ok("POST", f"{API3}/roles/permissions/add", body={
        "role_id": role["id"], "resource_type": "experiment", "resource_pattern": exps[7],
        "permission": "DENY"}, workspace=A)
    assert await seen() == (set(exps) - {exps[7]}, set(runs) - {runs[7]}, set())
    status, _ = await server.call("GET", f"{API}/runs/get", "viewer",
                                  query={"run_id": runs[7]}, workspace=A)
    assert status == 404  # not a member of A: refused as if it did not exist

    # A user grant on the model named '*' is about that model only.
    await server.ok("POST", f"{API3}/users/permissions/grant", body={
        "username": "viewer", "resource_type": "registered_model", "resource_id": "*",
        "permission": "READ"}, workspace=A)
    assert (await seen())[2] == {"*"}
    status, _ = await server.call("GET", f"{API}/registered-models/get", "viewer",
                                  query={"name": "other"}, workspace=A)
    assert status == 404  # as above

    # Raising the role's level lets its users write; removing the user takes it all away.
    await server.ok("PATCH", f"{API3}/roles/permissions/update",
                    body={"role_permission_id": perm["id"], "permission": "EDIT"}, workspace=A)
    await server.ok("POST", f"{API}/runs/set-tag", "viewer",
                    {"run_id": runs[3], "key": "k", "value": "v"}, workspace=A)
    await server.ok("DELETE", f"{API3}/roles/unassign",
                    body={"username": "viewer", "role_id": role["id"]}, workspace=A)
    assert (await seen())[:2] == (set(), set())
    status, _ = await server.call("POST", f"{API}/runs/set-tag", "viewer",  # not a cached yes
                                  {"run_id": runs[3], "key": "k", "value": "v"}, workspace=A)
    assert status == 404  # and, no longer able to read it, not told it exists


async def test_who_may_manage_roles(server: Server) -> None:
    await server.ok("POST", f"{API3}/workspaces", body={"name": "team-a"})
    await server.add_user("lead", team=None)
    await server.add_user("member", team="team-a")
    await server.ok("POST", "/mlgate/v1/teams/team-a/members",
                    body={"username": "lead", "role": "manager"})
    exp = await server.experiment("member", "x", workspace="team-a")
    body = {"name": "r", "workspace": "team-a"}
    role = (await server.ok("POST", f"{API3}/roles/create", "lead", body,
                            workspace="team-a"))["role"]
    assert (role["name"], role["workspace"], role["permissions"]) == ("r", "team-a", [])
    status, data = await server.call("POST", f"{API3}/roles/create", "lead", body,
                                     workspace="team-a")
    assert (status, data["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    # The lead manages team-a only; a member manages nothing.
    status, _ = await server.call("POST", f"{API3}/roles/create", "lead",
                                  {"name": "r", "workspace": "default"})
    assert status == 403
    status, _ = await server.call("POST", f"{API3}/roles/create", "member",
                                  {"name": "s", "workspace": "team-a"}, workspace="team-a")
    assert status == 403
    read_only = bearer(await server.token("lead", read_only=True))
    status, _ = await server.call("POST", f"{API3}/roles/create", read_only,
                                  {"name": "t", "workspace": "team-a"}, workspace="team-a")
    assert status == 403
    # A token scoped to team-b does not manage team-a's roles, whoever holds it.
    await server.ok("POST", f"{API3}/workspaces", body={"name": "team-b"})
    await server.ok("POST", "/mlgate/v1/teams/team-b/members",
                    body={"username": "lead", "role": "manager"})
    scoped = bearer(await server.token("lead", workspace="team-b"))
    status, _ = await server.call("POST", f"{API3}/roles/create", scoped,
                                  {"name": "t", "workspace": "team-a"}, workspace="team-b")
    assert status == 403
    await server.ok("POST", f"{API3}/roles/create", scoped,
                    {"name": "t", "workspace": "team-b"}, workspace="team-b")
    # Members of the workspace may list its roles; a non-member may not.
    listed = await server.ok("GET", f"{API3}/roles/list", "member",
                             query={"workspace": "team-a"}, workspace="team-a")
    assert [r["id"] for r in listed["roles"]] == [role["id"]]
    status, _ = await server.call("GET", f"{API3}/roles/list", "member")
    assert status == 403  # every workspace's roles: administrators only
    status, _ = await server.call("GET", f"{API3}/roles/get", "member",
                                  query={"role_id": str(role["id"])}, workspace="team-a")
    assert status == 403  # not a member of the role
    # Bad permissions get MLflow-shaped 400s / 404s.
    for bad, code in (
            ({"resource_type": "run", "resource_pattern": "*", "permission": "READ"},
             "INVALID_PARAMETER_VALUE"),
            ({"resource_type": "workspace", "resource_pattern": "x", "permission": "USE"},
             "INVALID_PARAMETER_VALUE"),
            ({"resource_type": "workspace", "resource_pattern": "*", "permission": "READ"},
             "INVALID_PARAMETER_VALUE"),
            ({"resource_type": "experiment", "resource_pattern": "*", "permission": "OWN"},
             "INVALID_PARAMETER_VALUE"),
            ({"resource_type": "experiment", "resource_pattern": "0", "permission": "READ"},
             "RESOURCE_DOES_NOT_EXIST")):
        status, data = await server.call("POST", f"{API3}/roles/permissions/add", "lead",
                                         {"role_id": role["id"], **bad}, workspace="team-a")
        assert data["error_code"] == code and status in (400, 404), (bad, status, data)
    await server.ok("POST", f"{API3}/roles/permissions/add", "lead", {
        "role_id": role["id"], "resource_type": "experiment", "resource_pattern": exp,
        "permission": "READ"}, workspace="team-a")
    status, data = await server.call("GET", f"{API3}/roles/get", "lead",
                                     query={"role_id": "999"}, workspace="team-a")
    assert (status, data["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    await server.ok("DELETE", f"{API3}/roles/delete", "lead", {"role_id": role["id"]},
                    workspace="team-a")
    assert (await server.ok("GET", f"{API3}/roles/list",
                            query={"workspace": "team-a"}))["roles"] == []


async def test_workspaces_isolate_teams(server: Server) -> None:
    for team in ("team-a", "team-b"):
        await server.ok("POST", f"{API3}/workspaces", body={"name": team})
    await server.add_user("anna", team="team-a")
    await server.add_user("ben", team="team-b")
    exp = await server.experiment("anna", "shared", workspace="team-a")
    # The same name is free in the other workspace.
    await server.experiment("ben", "shared", workspace="team-b")
    run = await server.run("anna", exp, workspace="team-a")
    # Ben, in team-b, cannot see team-a's experiment (it is not in his workspace) ...
    status, body = await server.call("GET", f"{API}/experiments/get", "ben",
                                     query={"experiment_id": exp}, workspace="team-b")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # ... nor by switching to team-a, where he is not a member.
    # (answered as for ids that name nothing, so he does not learn that they exist)
    status, _ = await server.call("GET", f"{API}/runs/get", "ben", query={"run_id": run},
                                  workspace="team-a")
    assert status == 404
    status, _ = await server.call("GET", f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/"
                                  "artifacts/x.txt", "ben", workspace="team-a")
    assert status == 404
    listed = await server.ok("POST", f"{API}/experiments/search", "ben",
                             {"max_results": 100}, workspace="team-b")
    assert [e["name"] for e in listed["experiments"]] == ["shared"]
    assert listed["experiments"][0]["experiment_id"] != exp
    status, body = await server.call("GET", f"{API}/experiments/get", "anna",
                                     query={"experiment_id": "0"}, workspace="nope")
    assert status == 404


async def test_audit_one_record_per_action(server: Server) -> None:
    await server.add_user("alice")
    before = (await server.ok("GET", "/mlgate/v1/audit"))["records"]
    exp = await server.experiment("alice", "audited")
    run = await server.run("alice", exp)
    await server.ok("POST", f"{API}/runs/log-metric", "alice", {
        "run_id": run, "key": "m", "value": 1.0, "timestamp": 1})
    await server.ok("GET", f"{API}/runs/get", "alice", query={"run_id": run})  # a read: none
    await server.client.put(f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/a.txt",
                            data=b"hello", headers=server.headers["alice"])
    resp = await server.client.get(
        f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/a.txt",
        headers=server.headers["alice"])
    assert await resp.read() == b"hello"
    await server.call("GET", f"{API}/runs/get", basic("alice", "bad"), query={"run_id": run})
    await server.add_user("bob")
    status, _ = await server.call("POST", f"{API}/runs/delete", "bob", {"run_id": run})
    assert status == 403
    records = (await server.ok("GET", "/mlgate/v1/audit"))["records"][len(before):]
    got = [(r["username"], r["action"], r["outcome"]) for r in records]
    assert got == [
        ("alice", "POST /experiments/create", "ok"),
        ("alice", "POST /runs/create", "ok"),
        ("alice", "POST /runs/log-metric", "ok"),
        ("alice", "PUT /api/2.0/mlflow-artifacts/artifacts/{path}", "ok"),
        ("alice", "GET /api/2.0/mlflow-artifacts/artifacts/{path}", "ok"),
        ("alice", "login", "failed"),
        ("root", "POST /users/create", "ok"),
        ("root", "POST /mlgate/v1/teams/{name}/members", "ok"),
        ("bob", "POST /runs/delete", "denied"),
    ], got
    assert records[0]["resource_id"] == exp and records[2]["resource_id"] == run
    by_user = (await server.ok("GET", "/mlgate/v1/audit", query={"username": "bob"}))["records"]
    assert [r["outcome"] for r in by_user] == ["denied"]
    status, _ = await server.call("GET", "/mlgate/v1/audit", "alice")
    assert status == 403


@pytest.mark.parametrize(("bulk", "field"), [
    ("/ajax-api/2.0/mlflow/metrics/get-history-bulk", "run_id"),
    ("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", "run_ids"),
    ("/api/2.0/mlflow/metrics/get-history-bulk-interval", "run_ids"),
])
async def test_every_run_of_a_bulk_request_is_checked(server: Server, bulk: str,
                                                      field: str) -> None:
    await server.add_user("alice")
    await server.add_user("bob")
    runs = []
    for name in ("shared", "private"):
        exp = await server.experiment("alice", name)
        if name == "shared":
            await server.grant("bob", "experiment", exp, "READ")
        runs.append(await server.run("alice", exp))
    resp = await server.client.get(bulk, params=[(field, runs[0]), ("metric_key", "m")],
                                   headers=server.headers["bob"])
    assert resp.status == 200
    for order in (runs, runs[::-1]):
        resp = await server.client.get(
            bulk, params=[(field, order[0]), (field, order[1]), ("metric_key", "m")],
            headers=server.headers["bob"])
        assert resp.status == 403, await resp.text()


async def test_cached_credentials_and_decisions_follow_changes(server: Server) -> None:
    """A credential or a decision that worked a moment ago (and is cached) stops working as
    soon as the token is revoked or expires, the password changes or the grant goes."""
    await server.add_user("carol")
    await server.add_user("dave")
    exp = await server.experiment("carol", "cached")
    run = await server.run("carol", exp)
    metric = {"run_id": run, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}

    token = await server.token("carol")
    await server.ok("POST", f"{API}/runs/log-metric", bearer(token), metric)
    token_id = hashing.parse_token(token)
    assert token_id is not None
    await server.ok("DELETE", f"/mlgate/v1/tokens/{token_id[0]}", "carol")
    status, _ = await server.call("POST", f"{API}/runs/log-metric", bearer(token), metric)
    assert status == 401

    short = await server.token("carol", expires_in_days=1 / 86_400)  # one second
    await server.ok("POST", f"{API}/runs/log-metric", bearer(short), metric)
    await asyncio.sleep(1.2)
    status, _ = await server.call("POST", f"{API}/runs/log-metric", bearer(short), metric)
    assert status == 401

    old = server.headers["carol"]
    await server.ok("POST", f"{API}/runs/log-metric", old, metric)
    await server.ok("PATCH", f"{API}/users/update-password", "root",
                    {"username": "carol", "password": "a-new-password-1"})
    status, _ = await server.call("POST", f"{API}/runs/log-metric", old, metric)
    assert status == 401
    await server.ok("POST", f"{API}/runs/log-metric", basic("carol", "a-new-password-1"),
                    metric)

    await server.grant("dave", "experiment", exp, "EDIT")
    await server.ok("POST", f"{API}/runs/log-metric", "dave", metric)
    await server.ok("POST", f"{API3}/users/permissions/revoke", body={
        "username": "dave", "resource_type": "experiment", "resource_id": exp})
    status, _ = await server.call("POST", f"{API}/runs/log-metric", "dave", metric)
    assert status == 403

    # A team's grant: revoking it takes it away at once (every user is a member of the open
    # default workspace, so leaving that team changes nothing).
    team_grant = {"resource_type": "experiment", "resource_id": exp, "permission": "EDIT"}
    await server.ok("POST", "/mlgate/v1/teams/default/permissions/grant", body=team_grant)
    await server.ok("POST", f"{API}/runs/log-metric", "dave", metric)
    await server.ok("POST", "/mlgate/v1/teams/default/permissions/revoke", body=team_grant)
    status, _ = await server.call("POST", f"{API}/runs/log-metric", "dave", metric)
    assert status == 403


async def test_concurrent_requests_verify_a_password_once(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a credential is not (or no longer) cached, concurrent requests carrying it share
    one slow hash check instead of each running Argon2; wrong passwords are each refused."""
    import time

    await server.add_user("erin")
    calls: list[str] = []
    real = hashing.verify_password

    def counting(stored: str, password: str) -> bool:
        calls.append(password)
        time.sleep(0.05)  # a slow hash, so the requests overlap
        return real(stored, password)

    monkeypatch.setattr(hashing, "verify_password", counting)
    statuses = await asyncio.gather(*(server.call("GET", f"{API}/users/current", "erin")
                                      for _ in range(20)))
    assert [s for s, _ in statuses] == [200] * 20
    assert calls == [PASSWORD]

    wrong = basic("erin", "not-erins-password")
    statuses = await asyncio.gather(*(server.call("GET", f"{API}/users/current", wrong)
                                      for _ in range(3)))
    assert [s for s, _ in statuses] == [401] * 3
    assert calls.count("not-erins-password") == 3


@pytest.mark.parametrize("username", ["a:b", "evil\nadmin", "a\u0000b", "x" * 256, "   "])
async def test_user_names_that_cannot_log_in_or_forge_log_lines_are_refused(
        server: Server, username: str) -> None:
    status, data = await server.call("POST", f"{API}/users/create", "root",
                                     {"username": username, "password": PASSWORD})
    assert status == 400 and data["error_code"] == "INVALID_PARAMETER_VALUE", data
