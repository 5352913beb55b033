"""Issue 3's acceptance test: log, register, alias, load and manage a scikit-learn model with
the real mlflow client against a running mlgate."""

from __future__ import annotations

import json

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from models_session import MODEL_NAME, features, run_models_session
from mytools import ON_EVERY_DATABASE
from session import tracking_uri

pytestmark = [pytest.mark.e2e, ON_EVERY_DATABASE]


def _code(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


def test_sklearn_model_registry_flow(mlgate_url: str) -> None:
    s = run_models_session(mlgate_url)
    X, _ = features()
    with tracking_uri(mlgate_url):
        client = MlflowClient()
        # Both ways of loading predict exactly what the in-memory model predicts.
        by_version = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1").predict(X)
        by_alias = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(X)
        np.testing.assert_array_equal(np.asarray(by_version), s.expected)
        np.testing.assert_array_equal(np.asarray(by_alias), s.expected)

        versions = client.search_model_versions(f"name='{MODEL_NAME}'")
        assert sorted(v.version for v in versions) == ["1", "2"]
        for v in versions:
            assert v.source == f"models:/{s.model_id}"
            assert v.run_id == s.run_id
            assert v.status == "READY"
        assert client.get_model_version_download_uri(MODEL_NAME, "1") == (
            f"mlflow-artifacts:/{s.experiment_id}/models/{s.model_id}/artifacts")

        logged = mlflow.search_logged_models(experiment_ids=[s.experiment_id],
                                             output_format="list")
        assert [m.model_id for m in logged] == [s.model_id]
        assert logged[0].status == "READY"
        assert logged[0].source_run_id == s.run_id
        assert {"name": MODEL_NAME, "version": 1} in json.loads(
            logged[0].tags["mlflow.modelVersions"])

        # Stages, with archive_existing_versions.
        assert client.get_model_version(MODEL_NAME, "1").current_stage == "Production"
        client.transition_model_version_stage(MODEL_NAME, "2", "Production",
                                              archive_existing_versions=True)
        assert client.get_model_version(MODEL_NAME, "1").current_stage == "Archived"
        latest = client.get_latest_versions(MODEL_NAME, stages=["Production"])
        assert [v.version for v in latest] == ["2"]

        # Tags and aliases, then their deletion.
        model = client.get_registered_model(MODEL_NAME)
        assert model.tags == {"team": "ml"}
        assert model.description == "iris classifier"
        assert model.aliases == {"champion": "1", "backup": "2"}
        assert client.get_model_version(MODEL_NAME, "1").tags == {"validated": "true"}
        client.delete_registered_model_tag(MODEL_NAME, "team")
        client.delete_model_version_tag(MODEL_NAME, "1", "validated")
        client.delete_registered_model_alias(MODEL_NAME, "champion")
        assert client.get_registered_model(MODEL_NAME).tags == {}
        assert client.get_model_version(MODEL_NAME, "1").tags == {}
        with pytest.raises(MlflowException) as exc:
            client.get_model_version_by_alias(MODEL_NAME, "champion")
        assert _code(exc) == "INVALID_PARAMETER_VALUE"

        # Errors as stock.
        with pytest.raises(MlflowException) as exc:
            client.create_registered_model(MODEL_NAME)
        assert _code(exc) == "RESOURCE_ALREADY_EXISTS"
        for reserved in ("latest", "v1"):
            with pytest.raises(MlflowException) as exc:
                client.set_registered_model_alias(MODEL_NAME, reserved, "1")
            assert _code(exc) == "INVALID_PARAMETER_VALUE"
        with pytest.raises(MlflowException) as exc:
            client.get_model_version(MODEL_NAME, "99")
        assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
        with pytest.raises(MlflowException) as exc:
            client.create_model_version(
                MODEL_NAME, f"mlflow-artifacts:/{s.experiment_id}/elsewhere/model",
                run_id=s.run_id)
        assert _code(exc) == "INVALID_PARAMETER_VALUE"

        # Rename carries the versions along; loading by the new name still works.
        client.rename_registered_model(MODEL_NAME, "demo-renamed")
        assert client.get_model_version("demo-renamed", "2").current_stage == "Production"
        renamed = mlflow.pyfunc.load_model("models:/demo-renamed/2").predict(X)
        np.testing.assert_array_equal(np.asarray(renamed), s.expected)
        with pytest.raises(MlflowException) as exc:
            client.get_registered_model(MODEL_NAME)
        assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"

        # Deletion: a version, then the model.
        client.delete_model_version("demo-renamed", "1")
        assert [v.version for v in client.search_model_versions("name='demo-renamed'")] == ["2"]
        client.delete_registered_model("demo-renamed")
        with pytest.raises(MlflowException) as exc:
            client.get_registered_model("demo-renamed")
        assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
        assert client.search_registered_models() == []
