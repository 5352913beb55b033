"""What the web UI asks on start and on its GenAI pages. mlgate has no traces, scorers, AI
gateway, MCP registry, webhooks or assistant, so those calls are answered as stock answers an
empty server (``/tmp``-captured in issue 22's research, §6): stock's empty answer or the
feature switched off, never a 404 that would break the page (a 404 from gateway-proxy shows
an error toast on the runs page). search-datasets (the datasets the runs page lists) answers
from the store.

Access: none of the empty answers reveal anything, but with auth stock answers them to
authenticated callers only, so each needs a caller of the workspace (``_ANY_USER``);
search-datasets names experiments, and needs READ on each, as stock's
``validate_can_search_datasets``; webhooks are for administrators, as on stock.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from gateway.errors import invalid_parameter
from gateway.parsing import Field, Message, message_of
from gateway.render import json_response
from gateway.routes._common import store
from gateway.routing import HandlerFn, Route

__all__ = ["ROUTES", "check_dataset_experiments"]

AJAX2 = ("/ajax-api/2.0/mlflow",)
API2 = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
AJAX3 = ("/ajax-api/3.0/mlflow",)
API3 = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")

_ANY_USER = Access(ResourceKind.WORKSPACE, Action.READ)
_ADMIN = Access(ResourceKind.SERVER, Action.READ)

# Stock's FALLBACK_UI_CONFIG: what it answers whenever telemetry is off (handlers.py:8197).
_TELEMETRY_OFF = {"disable_ui_events": [], "disable_ui_telemetry": True,
                  "ui_rollout_percentage": 0}


def _provider(name: str, display: str, description: str, remote: bool,
              delivery: str) -> dict[str, Any]:
    return {"name": name, "display_name": display, "description": description,
            "available": False, "selected": False, "requires_api_key": False,
            "has_api_key": False, "allows_remote_access": remote,
            "client_tool_delivery": delivery, "model_options": []}


# Stock's providers with none available and none resolved: the assistant panel then
# offers nothing to run.
_PROVIDERS: dict[str, Any] = {
    "providers": [
        _provider("claude_code", "Claude Code", "AI-powered assistant using Claude Code CLI",
                  False, "structured"),
        _provider("codex", "Codex", "AI-powered assistant using the Codex CLI", False,
                  "structured"),
        _provider("mlflow_gateway", "MLflow AI Gateway",
                  "AI-powered assistant backed by an MLflow AI Gateway endpoint configured "
                  "on this server.", True, "tool"),
        _provider("ollama", "Ollama",
                  "AI-powered assistant using a locally running Ollama server.", False,
                  "tool"),
    ],
    "resolved": None,
    "gateway_vendor_options": {},
}


def _constant(body: Any) -> HandlerFn:
    """A handler answering ``body``, whatever the request holds."""
    async def handler(request: web.Request) -> web.Response:
        return json_response(body)
    return handler


TRACE_METRICS = Message({
    "metric_name": Field("string"),
    "aggregations": Field("message", repeated=True, message=Message({
        "aggregation_type": Field("string"), "percentile_value": Field("double")})),
    "time_interval_seconds": Field("int64"),
    "dimensions": Field("string", repeated=True),
})


async def trace_metrics(request: web.Request) -> web.Response:
    """No traces: stock answers ``{}``, except a COUNT over the whole range (no time
    buckets, no dimensions), which is one data point of 0."""
    msg = message_of(request)
    counts = [a for a in msg.get("aggregations", []) if a.get("aggregation_type") == "COUNT"]
    if counts and not msg.get("time_interval_seconds") and not msg.get("dimensions"):
        return json_response({"data_points": [{
            "metric_name": msg.get("metric_name", ""), "values": {"COUNT": 0.0}}]})
    return json_response({})


SEARCH_DATASETS = Message({"experiment_ids": Field("string", repeated=True)})
_EXPERIMENTS = Access(ResourceKind.EXPERIMENT, Action.READ, "experiment_ids")
MAX_DATASET_EXPERIMENTS = 20


def check_dataset_experiments(experiment_ids: list[str]) -> None:
    """Refuse a search for the datasets of no experiment or of more than 20, as stock."""
    if not experiment_ids:
        raise invalid_parameter("SearchDatasets request must specify at least one experiment_id.")
    if len(experiment_ids) > MAX_DATASET_EXPERIMENTS:
        raise invalid_parameter(
            f"SearchDatasets request cannot specify more than {MAX_DATASET_EXPERIMENTS}"
            f" experiment_ids. Received {len(experiment_ids)} experiment_ids.")


async def search_datasets(request: web.Request) -> web.Response:
    """The datasets the experiments' runs used, once per context they were used in."""
    experiment_ids = message_of(request).get("experiment_ids", [])
    check_dataset_experiments(experiment_ids)
    summaries = await store(request).search_datasets(experiment_ids)
    if not summaries:
        return json_response({})
    return json_response({"dataset_summaries": [
        {"experiment_id": d.experiment_id, "name": d.name, "digest": d.digest}
        | ({} if d.context is None else {"context": d.context}) for d in summaries]})

ROUTES = [
    Route("GET", "/ui-telemetry", _constant(_TELEMETRY_OFF), _ANY_USER, prefixes=AJAX3),
    # Events are accepted and dropped; "disabled" stops the UI's worker from sending more.
    Route("POST", "/ui-telemetry", _constant({"status": "disabled"}), _ANY_USER,
          prefixes=AJAX3, body=False),
    Route("GET", "/assistant/config", _constant(
        {"providers": {}, "projects": {}, "remote_access_allowed": False}), _ANY_USER,
        prefixes=AJAX3),
    Route("GET", "/assistant/providers", _constant(_PROVIDERS), _ANY_USER, prefixes=AJAX3),
    Route("POST", "/experiments/search-datasets", search_datasets, _EXPERIMENTS,
          prefixes=AJAX2, message=SEARCH_DATASETS),
    # No AI gateway (server-info says so): stock's answer without MLFLOW_DEPLOYMENTS_TARGET.
    Route("GET", "/gateway-proxy", _constant({"endpoints": []}), _ANY_USER, prefixes=AJAX2),
    Route("POST", "/gateway-proxy", _constant({"endpoints": []}), _ANY_USER, prefixes=AJAX2,
          body=False),
    Route("POST", "/traces/search", _constant({}), _ANY_USER, prefixes=API3, body=False),
    Route("POST", "/traces/metrics", trace_metrics, _ANY_USER, prefixes=API3,
          message=TRACE_METRICS),
    Route("POST", "/datasets/search", _constant({}), _ANY_USER, prefixes=API3, body=False),
    Route("GET", "/scorers/list", _constant({}), _ANY_USER, prefixes=API3),
    Route("GET", "/gateway/secrets/config", _constant(
        {"secrets_available": False, "using_default_passphrase": False}), _ANY_USER,
        prefixes=API3),
    *[Route("GET", f"/gateway/{what}/list", _constant({}), _ANY_USER, prefixes=API3)
      for what in ("endpoints", "endpoints/bindings", "model-definitions", "secrets",
                   "budgets", "guardrails")],
    # No webhooks (mlgate sends none): the settings page's list, empty as stock's.
    Route("GET", "/webhooks", _constant({}), _ADMIN, prefixes=API2),
    Route("GET", "/mcp-servers", _constant({"mcp_servers": [], "next_page_token": None}),
          _ANY_USER, prefixes=AJAX3),
    Route("POST", "/jobs/search", _constant({"jobs": []}), _ANY_USER,
          prefixes=("/ajax-api/3.0",), body=False),
    Route("GET", "/review-queues/list", _constant({"next_page_token": ""}), _ANY_USER,
          prefixes=API3),
    Route("POST", "/issues/search", _constant({"next_page_token": ""}), _ANY_USER,
          prefixes=API3, body=False),
]
