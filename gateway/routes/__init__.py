"""All route modules, one per MLflow area."""

from __future__ import annotations

from gateway.routing import Route

__all__ = ["all_routes"]


def all_routes() -> list[Route]:
    from gateway.routes import artifacts, experiments, logged_models, meta, metrics, runs

    return [
        *meta.ROUTES,
        *experiments.ROUTES,
        *runs.ROUTES,
        *metrics.ROUTES,
        *logged_models.ROUTES,
        *artifacts.ROUTES,
    ]
