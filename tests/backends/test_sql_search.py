"""The compiled search SQL (backends.metadata.sql.tracking_search) run on a real SQLite database
built from our schema, with a small hand-made data set whose expected answers are worked
out below from MLflow's documented semantics.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from backends.errors import InvalidArgument
from backends.metadata.dialects.postgres import POSTGRES, PostgresDialect
from backends.metadata.dialects.sqlite import SQLITE
from backends.metadata.interface.entities import ViewType
from backends.metadata.sql import tracking_search as sql_search
from backends.metadata.sql.dialect import Dialect

MIGRATIONS = sorted(
    (Path(__file__).resolve().parents[2] / "backends/metadata/migrations/sqlite").glob("*.sql"))
NAN = math.nan

# Experiment 1 holds r1..r4, experiment 2 holds r5.
#
# run  name   status    user   start end   stage    params              tags (besides runName)
# r1   alpha  FINISHED  alice  1000  2000  active   lr=0.1  model=CNN   team=Vision
# r2   Beta   RUNNING   bob    2000  -     active   lr=0.01 model=cnn   team=nlp
# r3   gamma  FAILED    alice  3000  3500  active   lr=0.1
# r4   delta  FINISHED  carol  3000  4000  deleted  model=rnn
# r5   alpha  FINISHED  alice   500   600  active
# r6   (column "old-name", tag mlflow.runName "new-name"), in experiment 4
#
# run  metrics (latest)        datasets (name, digest, context)
# r1   acc=0.9  loss=0.5       (mnist, d1, training)
# r2   acc=NaN  loss=0.3       (cifar, d2, eval), (mnist, d1, eval)
# r3   acc=0.7
# r4   acc=0.95
# r5   acc=0.8
RUNS = [
    ("r1", 1, "alpha", "alice", "FINISHED", 1000, 2000, "active"),
    ("r2", 1, "Beta", "bob", "RUNNING", 2000, None, "active"),
    ("r3", 1, "gamma", "alice", "FAILED", 3000, 3500, "active"),
    ("r4", 1, "delta", "carol", "FINISHED", 3000, 4000, "deleted"),
    ("r5", 2, "alpha", "alice", "FINISHED", 500, 600, "active"),
    ("r6", 4, "old-name", "dave", "FINISHED", 100, 200, "active"),
]
PARAMS = [
    ("r1", "lr", "0.1"), ("r1", "model", "CNN"),
    ("r2", "lr", "0.01"), ("r2", "model", "cnn"),
    ("r3", "lr", "0.1"),
    ("r4", "model", "rnn"),
]
TAGS = [
    ("r1", "team", "Vision"),
    ("r2", "team", "nlp"),
] + [(run[0], "mlflow.runName", run[2]) for run in RUNS[:5]] + [
    ("r6", "mlflow.runName", "new-name"),
]
METRICS = [
    ("r1", "acc", 0.9), ("r1", "loss", 0.5),
    ("r2", "acc", NAN), ("r2", "loss", 0.3),
    ("r3", "acc", 0.7),
    ("r4", "acc", 0.95),
    ("r5", "acc", 0.8),
]
DATASETS = [(1, 1, "mnist", "d1"), (2, 1, "cifar", "d2")]
RUN_INPUTS = [("r1", 1, "training"), ("r2", 2, "eval"), ("r2", 1, "eval")]

# experiment  workspace  name         stage    created  updated  tags
# 1           default    exp-one      active   100      150      owner=alice
# 2           default    Exp-Two      active   200      100      owner=Bob, x=1
# 3           default    deleted-exp  deleted  300      300
# 4           other      exp-one      active   400      400
# 5           default    exp-five     active   200      -
EXPERIMENTS = [
    (1, "default", "exp-one", "active", 100, 150),
    (2, "default", "Exp-Two", "active", 200, 100),
    (3, "default", "deleted-exp", "deleted", 300, 300),
    (4, "other", "exp-one", "active", 400, 400),
    (5, "default", "exp-five", "active", 200, None),
]
EXPERIMENT_TAGS = [(1, "owner", "alice"), (2, "owner", "Bob"), (2, "x", "1")]


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA case_sensitive_like = ON")
    for migration in MIGRATIONS:
        conn.executescript(migration.read_text())
    conn.executemany(
        "INSERT INTO experiments (experiment_id, workspace, name, artifact_location,"
        " lifecycle_stage, creation_time, last_update_time) VALUES (?, ?, ?, 'x', ?, ?, ?)",
        EXPERIMENTS,
    )
    conn.executemany("INSERT INTO experiment_tags VALUES (?, ?, ?)", EXPERIMENT_TAGS)
    conn.executemany(
        "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,"
        " end_time, artifact_uri, lifecycle_stage) VALUES (?, ?, ?, ?, ?, ?, ?, 'x', ?)",
        RUNS,
    )
    experiment_of = {run[0]: run[1] for run in RUNS}
    conn.executemany("INSERT INTO run_params (run_id, key, value, experiment_id)"
                     " VALUES (?, ?, ?, ?)", [(*p, experiment_of[p[0]]) for p in PARAMS])
    conn.executemany("INSERT INTO run_tags VALUES (?, ?, ?)", TAGS)
    conn.executemany(
        "INSERT INTO metric_series (run_id, key, latest_value, latest_is_nan,"
        " latest_timestamp, latest_step) VALUES (?, ?, ?, ?, 0, 0)",
        # NaN is stored as 0 with the flag set, as the store does.
        [(r, k, 0.0 if math.isnan(v) else v, int(math.isnan(v))) for r, k, v in METRICS],
    )
    conn.executemany(
        "INSERT INTO datasets (dataset_id, experiment_id, name, digest, source_type, source)"
        " VALUES (?, ?, ?, ?, 'local', 's')",
        DATASETS,
    )
    conn.executemany(
        "INSERT INTO run_dataset_inputs VALUES (?, ?, 0)", [(r, d) for r, d, _ in RUN_INPUTS]
    )
    conn.executemany(
        "INSERT INTO run_dataset_input_tags VALUES (?, ?, 'mlflow.data.context', ?)",
        RUN_INPUTS,
    )
    conn.commit()
    yield conn
    conn.close()


def _runs(
    db: sqlite3.Connection,
    filter_string: str = "",
    order_by: Sequence[str] = (),
    *,
    experiment_ids: Sequence[int] = (1,),
    view_type: ViewType = ViewType.ACTIVE_ONLY,
    max_results: int = 100,
    offset: int = 0,
    dialect: Dialect = SQLITE,
) -> list[str]:
    sql, params = sql_search.build_search_runs_sql(
        dialect, experiment_ids, filter_string, view_type, order_by, max_results, offset
    )
    if isinstance(dialect, PostgresDialect):
        sql = _as_sqlite(sql, len(params))
    return [row[0] for row in db.execute(sql, params)]


def _as_sqlite(sql: str, count: int) -> str:
    """Run PostgreSQL-dialect SQL on SQLite: ``$n`` becomes SQLite's numbered ``?n``."""
    numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
    # Placeholders are numbered in the order they appear, one per parameter.
    assert numbers == list(range(1, count + 1))
    return re.sub(r"\$(\d+)", r"?\1", sql)


# Default order: start_time DESC, then run_id. Active runs of experiment 1: r3, r2, r1.
RUN_FILTERS: list[tuple[str, list[str]]] = [
    ("", ["r3", "r2", "r1"]),
    # Metrics compare the latest value; NaN (r2's acc) matches only "!=".
    ("metrics.acc > 0.8", ["r1"]),
    ("metrics.acc <= 0.9", ["r3", "r1"]),
    ("metrics.acc != 0.9", ["r3", "r2"]),
    ("metrics.acc = 0", []),  # the stored placeholder of NaN must not match
    ("metrics.acc >= 0", ["r3", "r1"]),
    ("metrics.loss < 1", ["r2", "r1"]),
    ("metrics.missing != 1", []),
    # Params and tags: = and LIKE are case-sensitive, ILIKE is not.
    ("params.model = 'cnn'", ["r2"]),
    ("params.model = 'CNN'", ["r1"]),
    ("params.model LIKE 'c%'", ["r2"]),
    ("params.model ILIKE 'c%'", ["r2", "r1"]),
    ("params.model ILIKE 'C_N'", ["r2", "r1"]),
    # "!=" needs the key to be there: r3 has no model.
    ("params.model != 'CNN'", ["r2"]),
    ("params.lr = '0.1'", ["r3", "r1"]),
    ("params.model IS NULL", ["r3"]),
    ("params.model IS NOT NULL", ["r2", "r1"]),
    ("tags.team IS NULL", ["r3"]),
    ("tags.team IS NOT NULL", ["r2", "r1"]),
    ("tags.team LIKE 'v%'", []),
    ("tags.team LIKE 'V%'", ["r1"]),
    ("tags.team ILIKE 'v%'", ["r1"]),
    ("tags.team LIKE '%i%'", ["r1"]),
    ("tags.team != 'nlp'", ["r1"]),
    # Attributes.
    ("attributes.run_id IN ('r1', 'r3', 'r5')", ["r3", "r1"]),  # r5 is in experiment 2
    ("run_id NOT IN ('r1')", ["r3", "r2"]),
    ("run_id = 'r2'", ["r2"]),
    ("attributes.run_name = 'alpha'", ["r1"]),
    ("run_name LIKE 'b%'", []),
    ("run_name LIKE 'B%'", ["r2"]),
    ('"run name" ILIKE \'b%\'', ["r2"]),
    ("run_name != 'alpha'", ["r3", "r2"]),
    ("status = 'RUNNING'", ["r2"]),
    ("status != 'RUNNING'", ["r3", "r1"]),
    ("user_id = 'alice'", ["r3", "r1"]),
    ("start_time >= 2000", ["r3", "r2"]),
    ("created < 2000", ["r1"]),
    ("start_time > 1500.5", ["r3", "r2"]),
    ("end_time > 0", ["r3", "r1"]),  # r2 has no end time
    ("end_time != 2000", ["r3"]),
    # Datasets: name, digest and the input's context tag.
    ("datasets.name = 'mnist'", ["r2", "r1"]),
    ("datasets.name = 'cifar'", ["r2"]),
    ("datasets.name IN ('cifar', 'nope')", ["r2"]),
    ("datasets.name NOT IN ('mnist')", ["r2"]),  # r2 also has cifar
    ("datasets.name != 'mnist'", ["r2"]),
    ("datasets.digest LIKE 'd%'", ["r2", "r1"]),
    ("datasets.context = 'eval'", ["r2"]),
    ("datasets.context ILIKE 'TRAIN%'", ["r1"]),
    ("datasets.context IN ('training', 'eval')", ["r2", "r1"]),
    # Conjunctions.
    ("user_id = 'alice' AND metrics.loss < 1", ["r1"]),
    ("params.lr = '0.1' AND tags.team IS NULL AND metrics.acc < 0.8", ["r3"]),
    ("metrics.acc > 0 AND metrics.acc < 0.8", ["r3"]),
    # Each compared param, tag and metric is a join of its own (one row per run and key).
    ("params.model LIKE 'c%' AND params.model != 'CNN'", ["r2"]),
    ("metrics.acc >= 0 AND metrics.acc != 0.9 AND params.lr = '0.1'", ["r3"]),
    ("metrics.acc != 0.9 AND metrics.loss < 1 AND tags.team IS NOT NULL", ["r2"]),
    ("params.lr = '0.1' AND params.model = 'CNN' AND metrics.acc > 0.8 AND run_name = 'alpha'",
     ["r1"]),
    # More comparisons than are joined (16; SQLite joins at most 64 tables): the rest are
    # subqueries. 50 is the most a filter may hold (search.MAX_CLAUSES).
    (" AND ".join(["params.lr = '0.1'"] * 30 + ["metrics.acc >= 0"] * 20), ["r3", "r1"]),
    (" AND ".join(["metrics.acc != 0.9"] * 35 + ["tags.team != 'x'"] * 15), ["r2"]),
]


@pytest.mark.parametrize(("filter_string", "expected"), RUN_FILTERS)
def test_run_filter(db: sqlite3.Connection, filter_string: str, expected: list[str]) -> None:
    assert _runs(db, filter_string) == expected


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [case for case in RUN_FILTERS if "ILIKE" not in case[0]],
)
def test_run_filter_postgres_placeholders(
    db: sqlite3.Connection, filter_string: str, expected: list[str]
) -> None:
    # SQLite has no ILIKE; everything else in the PostgreSQL text runs here as well.
    assert _runs(db, filter_string, dialect=POSTGRES) == expected


RUN_ORDERS: list[tuple[list[str], list[str]]] = [
    # Numbers first, then NaN (r2), then runs without the metric, in either direction.
    (["metrics.acc DESC"], ["r1", "r3", "r2"]),
    (["metrics.acc"], ["r3", "r1", "r2"]),
    (["metrics.loss"], ["r2", "r1", "r3"]),
    (["metrics.loss DESC"], ["r1", "r2", "r3"]),
    # Strings compare by code point ('C' < 'c'); missing keys last.
    (["params.model"], ["r1", "r2", "r3"]),
    (["params.model DESC"], ["r2", "r1", "r3"]),
    (["tags.team DESC"], ["r2", "r1", "r3"]),
    (["tags.team ASC"], ["r1", "r2", "r3"]),
    # Ties fall back to start_time DESC, then run_id.
    (["params.lr DESC"], ["r3", "r1", "r2"]),
    (["params.lr"], ["r2", "r3", "r1"]),
    (["run_name"], ["r2", "r1", "r3"]),
    (["attributes.run_name DESC"], ["r3", "r1", "r2"]),
    (["end_time DESC"], ["r3", "r1", "r2"]),  # r2 has no end time: last
    (["end_time"], ["r1", "r3", "r2"]),
    (["start_time"], ["r1", "r2", "r3"]),
    (["created DESC"], ["r3", "r2", "r1"]),
    (["status"], ["r3", "r1", "r2"]),
    (["run_id DESC"], ["r3", "r2", "r1"]),
    (["user_id", "metrics.acc DESC"], ["r1", "r3", "r2"]),
    (["user_id DESC", "metrics.acc"], ["r2", "r3", "r1"]),
]


@pytest.mark.parametrize(("order_by", "expected"), RUN_ORDERS)
def test_run_order(db: sqlite3.Connection, order_by: list[str], expected: list[str]) -> None:
    assert _runs(db, "", order_by) == expected
    assert _runs(db, "", order_by, dialect=POSTGRES) == expected


def test_run_view_types_and_experiments(db: sqlite3.Connection) -> None:
    assert _runs(db, view_type=ViewType.DELETED_ONLY) == ["r4"]
    # r3 and r4 share a start time; run_id breaks the tie.
    assert _runs(db, view_type=ViewType.ALL) == ["r3", "r4", "r2", "r1"]
    assert _runs(db, view_type=ViewType.ALL, order_by=["start_time"]) == ["r1", "r2", "r3", "r4"]
    assert _runs(db, experiment_ids=[1, 2]) == ["r3", "r2", "r1", "r5"]
    assert _runs(db, "run_name = 'alpha'", experiment_ids=[1, 2]) == ["r1", "r5"]
    assert _runs(db, experiment_ids=[2]) == ["r5"]
    assert _runs(db, experiment_ids=[]) == []
    assert _runs(db, experiment_ids=[99]) == []


def test_run_name_filter_reads_the_run_name_tag(db: sqlite3.Connection) -> None:
    # As MLflow does: its name column was empty for runs logged before 1.29, so it filters
    # on the mlflow.runName tag. (Our store keeps both in step; r6 disagrees on purpose.)
    assert _runs(db, "run_name = 'new-name'", experiment_ids=[4]) == ["r6"]
    assert _runs(db, "run_name = 'old-name'", experiment_ids=[4]) == []


def test_postgres_text(db: sqlite3.Connection) -> None:
    # What SQLite cannot run for us: ILIKE, and NULL ordering spelled out.
    sql, params = sql_search.build_search_runs_sql(
        POSTGRES, [1], "tags.t ILIKE 'a%' AND start_time > 1.5", ViewType.ALL, [], 5, 0
    )
    assert "JOIN run_tags f1 ON f1.run_id = runs.run_id WHERE" in sql
    assert "f1.key = $2 AND f1.value ILIKE $3" in sql
    assert "runs.start_time > CAST($4 AS DOUBLE PRECISION)" in sql
    assert "ORDER BY runs.start_time DESC NULLS LAST, runs.run_id ASC LIMIT $5 OFFSET $6" in sql
    assert params == [1, "t", "a%", 1.5, 6, 0]
    sql, _ = sql_search.build_search_experiments_sql(
        POSTGRES, "default", "", ViewType.ALL, ["last_update_time"], 5, 0
    )
    assert "last_update_time ASC NULLS FIRST, experiments.experiment_id DESC" in sql


def test_run_pages(db: sqlite3.Connection) -> None:
    everything = _runs(db, view_type=ViewType.ALL, experiment_ids=[1, 2])
    assert everything == ["r3", "r4", "r2", "r1", "r5"]
    # One extra row tells the caller whether another page follows.
    assert _runs(db, view_type=ViewType.ALL, experiment_ids=[1, 2], max_results=2) == [
        "r3", "r4", "r2"
    ]
    pages = [
        _runs(db, view_type=ViewType.ALL, experiment_ids=[1, 2], max_results=2, offset=offset)
        for offset in (0, 2, 4)
    ]
    assert [page[:2] for page in pages] == [["r3", "r4"], ["r2", "r1"], ["r5"]]
    assert _runs(db, "metrics.acc >= 0", ["metrics.acc"], max_results=1, offset=1) == ["r1"]


def test_run_search_rejects_bad_input() -> None:
    with pytest.raises(InvalidArgument, match=r"Invalid clause\(s\) in filter string: 'OR'"):
        sql_search.build_search_runs_sql(
            SQLITE, [1], "metrics.a > 1 OR metrics.b > 1", ViewType.ALL, [], 10, 0
        )
    with pytest.raises(InvalidArgument, match="duplicate fields"):
        sql_search.build_search_runs_sql(
            SQLITE, [1], "", ViewType.ALL, ["metrics.a", "metrics.a DESC"], 10, 0
        )
    with pytest.raises(InvalidArgument, match="must be a positive integer"):
        sql_search.build_search_runs_sql(SQLITE, [1], "", ViewType.ALL, [], 0, 0)


def test_filter_values_are_bound_not_inlined() -> None:
    sql, params = sql_search.build_search_runs_sql(
        SQLITE, [1], "params.x = 'a'' OR 1=1 --'", ViewType.ALL, ["tags.`t'`"], 10, 0
    )
    assert "OR 1=1" not in sql and "t'" not in sql
    assert "a'' OR 1=1 --" in params and "t'" in params


# --------------------------------------------------------------------------- experiments


def _experiments(
    db: sqlite3.Connection,
    filter_string: str = "",
    order_by: Sequence[str] = (),
    *,
    workspace: str = "default",
    view_type: ViewType = ViewType.ACTIVE_ONLY,
    max_results: int = 100,
    offset: int = 0,
    dialect: Dialect = SQLITE,
) -> list[int]:
    sql, params = sql_search.build_search_experiments_sql(
        dialect, workspace, filter_string, view_type, order_by, max_results, offset
    )
    if isinstance(dialect, PostgresDialect):
        sql = _as_sqlite(sql, len(params))
    return [row[0] for row in db.execute(sql, params)]


# Default order: creation_time DESC, experiment_id ASC. Active in "default": 2, 5, 1.
EXPERIMENT_FILTERS: list[tuple[str, list[int]]] = [
    ("", [2, 5, 1]),
    ("name = 'exp-one'", [1]),  # experiment 4 has the name too, in another workspace
    ("name LIKE 'exp%'", [5, 1]),
    ("name ILIKE 'exp%'", [2, 5, 1]),
    ("name != 'exp-one'", [2, 5]),
    ("experiment_id = '5'", [5]),
    ("experiment_id IN ('1', '5', '4')", [5, 1]),
    ("experiment_id NOT IN ('1')", [2, 5]),
    ("experiment_id != '2'", [5, 1]),
    ("creation_time >= 200", [2, 5]),
    ("creation_time < 200", [1]),
    ("last_update_time < 150", [2]),  # experiment 5 has none
    ("tags.owner = 'alice'", [1]),
    ("tags.owner != 'alice'", [2]),  # needs the tag: 5 has none
    ("tags.owner LIKE 'b%'", []),
    ("tags.owner ILIKE 'b%'", [2]),
    ("tags.owner IS NULL", [5]),
    ("tags.owner IS NOT NULL", [2, 1]),
    ("tags.owner IS NOT NULL AND tags.x = '1'", [2]),
    ("tags.owner IS NOT NULL AND name LIKE 'exp-%'", [1]),
]


@pytest.mark.parametrize(("filter_string", "expected"), EXPERIMENT_FILTERS)
def test_experiment_filter(
    db: sqlite3.Connection, filter_string: str, expected: list[int]
) -> None:
    assert _experiments(db, filter_string) == expected
    if "ILIKE" not in filter_string:
        assert _experiments(db, filter_string, dialect=POSTGRES) == expected


EXPERIMENT_ORDERS: list[tuple[list[str], list[int]]] = [
    (["name"], [2, 5, 1]),  # "Exp-Two" < "exp-five" < "exp-one"
    (["name DESC"], [1, 5, 2]),
    # 2 and 5 tie on creation_time; MLflow's tie-breaker is experiment_id DESC.
    (["creation_time"], [1, 5, 2]),
    (["creation_time DESC"], [5, 2, 1]),
    (["creation_time DESC", "experiment_id"], [2, 5, 1]),
    # A missing time sorts as the smallest value (SQLite's NULL order, which MLflow shows).
    (["last_update_time"], [5, 2, 1]),
    (["last_update_time DESC"], [1, 2, 5]),
    (["experiment_id DESC"], [5, 2, 1]),
]


@pytest.mark.parametrize(("order_by", "expected"), EXPERIMENT_ORDERS)
def test_experiment_order(
    db: sqlite3.Connection, order_by: list[str], expected: list[int]
) -> None:
    assert _experiments(db, "", order_by) == expected
    assert _experiments(db, "", order_by, dialect=POSTGRES) == expected


def test_experiment_view_types_workspaces_and_pages(db: sqlite3.Connection) -> None:
    assert _experiments(db, view_type=ViewType.DELETED_ONLY) == [3]
    assert _experiments(db, view_type=ViewType.ALL) == [3, 2, 5, 1]
    assert _experiments(db, workspace="other") == [4]
    assert _experiments(db, workspace="nobody") == []
    assert _experiments(db, max_results=1) == [2, 5]
    assert _experiments(db, max_results=1, offset=1) == [5, 1]
    assert _experiments(db, max_results=2, offset=2) == [1]


def test_experiment_search_rejects_bad_input() -> None:
    with pytest.raises(InvalidArgument, match="Invalid order_by entity: tag"):
        sql_search.build_search_experiments_sql(
            SQLITE, "default", "", ViewType.ALL, ["tags.x"], 10, 0
        )
    with pytest.raises(InvalidArgument, match="Invalid experiment ID 'x'"):
        sql_search.build_search_experiments_sql(
            SQLITE, "default", "experiment_id = 'x'", ViewType.ALL, [], 10, 0
        )
