"""The search grammar (backends.metadata.sql.search): what MLflow accepts, and its messages
for what it rejects (mlflow utils/search_utils.py, store/tracking/sqlalchemy_store.py).

MLflow prints sets in hash order; we print them sorted, so the expected messages below
list set members sorted.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from backends.errors import InvalidArgument
from backends.metadata.sql import search
from backends.metadata.sql.search import Comparison, OrderKey

C = Comparison

RUN_ATTRIBUTES = (
    "{'Created', 'Run Name', 'Run name', 'artifact_uri', 'created', 'end_time', 'run name', "
    "'run_id', 'run_name', 'start_time', 'status', 'user_id'}"
)
RUN_ORDER_ATTRIBUTES = (
    "{'Created', 'artifact_uri', 'created', 'end_time', 'run_id', 'run_name', 'start_time', "
    "'status', 'user_id'}"
)
NUMERIC_OPS = "{'!=', '<', '<=', '=', '>', '>='}"
KEY_VALUE_OPS = "{'!=', '=', 'ILIKE', 'IS NOT NULL', 'IS NULL', 'LIKE'}"
STRING_OPS = "{'!=', '=', 'ILIKE', 'IN', 'LIKE', 'NOT IN'}"
EXPERIMENT_ATTRIBUTES = "{'creation_time', 'experiment_id', 'last_update_time', 'name'}"
ENTITIES = "['metric', 'parameter', 'tag', 'attribute', 'dataset']"


# --------------------------------------------------------------------------- run filters

RUN_ACCEPTED: list[tuple[str | None, list[Comparison]]] = [
    (None, []),
    ("", []),
    ("metrics.acc > 0.9", [C("metric", "acc", ">", 0.9)]),
    ("metric.acc>=1", [C("metric", "acc", ">=", 1.0)]),
    ("metrics.loss < -1.5e3", [C("metric", "loss", "<", -1500.0)]),
    ("metrics.a = .5", [C("metric", "a", "=", 0.5)]),
    ("metrics.acc != 0", [C("metric", "acc", "!=", 0.0)]),
    ('metrics."my metric" <= 2', [C("metric", "my metric", "<=", 2.0)]),
    ("metrics.`a b` = 2", [C("metric", "a b", "=", 2.0)]),
    ("`metrics`.a = 1", [C("metric", "a", "=", 1.0)]),
    ("metrics.a.b.c = 1", [C("metric", "a.b.c", "=", 1.0)]),
    ("metrics.1a = 1", [C("metric", "1a", "=", 1.0)]),
    ("params.model = 'cnn'", [C("param", "model", "=", "cnn")]),
    ('param.model = "cnn"', [C("param", "model", "=", "cnn")]),
    ("parameter.x != 'a'", [C("param", "x", "!=", "a")]),
    ("parameters.x like 'a%'", [C("param", "x", "LIKE", "a%")]),
    ("params.x ILIKE '%A'", [C("param", "x", "ILIKE", "%A")]),
    ("params.x = ''", [C("param", "x", "=", "")]),
    # String text is kept as written, as MLflow keeps it.
    ("params.x = 'it''s'", [C("param", "x", "=", "it''s")]),
    ("params.x = \"it's\"", [C("param", "x", "=", "it's")]),
    ("params.x IS NULL", [C("param", "x", "IS NULL", None)]),
    ("tags.`mlflow.runName` = 'r'", [C("tag", "mlflow.runName", "=", "r")]),
    ("tags.\"mlflow.user\" = 'u'", [C("tag", "mlflow.user", "=", "u")]),
    ("tags.'quoted' = 'u'", [C("tag", "quoted", "=", "u")]),
    ("tag.t is not null", [C("tag", "t", "IS NOT NULL", None)]),
    ("tags.t  IS   NULL", [C("tag", "t", "IS NULL", None)]),
    ("tags.é = 'ü'", [C("tag", "é", "=", "ü")]),
    ("attributes.run_id IN ('a', 'b')", [C("attribute", "run_id", "IN", ("a", "b"))]),
    ('run_id in ("a", "b",)', [C("attribute", "run_id", "IN", ("a", "b"))]),
    ("attr.run_id NOT IN ('a')", [C("attribute", "run_id", "NOT IN", ("a",))]),
    ("run.status = 'FINISHED'", [C("attribute", "status", "=", "FINISHED")]),
    ("attribute.user_id LIKE 'a%'", [C("attribute", "user_id", "LIKE", "a%")]),
    ("artifact_uri != 'x'", [C("attribute", "artifact_uri", "!=", "x")]),
    ("run_name = 'r'", [C("attribute", "run_name", "=", "r")]),
    ('"run name" = \'r\'', [C("attribute", "run_name", "=", "r")]),
    ("attributes.`Run Name` ILIKE 'r%'", [C("attribute", "run_name", "ILIKE", "r%")]),
    ("start_time > 5", [C("attribute", "start_time", ">", 5)]),
    ("start_time > 1.5", [C("attribute", "start_time", ">", 1.5)]),
    ("created >= -5", [C("attribute", "start_time", ">=", -5)]),
    ("attributes.Created < 1e3", [C("attribute", "start_time", "<", 1000.0)]),
    ("end_time != 0", [C("attribute", "end_time", "!=", 0)]),
    ("datasets.name = 'mnist'", [C("dataset", "name", "=", "mnist")]),
    ("dataset.digest IN ('a','b')", [C("dataset", "digest", "IN", ("a", "b"))]),
    ("datasets.context NOT IN ('train')", [C("dataset", "context", "NOT IN", ("train",))]),
    ("datasets.context ilike 'T%'", [C("dataset", "context", "ILIKE", "T%")]),
    (
        "metrics.a > 1 and params.b = 'x' And tags.c != 'y'",
        [C("metric", "a", ">", 1.0), C("param", "b", "=", "x"), C("tag", "c", "!=", "y")],
    ),
    # MLflow tolerates stray and missing ANDs (an artefact of sqlparse); so do we.
    ("metrics.a > 1 AND", [C("metric", "a", ">", 1.0)]),
    ("AND metrics.a > 1", [C("metric", "a", ">", 1.0)]),
    (
        "metrics.a > 1 AND AND metrics.b = 2",
        [C("metric", "a", ">", 1.0), C("metric", "b", "=", 2.0)],
    ),
    ("metrics.a > 1 metrics.b = 2", [C("metric", "a", ">", 1.0), C("metric", "b", "=", 2.0)]),
    ("AND", []),
]


@pytest.mark.parametrize(("filter_string", "expected"), RUN_ACCEPTED)
def test_run_filter_accepted(filter_string: str | None, expected: list[Comparison]) -> None:
    assert search.parse_run_filter(filter_string) == expected


RUN_REJECTED: list[tuple[str, str]] = [
    ("metrics.a > 1 OR metrics.b < 2", "Invalid clause(s) in filter string: 'OR'"),
    ("metrics.a > 1 OR", "Invalid clause(s) in filter string: 'OR'"),
    ("(metrics.a > 1)", "Invalid clause(s) in filter string: '(metrics.a > 1)'"),
    ("metrics.a >", "Invalid clause(s) in filter string: 'metrics.a', '>'"),
    ("x", "Invalid clause(s) in filter string: 'x'"),
    ("metrics.a = 0x10", "Invalid clause(s) in filter string: 'metrics.a', '=', '0x10'"),
    ("metrics.a = +1", "Invalid clause(s) in filter string: 'metrics.a', '=', '+', '1'"),
    ("run_id IN 'a'", "Invalid clause(s) in filter string: 'run_id', 'IN', ''a''"),
    # An unterminated paren or quote takes the rest of the filter (MLflow lists its pieces).
    ("run_id IN ('a'", "Invalid clause(s) in filter string: 'run_id', 'IN', '('a''"),
    ("params.x = 'abc", "Invalid clause(s) in filter string: 'params.x', '=', ''abc'"),
    (
        "params.x = 'a' AND params.y = \"b AND tags.z = 'c'",
        "Invalid clause(s) in filter string: 'params.y', '=', '\"b AND tags.z = 'c''",
    ),
    ("tags.x IS 'a'", "Invalid clause(s) in filter string: 'tags.x', 'IS', ''a''"),
    ("tags.x NOT NULL", "Invalid clause(s) in filter string: 'tags.x', 'NOT NULL'"),
    ("params.x = 'a' 'b'", "Invalid clause(s) in filter string: ''b''"),
    (
        "metrics.a BETWEEN 1 AND 2",
        "Invalid clause(s) in filter string: 'metrics.a', 'BETWEEN', '1', '2'",
    ),
    ("metrics.a = 1;", "Invalid clause(s) in filter string: ';'"),
    (
        "metrics.a = 1; metrics.b = 2",
        (
            "Search filter contained multiple expression 'metrics.a = 1; metrics.b = 2'. "
            "Provide AND-ed expression list."
        ),
    ),
    ("   ", "Invalid filter '   '. Could not be parsed."),
    ("1 = metrics.a", "Invalid comparison clause. Expected 'Identifier' found '1'"),
    ("'a' = params.x", "Invalid comparison clause. Expected 'Identifier' found ''a''"),
    ("foo.bar = 1", f"Invalid entity type 'foo'. Valid values are {ENTITIES}"),
    ('"metrics".a = 1', f"Invalid entity type '\"metrics\"'. Valid values are {ENTITIES}"),
    (
        "attributes.foo = 'x'",
        f"Invalid attribute key 'foo' specified. Valid keys are '{RUN_ATTRIBUTES}'",
    ),
    (
        "lifecycle_stage = 'active'",
        f"Invalid attribute key 'lifecycle_stage' specified. Valid keys are '{RUN_ATTRIBUTES}'",
    ),
    (
        "datasets.foo = 'x'",
        "Invalid dataset key 'foo' specified. Valid keys are '{'context', 'digest', 'name'}'",
    ),
    ("metrics.a = 'x'", "Expected numeric value type for metric. Found 'x'"),
    ('metrics.a = "x"', 'Expected numeric value type for metric. Found "x"'),
    ("metrics.a IN (1,2)", "Expected numeric value type for metric. Found (1,2)"),
    (
        "params.x = abc",
        (
            "Parameter value is either not quoted or unidentified quote types used for string "
            "value abc. Use either single or double quotes."
        ),
    ),
    (
        "tags.x = `abc`",
        (
            "Parameter value is either not quoted or unidentified quote types used for string "
            "value `abc`. Use either single or double quotes."
        ),
    ),
    (
        "params.x = 1",
        "Expected a quoted string value for parameter (e.g. 'my-value'). Got value 1",
    ),
    (
        "params.a IN ('1')",
        "Expected a quoted string value for parameter (e.g. 'my-value'). Got value ('1')",
    ),
    ("tags.x = 2.5", "Expected a quoted string value for tag (e.g. 'my-value'). Got value 2.5"),
    (
        "start_time > '1'",
        "Expected numeric value type for numeric attribute: start_time. Found '1'",
    ),
    (
        "created IN ('1')",
        "Expected numeric value type for numeric attribute: created. Found ('1')",
    ),
    ("status = 1", "Expected a quoted string value for attributes. Got value 1"),
    ("datasets.name = 5", "Expected a quoted string value for dataset attributes. Got value 5"),
    (
        "status IN ('a')",
        "Only ['run_id'] attributes support comparison with a list of quoted string values.",
    ),
    (
        "run_name NOT IN ('a')",
        "Only ['run_id'] attributes support comparison with a list of quoted string values.",
    ),
    (
        "run_id IN ()",
        (
            "While parsing a list in the query, expected a non-empty list of string values, "
            "but got empty list"
        ),
    ),
    (
        "run_id IN ('a', 1)",
        (
            "While parsing a list in the query, expected string value, punctuation, or "
            "whitespace, but got different type in list: ('a', 1)"
        ),
    ),
    (
        "run_id IN (a, b)",
        (
            "While parsing a list in the query, expected a non-empty list of string values, "
            "but got ill-formed list."
        ),
    ),
    (
        "metrics.x IS NULL",
        "IS NULL / IS NOT NULL is only supported for tags and params, not for 'metric' 'x'",
    ),
    (
        "attr.status IS NOT NULL",
        (
            "IS NULL / IS NOT NULL is only supported for tags and params, "
            "not for 'attribute' 'status'"
        ),
    ),
    (
        "datasets.name IS NULL",
        "IS NULL / IS NOT NULL is only supported for tags and params, not for 'dataset' 'name'",
    ),
    # Operators are checked after the whole filter parsed, with MLflow's (odd) quoting.
    ("metrics.a <> 1", f"Invalid comparator '<>' not one of '{NUMERIC_OPS}"),
    ("metrics.a == 1", f"Invalid comparator '==' not one of '{NUMERIC_OPS}"),
    ("metrics.a LIKE 1", f"Invalid comparator 'LIKE' not one of '{NUMERIC_OPS}"),
    ("params.a < 'x'", f"Invalid comparator '<' not one of '{KEY_VALUE_OPS}'"),
    ("params.x rlike 'a'", f"Invalid comparator 'RLIKE' not one of '{KEY_VALUE_OPS}'"),
    ("tags.a NOT LIKE 'x'", f"Invalid comparator 'NOT LIKE' not one of '{KEY_VALUE_OPS}"),
    ("status < 'x'", f"Invalid comparator '<' not one of '{STRING_OPS}'"),
    ("start_time LIKE 1", f"Invalid comparator 'LIKE' not one of '{STRING_OPS}"),
    ("datasets.name < 'x'", f"Invalid comparator '<' not one of '{STRING_OPS}"),
    (
        "metrics.a = 'x' AND params.b < 'y'",
        "Expected numeric value type for metric. Found 'x'",
    ),
    (
        "params.b < 'y' AND metrics.a = 'x'",
        "Expected numeric value type for metric. Found 'x'",
    ),
    # MLflow sends this to the database, which fails; we refuse it up front.
    ("run_id = ('a', 'b')", "Invalid comparator '=' for a list of values. Use IN or NOT IN."),
]


@pytest.mark.parametrize(("filter_string", "message"), RUN_REJECTED)
def test_run_filter_rejected(filter_string: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        search.parse_run_filter(filter_string)
    assert str(excinfo.value) == message


# --------------------------------------------------------------------------- experiment filters

EXPERIMENT_ACCEPTED: list[tuple[str, list[Comparison]]] = [
    ("name = 'x'", [C("attribute", "name", "=", "x")]),
    ("attribute.name LIKE 'a%'", [C("attribute", "name", "LIKE", "a%")]),
    ("name ilike 'A%'", [C("attribute", "name", "ILIKE", "A%")]),
    ("attribute.`name` != \"b\"", [C("attribute", "name", "!=", "b")]),
    ("experiment_id = '12'", [C("attribute", "experiment_id", "=", 12)]),
    ("experiment_id IN ('1', \"2\")", [C("attribute", "experiment_id", "IN", (1, 2))]),
    ("experiment_id not in ('3')", [C("attribute", "experiment_id", "NOT IN", (3,))]),
    ("creation_time > 100", [C("attribute", "creation_time", ">", 100)]),
    ("last_update_time <= -5", [C("attribute", "last_update_time", "<=", -5)]),
    ("tags.owner = 'me'", [C("tag", "owner", "=", "me")]),
    ("tag.`a.b` ILIKE '%x'", [C("tag", "a.b", "ILIKE", "%x")]),
    ("tags.x IS NULL", [C("tag", "x", "IS NULL", None)]),
    ("tags.x IS NOT NULL AND name = 'y'", [C("tag", "x", "IS NOT NULL", None),
                                          C("attribute", "name", "=", "y")]),
]


@pytest.mark.parametrize(("filter_string", "expected"), EXPERIMENT_ACCEPTED)
def test_experiment_filter_accepted(filter_string: str, expected: list[Comparison]) -> None:
    assert search.parse_experiment_filter(filter_string) == expected


EXPERIMENT_REJECTED: list[tuple[str, str]] = [
    # Unlike search_runs, the clauses are not quoted.
    ("name = 'x' OR name = 'y'", "Invalid clause(s) in filter string: OR"),
    ("(name = 'a')", "Invalid clause(s) in filter string: (name = 'a')"),
    (
        "metrics.a = 1",
        "Invalid entity type 'metrics'. Valid entity types are ('attribute', 'tag', 'tags')",
    ),
    (
        "attributes.name = 'a'",
        "Invalid entity type 'attributes'. Valid entity types are ('attribute', 'tag', 'tags')",
    ),
    (
        "run_id = 'x'",
        f"Invalid attribute key 'run_id' specified. Valid keys are '{EXPERIMENT_ATTRIBUTES}'",
    ),
    (
        "name IN ('a')",
        (
            "Only ['experiment_id'] attributes support comparison with a list of quoted string "
            "values."
        ),
    ),
    ("experiment_id = 1", "Expected a quoted string value for attributes. Got value 1"),
    (
        "experiment_id = 'abc'",
        "Invalid experiment ID 'abc'. Experiment ID must be a valid integer.",
    ),
    (
        "experiment_id IN ('1', 'x')",
        "Invalid experiment ID 'x'. Experiment ID must be a valid integer.",
    ),
    ("experiment_id LIKE '1'", "Invalid comparator for experiment_id: LIKE"),
    ("creation_time > 1.5", "Invalid value for numeric attribute 'creation_time': '1.5'"),
    ("creation_time > 1e3", "Invalid value for numeric attribute 'creation_time': '1000.0'"),
    (
        "last_update_time = '5'",
        "Expected numeric value type for numeric attribute: last_update_time. Found '5'",
    ),
    ("creation_time LIKE 1", f"Invalid comparator 'LIKE' not one of '{STRING_OPS}"),
    ("name < 'a'", f"Invalid comparator '<' not one of '{STRING_OPS}'"),
    ("name RLIKE 'a'", f"Invalid comparator 'RLIKE' not one of '{STRING_OPS}'"),
    ("tags.x < 'a'", "Invalid comparator for tag: <"),
    ("tags.x RLIKE 'a'", "Invalid comparator for tag: RLIKE"),
    (
        "tags.x IN ('a')",
        "Expected a quoted string value for tag (e.g. 'my-value'). Got value ('a')",
    ),
    ("tags.x = 1", "Expected a quoted string value for tag (e.g. 'my-value'). Got value 1"),
    ("name IS NULL", "IS NULL / IS NOT NULL is only supported for tags, not for attribute 'name'"),
]


@pytest.mark.parametrize(("filter_string", "message"), EXPERIMENT_REJECTED)
def test_experiment_filter_rejected(filter_string: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        search.parse_experiment_filter(filter_string)
    assert str(excinfo.value) == message


# --------------------------------------------------------------------------- order_by

RUN_ORDER_ACCEPTED: list[tuple[list[str], list[OrderKey]]] = [
    ([], []),
    (["metrics.acc"], [OrderKey("metric", "acc", True)]),
    (["metrics.acc DESC"], [OrderKey("metric", "acc", False)]),
    (["metric.acc asc"], [OrderKey("metric", "acc", True)]),
    (["metrics.`a b` DESC"], [OrderKey("metric", "a b", False)]),
    (['metrics."a b"'], [OrderKey("metric", "a b", True)]),
    (["tags.`mlflow.runName` desc"], [OrderKey("tag", "mlflow.runName", False)]),
    (["params.'p' DESC"], [OrderKey("param", "p", False)]),
    (['"metrics".a DESC'], [OrderKey("metric", "a", False)]),
    (["start_time"], [OrderKey("attribute", "start_time", True)]),
    (["attributes.start_time DESC"], [OrderKey("attribute", "start_time", False)]),
    (["Created DESC"], [OrderKey("attribute", "start_time", False)]),
    (["`end_time`"], [OrderKey("attribute", "end_time", True)]),
    (
        ["run_name", "status DESC", "attr.user_id", "artifact_uri", "run_id"],
        [
            OrderKey("attribute", "run_name", True),
            OrderKey("attribute", "status", False),
            OrderKey("attribute", "user_id", True),
            OrderKey("attribute", "artifact_uri", True),
            OrderKey("attribute", "run_id", True),
        ],
    ),
    (
        ["metrics.a", "params.a", "tags.a DESC"],
        [OrderKey("metric", "a", True), OrderKey("param", "a", True), OrderKey("tag", "a", False)],
    ),
]


@pytest.mark.parametrize(("order_by", "expected"), RUN_ORDER_ACCEPTED)
def test_run_order_by_accepted(order_by: list[str], expected: list[OrderKey]) -> None:
    assert search.parse_run_order_by(order_by) == expected


RUN_ORDER_REJECTED: list[tuple[list[str], str]] = [
    (["tags.a b"], "Invalid ordering key in order_by clause 'tags.a b'."),
    (["name DESC ASC"], "Invalid order_by clause 'name DESC ASC'. Could not be parsed."),
    (
        ["metrics.a DESC nulls"],
        "Invalid order_by clause 'metrics.a DESC nulls'. Could not be parsed.",
    ),
    ([""], "Invalid order_by clause ''. Could not be parsed."),
    (["metrics.a;"], "Invalid order_by clause 'metrics.a;'. Could not be parsed."),
    (["metrics.a, metrics.b"], "Invalid order_by clause 'metrics.a, metrics.b'. Could not be parsed."),
    (["foo.bar"], f"Invalid entity type 'foo'. Valid values are {ENTITIES}"),
    (
        ["experiment_id"],
        f"Invalid attribute key 'experiment_id' specified. Valid keys are '{RUN_ORDER_ATTRIBUTES}'",
    ),
    (
        ["run name"],
        "Invalid ordering key in order_by clause 'run name'.",
    ),
    (["datasets.name"], "Invalid identifier type 'dataset'"),
    (
        ["metrics.a", "metric.a DESC"],
        "`order_by` contains duplicate fields: ['metrics.a', 'metric.a DESC']",
    ),
    (
        ["start_time", "created DESC"],
        "`order_by` contains duplicate fields: ['start_time', 'created DESC']",
    ),
]


@pytest.mark.parametrize(("order_by", "message"), RUN_ORDER_REJECTED)
def test_run_order_by_rejected(order_by: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        search.parse_run_order_by(order_by)
    assert str(excinfo.value) == message


def test_experiment_order_by() -> None:
    assert search.parse_experiment_order_by(None) == []
    assert search.parse_experiment_order_by(
        ["name", "experiment_id DESC", "attribute.creation_time asc", "`last_update_time`"]
    ) == [
        OrderKey("attribute", "name", True),
        OrderKey("attribute", "experiment_id", False),
        OrderKey("attribute", "creation_time", True),
        OrderKey("attribute", "last_update_time", True),
    ]


@pytest.mark.parametrize(
    ("order_by", "message"),
    [
        (["tags.x"], "Invalid order_by entity: tag"),
        (
            ["foo"],
            f"Invalid attribute key 'foo' specified. Valid keys are '{EXPERIMENT_ATTRIBUTES}'",
        ),
        (["name foo"], "Invalid ordering key in order_by clause 'name foo'."),
    ],
)
def test_experiment_order_by_rejected(order_by: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        search.parse_experiment_order_by(order_by)
    assert str(excinfo.value) == message


# --------------------------------------------------------------------------- page tokens


def test_page_token_is_mlflows() -> None:
    # Captured from the stock server (reference §3a).
    assert search.encode_page_token(1) == "eyJvZmZzZXQiOiAxfQ=="
    assert base64.b64decode(search.encode_page_token(2500)) == b'{"offset": 2500}'


@pytest.mark.parametrize("offset", [1, 2, 999, 50_000, 10**12])
def test_page_token_round_trip(offset: int) -> None:
    assert search.decode_page_token(search.encode_page_token(offset)) == offset


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("abc", "Invalid page token, could not base64-decode"),
        ("é", "Invalid page token, could not base64-decode"),
        (_b64(b"not json"), "Invalid page token, decoded value=b'not json'"),
        (_b64(b'{"x": 1}'), "Invalid page token, parsed value={'x': 1}"),
        # MLflow never issues offset 0 and refuses it.
        (_b64(b'{"offset": 0}'), "Invalid page token, parsed value={'offset': 0}"),
        (_b64(b'{"offset": "abc"}'), "Invalid page token, not stringable abc"),
        (_b64(b'{"offset": -3}'), "Invalid page token, parsed value={'offset': -3}"),
        (_b64(b"[1]"), "Invalid page token, parsed value=[1]"),
    ],
)
def test_page_token_rejected(token: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        search.decode_page_token(token)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    "hostile",
    ["(" * 20_000, "'\\" * 30_000, "a.\"\\" * 10_000, "`" * 20_001, "metrics.a > 1 AND " * 4_000],
    ids=["parens", "quotes", "dotted-quotes", "backticks", "many-clauses"],
)
def test_hostile_filters_fail_fast(hostile: str) -> None:
    # Each is rejected after a linear scan; a quadratic scan takes many seconds on these.
    started = time.perf_counter()
    with pytest.raises(InvalidArgument):
        search.parse_run_filter(hostile + " OR")
    assert time.perf_counter() - started < 2


def test_no_page_token_is_offset_zero() -> None:
    assert search.decode_page_token(None) == 0
    assert search.decode_page_token("") == 0
    assert search.decode_page_token(_b64(b'{"offset": "12"}')) == 12


# --------------------------------------------------------------------------- against MLflow

# Where we differ on purpose: MLflow lets a list through with "=" and fails later in the
# database, crashes (500) on a list of bare words, and splits an unterminated quote or
# paren into more pieces in its message.
_DELIBERATE = {
    "run_id = ('a', 'b')",
    "run_id IN (a, b)",
    "run_id IN ('a'",
    "params.x = 'abc",
    "params.x = 'a' AND params.y = \"b AND tags.z = 'c'",
}


def _sorted_sets(message: str) -> str:
    def sort(match: re.Match[str]) -> str:
        return "{" + ", ".join(sorted(x.strip() for x in match.group()[1:-1].split(","))) + "}"

    return re.sub(r"\{[^{}]*\}", sort, message)


def _mlflow(name: str) -> Any:
    """A stock MLflow module (a dev dependency; our code never imports mlflow)."""
    pytest.importorskip("mlflow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def _stock_answer(stock: Callable[[str], object], filter_string: str) -> object:
    """``stock(filter_string)``, or the message of the MlflowException it raised."""
    exceptions = _mlflow("mlflow.exceptions")
    try:
        return stock(filter_string)
    except exceptions.MlflowException as exc:
        return _sorted_sets(exc.message)


def test_run_filters_match_mlflow() -> None:
    """Every run-filter case above gets MLflow's answer from MLflow's own parser and
    query builder (which checks the operators)."""
    utils = _mlflow("mlflow.utils.search_utils").SearchUtils
    store = _mlflow("mlflow.store.tracking.sqlalchemy_store")
    engine = _mlflow("sqlalchemy").create_engine("sqlite://")
    session = _mlflow("sqlalchemy.orm").Session(engine)

    def stock(filter_string: str) -> object:
        parsed = utils.parse_search_filter(filter_string)
        store._get_sqlalchemy_filter_clauses(parsed, session, "sqlite")
        return [(utils.translate_key_alias(c["key"]), c["comparator"].upper()) for c in parsed]

    try:
        for filter_string in [f for f, _ in RUN_ACCEPTED if f] + [f for f, _ in RUN_REJECTED]:
            if filter_string in _DELIBERATE:
                continue
            try:
                ours: object = [(c.key, c.op) for c in search.parse_run_filter(filter_string)]
            except InvalidArgument as exc:
                ours = str(exc)
            assert ours == _stock_answer(stock, filter_string), filter_string
    finally:
        session.close()
        engine.dispose()


def test_experiment_filters_match_mlflow() -> None:
    utils = _mlflow("mlflow.utils.search_utils").SearchExperimentsUtils
    store = _mlflow("mlflow.store.tracking.sqlalchemy_store")

    def stock(filter_string: str) -> object:
        parsed = utils.parse_search_filter(filter_string)
        store._get_search_experiments_filter_clauses(parsed, "sqlite")
        return [(c["key"], c["comparator"]) for c in parsed]

    for filter_string in [f for f, _ in EXPERIMENT_ACCEPTED] + [f for f, _ in EXPERIMENT_REJECTED]:
        # MLflow compares operators case-sensitively here (it rejects ``name like``); we
        # accept any case, so only upper-case spellings are compared.
        if re.search(r"\b(like|ilike|in|not in)\b", filter_string):
            continue
        try:
            ours: object = [(c.key, c.op) for c in search.parse_experiment_filter(filter_string)]
        except InvalidArgument as exc:
            ours = str(exc)
        assert ours == _stock_answer(stock, filter_string), filter_string


def test_page_tokens_match_mlflow() -> None:
    utils = _mlflow("mlflow.utils.search_utils").SearchUtils
    for offset in (1, 7, 1000):
        assert search.encode_page_token(offset) == utils.create_page_token(offset).decode()
    token = _b64(json.dumps({"offset": 42}).encode())
    assert search.decode_page_token(token) == utils.parse_start_offset_from_page_token(token)
