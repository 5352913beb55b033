"""The real mlflow client against ``mlgate serve --auth`` (SQLite and PostgreSQL): Basic
credentials, an API token, a denied call, ``AuthServiceClient`` managing users and grants,
and two teams (workspaces) that do not see each other."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mytools import ON_EVERY_DATABASE

pytestmark = [pytest.mark.e2e, ON_EVERY_DATABASE]

ADMIN, ADMIN_PASSWORD = "root", "root-password-123"


@pytest.fixture
def auth_server(mlgate_factory: Any) -> Any:
    server = mlgate_factory("--auth", env={"MLGATE_ADMIN_USERNAME": ADMIN,
                                            "MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert ADMIN_PASSWORD not in server.output()  # secrets are never logged
    return server


@pytest.fixture
def auth_url(auth_server: Any) -> str:
    url: str = auth_server.url
    return url


def _as(monkeypatch: pytest.MonkeyPatch, user: str | None = None, password: str | None = None,
        token: str | None = None) -> None:
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    if user:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or "")
    if token:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)


def _post(url: str, path: str, body: dict[str, Any], user: str, password: str) -> Any:
    import base64

    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    req.add_header("Authorization", "Basic " + base64.b64encode(
        f"{user}:{password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def test_client_with_basic_token_and_auth_service_client(
        auth_server: Any, auth_url: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(auth_url)
    _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
    admin_client = get_app_client("basic-auth", tracking_uri=auth_url)
    alice = admin_client.create_user("alice", "alice-password-1")
    assert alice.username == "alice" and not alice.is_admin
    admin_client.create_user("bob", "bob-password-12")
    assert admin_client.get_user("bob").username == "bob"
    for user in ("alice", "bob"):
        _post(auth_url, "/mlgate/v1/teams/default/members", {"username": user},
              ADMIN, ADMIN_PASSWORD)

    # Alice logs with Basic credentials through the fluent API.
    _as(monkeypatch, "alice", "alice-password-1")
    exp_id = mlflow.create_experiment("alice-exp")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("p", "1")
        mlflow.log_metric("m", 0.5)
        mlflow.log_text("hello", "notes.txt")
    run_id = run.info.run_id
    assert mlflow.get_run(run_id).data.metrics == {"m": 0.5}

    # Bob may not read it: the client raises PERMISSION_DENIED.
    _as(monkeypatch, "bob", "bob-password-12")
    with pytest.raises(MlflowException) as denied:
        mlflow.get_run(run_id)
    assert denied.value.error_code == "PERMISSION_DENIED"
    assert mlflow.search_runs([exp_id]).empty  # nothing readable, no error

    # Alice (MANAGE as creator) grants Bob READ through AuthServiceClient.
    _as(monkeypatch, "alice", "alice-password-1")
    get_app_client("basic-auth", tracking_uri=auth_url).grant_user_permission(
        "bob", "experiment", exp_id, "READ")
    _as(monkeypatch, "bob", "bob-password-12")
    assert mlflow.get_run(run_id).data.params == {"p": "1"}
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes.txt",
                                                dst_path=str(tmp_path))
    assert Path(local).read_text() == "hello"
    with pytest.raises(MlflowException) as denied:
        mlflow.log_metric("m", 1.0, run_id=run_id)
    assert denied.value.error_code == "PERMISSION_DENIED"
    perm = get_app_client("basic-auth", tracking_uri=auth_url).get_user_permission(
        "bob", "experiment", exp_id)
    assert perm.permission == "READ"

    # A token works as MLFLOW_TRACKING_TOKEN (Bearer).
    token = _post(auth_url, "/mlgate/v1/tokens", {"name": "ci"}, "alice",
                  "alice-password-1")["token"]
    _as(monkeypatch, token=token)
    mlflow.log_metric("m", 2.0, step=1, run_id=run_id)
    history = mlflow.MlflowClient().get_metric_history(run_id, "m")
    assert [h.value for h in history] == [0.5, 2.0]
    _as(monkeypatch, token=token + "x")
    with pytest.raises(MlflowException):
        mlflow.get_run(run_id)

    # The audit log: every record of the session is in the database and is one JSON line
    # of its own in the server's output (the query flushes both).
    import base64

    req = urllib.request.Request(auth_url + "/mlgate/v1/audit?limit=10000", headers={
        "Authorization": "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode())
        .decode()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        rows = json.loads(resp.read())["records"]
    lines = [json.loads(line) for line in auth_server.output().splitlines()
             if line.startswith("{")]
    key = ("username", "workspace", "action", "resource_type", "resource_id", "outcome",
           "status", "client_address")
    assert sorted(((r["time"], *(r[k] for k in key)) for r in rows), key=repr) == \
        sorted(((line["ts"], *(line[k] for k in key)) for line in lines), key=repr)
    actions = {(r["username"], r["action"], r["outcome"]) for r in rows}
    assert ("alice", "POST /runs/log-metric", "ok") in actions
    assert ("bob", "POST /runs/log-metric", "denied") in actions
    assert ("alice", "POST /mlgate/v1/tokens", "ok") in actions
    assert ("bob", "GET /api/2.0/mlflow-artifacts/artifacts/{path}", "ok") in actions
    assert any(o == "failed" for _, _, o in actions)  # the altered token


def test_two_teams_do_not_see_each_other(auth_url: str, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(auth_url)
    _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
    admin_client = get_app_client("basic-auth", tracking_uri=auth_url)
    runs: dict[str, str] = {}
    for team, user in (("team-a", "anna"), ("team-b", "ben")):
        mlflow.create_workspace(team)
        admin_client.create_user(user, f"{user}-password-12")
        _post(auth_url, f"/mlgate/v1/teams/{team}/members", {"username": user},
              ADMIN, ADMIN_PASSWORD)
    try:
        for team, user in (("team-a", "anna"), ("team-b", "ben")):
            _as(monkeypatch, user, f"{user}-password-12")
            mlflow.set_workspace(team)
            mlflow.set_experiment("same-name")  # names are unique per workspace
            with mlflow.start_run() as run:
                mlflow.log_metric("x", 1.0)
                mlflow.log_text(team, "team.txt")
            runs[team] = run.info.run_id
            mlflow.MlflowClient().create_registered_model(f"{team}-model")
        # Ben, in team-b, sees only his own experiment, run and model.
        exps = mlflow.search_experiments()
        assert [e.name for e in exps] == ["same-name"]
        found = mlflow.search_runs(search_all_experiments=True)
        assert list(found["run_id"]) == [runs["team-b"]]
        assert [m.name for m in mlflow.search_registered_models()] == ["team-b-model"]
        with pytest.raises(MlflowException):
            mlflow.get_run(runs["team-a"])
        with pytest.raises(MlflowException):
            mlflow.artifacts.load_text(f"runs:/{runs['team-a']}/team.txt")
        assert mlflow.artifacts.load_text(f"runs:/{runs['team-b']}/team.txt") == "team-b"
        # Switching to team-a does not help: Ben is not a member there.
        mlflow.set_workspace("team-a")
        assert mlflow.search_experiments() == []
        with pytest.raises(MlflowException) as denied:
            mlflow.get_run(runs["team-a"])
        # Answered as for a run that does not exist: he does not learn that it does.
        assert denied.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    finally:
        mlflow.set_workspace(None)


def test_auth_service_client_roles(auth_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3.17's role API through the stock ``AuthServiceClient``: a role in a workspace
    with a permission on every experiment, assigned to a user, gives that user exactly what
    it says; changes take effect at once."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(auth_url)
    _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
    admin = get_app_client("basic-auth", tracking_uri=auth_url)
    mlflow.create_workspace("ml-team")
    for user in ("owner", "viewer"):
        admin.create_user(user, f"{user}-password-12")
    try:
        mlflow.set_workspace("ml-team")
        members = admin.create_role("ml-team", "members", description="may create")
        admin.add_role_permission(members.id, "workspace", "*", "USE")
        admin.assign_role("owner", members.id)
        # The workspace USE permission makes the owner a member, who may create.
        _as(monkeypatch, "owner", "owner-password-12")
        exp_id = mlflow.create_experiment("shared")
        with mlflow.start_run(experiment_id=exp_id) as run:
            mlflow.log_metric("m", 1.0)

        _as(monkeypatch, "viewer", "viewer-password-12")
        assert mlflow.search_experiments() == []
        with pytest.raises(MlflowException) as denied:
            mlflow.get_run(run.info.run_id)
        # Not a member of ml-team: answered as for a run that does not exist.
        assert denied.value.error_code == "RESOURCE_DOES_NOT_EXIST"

        _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
        readers = admin.create_role("ml-team", "readers")
        perm = admin.add_role_permission(readers.id, "experiment", "*", "READ")
        assert (perm.role_id, perm.resource_type, perm.resource_pattern, perm.permission) \
            == (readers.id, "experiment", "*", "READ")
        assignment = admin.assign_role("viewer", readers.id)
        assert assignment.role_id == readers.id
        assert {r.name for r in admin.list_roles("ml-team")} == {"members", "readers"}
        assert [r.name for r in admin.list_user_roles("viewer")] == ["readers"]
        assert [a.user_id for a in admin.list_role_users(readers.id)] == [assignment.user_id]
        assert [p.id for p in admin.list_role_permissions(readers.id)] == [perm.id]

        _as(monkeypatch, "viewer", "viewer-password-12")
        assert mlflow.get_run(run.info.run_id).data.metrics == {"m": 1.0}
        assert [e.name for e in mlflow.search_experiments()] == ["shared"]
        with pytest.raises(MlflowException) as denied:
            mlflow.MlflowClient().set_experiment_tag(exp_id, "k", "v")
        assert denied.value.error_code == "PERMISSION_DENIED"  # READ does not write

        _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
        admin.update_role_permission(perm.id, "EDIT")
        _as(monkeypatch, "viewer", "viewer-password-12")
        mlflow.MlflowClient().set_experiment_tag(exp_id, "k", "v")  # EDIT writes

        _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
        admin.unassign_role("viewer", readers.id)
        _as(monkeypatch, "viewer", "viewer-password-12")
        with pytest.raises(MlflowException):
            mlflow.get_run(run.info.run_id)

        _as(monkeypatch, ADMIN, ADMIN_PASSWORD)
        admin.delete_role(readers.id)
        with pytest.raises(MlflowException) as gone:
            admin.get_role(readers.id)
        assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    finally:
        mlflow.set_workspace(None)
