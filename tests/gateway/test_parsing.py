"""Request parsing as MLflow's protobuf layer does it (reference §0)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.errors import MlflowError
from gateway.parsing import Field, Message, parse

MSG = Message({
    "run_id": Field("string"),
    "value": Field("double"),
    "timestamp": Field("int64"),
    "flag": Field("bool"),
    "status": Field("enum", enum={"RUNNING": 1, "FINISHED": 3}),
    "ids": Field("string", repeated=True),
    "tags": Field("message", repeated=True,
                  message=Message({"key": Field("string"), "value": Field("string")})),
})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"run_id": "a"}, {"run_id": "a"}),
        ({"runId": "a"}, {"run_id": "a"}),
        ({"timestamp": "5"}, {"timestamp": 5}),
        ({"timestamp": 5.0}, {"timestamp": 5}),
        ({"value": "1.5"}, {"value": 1.5}),
        ({"value": 2}, {"value": 2.0}),
        ({"value": "Infinity"}, {"value": math.inf}),
        ({"value": "-Infinity"}, {"value": -math.inf}),
        ({"flag": True}, {"flag": True}),
        ({"flag": "false"}, {"flag": False}),
        ({"status": "FINISHED"}, {"status": "FINISHED"}),
        ({"status": 1}, {"status": "RUNNING"}),
        ({"ids": ["a", "b"]}, {"ids": ["a", "b"]}),
        ({"tags": [{"key": "k", "value": "v"}]}, {"tags": [{"key": "k", "value": "v"}]}),
        ({"unknown": 1, "run_id": "x"}, {"run_id": "x"}),
        ({"run_id": None}, {}),
    ],
)
def test_accepts(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse(body, MSG) == expected


def test_nan_string_is_nan() -> None:
    assert math.isnan(parse({"value": "NaN"}, MSG)["value"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"run_id": "a", "runId": "b"}, "Request specifies both 'run_id' and 'runId'"),
        ({"run_id": 5}, "Hint: Value was of type 'int'"),
        ({"value": "abc"}, "parameter 'value'"),
        ({"value": True}, "Hint: Value was of type 'bool'"),
        ({"timestamp": "soon"}, "parameter 'timestamp'"),
        ({"timestamp": 1.5}, "parameter 'timestamp'"),
        ({"flag": "yes"}, "parameter 'flag'"),
        ({"status": "PAUSED"}, "parameter 'status'"),
        ({"ids": "a"}, "parameter 'ids'"),
        ({"tags": [{"key": 1}]}, "parameter 'tags[0].key'"),
        ({"tags": ["k"]}, "parameter 'tags[0]'"),
    ],
)
def test_rejects(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MlflowError) as info:
        parse(body, MSG)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert info.value.status == 400
    assert fragment in info.value.message


# -- log-batch's fast path for plain metrics ---------------------------------------------


def _generic_metrics(items: Any) -> list[Any]:
    from gateway.routes.runs import LOG_BATCH, _metric

    msg = parse({"metrics": items}, LOG_BATCH)
    return [_metric(m, f"metrics[{i}]") for i, m in enumerate(msg.get("metrics", []))]


def test_plain_metrics_match_the_generic_parser() -> None:
    import random

    from gateway.routes.runs import plain_metrics

    rng = random.Random(7)
    for _ in range(200):
        items: list[dict[str, Any]] = []
        for _ in range(rng.randint(0, 20)):
            item: dict[str, Any] = {
                "key": rng.choice(["loss", "acc", "a/b", "x" * 250]),
                "value": rng.choice([rng.random(), rng.randint(-10**6, 10**6), 0, -0.0,
                                     1e308, 2**63]),
                "timestamp": rng.randint(0, 2**62)}
            if rng.random() < 0.7:
                item["step"] = rng.randint(-5, 10**9)
            items.append(dict(rng.sample(list(item.items()), len(item))))  # any key order
        fast = plain_metrics(items)
        assert fast is not None
        assert fast == _generic_metrics(items)
        assert all(type(m.value) is float for m in fast)


@pytest.mark.parametrize("item", [
    {"key": "k", "value": "1.5", "timestamp": 1},  # strings are converted by the parser
    {"key": "k", "value": "NaN", "timestamp": 1},
    {"key": "k", "value": 1.0, "timestamp": "1"},
    {"key": "k", "value": 1.0, "timestamp": 1.0},
    {"key": "k", "value": True, "timestamp": 1},
    {"key": "k", "value": 1.0, "timestamp": True},
    {"key": "k", "value": 1.0, "timestamp": 1, "step": None},
    {"key": "k", "value": 1.0, "timestamp": 1, "model_id": "m-1"},
    {"key": "", "value": 1.0, "timestamp": 1},
    {"key": "k", "timestamp": 1},
    {"key": 3, "value": 1.0, "timestamp": 1},
    ["k", 1.0, 1],
])
def test_anything_else_goes_to_the_generic_parser(item: Any) -> None:
    from gateway.routes.runs import plain_metrics

    good = {"key": "k", "value": 1.0, "timestamp": 1}
    assert plain_metrics([good, item]) is None
    assert plain_metrics("not a list") is None
    try:
        expected: Any = _generic_metrics([good, item])
    except MlflowError as exc:
        expected = exc.error_code
    assert expected  # the generic parser answers these, one way or the other
