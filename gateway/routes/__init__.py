"""All route modules, one per MLflow area."""

from __future__ import annotations

from gateway.routing import Route

__all__ = ["all_routes"]


def all_routes() -> list[Route]:
    from gateway.routes import (
        artifacts,
        auth_admin,
        experiments,
        graphql_api,
        limits,
        logged_models,
        meta,
        metrics,
        previews,
        registry,
        runs,
        ui,
        ui_api,
    )

    return [
        *meta.ROUTES,
        *experiments.ROUTES,
        *runs.ROUTES,
        *metrics.ROUTES,
        *logged_models.ROUTES,
        *registry.ROUTES,
        *artifacts.ROUTES,
        *previews.ROUTES,
        *auth_admin.ROUTES,
        *limits.ROUTES,
        *graphql_api.ROUTES,
        *ui.ROUTES,
        *ui_api.ROUTES,
    ]
