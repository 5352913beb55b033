"""Onboarding as on stock MLflow, with the unmodified client against ``mlgate serve --auth``
(SQLite and PostgreSQL): users made with ``AuthServiceClient.create_user`` and nothing else
create, log, register and share; a reader reads but cannot write; a third user finds
nothing of it in any search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ADMIN, ADMIN_PASSWORD = "root", "root-password-123"
USERS = {"ann": "ann-password-123", "ben": "ben-password-123", "cat": "cat-password-123"}


def _as(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD",
                       ADMIN_PASSWORD if user == ADMIN else USERS[user])


def test_users_made_by_the_stock_client_onboard_as_on_stock(
        mlgate_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    server = mlgate_factory("--auth", env={"MLGATE_ADMIN_USERNAME": ADMIN,
                                            "MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    _as(monkeypatch, ADMIN)
    admin = get_app_client("basic-auth", tracking_uri=server.url)
    for user, password in USERS.items():
        admin.create_user(user, password)

    # Ann, with no team and no grant, works as she would on stock.
    _as(monkeypatch, "ann")
    exp_id = mlflow.create_experiment("ann-exp")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("secret-param", "ann-only")
        mlflow.log_metric("loss", 0.25)
        mlflow.log_text("ann's notes", "notes/readme.txt")
    run_id = run.info.run_id
    client = mlflow.MlflowClient()
    client.create_registered_model("ann-model")
    version = client.create_model_version("ann-model", f"runs:/{run_id}/notes", run_id=run_id)
    assert version.version == "1"
    # As creator she manages both: she may delete a tag she set and grant others.
    client.set_experiment_tag(exp_id, "owner", "ann")
    client.delete_experiment_tag(exp_id, "owner")
    ann_admin = get_app_client("basic-auth", tracking_uri=server.url)
    ann_admin.grant_user_permission("ben", "experiment", exp_id, "READ")
    ann_admin.grant_user_permission("ben", "registered_model", "ann-model", "READ")

    # Ben reads all of it, and can change none of it.
    _as(monkeypatch, "ben")
    assert client.get_run(run_id).data.params == {"secret-param": "ann-only"}
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes/readme.txt",
                                                dst_path=str(tmp_path))
    assert Path(local).read_text() == "ann's notes"
    assert client.get_registered_model("ann-model").name == "ann-model"
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]
    writes = [
        lambda: client.log_metric(run_id, "loss", 9.0),
        lambda: client.set_tag(run_id, "k", "v"),
        lambda: client.rename_experiment(exp_id, "bens-now"),
        lambda: client.delete_run(run_id),
        lambda: client.update_registered_model("ann-model", description="mine"),
        lambda: client.delete_registered_model("ann-model"),
        lambda: client.set_registered_model_alias("ann-model", "prod", "1"),
    ]
    for write in writes:
        with pytest.raises(MlflowException) as refused:
            write()
        assert refused.value.error_code == "PERMISSION_DENIED"

    # Cat sees nothing of it, in any search, and cannot read it directly.
    _as(monkeypatch, "cat")
    assert client.search_runs([exp_id]) == []
    assert [e.name for e in client.search_experiments()] in ([], ["Default"])
    assert client.search_registered_models() == []
    assert client.search_model_versions() == []
    assert client.search_logged_models(experiment_ids=[exp_id]) == []
    with pytest.raises(MlflowException) as refused:
        client.get_run(run_id)
    assert refused.value.error_code == "PERMISSION_DENIED"

    # And the owner's data is as she left it.
    _as(monkeypatch, "ann")
    run_now = client.get_run(run_id)
    assert run_now.data.metrics == {"loss": 0.25} and run_now.info.lifecycle_stage == "active"
    assert client.get_experiment(exp_id).name == "ann-exp"
    assert client.get_registered_model("ann-model").description in ("", None)
