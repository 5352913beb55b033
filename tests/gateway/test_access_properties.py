"""Property test of issue 20: however a request carries its ids, the access check reads what
the handler reads. On SQLite and PostgreSQL, through a real socket.

Hypothesis drives every route of ``gateway.routes.all_routes()`` under each of its prefixes
(and the other prefix), with the route's method or another (GET, POST, PATCH, DELETE, PUT,
HEAD, OPTIONS), the ids in the query string, the JSON body, both, in both with different
values, twice in one place (``run_id`` and ``run_uuid``) or nowhere, the body labelled
``application/json``, ``text/plain``, form-encoded or not at all (or really form-encoded),
with no workspace header, the victim's, the caller's own or ``default``, for every caller of
``tests/access_world.py``. The ids are a1's (the victim's) or, slot by slot, b1's. An
example sends one such variant to a few routes; after it, the test asserts:

(a) a caller who may not read a1's resources finds none of their secret markers in any
    response (the markers are values a caller never sends, so an echoed id is no leak);
(b) nothing of a1's changed, as the administrator reads it (only a1 may change it; when a1
    did, a1's resources are made afresh), and no user, membership, role or token changed;
(c) a variant is never allowed (2xx) where the canonical request is refused: the route's
    normal form (query for GET, a JSON body labelled application/json otherwise, the route's
    first prefix, run_uuid equal to run_id) carrying what stock reads of the variant (the
    query of a GET that has one, else the body if it is JSON), by the same caller with the
    same workspace header. A method or prefix the table does not serve must not answer 2xx
    with a body.

The world is built once per store; one explicit example per route and prefix makes sure each
is driven, then Hypothesis explores (about half a minute per store). No route is skipped: the
artifact routes get small bodies, and downloads are read like any other response.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from access_world import (
    ADMIN,
    API2,
    API3,
    ARTIFACTS,
    CALLERS,
    KNOWN_FILE,
    MLGATE,
    READERS,
    TAG_KEY,
    WRITERS,
    Api,
    Holdings,
    Reply,
    World,
    build_world,
    holdings,
    seed_admin,
    settings_for,
    store_uris,
    victim_holdings,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.routes import all_routes
from gateway.routing import Route

ROUTES = all_routes()
# Every route under each of its prefixes, and what serves a (method, URL template).
ENTRIES = tuple((route, prefix) for route in ROUTES for prefix in route.prefixes)
SERVED = {(route.method, prefix + route.path): route for route, prefix in ENTRIES}

METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS")
PLACEMENTS = ("canonical", "body", "query", "both", "cross", "twin", "none")
LABELS = ("json", "text", "none", "form-label", "form")
WORKSPACES = ("team-a", None, "team-b", "default")
# The order Hypothesis shrinks towards: the most telling attacker first.
ATTACKERS = ("b1", "b-mgr", "a2", "loner", "anonymous", "a1-default-scope", "a1-read-only",
             "rd", "a1")
assert set(ATTACKERS) == set(CALLERS)
SLOTS = ("run", "experiment", "logged model", "registered model", "artifact")
USERS = ("a1", "a2", "rd", "b1", "b-mgr", "loner")
_PATH_VARIABLE = re.compile(r"\{(\w+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Variant:
    """One way of sending a request, tried on a few routes."""

    entries: tuple[int, ...]  # indexes into ENTRIES
    caller: str
    workspace: str | None  # the X-MLFLOW-WORKSPACE header
    method: str | None  # None: the route's own
    swap_prefix: bool  # /api <-> /ajax-api
    placement: str  # where the ids go: PLACEMENTS
    label: str  # how the body is labelled: LABELS
    victims: tuple[bool, ...]  # per SLOTS: a1's (True) or b1's id
    username: str  # the user a user or grant route names
    grant_kind: str  # the resource type a grant route names

    def flipped(self) -> Variant:
        return replace(self, victims=tuple(not v for v in self.victims))


def variants() -> st.SearchStrategy[Variant]:
    return st.builds(
        Variant,
        entries=st.lists(st.integers(0, len(ENTRIES) - 1), min_size=1, max_size=6,
                         unique=True).map(tuple),
        caller=st.sampled_from(ATTACKERS),
        workspace=st.sampled_from((WORKSPACES[0],) * 3 + WORKSPACES[1:]),
        method=st.sampled_from((None,) * len(METHODS) + METHODS),
        swap_prefix=st.booleans(),
        placement=st.sampled_from(PLACEMENTS),
        label=st.sampled_from(LABELS),
        victims=st.tuples(*[st.sampled_from((True, True, False))] * len(SLOTS)),
        username=st.sampled_from(("a1", "b1")),
        grant_kind=st.sampled_from(("experiment", "registered_model")),
    )


def _explicit(i: int) -> Variant:
    """The example that drives entry ``i`` for sure, varied from entry to entry."""
    return Variant(
        entries=(i,), caller=ATTACKERS[i % len(ATTACKERS)],
        workspace=("team-a", "team-a", None, "team-b")[i % 4], method=None, swap_prefix=False,
        placement=PLACEMENTS[(i // 2) % len(PLACEMENTS)], label=LABELS[(i // 3) % len(LABELS)],
        victims=(True,) * len(SLOTS), username="a1",
        grant_kind=("experiment", "registered_model")[i % 2])


# -- what a request carries --------------------------------------------------------------


def _owner(world: World, v: Variant, slot: str) -> Holdings:
    return world.victim if v.victims[SLOTS.index(slot)] else world.other


def _path_variables(world: World, v: Variant, route: Route) -> dict[str, str]:
    """A value for each variable of the route's URL template (a new name fails loudly)."""
    art = _owner(world, v, "artifact")
    directory = route.path.startswith("/mpu/") and not route.path.startswith("/mpu/upload/")
    known = {"model_id": _owner(world, v, "logged model").model_id, "tag_key": TAG_KEY,
             "name": "team-a", "username": v.username, "token_id": world.token_ids["spare"],
             "path": art.run_root if directory else art.known_file,
             "directory": art.run_root}
    names = _PATH_VARIABLE.findall(route.path)
    unknown = set(names) - set(known)
    assert not unknown, f"{route.method} {route.path}: no value for {unknown}; add one here"
    return {name: known[name] for name in names}


def _fields(world: World, v: Variant, route: Route, prefix: str) -> dict[str, Any]:
    """Every field any route reads, naming the variant's owners' resources. Fields a route
    does not read are ignored by it, as by stock."""
    run, exp = _owner(world, v, "run"), _owner(world, v, "experiment")
    model, rm = _owner(world, v, "logged model"), _owner(world, v, "registered model")
    fields: dict[str, Any] = {
        "run_id": run.run_id, "run_uuid": run.run_id, "source_run_id": run.run_id,
        "experiment_id": exp.experiment_id, "experiment_ids": [exp.experiment_id],
        "experiment_name": exp.experiment_name,
        "model_id": model.model_id, "models": [{"model_id": model.model_id, "step": 0}],
        "name": rm.rm_name, "version": rm.version, "alias": rm.alias, "stages": ["None"],
        "source": f"models:/{model.model_id}",
        "resource_type": v.grant_kind,
        "resource_id": exp.experiment_id if v.grant_kind == "experiment" else rm.rm_name,
        "username": v.username, "permission": "MANAGE", "workspace": "team-a",
        "key": TAG_KEY, "value": "1.5", "timestamp": 1, "step": 0, "metric_key": "loss",
        "new_name": "renamed-by-attack", "description": "changed-by-attack",
        "stage": "Staging", "role_id": world.role_id,
        "status": "LOGGED_MODEL_READY" if route.path.startswith("/logged-models") else "KILLED",
        "password": "Attack-pass-123", "current_password": "Wrong-pass-123", "is_admin": True,
        "max_results": 50, "view_type": "ALL", "run_view_type": "ALL",
    }
    if prefix.endswith("/mlflow-artifacts"):
        art = _owner(world, v, "artifact")
        fields["path"] = art.run_root if route.path == "/artifacts" else KNOWN_FILE
        fields["upload_id"] = "0"
    return fields


def _query(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The fields a query string can carry (scalars and lists of scalars)."""
    out = []
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                out.append((key, "true" if item else "false"))
            elif isinstance(item, (str, int, float)):
                out.append((key, str(item)))
    return out


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes | None
    content_type: str | None

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query if k in _SHOWN)
        body: Any = None
        if self.body is not None:
            try:
                body = {k: v for k, v in json.loads(self.body).items() if k in _SHOWN}
            except ValueError:
                body = "form-encoded"
        return f"{self.method} {self.path}?{query} body={body} labelled {self.content_type}"


# The fields a failure message shows of a request (the ids; the rest is the same filler).
_SHOWN = ("run_id", "run_uuid", "experiment_id", "model_id", "name", "resource_id",
          "username", "path")


def _variant_request(world: World, v: Variant, entry: int,
                     ) -> tuple[Sent, dict[str, Any], str, str]:
    """The variant's request to ``ENTRIES[entry]``, what stock reads of it, its URL template,
    and its path after the prefix."""
    route, prefix = ENTRIES[entry]
    if v.swap_prefix and prefix.startswith(("/api/", "/ajax-api/")):
        prefix = ("/ajax-api/" + prefix[len("/api/"):] if prefix.startswith("/api/")
                  else "/api/" + prefix[len("/ajax-api/"):])
    method = v.method or route.method
    variables = _path_variables(world, v, route)
    tail = _PATH_VARIABLE.sub(lambda m: variables[m.group(1)], route.path)
    primary = _fields(world, v, route, prefix)
    other = _fields(world, v.flipped(), route, prefix)
    reads_query = method in ("GET", "HEAD")
    query: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    if v.placement in ("canonical", "twin"):
        ids = primary if v.placement == "canonical" else {**primary,
                                                          "run_uuid": other["run_id"]}
        query, body = (ids, None) if reads_query else (None, ids)
    elif v.placement == "query":
        query = primary
    elif v.placement == "body":
        body = primary
    elif v.placement == "both":
        query = body = primary
    elif v.placement == "cross":
        query, body = primary, other
    data, content_type = None, None
    if body is not None:
        data = json.dumps(body).encode()
        content_type = {"json": "application/json", "text": "text/plain", "none": None,
                        "form-label": "application/x-www-form-urlencoded",
                        "form": "application/x-www-form-urlencoded"}[v.label]
        if v.label == "form":
            data = urllib.parse.urlencode(_query(body)).encode()
    # Stock reads the query string of a GET that has one, else the body (which is JSON
    # whatever its label says, or nothing can be read from it).
    if reads_query and query:
        read = query
    elif body is not None and v.label != "form":
        read = body
    else:
        read = {}
    sent = Sent(method, prefix + tail, tuple(_query(query)) if query else (), data,
                content_type)
    return sent, read, prefix + route.path, tail


def _canonical(target: Route, tail: str, read: dict[str, Any]) -> Sent:
    """The target route's normal form, carrying ``read`` (its ids named once)."""
    fields = dict(read)
    if "run_id" in fields:
        fields["run_uuid"] = fields["run_id"]
    path = target.prefixes[0] + tail
    if target.method == "GET":
        return Sent("GET", path, tuple(_query(fields)), None, None)
    return Sent(target.method, path, (), json.dumps(fields).encode(), "application/json")


# -- the state that must not change -------------------------------------------------------


def _normal(value: Any) -> Any:
    """JSON with its lists sorted, so that row order does not count as a change."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted((_normal(v) for v in value), key=lambda x: json.dumps(x, sort_keys=True))
    return value


def _read(reply: Reply) -> Any:
    try:
        return [reply.status, _normal(reply.json())]
    except ValueError:
        return [reply.status, reply.body.decode(errors="replace")]


async def _victim_state(world: World) -> dict[str, Any]:
    """a1's resources and the grants on them, as the administrator reads them."""
    api, v = world.api, world.victim

    async def get(path: str, **query: str) -> Any:
        return _read(await api.call("GET", path, ADMIN, query=query or None,
                                    workspace=v.workspace))

    state = {
        "experiment": await get(f"{API2}/experiments/get", experiment_id=v.experiment_id),
        "run": await get(f"{API2}/runs/get", run_id=v.run_id),
        "loss history": await get(f"{API2}/metrics/get-history", run_id=v.run_id,
                                  metric_key="loss"),
        "logged model": await get(f"{API2}/logged-models/{v.model_id}"),
        "registered model": await get(f"{API2}/registered-models/get", name=v.rm_name),
        "model version": await get(f"{API2}/model-versions/get", name=v.rm_name,
                                   version=v.version),
        "run artifacts": await get(f"{API2}/artifacts/list", run_id=v.run_id),
        "model artifacts": await get(f"{API2}/logged-models/{v.model_id}/artifacts/"
                                     "directories"),
        "known file": await get(f"{ARTIFACTS}/{v.known_file}"),
        "spare token": _token(await api.ok("GET", f"{MLGATE}/tokens", ADMIN,
                                           query={"username": "a1"}), world, "spare"),
    }
    mine = {("experiment", v.experiment_id, v.workspace),
            ("registered_model", v.rm_name, v.workspace)}
    for user in USERS:
        listed = await api.ok("GET", f"{API3}/users/permissions/list", ADMIN,
                              query={"username": user}, workspace=v.workspace)
        state[f"grants of {user}"] = _normal([
            g for g in listed.get("permissions", [])
            if (g.get("resource_type"), g.get("resource_id"), g.get("workspace")) in mine])
    return state


def _token(listed: Any, world: World, name: str) -> Any:
    found = [t for t in listed.get("tokens", []) if t["token_id"] == world.token_ids[name]]
    return [(t["revoked_at"], t["read_only"], t["workspace"], t["expires_at"]) for t in found]


async def _identity_state(world: World) -> dict[str, Any]:
    """Users, administrators, team members, roles and a1's tokens: nobody in the world may
    change any of them."""
    api = world.api
    users = await api.ok("GET", f"{API2}/users/list", ADMIN)
    tokens = await api.ok("GET", f"{MLGATE}/tokens", ADMIN, query={"username": "a1"})
    state: dict[str, Any] = {
        "administrators": sorted(u["username"] for u in users["users"] if u.get("is_admin")),
        "users": sorted(u["username"] for u in users["users"] if u["username"] in USERS),
        "a1 logs in": (await api.call("GET", f"{API2}/users/current", "a1")).status,
        "roles": _read(await api.call("GET", f"{API3}/roles/list", ADMIN,
                                      query={"workspace": "team-a"})),
    }
    for name in ("a1-read-only", "a1-default-scope"):
        state[f"token {name}"] = _token(tokens, world, name)
    for team in ("team-a", "team-b"):
        state[f"members of {team}"] = _read(await api.call(
            "GET", f"{MLGATE}/teams/{team}/members", ADMIN))
    return state


async def _other_health(world: World) -> list[Any]:
    """Whether b1's resources are still there to be named (b1 may delete its own)."""
    api, o = world.api, world.other
    checks: list[tuple[str, dict[str, str] | None, Any]] = [
        (f"{API2}/experiments/get", {"experiment_id": o.experiment_id},
         lambda d: d["experiment"]["lifecycle_stage"] + d["experiment"]["name"]),
        (f"{API2}/runs/get", {"run_id": o.run_id},
         lambda d: d["run"]["info"]["lifecycle_stage"]),
        (f"{API2}/logged-models/{o.model_id}", None, lambda d: None),
        (f"{API2}/registered-models/get", {"name": o.rm_name}, lambda d: None),
        (f"{API2}/model-versions/get", {"name": o.rm_name, "version": "1"}, lambda d: None),
    ]
    out = []
    for path, query, pick in checks:
        reply = await api.call("GET", path, ADMIN, query=query, workspace=o.workspace)
        out.append([reply.status, pick(reply.json()) if reply.ok else None])
    return out


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [f"{key}: {json.dumps(before.get(key))[:300]} -> {json.dumps(after.get(key))[:300]}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


# -- the harness ------------------------------------------------------------------------------


class Harness:
    """The world, what must stay as it is, and the checks of one example."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.victim: dict[str, Any] = {}
        self.identity: dict[str, Any] = {}
        self.other: Any = None
        self.examples = 0

    async def start(self) -> None:
        self.victim = await _victim_state(self.world)
        self.identity = await _identity_state(self.world)
        self.other = await _other_health(self.world)

    async def send(self, who: str, workspace: str | None, sent: Sent) -> Reply:
        return await self.world.api.send(sent.method, sent.path, who, query=list(sent.query),
                                         body=sent.body, content_type=sent.content_type,
                                         workspace=workspace)

    async def check(self, v: Variant) -> None:
        self.examples += 1
        world = self.world
        problems: list[str] = []
        for entry in v.entries:
            problems += await self.try_entry(v, entry)
        # (b) nothing of a1's, and no user, team, role or token, changed
        identity = await _identity_state(world)
        if identity != self.identity:
            problems.append("(b) changed: " + "; ".join(_changes(self.identity, identity)))
            self.identity = identity  # judge the next examples on their own
        victim = await _victim_state(world)
        if victim != self.victim:
            if v.caller not in WRITERS:
                problems.append(f"(b) {v.caller} changed a1's: "
                                + "; ".join(_changes(self.victim, victim)))
            await self.renew_victim()
        if v.caller in ("b1", "b-mgr") and await _other_health(world) != self.other:
            world.other = await holdings(world.api, "b1", "team-b", f"b{self.examples}")
            self.other = await _other_health(world)
        assert not problems, "\n".join([f"{v}", *problems])

    async def try_entry(self, v: Variant, entry: int) -> list[str]:
        """Send the variant and its canonical request to one route; checks (a) and (c)."""
        world = self.world
        sent, read, template, tail = _variant_request(world, v, entry)
        target = SERVED.get(("GET" if sent.method == "HEAD" else sent.method, template))
        problems: list[str] = []
        replies: list[tuple[str, Reply]] = []
        normal = None if target is None else _canonical(target, tail, read)
        canonical: Reply | None = None
        if normal is not None and normal != sent:
            canonical = await self.send(v.caller, v.workspace, normal)
            replies.append((f"canonical {normal}", canonical))
        reply = await self.send(v.caller, v.workspace, sent)
        replies.append((f"variant {sent}", reply))
        if normal == sent:
            canonical = reply

        # (a) nothing revealed to a caller who may not read a1's resources
        if v.caller not in READERS:
            for what, r in replies:
                leaked = r.holds(world.victim.secrets)
                if leaked:
                    problems.append(f"(a) {v.caller} got {leaked} from {what}: {r}")
        # (c) never allowed where the canonical request is refused
        if normal is None:
            if reply.ok and reply.body.strip():
                problems.append(f"(c) {sent.method} {template} is not in the route table but "
                                f"answered {reply}")
        elif reply.ok and canonical is not None and not canonical.ok:
            problems.append(f"(c) {sent}: variant allowed ({reply}) where the canonical "
                            f"request {normal} is refused ({canonical})")
        return problems

    async def renew_victim(self) -> None:
        """a1's resources as they were, made afresh (with new names and markers)."""
        world = self.world
        world.generation += 1
        world.victim = await victim_holdings(world.api, world.generation)
        if self.victim["spare token"] != _token(await world.api.ok(
                "GET", f"{MLGATE}/tokens", ADMIN, query={"username": "a1"}), world, "spare"):
            _, world.token_ids["spare"] = await world.api.token("a1", name="spare")
        self.victim = await _victim_state(world)
        self.identity = await _identity_state(world)


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


@pytest.fixture
async def harness(aiohttp_client: Any, store_uri: str, tmp_path: Path
                  ) -> AsyncIterator[Harness]:
    """One server and world per store, kept across Hypothesis's examples."""
    await seed_admin(store_uri)
    api = Api(await aiohttp_client(create_app(settings_for(store_uri, tmp_path))))
    try:
        started = Harness(await build_world(api))
        await started.start()
        yield started
    finally:
        await api.client.close()  # shut the app down before its database is dropped


def _with_every_entry(test: Any) -> Any:
    for i in range(len(ENTRIES)):
        test = example(v=_explicit(i))(test)
    return test


@settings(max_examples=500, deadline=None, derandomize=True, database=None, print_blob=False,
          # The world is a fixture on purpose: built once per store, kept across examples.
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(v=variants())
@_with_every_entry
async def test_no_variant_reveals_changes_or_outranks_the_canonical(harness: Harness,
                                                                    v: Variant) -> None:
    await harness.check(v)
