"""``/metrics/get-history``."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from auth.access import Access, Action, ResourceKind
from gateway import render
from gateway.errors import invalid_parameter
from gateway.parsing import HINT, Field, Message, message_of, missing
from gateway.routes._common import max_results, require, run_id_of, store
from gateway.routing import Route

__all__ = ["MAX_INTERVAL_RESULTS", "ROUTES", "check_interval_runs"]

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


MAX_INTERVAL_RESULTS = 2500

BULK_INTERVAL = Message({
    "run_ids": Field("string", repeated=True),
    "metric_key": Field("string"),
    # Strings, read by _intlike: stock checks these three with its own words.
    "start_step": Field("string"),
    "end_step": Field("string"),
    "max_results": Field("string"),
})


def _intlike(msg: dict[str, Any], name: str) -> int | None:
    """An integer field as stock's ``_assert_intlike`` reads it: anything ``int()`` takes."""
    value = msg.get(name)
    if value is None or type(value) is int:
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not -(2**63) <= number < 2**63:
        raise invalid_parameter(
            f"Invalid value {orjson.dumps(value).decode()} for parameter '{name}' supplied: "
            f" Hint: Value was of type '{type(value).__name__}'." + HINT)
    return number


def check_interval_runs(run_ids: list[str]) -> None:
    """Refuse a bulk-interval request for more than 100 runs (REST and GraphQL; stock's
    GraphQL has no limit)."""
    if len(run_ids) > MAX_BULK_RUN_IDS:
        raise invalid_parameter(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_BULK_RUN_IDS}"
            f" run_ids. Received {len(run_ids)} run_ids." + HINT)


def interval_of(msg: dict[str, Any]) -> tuple[list[str], str, int, tuple[int, int] | None]:
    """(run ids, key, points per run, step range) of a bulk-interval request, checked with
    stock's messages."""
    run_ids = msg.get("run_ids") or []
    if not run_ids:
        raise missing("run_ids")
    check_interval_runs(run_ids)
    key = require(msg, "metric_key")
    limit = _intlike(msg, "max_results")
    if limit is None:
        limit = MAX_INTERVAL_RESULTS
    elif not 1 <= limit <= MAX_INTERVAL_RESULTS:
        raise invalid_parameter(
            f"max_results must be between 1 and {MAX_INTERVAL_RESULTS}." + HINT)
    start, end = _intlike(msg, "start_step"), _intlike(msg, "end_step")
    if (start is None) != (end is None):
        raise invalid_parameter(
            "If either start step or end step are specified, both must be specified.")
    if start is None or end is None:
        return run_ids, key, limit, None
    if start > end:
        raise invalid_parameter(
            "end_step must be greater than start_step. "
            f"Found start_step={start} and end_step={end}.")
    return run_ids, key, limit, (start, end)


async def get_metric_history_bulk_interval(request: web.Request) -> web.Response:
    """The web UI's chart data: each run's history of one key, sampled to a few hundred
    points as stock samples it."""
    run_ids, key, limit, steps = interval_of(message_of(request))
    points = await store(request).sample_metric_history(
        run_ids, key, max_results=limit, steps=steps)
    if not points:
        return render.json_response({})
    return render.json_response({"metrics": [render.metric(m, with_run_id=True)
                                             for m in points]})


ROUTES = [
    Route("GET", "/metrics/get-history-bulk-interval", get_metric_history_bulk_interval,
          Access(ResourceKind.RUN, Action.READ, "run_ids"), message=BULK_INTERVAL),
    Route("GET", "/metrics/get-history-bulk", get_metric_history_bulk,
          Access(ResourceKind.RUN, Action.READ, "run_id"), prefixes=("/ajax-api/2.0/mlflow",),
          message=BULK),
    Route("GET", "/metrics/get-history", get_metric_history,
          Access(ResourceKind.RUN, Action.READ, "run_id"), message=HISTORY),
]
