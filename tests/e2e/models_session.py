"""The model-registry session of issue 3, driven by the real ``mlflow`` client.

:func:`run_models_session` trains a scikit-learn ``LogisticRegression`` on iris, logs it with
``mlflow.sklearn.log_model(model, name="model", input_example=X[:5])`` inside a run, registers
it twice as ``demo`` (from ``models:/<model_id>``), points alias ``champion`` at version 1,
moves the versions through stages and sets tags. Everything is deterministic, so the same
session against stock ``mlflow server`` and mlgate differs only in ids and timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
from mlflow.tracking import MlflowClient
from session import tracking_uri
from sklearn.datasets import load_iris  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

__all__ = ["MODEL_NAME", "ModelsSession", "features", "run_models_session", "trained_model"]

MODEL_NAME = "demo"
EXPERIMENT = "models-e2e"


def features() -> Any:
    return load_iris(return_X_y=True)


def trained_model() -> Any:
    X, y = features()
    return LogisticRegression(max_iter=500).fit(X, y)


@dataclass
class ModelsSession:
    tracking_uri: str
    experiment_id: str
    run_id: str
    model_id: str
    expected: Any  # the in-memory model's predictions on X


def run_models_session(uri: str) -> ModelsSession:
    X, _ = features()
    model = trained_model()
    with tracking_uri(uri):
        experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id
        with mlflow.start_run(run_name="train") as run:
            mlflow.log_param("C", 1.0)
            mlflow.log_metric("accuracy", 0.97, step=0)
            info = mlflow.sklearn.log_model(model, name="model", input_example=X[:5])
        model_id = info.model_id
        mlflow.register_model(f"models:/{model_id}", MODEL_NAME)
        client = MlflowClient()
        client.set_registered_model_alias(MODEL_NAME, "champion", "1")
        client.set_registered_model_tag(MODEL_NAME, "team", "ml")
        client.update_registered_model(MODEL_NAME, description="iris classifier")
        mlflow.register_model(f"models:/{model_id}", MODEL_NAME, tags={"candidate": "yes"})
        client.set_model_version_tag(MODEL_NAME, "1", "validated", "true")
        client.transition_model_version_stage(MODEL_NAME, "1", "Production")
        client.transition_model_version_stage(MODEL_NAME, "2", "Staging")
        client.set_registered_model_alias(MODEL_NAME, "backup", "2")
    return ModelsSession(uri, experiment_id, run.info.run_id, model_id,
                         np.asarray(model.predict(X)))
