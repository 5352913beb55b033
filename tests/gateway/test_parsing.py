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
