"""The mlflow-artifacts proxy and artifacts/list (owned by the artifacts work; placeholder)."""

from __future__ import annotations

from gateway.routing import Route

ROUTES: list[Route] = []
