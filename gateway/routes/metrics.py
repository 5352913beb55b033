"""``/metrics/get-history``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from gateway import render
from gateway.parsing import Field, Message, read_message
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
    msg = await read_message(request, HISTORY)
    run_id = run_id_of(msg)
    key = require(msg, "metric_key")
    limit = msg.get("max_results")
    page = await store(request).get_metric_history(
        run_id,
        key,
        max_results=None if limit is None else max_results(limit, default=None,
                                                           limit=2**63 - 1),
        page_token=msg.get("page_token") or None,
    )
    body: dict[str, Any] = {}
    if page.items:
        body["metrics"] = [render.metric(m) for m in page.items]
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return render.json_response(body)


ROUTES = [
    Route("GET", "/metrics/get-history", get_metric_history,
          Access(ResourceKind.RUN, Action.READ, "run_id")),
]
