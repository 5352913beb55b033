"""Parity with stock ``mlflow server``: the same client session against both, then the raw
JSON of the read endpoints compared field by field.

Ids, timestamps and the id parts of artifact URIs are replaced by placeholders that keep the
JSON type (``<ts:int>`` vs ``<ts:str>``), so a number rendered as a string still shows up. List
order is compared as is: the client and the UI rely on the order stock returns. On a mismatch
the test prints every differing path and a unified diff of the two normalised documents.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from models_session import MODEL_NAME, ModelsSession, run_models_session
from mytools import ON_EVERY_DATABASE
from session import SEARCH_FILTER, SessionResult, check_session, run_session

pytestmark = pytest.mark.e2e

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts"
TIME_KEYS = frozenset({"start_time", "end_time", "timestamp", "creation_time",
                       "last_update_time"})


@dataclass(frozen=True)
class Call:
    label: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: dict[str, Any] | None = None


def calls(r: SessionResult) -> list[Call]:
    """The read requests to compare, shaped the way the mlflow client sends them."""
    run = (("run_uuid", r.run_id), ("run_id", r.run_id))
    art = f"{r.experiment_id}/{r.run_id}/artifacts"
    search = {"experiment_ids": [r.experiment_id], "run_view_type": "ACTIVE_ONLY",
              "max_results": 1000}
    return [
        Call("runs/get", "GET", f"{API}/runs/get", run),
        Call("experiments/get", "GET", f"{API}/experiments/get",
             (("experiment_id", r.experiment_id),)),
        Call("experiments/get-by-name", "GET", f"{API}/experiments/get-by-name",
             (("experiment_name", r.experiment_name),)),
        Call("runs/search filter+order_by", "POST", f"{API}/runs/search", body={
            **search, "filter": "params.model_type = 'local_test'",
            "order_by": ["metrics.accuracy DESC"]}),
        Call("runs/search acceptance filter", "POST", f"{API}/runs/search", body={
            **search, "filter": SEARCH_FILTER, "order_by": ["start_time DESC"]}),
        Call("runs/search default order", "POST", f"{API}/runs/search", body={
            **search, "filter": ""}),
        Call("metrics/get-history accuracy", "GET", f"{API}/metrics/get-history",
             (*run, ("metric_key", "accuracy"), ("max_results", "25000"))),
        Call("mlflow-artifacts list root", "GET", f"{ARTIFACTS}/artifacts",
             (("path", art),)),
        Call("mlflow-artifacts list notes (empty file)", "GET", f"{ARTIFACTS}/artifacts",
             (("path", f"{art}/notes"),)),
        Call("artifacts/list plots/deep", "GET", f"{API}/artifacts/list",
             (*run, ("path", "plots/deep"))),
        # MlflowClient.list_artifacts(run_id, "plots") asks this first, to list the artifacts
        # of a logged model named "plots" along with the run's own.
        Call("logged-models/search (from list_artifacts of a sub-folder)", "POST",
             f"{API}/logged-models/search",
             body={"experiment_ids": [r.experiment_id], "filter": "name = 'plots'"}),
        Call("metrics/get-history loss unpaged", "GET", f"{API}/metrics/get-history",
             (("run_id", r.run_id), ("metric_key", "loss"))),
    ]


def fetch(base_url: str, call: Call) -> dict[str, Any]:
    """Status, media type and parsed body of one request."""
    url = base_url + call.path
    if call.query:
        url += "?" + urllib.parse.urlencode(call.query)
    data = None
    headers = {"User-Agent": "mlgate-parity-test"}
    if call.body is not None:
        data = json.dumps(call.body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=call.method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, ctype, raw = resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        status, ctype, raw = err.code, err.headers.get("Content-Type", ""), err.read()
        err.close()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = {"<not json>": raw[:500].decode(errors="replace")}
    return {"status": status, "media_type": ctype.split(";")[0].strip(), "body": body}


class Normaliser:
    """Replace what legitimately differs between two servers with typed placeholders."""

    def __init__(self, r: SessionResult) -> None:
        self.run_ids = {r.run_id: "<run:main>"}
        for name, run_id in r.other_run_ids.items():
            self.run_ids[run_id] = f"<run:{name}>"
        self.experiment_id = r.experiment_id
        self.experiment_name = r.experiment_name
        self._exp_in_uri = re.compile(
            r"(mlflow-artifacts:/+|/)" + re.escape(r.experiment_id) + r"(?=/|$)"
        )

    def __call__(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, key) for v in value]
        if key in TIME_KEYS and value is not None:
            return f"<ts:{type(value).__name__}>"
        if key == "experiment_id" and str(value) == self.experiment_id:
            return f"<exp:{type(value).__name__}>"
        if key == "next_page_token" and value:
            return "<page-token>"
        if isinstance(value, str):
            for run_id, placeholder in self.run_ids.items():
                value = value.replace(run_id, placeholder)
            value = value.replace(self.experiment_name, "<experiment-name>")
            if key in ("artifact_uri", "artifact_location", "root_uri"):
                value = self._exp_in_uri.sub(r"\1<exp>", value)
        return value


def differences(stock: Any, ours: Any, path: str = "$") -> Iterator[str]:
    """One line per differing leaf; list elements are compared by position."""
    if isinstance(stock, dict) and isinstance(ours, dict):
        for k in stock:
            if k not in ours:
                yield f"{path}.{k}: missing in mlgate (stock: {_short(stock[k])})"
            else:
                yield from differences(stock[k], ours[k], f"{path}.{k}")
        for k in ours:
            if k not in stock:
                yield f"{path}.{k}: only in mlgate: {_short(ours[k])}"
    elif isinstance(stock, list) and isinstance(ours, list):
        if len(stock) != len(ours):
            yield f"{path}: {len(stock)} items in stock, {len(ours)} in mlgate"
        for i, (a, b) in enumerate(zip(stock, ours)):
            yield from differences(a, b, f"{path}[{i}]")
        for i in range(len(ours), len(stock)):
            yield f"{path}[{i}]: missing in mlgate (stock: {_short(stock[i])})"
        for i in range(len(stock), len(ours)):
            yield f"{path}[{i}]: only in mlgate: {_short(ours[i])}"
    elif stock != ours or type(stock) is not type(ours):
        yield f"{path}: stock {_short(stock)} != mlgate {_short(ours)}"


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _pretty(doc: Any) -> list[str]:
    # Object keys sorted only to line the two documents up; lists keep their order.
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


@pytest.fixture(scope="module")
def stock_session(
    stock_mlflow_url: str, tmp_path_factory: pytest.TempPathFactory
) -> SessionResult:
    return run_session(stock_mlflow_url, tmp_path_factory.mktemp("stock-session"))


def test_session_checks_hold_on_stock(stock_session: SessionResult, tmp_path: Path) -> None:
    """The acceptance assertions describe stock's behaviour (so a failure on mlgate is ours)."""
    check_session(stock_session, tmp_path)


@ON_EVERY_DATABASE
def test_json_matches_stock(
    stock_session: SessionResult, mlgate_url: str, tmp_path: Path
) -> None:
    ours_session = run_session(mlgate_url, tmp_path / "session")
    stock_norm, ours_norm = Normaliser(stock_session), Normaliser(ours_session)
    report: list[str] = []
    for stock_call, ours_call in zip(calls(stock_session), calls(ours_session)):
        stock_doc = stock_norm(fetch(stock_session.tracking_uri, stock_call))
        ours_doc = ours_norm(fetch(mlgate_url, ours_call))
        lines = list(differences(stock_doc, ours_doc))
        if not lines:
            continue
        report.append(f"=== {stock_call.label}: {len(lines)} difference(s)")
        report.extend("  " + line for line in lines)
        report.append("  --- unified diff (stock → mlgate, normalised) ---")
        report.extend(
            "  " + line for line in difflib.unified_diff(
                _pretty(stock_doc), _pretty(ours_doc), "stock", "mlgate", lineterm="", n=2)
        )
    if report:
        text = "\n".join(report)
        pytest.fail("mlgate's JSON differs from stock mlflow's:\n" + text, pytrace=False)


# -- model registry and logged models --------------------------------------------------------

REGISTRY_TIME_KEYS = TIME_KEYS | {"creation_timestamp", "last_updated_timestamp",
                                  "creation_timestamp_ms", "last_updated_timestamp_ms"}


def registry_calls(s: ModelsSession) -> list[Call]:
    """The registry and logged-model reads of load_model, the UI and MlflowClient."""
    name = (("name", MODEL_NAME),)
    return [
        Call("registered-models/get", "GET", f"{API}/registered-models/get", name),
        # By name: the shared stock server holds other tests' models too.
        Call("registered-models/search", "GET", f"{API}/registered-models/search",
             (("filter", f"name = '{MODEL_NAME}'"),)),
        Call("registered-models/search by tag", "GET", f"{API}/registered-models/search",
             (("filter", f"tags.team = 'ml' and name = '{MODEL_NAME}'"),
              ("order_by", "timestamp DESC"))),
        Call("model-versions/get 1", "GET", f"{API}/model-versions/get", (*name, ("version", "1"))),
        Call("model-versions/search", "GET", f"{API}/model-versions/search",
             (("filter", f"name = '{MODEL_NAME}'"),)),
        Call("registered-models/alias", "GET", f"{API}/registered-models/alias",
             (*name, ("alias", "champion"))),
        Call("get-latest-versions", "POST", f"{API}/registered-models/get-latest-versions",
             body={"name": MODEL_NAME}),
        Call("model-versions/get-download-uri", "GET",
             f"{API}/model-versions/get-download-uri", (*name, ("version", "2"))),
        Call("model-versions/get unknown", "GET", f"{API}/model-versions/get",
             (*name, ("version", "9"))),
        Call("registered-models/create duplicate", "POST", f"{API}/registered-models/create",
             body={"name": MODEL_NAME}),
        Call("alias reserved", "POST", f"{API}/registered-models/alias",
             body={"name": MODEL_NAME, "alias": "latest", "version": "1"}),
        Call("logged-models/get", "GET", f"{API}/logged-models/{s.model_id}"),
        Call("logged-models/search", "POST", f"{API}/logged-models/search",
             body={"experiment_ids": [s.experiment_id]}),
        Call("runs/get (model outputs)", "GET", f"{API}/runs/get", (("run_id", s.run_id),)),
    ]


def _registry_normaliser(s: ModelsSession) -> Any:
    ids = {s.run_id: "<run>", s.model_id: "<model>"}
    exp_in_uri = re.compile(r"(mlflow-artifacts:/+|/)" + re.escape(s.experiment_id) + r"(?=/|$)")

    def norm(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: norm(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v, key) for v in value]
        if key in REGISTRY_TIME_KEYS and value is not None:
            return f"<ts:{type(value).__name__}>"
        if key == "experiment_id" and str(value) == s.experiment_id:
            return f"<exp:{type(value).__name__}>"
        if isinstance(value, str):
            for real, placeholder in ids.items():
                value = value.replace(real, placeholder)
            if key in ("artifact_uri", "artifact_location", "root_uri", "source"):
                value = exp_in_uri.sub(r"\1<exp>", value)
            if key == "value" and "mlflow.source.name" not in value:
                value = re.sub(r"/tmp/\S+", "<path>", value)
        return value

    return norm


@pytest.fixture(scope="module")
def stock_models_session(stock_mlflow_url: str) -> ModelsSession:
    return run_models_session(stock_mlflow_url)


@ON_EVERY_DATABASE
def test_registry_json_matches_stock(
    stock_models_session: ModelsSession, mlgate_url: str
) -> None:
    ours = run_models_session(mlgate_url)
    stock_norm, ours_norm = (_registry_normaliser(stock_models_session),
                             _registry_normaliser(ours))
    report: list[str] = []
    for stock_call, ours_call in zip(registry_calls(stock_models_session), registry_calls(ours)):
        stock_doc = stock_norm(fetch(stock_models_session.tracking_uri, stock_call))
        ours_doc = ours_norm(fetch(mlgate_url, ours_call))
        lines = list(differences(stock_doc, ours_doc))
        if lines:
            report.append(f"=== {stock_call.label}: {len(lines)} difference(s)")
            report.extend("  " + line for line in lines)
    if report:
        pytest.fail("mlgate's registry JSON differs from stock mlflow's:\n" + "\n".join(report),
                    pytrace=False)


# -- the web UI's chart data -------------------------------------------------------------------


def _log_chart_runs(uri: str) -> tuple[str, str]:
    """Two runs with a stepped history each: one logged in step order, one whose steps go
    down as time goes on (the two ways mlgate's SQLite store samples)."""
    from mlflow.entities import Metric as ClientMetric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp_id = client.create_experiment(f"charts_{time.time_ns()}")
    ids = []
    for points in ([(i / 3, 1_700_000_000_000 + 5 * i, i) for i in range(1500)],
                   [(float(i), 1_700_000_000_000 + i, (i * 7919) % 1200) for i in range(1200)]):
        run_id = client.create_run(exp_id).info.run_id
        metrics = [ClientMetric("loss", v, ts, step) for v, ts, step in points]
        metrics += [ClientMetric("odd", math.nan if i % 4 == 0 else i, 1_700_000_000_000, i % 9)
                    for i in range(40)]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start:start + 1000])
        ids.append(run_id)
    return ids[0], ids[1]


def chart_calls(ordered: str, shuffled: str) -> list[Call]:
    path = f"{API}/metrics/get-history-bulk-interval"
    both = (("run_ids", ordered), ("run_ids", shuffled))
    out = []
    for key in ("loss", "odd"):
        for extra in ((), (("max_results", "1"),), (("max_results", "7"),),
                      (("max_results", "320"),),
                      (("max_results", "320"), ("start_step", "100"), ("end_step", "700")),
                      (("start_step", "3"), ("end_step", "3"))):
            out.append(Call(f"bulk-interval {key} {extra}", "GET", path,
                            (*both, ("metric_key", key), *extra)))
    bad = {
        "one step bound": (*both, ("metric_key", "loss"), ("start_step", "1")),
        "start after end": (*both, ("metric_key", "loss"), ("start_step", "9"),
                            ("end_step", "2")),
        "max_results 0": (*both, ("metric_key", "loss"), ("max_results", "0")),
        "max_results 2501": (*both, ("metric_key", "loss"), ("max_results", "2501")),
        "max_results text": (*both, ("metric_key", "loss"), ("max_results", "many")),
        "101 runs": (*((("run_ids", ordered),) * 101), ("metric_key", "loss")),
        "no key": both,
        "no runs": (("metric_key", "loss"),),
        "unknown run": (("run_ids", "0" * 32), ("metric_key", "loss")),
        "unknown key": (*both, ("metric_key", "absent")),
    }
    out += [Call(f"bulk-interval {label}", "GET", path, query) for label, query in bad.items()]
    # The UI asks on its ajax prefix.
    out.append(Call("ajax bulk-interval", "GET",
                    "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                    (*both, ("metric_key", "loss"), ("max_results", "320"))))
    return out


@ON_EVERY_DATABASE
def test_chart_samples_match_stock(stock_mlflow_url: str, mlgate_url: str) -> None:
    stock_ids, ours_ids = _log_chart_runs(stock_mlflow_url), _log_chart_runs(mlgate_url)

    def norm(doc: Any, ids: tuple[str, str]) -> Any:
        text = json.dumps(doc)
        for run_id, placeholder in zip(ids, ("<run:ordered>", "<run:shuffled>")):
            text = text.replace(run_id, placeholder)
        return json.loads(text)

    report: list[str] = []
    for stock_call, ours_call in zip(chart_calls(*stock_ids), chart_calls(*ours_ids)):
        stock_doc = norm(fetch(stock_mlflow_url, stock_call), stock_ids)
        ours_doc = norm(fetch(mlgate_url, ours_call), ours_ids)
        lines = list(differences(stock_doc, ours_doc))
        if lines:
            report.append(f"=== {stock_call.label}: {len(lines)} difference(s)")
            report.extend("  " + line for line in lines[:20])
    if report:
        pytest.fail("mlgate's chart data differs from stock mlflow's:\n" + "\n".join(report),
                    pytrace=False)
