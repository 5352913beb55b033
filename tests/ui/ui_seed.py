"""What the browser tests find on the server, logged by the real ``mlflow`` client in this
process (as tests/e2e do it: :func:`tests.e2e.session.tracking_uri` restores the client's
globals afterwards).

:func:`seed_tracking` logs the e2e acceptance session (a run with params, five steps of two
metrics, a dataset and a text report, plus two other runs) and a scikit-learn model, logged
in a run of its own and registered as version 1. :func:`seed_teams` builds two teams with
``--auth``: each member logs an experiment, a run with a text file and a registered model
in their own team.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pytest
from sklearn.datasets import load_iris  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from tests.e2e.session import PARAMS, REPORT_PATH, RUN_NAME, run_session, tracking_uri

__all__ = [
    "ADMIN",
    "ADMIN_PASSWORD",
    "MODEL_NAME",
    "MODEL_RUN_NAME",
    "PARAMS",
    "REPORT_PATH",
    "RUN_NAME",
    "TEAMS",
    "Team",
    "Tracking",
    "password",
    "seed_teams",
    "seed_tracking",
]

ADMIN, ADMIN_PASSWORD = "root", "root-password-123"
MODEL_NAME = "iris-classifier"
MODEL_RUN_NAME = "train model"
TEAMS = {"team-a": "anna", "team-b": "ben"}  # team -> its one member


@dataclass(frozen=True)
class Tracking:
    """What :func:`seed_tracking` logged."""

    experiment_id: str
    experiment_name: str
    run_id: str
    report: str
    model_run_id: str
    model_id: str


@dataclass(frozen=True)
class Team:
    """What a team's member logged in it: names carry the team's name."""

    name: str
    member: str
    experiment_id: str
    run_id: str

    @property
    def experiment_name(self) -> str:
        return f"{self.name}-experiment"

    @property
    def run_name(self) -> str:
        return f"{self.name}-run"

    @property
    def model_run_name(self) -> str:
        return f"{self.name}-train"

    @property
    def model_name(self) -> str:
        return f"{self.name}-model"

    @property
    def note(self) -> str:
        """The content of the run's ``notes.txt``."""
        return f"notes of {self.name}"


def password(user: str) -> str:
    return f"{user}-password-12"


def _log_model(run_name: str) -> tuple[str, str]:
    """A fitted classifier logged in a new run of the active experiment; (run id, model id).
    Naming the requirements spares the 9 s that inferring them takes."""
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with mlflow.start_run(run_name=run_name) as run:
        info = mlflow.sklearn.log_model(model, name="model", input_example=X[:5],
                                        pip_requirements=["scikit-learn"])
    return run.info.run_id, info.model_id


def seed_tracking(url: str, workdir: Path) -> Tracking:
    session = run_session(url, workdir)
    with tracking_uri(url):
        mlflow.set_experiment(experiment_id=session.experiment_id)
        model_run_id, model_id = _log_model(MODEL_RUN_NAME)
        mlflow.register_model(f"models:/{model_id}", MODEL_NAME)
    return Tracking(session.experiment_id, session.experiment_name, session.run_id,
                    session.report, model_run_id, model_id)


def _post(url: str, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode())
        .decode()})
    with urllib.request.urlopen(request, timeout=10):
        pass


def seed_teams(url: str) -> dict[str, Team]:
    """The admin makes the teams and their members; each member logs in their own team."""
    from mlflow.server import get_app_client

    teams: dict[str, Team] = {}
    with pytest.MonkeyPatch.context() as env, tracking_uri(url):
        env.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        env.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        admin = get_app_client("basic-auth", tracking_uri=url)
        for team, user in TEAMS.items():
            mlflow.create_workspace(team)
            admin.create_user(user, password(user))
            _post(url, f"/mlgate/v1/teams/{team}/members", {"username": user})
        try:
            for team, user in TEAMS.items():
                env.setenv("MLFLOW_TRACKING_USERNAME", user)
                env.setenv("MLFLOW_TRACKING_PASSWORD", password(user))
                mlflow.set_workspace(team)
                seeded = Team(team, user, "", "")
                experiment_id = mlflow.set_experiment(seeded.experiment_name).experiment_id
                with mlflow.start_run(run_name=seeded.run_name) as run:
                    mlflow.log_param("team", team)
                    mlflow.log_text(seeded.note, "notes.txt")
                _, model_id = _log_model(seeded.model_run_name)
                mlflow.register_model(f"models:/{model_id}", seeded.model_name)
                teams[team] = Team(team, user, experiment_id, run.info.run_id)
        finally:
            mlflow.set_workspace(None)
    return teams
