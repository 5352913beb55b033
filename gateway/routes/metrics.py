"""``/metrics/get-history``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from gateway import render
from gateway.errors import invalid_parameter
from gateway.parsing import Field, Message, message_of
from gateway.routes._common import max_results, require, run_id_of, store
from gateway.routing import Route

__all__ = ["ROUTES"]

HISTORY = Message({
    "run_id": Field("string"),
    "run_uuid": Field("string"),
    "metric_key": Field("string"),
    "max_results": Field("int64"),
    "page_token": Field("string"),
})


async def get_metric_history(request: web.Request) -> web.Response:
    msg = message_of(request)
    run_id = run_id_of(msg)
    key = require(msg, "metric_key")
    limit = msg.get("max_results")
    page = await store(request).get_metric_history_points(
        run_id,
        key,
        max_results=None if limit is None else max_results(limit, default=None,
                                                           limit=2**63 - 1),
        page_token=msg.get("page_token") or None,
    )
    body: dict[str, Any] = {}
    if page.items:
        body["metrics"] = render.history_points(key, page.items)
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return render.json_response(body)


MAX_BULK_RUN_IDS = 100
MAX_BULK_RESULTS = 25000


BULK = Message({
    "run_id": Field("string", repeated=True),
    "metric_key": Field("string"),
    "max_results": Field("int64"),
})


async def get_metric_history_bulk(request: web.Request) -> web.Response:
    """The web UI's ajax-only bulk history: every point of one key for up to 100 runs."""
    msg = message_of(request)
    run_ids = msg.get("run_id", [])
    if not run_ids:
        raise invalid_parameter("GetMetricHistoryBulk request must specify at least one run_id.")
    if len(run_ids) > MAX_BULK_RUN_IDS:
        raise invalid_parameter(
            f"GetMetricHistoryBulk request cannot specify more than {MAX_BULK_RUN_IDS} run_ids."
            f" Received {len(run_ids)} run_ids.")
    key = msg.get("metric_key")
    if key is None:
        raise invalid_parameter("GetMetricHistoryBulk request must specify a metric_key.")
    limit = max_results(min(msg.get("max_results", MAX_BULK_RESULTS), MAX_BULK_RESULTS),
                        default=None, limit=MAX_BULK_RESULTS)
    out = []
    for run_id in sorted(set(run_ids)):
        page = await store(request).get_metric_history(run_id, key, max_results=limit)
        out += [render.metric(m, with_run_id=True) for m in page.items]
    return render.json_response({"metrics": out})


ROUTES = [
    Route("GET", "/metrics/get-history-bulk", get_metric_history_bulk,
          Access(ResourceKind.RUN, Action.READ, "run_id"), prefixes=("/ajax-api/2.0/mlflow",),
          message=BULK),
    Route("GET", "/metrics/get-history", get_metric_history,
          Access(ResourceKind.RUN, Action.READ, "run_id"), message=HISTORY),
]
