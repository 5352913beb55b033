"""Request parsing as MLflow's protobuf layer does it (reference §0)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from gateway.errors import MlflowError
from gateway.parsing import Field, Message, parse, read_request

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


_IDS = Message({"run_id": Field("string"), "run_uuid": Field("string"),
                "model_id": Field("string")})


async def _read(method: str, path: str, body: bytes = b"", *,
                headers: dict[str, str] | None = None,
                match: dict[str, str] | None = None) -> dict[str, Any]:
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request
    from aiohttp.web_urldispatcher import UrlMappingMatchInfo

    payload = mock.Mock()
    payload.read = mock.AsyncMock(return_value=body)
    request = make_mocked_request(method, path, headers=headers or {}, payload=payload,
                                  match_info=UrlMappingMatchInfo(match or {}, mock.Mock()))
    request._read_bytes = body  # what request.read() returns
    return await read_request(request, _IDS)


async def test_one_reading_of_a_request() -> None:
    """Stock's rule: a GET with a query string reads the query, anything else the JSON body
    whatever its label; a field named twice with different values is refused."""
    body = orjson.dumps({"run_id": "r1"})
    assert await _read("GET", "/x?run_id=r1") == {"run_id": "r1"}
    assert await _read("GET", "/x", body) == {"run_id": "r1"}
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": ctype} if ctype else {}
        assert await _read("DELETE", "/x", body, headers=headers) == {"run_id": "r1"}
        assert await _read("PATCH", "/x", body, headers=headers) == {"run_id": "r1"}
    with pytest.raises(MlflowError) as bad:  # POST and PUT must be labelled, as on stock
        await _read("POST", "/x", body, headers={"Content-Type": "text/plain"})
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"  # as stock, not BAD_REQUEST
    with pytest.raises(MlflowError):  # a form is not JSON: refused, not read as empty
        await _read("DELETE", "/x", b"run_id=r1")
    assert await _read("GET", "/x?run_uuid=r1") == {"run_id": "r1", "run_uuid": "r1"}
    refused = [
        _read("GET", "/x?run_id=r1", orjson.dumps({"run_id": "r2"})),
        _read("GET", "/x?run_id=r1&run_uuid=r2"),
        _read("PATCH", "/x", orjson.dumps({"run_id": "r1", "run_uuid": "r2"})),
        _read("PATCH", "/m/m-1", orjson.dumps({"model_id": "m-2"}),
              match={"model_id": "m-1"}),
    ]
    for attempt in refused:
        with pytest.raises(MlflowError) as bad:
            await attempt
        assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    assert await _read("PATCH", "/m/m-1", orjson.dumps({"model_id": "m-1"}),
                       match={"model_id": "m-1"}) == {"model_id": "m-1"}


def test_the_log_batch_shortcut_gives_what_the_full_parse_gives() -> None:
    """log-batch's metrics as the client sends them skip the full parse; the result is the
    same, and anything the shortcut does not take goes to the full parse."""
    import copy
    import random

    from gateway.routes.runs import LOG_BATCH

    metrics = LOG_BATCH.fields["metrics"]
    full = Message({"metrics": Field("message", repeated=True, message=metrics.message)})
    rng = random.Random(7)
    for _ in range(300):
        items: list[Any] = []
        for _ in range(rng.randint(0, 8)):
            item: dict[str, Any] = {
                "key": rng.choice(["loss", "acc", "", "x" * 250]),
                "value": rng.choice([rng.random(), rng.randint(-10**6, 10**6), 0, -0.0, 1e308,
                                     2**63, "1.5", "NaN", True, None]),
                "timestamp": rng.choice([rng.randint(0, 2**62), 2**63, -(2**63), "1", 1.0]),
            }
            if rng.random() < 0.7:
                item["step"] = rng.choice([rng.randint(-5, 10**9), 2**64, "3"])
            if rng.random() < 0.1:
                item["model_id"] = "m-1"
            items.append(dict(rng.sample(list(item.items()), len(item))))
        body = {"run_id": "r", "metrics": items}
        try:
            expected: Any = parse(copy.deepcopy(body), full).get("metrics")
        except MlflowError as exc:
            expected = exc.error_code
        try:
            got: Any = parse(copy.deepcopy(body), LOG_BATCH).get("metrics")
        except MlflowError as exc:
            got = exc.error_code
        assert got == expected, items
