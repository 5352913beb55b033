"""Two teams and their resources, built through the HTTP API, for the access-control tests
(tests/gateway/test_access_bypass.py and tests/gateway/test_access_properties.py).

The world of issue 20: workspaces ``team-a`` (``a1``, who owns the victim's resources, and
``a2``, a member without a grant) and ``team-b`` (``b1``, ``b-mgr`` its manager, and ``rd``, a
member holding READ on a1's experiment and registered model), ``loner`` in no team, two of
a1's API tokens (read-only; scoped to the ``default`` workspace) and a spare one, and a role
of team-a that a1 holds. :func:`holdings` makes one owner's experiment, run (params, tags,
metrics, artifacts), logged model (with an artifact), registered model, version and alias;
every value a caller never sends is a unique secret marker, so a response that holds one has
revealed the resource. Nothing here
reaches into the app: users are created with ``users/create``, members with
``/mlgate/v1/teams/{team}/members``, workspaces with ``POST /api/3.0/mlflow/workspaces``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from auth import hashing
from backends.registry import open_metadata_store
from gateway.settings import Settings

__all__ = [
    "ADMIN",
    "ADMIN_PASSWORD",
    "API2",
    "API3",
    "ARTIFACTS",
    "CALLERS",
    "KNOWN_FILE",
    "MLGATE",
    "PASSWORD",
    "READERS",
    "TAG_KEY",
    "WRITERS",
    "Api",
    "Holdings",
    "Reply",
    "World",
    "basic",
    "bearer",
    "build_world",
    "holdings",
    "proxy_path",
    "seed_admin",
    "settings_for",
    "store_uris",
    "victim_holdings",
]

API2 = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
MLGATE = "/mlgate/v1"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
ADMIN = "root"
ADMIN_PASSWORD = "admin-password-123"
PASSWORD = "user-password-123"
WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
TAG_KEY = "vtag"  # the key of every tag the owner sets; its values are secret
KNOWN_FILE = "known.txt"  # a run artifact whose name callers may send; its content is secret


def store_uris(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The body of a ``store_uri`` fixture parametrized ``["sqlite", "postgres"]``: a fresh
    database of either kind, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/access.db"
        return
    pg = request.getfixturevalue("pg_databases")
    dsn: str = pg.create("access")
    yield dsn
    pg.drop(dsn)


def settings_for(uri: str, tmp_path: Path, **extra: Any) -> Settings:
    options: dict[str, Any] = {
        "backend_store_uri": uri, "artifacts_destination": str(tmp_path / "art"),
        "auth": True, "auth_max_failures": 100_000}
    options.update(extra)
    return Settings(**options)


async def seed_admin(uri: str) -> None:
    """The first administrator, as ``mlgate users create --admin`` makes it."""
    store = open_metadata_store(uri)
    await store.open()
    try:
        await store.create_user(ADMIN, hashing.hash_password(ADMIN_PASSWORD), is_admin=True)
    finally:
        await store.aclose()


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else {}

    def holds(self, markers: Any) -> list[str]:
        """The markers that appear in the body."""
        return [m for m in markers if m.encode() in self.body]

    def __str__(self) -> str:
        return f"{self.status} {self.body[:300].decode(errors='replace')}"


Who = str | dict[str, str] | None


class Api:
    """Requests through the test client's socket, as a named caller."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers: dict[str, dict[str, str]] = {ADMIN: basic(ADMIN, ADMIN_PASSWORD),
                                                   "anonymous": {}}

    def auth(self, who: Who) -> dict[str, str]:
        if who is None:
            return {}
        return dict(self.headers[who]) if isinstance(who, str) else dict(who)

    async def send(self, method: str, path: str, who: Who = ADMIN, *,
                   query: list[tuple[str, str]] | dict[str, str] | None = None,
                   body: bytes | None = None, content_type: str | None = None,
                   workspace: str | None = None,
                   headers: dict[str, str] | None = None) -> Reply:
        """One request; ``body`` goes out exactly as given, labelled ``content_type`` (or
        not labelled at all when that is None)."""
        sent = self.auth(who)
        sent.update(headers or {})
        if workspace is not None:
            sent[WORKSPACE_HEADER] = workspace
        skip: tuple[str, ...] = ()
        if body is not None:
            if content_type is None:
                skip = ("Content-Type",)
            else:
                sent["Content-Type"] = content_type
        async with self.client.request(method, path, params=query, data=body, headers=sent,
                                       skip_auto_headers=skip) as resp:
            return Reply(resp.status, await resp.read())

    async def call(self, method: str, path: str, who: Who = ADMIN, body: Any = None, *,
                   query: dict[str, str] | None = None, workspace: str | None = None,
                   ) -> Reply:
        """A canonical request: JSON body labelled application/json, or a query string."""
        data = None if body is None else json.dumps(body).encode()
        return await self.send(method, path, who, query=query, body=data,
                               content_type=None if body is None else "application/json",
                               workspace=workspace)

    async def ok(self, method: str, path: str, who: Who = ADMIN, body: Any = None, *,
                 query: dict[str, str] | None = None, workspace: str | None = None) -> Any:
        reply = await self.call(method, path, who, body, query=query, workspace=workspace)
        assert reply.ok, (method, path, who, str(reply))
        return reply.json()

    async def put_file(self, path: str, content: bytes, who: Who,
                       workspace: str | None = None) -> None:
        reply = await self.send("PUT", f"{ARTIFACTS}/{path}", who, body=content,
                                content_type="application/octet-stream", workspace=workspace)
        assert reply.ok, (path, str(reply))

    async def add_user(self, name: str, team: str | None = None, role: str = "member") -> None:
        await self.ok("POST", f"{API2}/users/create", body={"username": name,
                                                            "password": PASSWORD})
        if team is not None:
            await self.ok("POST", f"{MLGATE}/teams/{team}/members",
                          body={"username": name, "role": role})
        self.headers[name] = basic(name)

    async def token(self, user: str, **options: Any) -> tuple[str, str]:
        """(token, token id) of a new API token of ``user``."""
        data = await self.ok("POST", f"{MLGATE}/tokens", user, options)
        return data["token"], data["info"]["token_id"]


def proxy_path(artifact_uri: str) -> str:
    """The mlflow-artifacts path of a proxied root (``mlflow-artifacts:/1/<run>/artifacts``)."""
    scheme = "mlflow-artifacts:"
    assert artifact_uri.startswith(scheme), artifact_uri
    return artifact_uri[len(scheme):].lstrip("/")


@dataclass
class Holdings:
    """One owner's resources in one workspace, and the secret markers they hold."""

    owner: str
    workspace: str
    experiment_id: str
    experiment_name: str
    run_id: str
    run_root: str  # mlflow-artifacts path of the run's artifacts
    model_id: str  # a logged model
    model_root: str
    rm_name: str  # a registered model, version "1", alias "champion"
    version: str = "1"
    alias: str = "champion"
    secrets: tuple[str, ...] = ()

    @property
    def known_file(self) -> str:
        return f"{self.run_root}/{KNOWN_FILE}"


async def holdings(api: Api, owner: str, workspace: str, label: str) -> Holdings:
    """``owner`` creates an experiment, a run, a logged model and a registered model (with a
    version and an alias) in ``workspace``; ``label`` keeps names and markers unique."""
    secret = {k: f"zsecret{label}{k}{uuid.uuid4().hex[:10]}" for k in (
        "exptag", "runname", "param", "runtag", "metric", "file", "content", "lmname", "lmtag",
        "lmparam", "lmfile", "rmdesc", "rmtag", "mvdesc", "mvtag")}
    # Digits only, as the metric's timestamp: what get-history returns besides the key.
    stamp = str(9_990_000_000_000 + uuid.uuid4().int % 9_000_000_000)

    async def ok(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await api.ok(method, path, owner, body, workspace=workspace, **kw)

    exp_name = f"exp-{label}"
    exp = str((await ok("POST", f"{API2}/experiments/create", {
        "name": exp_name, "tags": [{"key": TAG_KEY, "value": secret["exptag"]}]}))
        ["experiment_id"])
    run = (await ok("POST", f"{API2}/runs/create", {
        "experiment_id": exp, "run_name": secret["runname"]}))["run"]["info"]
    run_id = run["run_id"]
    await ok("POST", f"{API2}/runs/log-parameter", {"run_id": run_id, "key": "vp",
                                                    "value": secret["param"]})
    await ok("POST", f"{API2}/runs/set-tag", {"run_id": run_id, "key": TAG_KEY,
                                              "value": secret["runtag"]})
    await ok("POST", f"{API2}/runs/log-metric", {"run_id": run_id, "key": "loss",
                                                 "value": 0.5, "timestamp": int(stamp)})
    await ok("POST", f"{API2}/runs/log-metric", {"run_id": run_id, "key": secret["metric"],
                                                 "value": 1.0, "timestamp": 1})
    run_root = proxy_path(run["artifact_uri"])
    await api.put_file(f"{run_root}/{KNOWN_FILE}", secret["content"].encode(), owner, workspace)
    await api.put_file(f"{run_root}/{secret['file']}.txt", b"x", owner, workspace)
    await api.put_file(f"{run_root}/model/MLmodel", b"flavors: {}\n", owner, workspace)
    model = (await ok("POST", f"{API2}/logged-models", {
        "experiment_id": exp, "name": secret["lmname"], "source_run_id": run_id,
        "tags": [{"key": TAG_KEY, "value": secret["lmtag"]}],
        "params": [{"key": "vp", "value": secret["lmparam"]}]}))["model"]["info"]
    model_root = proxy_path(model["artifact_uri"])
    await api.put_file(f"{model_root}/{secret['lmfile']}.bin", b"y", owner, workspace)
    rm = f"rm-{label}"
    await ok("POST", f"{API2}/registered-models/create", {
        "name": rm, "description": secret["rmdesc"],
        "tags": [{"key": TAG_KEY, "value": secret["rmtag"]}]})
    await ok("POST", f"{API2}/model-versions/create", {
        "name": rm, "source": f"runs:/{run_id}/model", "run_id": run_id,
        "description": secret["mvdesc"], "tags": [{"key": TAG_KEY, "value": secret["mvtag"]}]})
    await ok("POST", f"{API2}/registered-models/alias", {"name": rm, "alias": "champion",
                                                         "version": "1"})
    return Holdings(owner, workspace, exp, exp_name, run_id, run_root, model["model_id"],
                    model_root, rm, secrets=(*secret.values(), stamp))


@dataclass
class World:
    """Who is who (``api.headers`` holds every caller's credentials) and what a1 and b1 own."""

    api: Api
    victim: Holdings  # a1's, in team-a
    other: Holdings  # b1's, in team-b
    token_ids: dict[str, str] = field(default_factory=dict)  # caller name -> its token's id
    role_id: int = 0  # a role of team-a that a1 holds
    generation: int = 0


CALLERS = ("a1", "a2", "rd", "b1", "b-mgr", "loner", "a1-read-only", "a1-default-scope",
           "anonymous")
# Who may read the victim's resources, and who may change them.
READERS = frozenset({"a1", "rd", "a1-read-only"})
WRITERS = frozenset({"a1"})


async def build_world(api: Api) -> World:
    """Teams, users, tokens, and a1's and b1's holdings (see the module docstring)."""
    for team in ("team-a", "team-b"):
        await api.ok("POST", f"{API3}/workspaces", body={"name": team})
    await api.add_user("a1", "team-a")
    await api.add_user("a2", "team-a")
    await api.add_user("b1", "team-b")
    await api.add_user("b-mgr", "team-b", role="manager")
    await api.add_user("rd", "team-b")
    await api.add_user("loner")
    token_ids = {}
    token, token_ids["a1-read-only"] = await api.token("a1", read_only=True)
    api.headers["a1-read-only"] = bearer(token)
    token, token_ids["a1-default-scope"] = await api.token("a1", workspace="default")
    api.headers["a1-default-scope"] = bearer(token)
    _, token_ids["spare"] = await api.token("a1", name="spare")
    role = (await api.ok("POST", f"{API3}/roles/create", body={
        "name": "team-a-role", "workspace": "team-a"}, workspace="team-a"))["role"]["id"]
    await api.ok("POST", f"{API3}/roles/assign", body={"username": "a1", "role_id": role},
                 workspace="team-a")
    return World(api, await victim_holdings(api, 0), await holdings(api, "b1", "team-b", "b"),
                 token_ids, role)


async def victim_holdings(api: Api, generation: int) -> Holdings:
    """a1's holdings in team-a, with rd's READ grants on the experiment and the model."""
    victim = await holdings(api, "a1", "team-a", f"a{generation}")
    for rtype, rid in (("experiment", victim.experiment_id),
                       ("registered_model", victim.rm_name)):
        await api.ok("POST", f"{API3}/users/permissions/grant", "a1", {
            "username": "rd", "resource_type": rtype, "resource_id": rid,
            "permission": "READ"}, workspace="team-a")
    return victim
