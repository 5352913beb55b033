"""Regression tests for the seven classes of cross-team bypass of issue 20, through a real
socket on SQLite and PostgreSQL.

Each test builds the two-team world of ``tests/access_world.py`` (a1 owns resources in
team-a; b1 and b-mgr are in team-b) and tries one class of attack as team-b would. The
assertions are about outcomes: nothing of a1's is revealed (no secret marker in the
response, and no 2xx for a read), nothing of a1's changes (re-read by the administrator),
and the stock onboarding works; exact status codes only where the issue names one.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from access_world import (
    ADMIN,
    API2,
    API3,
    KNOWN_FILE,
    MLGATE,
    Api,
    Reply,
    World,
    basic,
    build_world,
    seed_admin,
    settings_for,
    store_uris,
)

from gateway.app import create_app


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


@pytest.fixture
async def world(aiohttp_client: Any, store_uri: str, tmp_path: Path) -> AsyncIterator[World]:
    await seed_admin(store_uri)
    api = Api(await aiohttp_client(create_app(settings_for(store_uri, tmp_path))))
    try:
        yield await build_world(api)
    finally:
        await api.client.close()  # shut the app down before its database is dropped


def _body(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def _no_leak(reply: Reply, world: World, what: str) -> None:
    leaked = reply.holds(world.victim.secrets)
    assert not leaked, f"{what}: {reply.status} revealed {leaked}"


async def _victim_registry(world: World) -> Any:
    """a1's registered model and its version as the administrator reads them."""
    v = world.victim
    model = await world.api.call("GET", f"{API2}/registered-models/get", ADMIN,
                                 query={"name": v.rm_name}, workspace="team-a")
    version = await world.api.call("GET", f"{API2}/model-versions/get", ADMIN,
                                   query={"name": v.rm_name, "version": "1"},
                                   workspace="team-a")
    return model.status, model.json(), version.status, version.json()


# -- 1: ids in the JSON body of a GET ------------------------------------------------------


async def test_get_with_ids_in_its_body_reveals_nothing(world: World) -> None:
    """A GET without a query string is answered from its JSON body (as stock does), so its
    ids are checked there too: b1 reads nothing of a1's by moving them into the body."""
    v, api = world.victim, world.api
    reads = [
        ("runs/get", {"run_id": v.run_id}),
        ("runs/get", {"run_uuid": v.run_id}),
        ("metrics/get-history", {"run_id": v.run_id, "metric_key": "loss"}),
        ("artifacts/list", {"run_id": v.run_id}),
        ("experiments/get", {"experiment_id": v.experiment_id}),
        ("registered-models/get", {"name": v.rm_name}),
        ("model-versions/get", {"name": v.rm_name, "version": "1"}),
        ("model-versions/get-download-uri", {"name": v.rm_name, "version": "1"}),
        ("registered-models/alias", {"name": v.rm_name, "alias": "champion"}),
        ("registered-models/get-latest-versions", {"name": v.rm_name}),
    ]
    for path, fields in reads:
        for workspace in ("team-a", None):
            for label in ("application/json", None):
                reply = await api.send("GET", f"{API2}/{path}", "b1", body=_body(fields),
                                       content_type=label, workspace=workspace)
                what = f"GET {path} body={fields} label={label} workspace={workspace}"
                _no_leak(reply, world, what)
                assert not reply.ok, f"{what}: {reply}"
                # The run id is never sent by the model registry reads: it would be revealed.
                if "run_id" not in fields and "run_uuid" not in fields:
                    assert v.run_id.encode() not in reply.body, f"{what}: {reply}"


async def test_an_id_named_twice_with_different_values_is_refused(world: World) -> None:
    """Issue 20: a request that names its resource twice with different values is refused
    with 400, whichever of the two the caller may read."""
    v, o, api = world.victim, world.other, world.api
    for first, second in ((o.run_id, v.run_id), (v.run_id, o.run_id)):
        reply = await api.send("GET", f"{API2}/runs/get", "b1",
                               query=[("run_id", first), ("run_uuid", second)],
                               workspace="team-b")
        assert reply.status == 400, str(reply)
        _no_leak(reply, world, "runs/get named twice")
        reply = await api.send("POST", f"{API2}/runs/set-tag", "b1", body=_body({
            "run_id": first, "run_uuid": second, "key": "k", "value": "v"}),
            content_type="application/json", workspace="team-b")
        assert reply.status == 400, str(reply)


# -- 2: PATCH/DELETE bodies not labelled JSON ----------------------------------------------


async def test_patch_and_delete_bodies_are_checked_whatever_their_label(world: World) -> None:
    """A PATCH or DELETE body labelled text/plain, or not labelled, is either refused or
    read as JSON by the check as well as by the handler: team-a's model is left as it was."""
    v, api = world.victim, world.api
    before = await _victim_registry(world)
    assert before[0] == 200 and before[2] == 200
    attacks = [
        ("PATCH", "registered-models/update", {"name": v.rm_name, "description": "b1 was here"}),
        ("DELETE", "registered-models/delete-tag", {"name": v.rm_name, "key": "vtag"}),
        ("DELETE", "registered-models/alias", {"name": v.rm_name, "alias": "champion"}),
        ("PATCH", "model-versions/update", {"name": v.rm_name, "version": "1",
                                            "description": "b1 was here"}),
        ("DELETE", "model-versions/delete-tag", {"name": v.rm_name, "version": "1",
                                                 "key": "vtag"}),
        ("DELETE", "model-versions/delete", {"name": v.rm_name, "version": "1"}),
        ("DELETE", "registered-models/delete", {"name": v.rm_name}),
    ]
    for method, path, fields in attacks:
        for label in ("application/json", "text/plain", None):
            for workspace in ("team-a", "team-b"):
                reply = await api.send(method, f"{API2}/{path}", "b1", body=_body(fields),
                                       content_type=label, workspace=workspace)
                what = f"{method} {path} label={label} workspace={workspace}"
                assert not reply.ok, f"{what}: {reply}"
                _no_leak(reply, world, what)
                assert await _victim_registry(world) == before, f"{what} changed a1's model"


# -- 3: artifact_location pointing at someone else's files ---------------------------------


async def test_artifact_location_cannot_reach_other_runs_or_the_server(world: World) -> None:
    """An experiment whose artifact_location points into a1's run, or at the server's own
    folders, is refused (400 INVALID_PARAMETER_VALUE), or else nothing listed through its
    runs and logged models is a1's or the server's."""
    v, api = world.victim, world.api
    # What a listing must not show: a1's files and folders, or the server's.
    foreign = {"known.txt", "MLmodel", "model", "models", v.run_id, *os.listdir("/etc")}
    locations = [
        f"mlflow-artifacts:/{v.run_root}#",
        f"mlflow-artifacts:/{v.run_root}?",
        f"mlflow-artifacts:/{v.run_root}/#",
        f"mlflow-artifacts:/{v.run_root.split('/', 1)[0]}#",
        f"mlflow-artifacts:/{v.model_root}#",
        "mlflow-artifacts:/../../../etc#",
        "file:///etc#",
        "file:///etc",
        "/etc#",
    ]
    for n, location in enumerate(locations):
        created = await api.call("POST", f"{API2}/experiments/create", "b1", {
            "name": f"borrowed-{n}", "artifact_location": location}, workspace="team-b")
        if not created.ok:
            assert created.status == 400, (location, str(created))
            assert created.json()["error_code"] == "INVALID_PARAMETER_VALUE", location
            continue
        exp = created.json()["experiment_id"]
        run = (await api.ok("POST", f"{API2}/runs/create", "b1", {"experiment_id": exp},
                            workspace="team-b"))["run"]["info"]["run_id"]
        model = (await api.ok("POST", f"{API2}/logged-models", "b1", {
            "experiment_id": exp, "name": f"m{n}"}, workspace="team-b"))["model"]["info"]
        listings = [
            await api.call("GET", f"{API2}/artifacts/list", "b1", query={"run_id": run},
                           workspace="team-b"),
            await api.call("GET", f"{API2}/artifacts/list", "b1",
                           query={"run_id": run, "path": "model"}, workspace="team-b"),
            await api.call("GET", f"{API2}/logged-models/{model['model_id']}/artifacts/"
                           "directories", "b1", workspace="team-b"),
        ]
        for reply in listings:
            _no_leak(reply, world, f"listing under {location}")
            if reply.ok:
                names = {Path(f["path"]).name for f in reply.json().get("files", [])}
                assert not names & foreign, (location, str(reply))


# -- 4: references to other resources inside a body ---------------------------------------


async def test_own_run_cannot_write_to_another_teams_logged_model(world: World) -> None:
    """log-metric, outputs and log-inputs on b1's own run naming a1's logged model are
    refused, and nothing appears on a1's model."""
    v, o, api = world.victim, world.other, world.api

    async def victim_model() -> Any:
        return await api.ok("GET", f"{API2}/logged-models/{v.model_id}", ADMIN,
                            workspace="team-a")

    before = await victim_model()
    attacks = [
        ("runs/log-metric", {"run_id": o.run_id, "key": "planted", "value": 1.0,
                             "timestamp": 1, "step": 0, "model_id": v.model_id}),
        ("runs/log-batch", {"run_id": o.run_id, "metrics": [{
            "key": "planted", "value": 1.0, "timestamp": 1, "step": 0,
            "model_id": v.model_id}]}),
        ("runs/outputs", {"run_id": o.run_id, "models": [{"model_id": v.model_id,
                                                          "step": 0}]}),
        ("runs/log-inputs", {"run_id": o.run_id, "models": [{"model_id": v.model_id}]}),
    ]
    for path, fields in attacks:
        for workspace in ("team-b", "team-a"):
            reply = await api.call("POST", f"{API2}/{path}", "b1", fields, workspace=workspace)
            assert not reply.ok, f"{path} with workspace {workspace}: {reply}"
    assert await victim_model() == before
    run = await api.ok("GET", f"{API2}/runs/get", ADMIN, query={"run_id": o.run_id},
                       workspace="team-b")
    assert v.model_id not in json.dumps(run), run  # not linked to b1's run either
    # Control: the same requests naming b1's own logged model are accepted.
    await api.ok("POST", f"{API2}/runs/log-metric", "b1", {
        "run_id": o.run_id, "key": "own", "value": 1.0, "timestamp": 1,
        "model_id": o.model_id}, workspace="team-b")


# -- 5: user and permission disclosure -----------------------------------------------------


async def test_managers_and_users_see_only_their_own_teams_people(world: World) -> None:
    """A manager of team-b reads its members' records but not a1's record, permissions or
    effective permissions; an ordinary user does not list every user; a workspace is
    visible to its members and administrators only."""
    v, api = world.victim, world.api
    refused = [
        ("GET", f"{API2}/users/get", {"username": "a1"}),
        ("GET", f"{API3}/users/permissions/list", {"username": "a1"}),
        ("GET", f"{API3}/users/permissions/get", {
            "username": "a1", "resource_type": "experiment", "resource_id": v.experiment_id}),
        ("GET", f"{API3}/users/permissions/get", {
            "username": "a1", "resource_type": "registered_model", "resource_id": v.rm_name}),
    ]
    for method, path, query in refused:
        for workspace in ("team-b", None, "team-a"):
            reply = await api.call(method, path, "b-mgr", query=query, workspace=workspace)
            assert not reply.ok, f"b-mgr {path} {query} in {workspace}: {reply}"
            if "resource_id" not in query:  # else an error message may echo what was sent
                assert v.rm_name.encode() not in reply.body, str(reply)
    # Their own team's members they do manage.
    reply = await api.call("GET", f"{API2}/users/get", "b-mgr", query={"username": "b1"},
                           workspace="team-b")
    assert reply.ok and reply.json()["user"]["username"] == "b1", str(reply)

    for who in ("b1", "b-mgr", "loner"):
        reply = await api.call("GET", f"{API2}/users/list", who)
        listed = {u["username"] for u in reply.json().get("users", [])} if reply.ok else set()
        assert not listed & {"a1", "a2"}, (who, str(reply))  # team-a's people
    listed = await api.ok("GET", f"{API2}/users/list", ADMIN)
    assert {"a1", "a2", "b1"} <= {u["username"] for u in listed["users"]}

    for who in ("b1", "b-mgr", "loner", "rd"):
        reply = await api.call("GET", f"{API3}/workspaces/team-a", who)
        assert not reply.ok, (who, str(reply))
    await api.ok("GET", f"{API3}/workspaces/team-a", "a2")
    await api.ok("GET", f"{API3}/workspaces/team-a", ADMIN)


# -- 6: failed logins of other names ---------------------------------------------------------


async def test_failed_logins_for_other_names_do_not_lock_out_real_users(
        aiohttp_client: Any, store_uri: str, tmp_path: Path) -> None:
    """Twelve wrong logins for random user names from one address (as from behind a reverse
    proxy) do not make a user or an administrator who then logs in correctly get 429."""
    await seed_admin(store_uri)
    api = Api(await aiohttp_client(create_app(settings_for(
        store_uri, tmp_path, auth_max_failures=10))))
    try:
        for name in ("a1", "admin2"):
            await api.add_user(name)
        await api.ok("PATCH", f"{API2}/users/update-admin", body={
            "username": "admin2", "is_admin": True})
        for _ in range(12):
            reply = await api.call("GET", f"{API2}/users/current",
                                   basic(f"nobody-{uuid.uuid4().hex[:8]}", "guess"))
            assert reply.status in (401, 429), str(reply)
        # Neither has logged in before, so no earlier success of theirs is remembered.
        for name in ("a1", "admin2"):
            reply = await api.call("GET", f"{API2}/users/current", name)
            assert reply.ok, f"{name}: {reply}"
            assert reply.json()["user"]["username"] == name
        reply = await api.call("GET", f"{API2}/users/list", "admin2")
        assert reply.ok, str(reply)
    finally:
        await api.client.close()


# -- 7: stock onboarding ---------------------------------------------------------------------


async def test_users_created_as_on_stock_create_and_manage_in_default(world: World) -> None:
    """A user made with MLflow's users/create and no team membership (loner) creates an
    experiment and a registered model in the default workspace, as on stock, and gets
    MANAGE on them: it can delete them."""
    api = world.api
    created = await api.call("POST", f"{API2}/experiments/create", "loner",
                             {"name": "loner-exp"})
    assert created.ok, str(created)
    exp = created.json()["experiment_id"]
    created = await api.call("POST", f"{API2}/registered-models/create", "loner",
                             {"name": "loner-model"})
    assert created.ok, str(created)
    permission = await api.ok("GET", f"{API3}/users/permissions/get", "loner", query={
        "username": "loner", "resource_type": "experiment", "resource_id": exp})
    assert permission["permission"] == "MANAGE", permission
    await api.ok("POST", f"{API2}/runs/create", "loner", {"experiment_id": exp})
    await api.ok("POST", f"{API2}/experiments/delete", "loner", {"experiment_id": exp})
    await api.ok("DELETE", f"{API2}/registered-models/delete", "loner",
                 {"name": "loner-model"})
    reply = await api.call("GET", f"{API2}/registered-models/get", ADMIN,
                           query={"name": "loner-model"})
    assert reply.status == 404, str(reply)


# -- found by the review of the new shape --------------------------------------------------


async def test_an_experiment_id_spelled_otherwise_names_no_experiment(world: World) -> None:
    """Grants are kept under an experiment's id as the server writes it; "01", "+1", " 1" or
    "١" read as 1 by int() would find none of them, a DENY among them."""
    v, api = world.victim, world.api
    # a2 may edit every experiment of team-a through a role, except a1's: a DENY.
    role = (await api.ok("POST", f"{API3}/roles/create", ADMIN, body={
        "name": "editors", "workspace": "team-a"}, workspace="team-a"))["role"]["id"]
    await api.ok("POST", f"{API3}/roles/permissions/add", ADMIN, body={
        "role_id": role, "resource_type": "experiment", "resource_pattern": "*",
        "permission": "EDIT"}, workspace="team-a")
    await api.ok("POST", f"{API3}/roles/assign", ADMIN, body={"username": "a2",
                                                             "role_id": role})
    await api.ok("POST", f"{API3}/users/permissions/grant", "a1", body={
        "username": "a2", "resource_type": "experiment", "resource_id": v.experiment_id,
        "permission": "DENY"}, workspace="team-a")
    for spelling in (v.experiment_id, "0" + v.experiment_id, "+" + v.experiment_id,
                     " " + v.experiment_id, chr(0x660 + int(v.experiment_id[-1]))):
        read = await api.send("GET", f"{API2}/experiments/get", "a2",
                              query={"experiment_id": spelling}, workspace="team-a")
        assert not read.ok, (spelling, str(read))
        _no_leak(read, world, f"experiments/get {spelling!r}")
        renamed = await api.send("POST", f"{API2}/experiments/update", "a2", body=_body({
            "experiment_id": spelling, "new_name": "renamed-by-a2"}),
            content_type="application/json", workspace="team-a")
        assert not renamed.ok, (spelling, str(renamed))
    exp = await api.call("GET", f"{API2}/experiments/get", ADMIN,
                         query={"experiment_id": v.experiment_id}, workspace="team-a")
    assert exp.json()["experiment"]["name"] == v.experiment_name


async def test_another_team_learns_nothing_of_what_exists(world: World) -> None:
    """A caller outside team-a gets the same answer for a1's resources and for ids or names
    that exist nowhere, and for team-a and a workspace that does not exist."""
    v, api = world.victim, world.api

    async def answer(method: str, path: str, **kwargs: Any) -> tuple[int, str]:
        reply = await api.send(method, path, "b1", **kwargs)
        return reply.status, reply.json().get("error_code", "")

    pairs = [
        ({"experiment_id": v.experiment_id}, {"experiment_id": "987654"}, "experiments/get"),
        ({"experiment_name": v.experiment_name}, {"experiment_name": "no-such-experiment"},
         "experiments/get-by-name"),
        ({"run_id": v.run_id}, {"run_id": uuid.uuid4().hex}, "runs/get"),
        ({"name": v.rm_name}, {"name": "no-such-model"}, "registered-models/get"),
    ]
    for real, made_up, route in pairs:
        assert await answer("GET", f"{API2}/{route}", query=real, workspace="team-a") == \
            await answer("GET", f"{API2}/{route}", query=made_up, workspace="team-a"), route
    search = {"body": _body({"max_results": 5}), "content_type": "application/json"}
    assert await answer("POST", f"{API2}/experiments/search", workspace="team-a", **search) \
        == await answer("POST", f"{API2}/experiments/search", workspace="team-zzz", **search)
    create = {"body": _body({"name": "probe"}), "content_type": "application/json"}
    assert await answer("POST", f"{API2}/experiments/create", workspace="team-a", **create) \
        == await answer("POST", f"{API2}/experiments/create", workspace="team-zzz", **create)
    # A member still learns what is refused in their own team (stock's 403).
    await api.ok("POST", f"{API3}/users/permissions/grant", "a1", body={
        "username": "a2", "resource_type": "experiment", "resource_id": v.experiment_id,
        "permission": "DENY"}, workspace="team-a")
    refused = await api.send("GET", f"{API2}/experiments/get", "a2",
                             query={"experiment_id": v.experiment_id}, workspace="team-a")
    assert refused.status == 403


async def test_server_figures_and_token_revocation_are_not_for_everyone(world: World) -> None:
    """The server-wide stats are for administrators, not any team's manager; a read-only
    token revokes no tokens."""
    api = world.api
    stats = await api.send("GET", "/mlgate/v1/stats", "b-mgr", workspace="team-b")
    assert stats.status == 403, str(stats)
    spare = world.token_ids["spare"]
    revoke = await api.send("DELETE", f"/mlgate/v1/tokens/{spare}", "a1-read-only")
    assert revoke.status == 403, str(revoke)
    listed = await api.ok("GET", "/mlgate/v1/tokens", "a1")
    assert {t["token_id"]: t["revoked_at"] for t in listed["tokens"]}[spare] is None


async def test_an_experiments_location_is_not_another_experiments_folder(world: World) -> None:
    """``<root>/<digits>/...`` is an experiment's own folder, judged as that experiment's by
    the proxy: no other experiment may put its runs there."""
    v, api = world.victim, world.api
    for location in (f"mlflow-artifacts:/{v.experiment_id}",
                     f"mlflow-artifacts:/{v.experiment_id}/mine"):
        reply = await api.send("POST", f"{API2}/experiments/create", "b1", body=_body({
            "name": f"squat-{uuid.uuid4().hex[:6]}", "artifact_location": location}),
            content_type="application/json", workspace="team-b")
        assert reply.status == 400, (location, str(reply))
    ok = await api.send("POST", f"{API2}/experiments/create", "b1", body=_body({
        "name": "own-place", "artifact_location": "mlflow-artifacts:/team-b/own"}),
        content_type="application/json", workspace="team-b")
    assert ok.ok, str(ok)


async def test_artifact_paths_tell_no_experiment_ids(world: World) -> None:
    """Through the artifact proxy, a1's experiment and an id that names none get the same
    answer from b1, in b1's own workspace too."""
    v, api = world.victim, world.api
    for workspace in ("team-b", None):
        answers = set()
        for head in (v.experiment_id, "987654"):
            reply = await api.send("GET", f"/api/2.0/mlflow-artifacts/artifacts/{head}/x/y.txt",
                                   "b1", workspace=workspace)
            answers.add((reply.status, reply.json().get("error_code")))
        assert len(answers) == 1, (workspace, answers)


async def test_hidden_refusals_are_audited_with_what_they_named(world: World) -> None:
    """b1's preview of a1's run and of a run that does not exist get the same 404; the audit
    log (administrators only) keeps which run each named and that the first was a refusal."""
    v, api = world.victim, world.api
    missing = "0" * 32
    for run_id in (v.run_id, missing):
        reply = await api.send("GET", "/get-artifact", "b1", workspace="team-b",
                               query={"run_id": run_id, "path": KNOWN_FILE})
        assert reply.status == 404, str(reply)
    records: list[dict[str, Any]] = []
    for _ in range(50):  # the audit writer commits in the background
        records = (await api.ok("GET", f"{MLGATE}/audit",
                                query={"username": "b1"}))["records"]
        if len(records) >= 2:
            break
        await asyncio.sleep(0.1)
    previews = {r["resource_id"]: (r["resource_type"], r["outcome"], r["status"])
                for r in records if r["action"] == "GET /get-artifact"}
    assert previews == {v.run_id: ("run", "denied", 404), missing: ("run", "error", 404)}
