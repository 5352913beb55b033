"""search_logged_models SQL (backends.metadata.sql.logged_model_search) run on a real SQLite
database built from our migrations, with a small hand-made data set whose expected answers
are worked out below from MLflow's SQL store semantics.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from backends.errors import InvalidArgument
from backends.metadata.dialects.postgres import POSTGRES
from backends.metadata.dialects.sqlite import SQLITE
from backends.metadata.sql import logged_model_search as lms

MIGRATIONS = Path(__file__).resolve().parents[2] / "backends/metadata/migrations/sqlite"
NAN = math.nan
READY, PENDING, FAILED = "LOGGED_MODEL_READY", "LOGGED_MODEL_PENDING", "LOGGED_MODEL_UPLOAD_FAILED"

# model exp name   created updated status   type     run  stage    params            tags
# m1    1   alpha  1000    1500    READY    sklearn  r1   active   lr=0.1 model=CNN  team=Vision
# m2    1   Beta   2000    2100    PENDING  -        r2   active   lr=0.01           team=nlp
# m3    1   gamma  3000    3000    FAILED   pytorch  r1   active
# m4    1   delta  4000    4000    READY    sklearn  -    deleted  lr=0.1
# m5    2   alpha   500     600    READY    sklearn  r5   active
# m6    1   eps    2000    2500    READY    -        -    active
MODELS = [
    ("m1", 1, "alpha", 1000, 1500, READY, "active", "sklearn", "r1"),
    ("m2", 1, "Beta", 2000, 2100, PENDING, "active", None, "r2"),
    ("m3", 1, "gamma", 3000, 3000, FAILED, "active", "pytorch", "r1"),
    ("m4", 1, "delta", 4000, 4000, READY, "deleted", "sklearn", None),
    ("m5", 2, "alpha", 500, 600, READY, "active", "sklearn", "r5"),
    ("m6", 1, "eps", 2000, 2500, READY, "active", None, None),
]
PARAMS = [
    ("m1", "lr", "0.1"),
    ("m1", "model", "CNN"),
    ("m2", "lr", "0.01"),
    ("m4", "lr", "0.1"),
]
TAGS = [("m1", "team", "Vision"), ("m2", "team", "nlp")]
# Metric points: (model, key, timestamp, step, run, value, dataset_name, dataset_digest).
# Latest acc per model: m1 0.9 (eval), m2 NaN, m3 0.1 (run "ra" wins the tie on timestamp
# and step over "rb"), m4 0.99 (deleted), m5 0.8; on dataset "train": m1 0.5, m3 0.6, m5 0.8.
METRICS = [
    ("m1", "acc", 100, 0, "r1", 0.5, "train", "d1"),
    ("m1", "acc", 200, 1, "r1", 0.9, "eval", "e1"),
    ("m2", "acc", 100, 0, "r2", NAN, "eval", "e1"),
    ("m2", "loss", 100, 0, "r2", 0.3, "eval", "e1"),
    ("m3", "acc", 100, 0, "r1", 0.7, None, None),
    ("m3", "acc", 300, 5, "rb", 0.95, None, None),
    ("m3", "acc", 300, 5, "ra", 0.1, None, None),
    ("m3", "acc", 50, 0, "r1", 0.6, "train", "d2"),
    ("m4", "acc", 100, 0, "r4", 0.99, "train", "d1"),
    ("m5", "acc", 100, 0, "r5", 0.8, "train", "d1"),
]


def _statements(sql: str) -> Iterator[str]:
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    assert not pending.strip(), f"incomplete statement: {pending!r}"


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA case_sensitive_like = ON")
    for path in sorted(MIGRATIONS.glob("000[12]_*.sql")):
        for statement in _statements(path.read_text()):
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO experiments (experiment_id, name, artifact_location) VALUES (?, ?, 'x')",
        [(1, "one"), (2, "two"), (3, "three")],
    )
    conn.executemany(
        "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,"
        " creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage,"
        " model_type, source_run_id) VALUES (?, ?, ?, 'x', ?, ?, ?, ?, ?, ?)",
        MODELS,
    )
    conn.executemany("INSERT INTO logged_model_params VALUES (?, ?, ?)", PARAMS)
    conn.executemany("INSERT INTO logged_model_tags VALUES (?, ?, ?)", TAGS)
    conn.executemany(
        "INSERT INTO logged_model_metrics (model_id, key, timestamp, step, run_id, value,"
        " is_nan, dataset_name, dataset_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        # NaN is stored as 0 with the flag set, as the store does.
        [
            (m, k, t, s, r, 0.0 if math.isnan(v) else v, int(math.isnan(v)), dn, dd)
            for m, k, t, s, r, v, dn, dd in METRICS
        ],
    )
    conn.commit()
    yield conn
    conn.close()


def _search(
    db: sqlite3.Connection,
    filter_string: str = "",
    order_by: Sequence[Mapping[str, object]] = (),
    *,
    datasets: Sequence[Mapping[str, object]] = (),
    experiment_ids: Sequence[int] = (1,),
    max_results: int = 100,
    offset: int = 0,
) -> list[str]:
    sql, params = lms.build_search_logged_models_sql(
        SQLITE, experiment_ids, filter_string, datasets, order_by, max_results, offset
    )
    return [row[0] for row in db.execute(sql, params).fetchall()]


# --------------------------------------------------------------------------- filters

DEFAULT_ORDER = ["m3", "m2", "m6", "m1"]  # creation DESC, then model_id ASC (m2/m6 tie)


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("", DEFAULT_ORDER),
        # string attributes
        ("name = 'alpha'", ["m1"]),
        ('name = "alpha"', ["m1"]),
        ("attributes.name = 'alpha'", ["m1"]),
        ("`name` = 'alpha'", ["m1"]),
        ("name = alpha", ["m1"]),  # MLflow takes a bare word as the value
        ("name != 'alpha'", ["m3", "m2", "m6"]),
        ("name LIKE 'a%'", ["m1"]),
        ("name like 'b%'", []),  # LIKE is case-sensitive
        ("name ILIKE 'b%'", ["m2"]),
        ("name IN ('alpha', 'gamma')", ["m3", "m1"]),
        ("name in ('alpha')", ["m1"]),
        ("name NOT IN ('alpha', 'eps')", ["m3", "m2"]),
        ("model_id = 'm2'", ["m2"]),
        ("model_id IN ('m4', 'm6')", ["m6"]),  # deleted models never match
        ("model_type = 'sklearn'", ["m1"]),
        ("model_type != 'sklearn'", ["m3"]),  # a NULL column matches nothing
        ("source_run_id = 'r1'", ["m3", "m1"]),
        ("name IN ()", []),  # MLflow lets an empty list through
        ("name NOT IN ( )", DEFAULT_ORDER),
        ("params.lr NOT IN ()", ["m2", "m1"]),  # still needs the key
        ("experiment_id = '1'", DEFAULT_ORDER),
        ("experiment_id != 1", []),
        ("experiment_id IN ('2', '3')", []),
        ("experiment_id LIKE '1%'", DEFAULT_ORDER),
        # status: stored names, MLflow's short names and integer codes
        ("status = 'LOGGED_MODEL_READY'", ["m6", "m1"]),
        ("status = 'READY'", ["m6", "m1"]),
        ("status = '2'", ["m6", "m1"]),
        ("status != 'READY'", ["m3", "m2"]),
        ("status IN ('PENDING', 'LOGGED_MODEL_UPLOAD_FAILED')", ["m3", "m2"]),
        ("status NOT IN ('1', '3')", ["m6", "m1"]),
        ("status LIKE '%READY'", ["m6", "m1"]),
        # numeric attributes
        ("creation_time > 1000", ["m3", "m2", "m6"]),
        ("creation_timestamp >= 2000", ["m3", "m2", "m6"]),
        ("attributes.creation_time <= 1000", ["m1"]),
        ("creation_time = 2000", ["m2", "m6"]),
        ("creation_time != 2000", ["m3", "m1"]),
        ("creation_time < 1.5e3", ["m1"]),
        ("last_updated_timestamp > 2000", ["m3", "m2", "m6"]),
        ("last_updated_timestamp < 2500 AND creation_time > 1000", ["m2"]),
        # metrics: any point of the metric counts
        ("metrics.acc > 0.8", ["m3", "m1"]),
        ("metrics.acc < 0.6", ["m3", "m1"]),
        ("metrics.acc = 0.9", ["m1"]),
        ("metrics.acc >= 0.95", ["m3"]),
        ("metrics.acc != 0.9", ["m3", "m2", "m1"]),  # NaN matches "!=" only
        ("metrics.acc > -1", ["m3", "m1"]),  # NaN fails other comparisons
        ("metrics.acc <= 1", ["m3", "m1"]),
        ("metrics.loss < 1", ["m2"]),
        ("metrics.`loss` < 1", ["m2"]),
        ("metrics.acc < inf", ["m3", "m1"]),
        ("metrics.missing > 0", []),
        # params and tags
        ("params.lr = '0.1'", ["m1"]),
        ("params.lr = 0.1", ["m1"]),  # MLflow's own example leaves the value unquoted
        ("params.lr != '0.1'", ["m2"]),  # needs the key present
        ("params.lr IN ('0.1', '0.01')", ["m2", "m1"]),
        ("params.lr NOT IN ('0.1')", ["m2"]),
        ("params.model ILIKE 'cnn'", ["m1"]),
        ("params.model LIKE 'cnn'", []),
        ("tags.team LIKE 'V%'", ["m1"]),
        ("tags.`team` = 'nlp'", ["m2"]),
        ("tags.team != 'nlp'", ["m1"]),
        ("tags.missing = 'x'", []),
        # conjunctions
        ("name != 'gamma' AND metrics.acc > 0.8 AND params.lr = '0.1'", ["m1"]),
        ("name = 'alpha' and tags.team = 'Vision'", ["m1"]),
        ("AND name = 'alpha' AND AND", ["m1"]),
        ("metrics.acc > 0.8 AND metrics.acc < 0.6", ["m3", "m1"]),  # may be different points
    ],
)
def test_filter(db: sqlite3.Connection, filter_string: str, expected: list[str]) -> None:
    assert _search(db, filter_string) == expected


def test_filter_over_two_experiments(db: sqlite3.Connection) -> None:
    assert _search(db, experiment_ids=[1, 2]) == ["m3", "m2", "m6", "m1", "m5"]
    assert _search(db, "name = 'alpha'", experiment_ids=[1, 2]) == ["m1", "m5"]
    assert _search(db, experiment_ids=[2]) == ["m5"]
    assert _search(db, "experiment_id IN ('2', '3')", experiment_ids=[1, 2]) == ["m5"]
    assert _search(db, "experiment_id != '2'", experiment_ids=[1, 2]) == DEFAULT_ORDER
    assert _search(db, experiment_ids=[3]) == []
    assert _search(db, experiment_ids=[]) == []


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize(
    ("filter_string", "datasets", "experiment_ids", "expected"),
    [
        # Without a metric filter: models with any metric point on those datasets.
        ("", [{"dataset_name": "eval"}], [1], ["m2", "m1"]),
        ("", [{"dataset_name": "train"}], [1, 2], ["m3", "m1", "m5"]),
        ("", [{"dataset_name": "train", "dataset_digest": "d2"}], [1], ["m3"]),
        ("", [{"dataset_name": "train", "dataset_digest": ""}], [1], ["m3", "m1"]),
        ("", [{"dataset_name": "train", "dataset_digest": None}], [1], ["m3", "m1"]),
        (
            "",
            [{"dataset_name": "eval"}, {"dataset_name": "train", "dataset_digest": "d2"}],
            [1],
            ["m3", "m2", "m1"],
        ),
        ("", [{"dataset_name": "nope"}], [1], []),
        # With a metric filter: only the points on those datasets are compared.
        ("metrics.acc > 0.8", [{"dataset_name": "train"}], [1], []),
        ("metrics.acc > 0.8", [{"dataset_name": "eval"}], [1], ["m1"]),
        ("metrics.acc > 0.5", [{"dataset_name": "train", "dataset_digest": "d2"}], [1], ["m3"]),
        ("metrics.acc > 0.5", [{"dataset_name": "train", "dataset_digest": "d1"}], [1, 2], ["m5"]),
        ("metrics.acc >= 0.5", [{"dataset_name": "train"}], [1, 2], ["m3", "m1", "m5"]),
        # A metric the datasets never saw matches nothing.
        ("metrics.loss < 1", [{"dataset_name": "train"}], [1], []),
        # Non-metric filters are not restricted by datasets.
        ("name = 'alpha'", [{"dataset_name": "train"}], [1, 2], ["m1", "m5"]),
        ("name = 'eps'", [{"dataset_name": "train"}], [1], []),
    ],
)
def test_datasets(
    db: sqlite3.Connection,
    filter_string: str,
    datasets: list[dict[str, object]],
    experiment_ids: list[int],
    expected: list[str],
) -> None:
    assert _search(db, filter_string, datasets=datasets, experiment_ids=experiment_ids) == expected


# --------------------------------------------------------------------------- order_by


@pytest.mark.parametrize(
    ("order_by", "experiment_ids", "expected"),
    [
        ([], [1], DEFAULT_ORDER),
        ([{"field_name": "name"}], [1], ["m2", "m1", "m6", "m3"]),  # binary collation
        ([{"field_name": "name", "ascending": False}], [1], ["m3", "m6", "m1", "m2"]),
        ([{"field_name": "creation_time"}], [1], ["m1", "m2", "m6", "m3"]),
        ([{"field_name": "creation_timestamp", "ascending": True}], [1], ["m1", "m2", "m6", "m3"]),
        ([{"field_name": "creation_time", "ascending": False}], [1], DEFAULT_ORDER),
        ([{"field_name": "last_updated_timestamp"}], [1], ["m1", "m2", "m6", "m3"]),
        ([{"field_name": "model_id", "ascending": False}], [1], ["m6", "m3", "m2", "m1"]),
        # NULLs last whichever the direction, then the tie-breakers
        ([{"field_name": "model_type"}], [1], ["m3", "m1", "m2", "m6"]),
        ([{"field_name": "model_type", "ascending": False}], [1], ["m1", "m3", "m2", "m6"]),
        ([{"field_name": "source_run_id", "ascending": False}], [1], ["m2", "m3", "m1", "m6"]),
        # status sorts by MLflow's integer code: PENDING < READY < FAILED
        ([{"field_name": "status"}], [1], ["m2", "m6", "m1", "m3"]),
        (
            [{"field_name": "status"}, {"field_name": "creation_time"}],
            [1],
            ["m2", "m1", "m6", "m3"],
        ),
        (
            [{"field_name": "experiment_id", "ascending": False}],
            [1, 2],
            ["m5", "m3", "m2", "m6", "m1"],
        ),
        # metrics: latest point; numbers, then NaN, then missing, whatever the direction
        ([{"field_name": "metrics.acc"}], [1], ["m3", "m1", "m2", "m6"]),
        ([{"field_name": "metrics.acc", "ascending": False}], [1], ["m1", "m3", "m2", "m6"]),
        (
            [{"field_name": "metrics.acc", "ascending": False}],
            [1, 2],
            ["m1", "m5", "m3", "m2", "m6"],
        ),
        ([{"field_name": "metrics.loss"}], [1], ["m2", "m3", "m6", "m1"]),
        ([{"field_name": "metrics.missing"}], [1], DEFAULT_ORDER),
        # restricted to a dataset: the latest point on it
        ([{"field_name": "metrics.acc", "dataset_name": "train"}], [1], ["m1", "m3", "m2", "m6"]),
        (
            [{"field_name": "metrics.acc", "ascending": False, "dataset_name": "train"}],
            [1],
            ["m3", "m1", "m2", "m6"],
        ),
        (
            [
                {
                    "field_name": "metrics.acc",
                    "ascending": False,
                    "dataset_name": "train",
                    "dataset_digest": "d1",
                }
            ],
            [1],
            ["m1", "m3", "m2", "m6"],
        ),
        (
            [{"field_name": "metrics.acc", "ascending": False, "dataset_digest": "e1"}],
            [1],
            ["m1", "m2", "m3", "m6"],
        ),
        (
            [{"field_name": "metrics.acc", "dataset_name": None, "dataset_digest": ""}],
            [1],
            ["m3", "m1", "m2", "m6"],
        ),
        # two metric keys
        (
            [{"field_name": "metrics.loss"}, {"field_name": "metrics.acc", "ascending": False}],
            [1],
            ["m2", "m1", "m3", "m6"],
        ),
    ],
)
def test_order_by(
    db: sqlite3.Connection,
    order_by: list[dict[str, object]],
    experiment_ids: list[int],
    expected: list[str],
) -> None:
    assert _search(db, order_by=order_by, experiment_ids=experiment_ids) == expected


def test_order_by_with_filter_and_datasets(db: sqlite3.Connection) -> None:
    got = _search(
        db,
        "metrics.acc > 0",
        [{"field_name": "metrics.acc", "ascending": True}],
        datasets=[{"dataset_name": "train"}],
        experiment_ids=[1, 2],
    )
    # The filter is restricted to "train"; the order's latest point is not (no dataset_name).
    assert got == ["m3", "m5", "m1"]


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize(
    ("max_results", "offset", "expected"),
    [
        (2, 0, ["m3", "m2", "m6"]),  # one extra row says there is a next page
        (2, 2, ["m6", "m1"]),
        (2, 4, []),
        (1, 3, ["m1"]),
        (10, 0, DEFAULT_ORDER),
    ],
)
def test_paging(db: sqlite3.Connection, max_results: int, offset: int, expected: list[str]) -> None:
    assert _search(db, max_results=max_results, offset=offset) == expected


def test_paging_walks_every_model_once(db: sqlite3.Connection) -> None:
    order_by = [{"field_name": "metrics.acc", "ascending": False}]
    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        offset = lms.decode_page_token(token, [1, 2], "creation_time > 0", order_by)
        ids = _search(
            db, "creation_time > 0", order_by, experiment_ids=[1, 2], max_results=2, offset=offset
        )
        seen.extend(ids[:2])
        if len(ids) <= 2:
            break
        token = lms.encode_page_token(offset + 2, [1, 2], "creation_time > 0", order_by)
    assert seen == ["m1", "m5", "m3", "m2", "m6"]


def test_token_matches_mlflow_encoding() -> None:
    token = lms.encode_page_token(
        5, [1, 2], "name = 'a'", [{"field_name": "metrics.acc", "dataset_name": "train"}]
    )
    # json.dumps(asdict(SearchLoggedModelsPaginationToken(...))), base64-encoded
    assert base64.b64decode(token).decode() == (
        '{"experiment_ids": ["1", "2"], "filter_string": "name = \'a\'", "order_by": '
        '[{"field_name": "metrics.acc", "ascending": true, "dataset_name": "train", '
        '"dataset_digest": null}], "offset": 5}'
    )
    assert base64.b64decode(lms.encode_page_token(3, [7], "", [])).decode() == (
        '{"experiment_ids": ["7"], "filter_string": null, "order_by": null, "offset": 3}'
    )


@pytest.mark.parametrize(
    ("filter_string", "order_by"),
    [
        ("", []),
        (None, None),
        ("metrics.acc > 1", [{"field_name": "name", "ascending": False}]),
        ("", [{"field_name": "metrics.acc", "dataset_name": "d", "dataset_digest": "x"}]),
    ],
)
def test_token_round_trip(
    filter_string: str | None, order_by: list[dict[str, object]] | None
) -> None:
    token = lms.encode_page_token(42, [1, 3], filter_string, order_by)
    assert lms.decode_page_token(token, [1, 3], filter_string, order_by) == 42
    # An empty filter or order_by is the same as none, as in MLflow.
    assert lms.decode_page_token(token, [1, 3], filter_string or None, order_by or None) == 42


def test_no_token_is_offset_zero() -> None:
    assert lms.decode_page_token(None, [1], "", []) == 0
    assert lms.decode_page_token("", [1], "", []) == 0


def test_token_accepts_normalized_order_by() -> None:
    token = lms.encode_page_token(2, [1], "", [{"field_name": "name"}])
    explicit = [
        {"field_name": "name", "ascending": True, "dataset_name": None, "dataset_digest": None}
    ]
    assert lms.decode_page_token(token, [1], "", explicit) == 2


# --------------------------------------------------------------------------- errors


def _raises(message: str) -> AbstractContextManager[pytest.ExceptionInfo[InvalidArgument]]:
    return pytest.raises(InvalidArgument, match=re.escape(message))


@pytest.mark.parametrize(
    ("experiment_ids", "filter_string", "order_by", "message"),
    [
        (
            [2],
            "name = 'a'",
            [{"field_name": "name"}],
            (
                "Experiment IDs in the page token do not match the requested experiment IDs. "
                "Expected: ['2']. Found: ['1']"
            ),
        ),
        ([1, 2], "name = 'a'", [{"field_name": "name"}], "Expected: ['1', '2']. Found: ['1']"),
        (
            [1],
            "name = 'b'",
            [{"field_name": "name"}],
            (
                "Filter string in the page token does not match the requested filter string. "
                "Expected: name = 'b'. Found: name = 'a'"
            ),
        ),
        (
            [1],
            "",
            [{"field_name": "name"}],
            (
                "Filter string in the page token does not match the requested filter string. "
                "Expected: None. Found: name = 'a'"
            ),
        ),
        (
            [1],
            "name = 'a'",
            [{"field_name": "name", "ascending": False}],
            (
                "Order by in the page token does not match the requested order by. Expected: "
                "[{'field_name': 'name', 'ascending': False, 'dataset_name': None, "
                "'dataset_digest': None}]. Found: [{'field_name': 'name', 'ascending': True, "
                "'dataset_name': None, 'dataset_digest': None}]"
            ),
        ),
        (
            [1],
            "name = 'a'",
            [],
            "Order by in the page token does not match the requested order by. Expected: None.",
        ),
    ],
)
def test_token_mismatch(
    experiment_ids: list[int],
    filter_string: str,
    order_by: list[dict[str, object]],
    message: str,
) -> None:
    token = lms.encode_page_token(2, [1], "name = 'a'", [{"field_name": "name"}])
    with _raises(message):
        lms.decode_page_token(token, experiment_ids, filter_string, order_by)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not base64!", "Invalid page token: not base64!."),
        (base64.b64encode(b"not json").decode(), "Invalid page token: "),
        (base64.b64encode(b"[1, 2]").decode(), "Expected a JSON object"),
        (
            base64.b64encode(json.dumps({"experiment_ids": ["1"], "offset": -3}).encode()).decode(),
            "Invalid page token, parsed value=",
        ),
        (
            base64.b64encode(
                json.dumps({"experiment_ids": ["1"], "offset": "3"}).encode()
            ).decode(),
            "Invalid page token, parsed value=",
        ),
        (
            base64.b64encode(json.dumps({"offset": 3}).encode()).decode(),
            (
                "Experiment IDs in the page token do not match the requested experiment IDs. "
                "Expected: ['1']. Found: None"
            ),
        ),
    ],
)
def test_bad_token(token: str, message: str) -> None:
    with _raises(message):
        lms.decode_page_token(token, [1], "", [])


def test_token_without_offset_is_zero() -> None:
    token = base64.b64encode(json.dumps({"experiment_ids": ["1"]}).encode()).decode()
    assert lms.decode_page_token(token, [1], None, None) == 0


NUMERIC_OPS = "('<', '<=', '>', '>=', '=', '!=')"
STRING_OPS = "('=', '!=', 'LIKE', 'ILIKE', 'IN', 'NOT IN')"
AND_LIST = "Expected a list of comparisons separated by 'AND'"


@pytest.mark.parametrize(
    ("filter_string", "message"),
    [
        (
            "metrics.acc > 1 OR metrics.acc < 0",
            "Invalid filter string: 'metrics.acc > 1 OR metrics.acc < 0'. "
            + AND_LIST
            + " (e.g. 'metrics.loss > 0.1 AND params.lr = 0.01').",
        ),
        ("(name = 'a')", AND_LIST),
        ("name = 'a' AND (name = 'b')", AND_LIST),
        ("name", AND_LIST),
        ("name =", AND_LIST),
        ("name = 'a';", AND_LIST),
        ("name = 'a'; name = 'b'", "Expected a single SQL expression."),
        ("   ", "Invalid filter string: '   '. Expected a single SQL expression."),
        ("tags.x IS NULL", "Invalid comparison: tags.x IS NULL. Expected a comparison with 3"),
        ("foo = 'x'", "Invalid attribute key 'foo' specified. Valid keys are '{"),
        ("Metrics.acc > 1", "Invalid attribute key 'Metrics.acc' specified."),
        ("experiment_id = 'one'", "Invalid experiment ID 'one'. Experiment ID must be a valid"),
        (
            "metric.acc > 1",
            (
                "Invalid entity type: 'metric'. Expected one of "
                "['attributes', 'metrics', 'params', 'tags']."
            ),
        ),
        ("datasets.name = 'x'", "Invalid entity type: 'datasets'."),
        (
            "metrics.acc LIKE '1'",
            f"Invalid comparison operator for metrics.acc: 'LIKE'. Expected one of {NUMERIC_OPS}.",
        ),
        ("metrics.acc IN (1, 2)", "Invalid comparison operator for metrics.acc: 'IN'."),
        (
            "creation_time LIKE '1%'",
            (
                "Invalid comparison operator for attributes.creation_timestamp_ms: 'LIKE'. "
                f"Expected one of {NUMERIC_OPS}."
            ),
        ),
        (
            "name > 'a'",
            f"Invalid comparison operator for attributes.name: '>'. Expected one of {STRING_OPS}.",
        ),
        ("params.lr < '1'", "Invalid comparison operator for params.lr: '<'."),
        ("tags.t NOT LIKE 'x'", "Invalid comparison operator for tags.t: 'NOT LIKE'."),
        ("name == 'a'", "Invalid comparison operator for attributes.name: '=='."),
        ("metrics.acc > 'x'", "Expected numeric value type for metric. Found 'x'"),
        ("metrics.acc > abc", "Expected numeric value type for metric. Found abc"),
        (
            "creation_time > '5'",
            "Expected numeric value type for numeric attribute: creation_timestamp_ms. Found '5'",
        ),
        ("name = ('a', 'b')", "Invalid comparator '=' for a list of values. Use IN or NOT IN."),
        ("name IN ('a', 1)", "expected string value, punctuation, or whitespace"),
    ],
)
def test_bad_filter(db: sqlite3.Connection, filter_string: str, message: str) -> None:
    with _raises(message):
        _search(db, filter_string)


@pytest.mark.parametrize(
    ("order_by", "message"),
    [
        ([{"field_name": "foo"}], "Invalid order by field name: foo"),
        (
            [{"field_name": "params.lr"}],
            "Invalid order by field name: params.lr. Only metrics are supported.",
        ),
        ([{"field_name": "tags.team", "ascending": False}], "Only metrics are supported."),
        ([{"ascending": True}], "Invalid order by field name: None"),
        ([{"field_name": "name", "ascending": "yes"}], "Invalid value 'yes' for 'ascending'"),
        (["name"], "Invalid order_by entry: 'name'"),
    ],
)
def test_bad_order_by(
    db: sqlite3.Connection, order_by: list[dict[str, object]], message: str
) -> None:
    with _raises(message):
        _search(db, order_by=order_by)


@pytest.mark.parametrize(
    "datasets",
    [[{"dataset_digest": "d1"}], [{"dataset_name": ""}], [{"dataset_name": "a"}, {}]],
)
def test_dataset_without_name(db: sqlite3.Connection, datasets: list[dict[str, object]]) -> None:
    with _raises("`dataset_name` in the `datasets` clause must be specified."):
        _search(db, datasets=datasets)


def test_bad_page_size(db: sqlite3.Connection) -> None:
    with _raises("Invalid value 0 for parameter 'max_results'"):
        _search(db, max_results=0)


# --------------------------------------------------------------------------- dialects


def test_postgres_placeholders_match_parameters() -> None:
    sql, params = lms.build_search_logged_models_sql(
        POSTGRES,
        [1, 2],
        "name ILIKE 'a%' AND metrics.acc > 0.5 AND params.lr IN ('1', '2') AND creation_time > 5",
        [{"dataset_name": "train", "dataset_digest": "d1"}, {"dataset_name": "eval"}],
        [{"field_name": "metrics.acc", "dataset_name": "train"}, {"field_name": "status"}],
        10,
        20,
    )
    numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
    assert numbers == list(range(1, len(params) + 1))
    assert "?" not in sql
    assert "name ILIKE $" in sql
    assert "CAST($" in sql  # the metric's float is typed for asyncpg
    assert params[-2:] == [11, 20]
