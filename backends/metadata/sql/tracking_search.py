"""Compile parsed searches (:mod:`backends.metadata.sql.search`) into SQL for our schema.

Filtering, ordering and paging all run in the database. The SQL is plain enough for
SQLite and PostgreSQL; a :class:`~backends.metadata.sql.dialect.Dialect` supplies what differs (placeholders, ILIKE,
NULL ordering, which columns SQLite may start from). A filter comparing a param, tag or
metric value joins that row, and ordering by one left-joins it: the row is unique per
(run, key), so a run still appears once, and the planner may start from a selective
(key, value) index. Filters on datasets, and IS [NOT] NULL, are ``EXISTS`` subqueries.

Semantics follow MLflow's SQL store: ``LIKE`` is case-sensitive (the SQLite connection
sets ``PRAGMA case_sensitive_like=ON``); ``!=`` on a param or tag needs the key present
with another value; metric filters use the latest value and a NaN matches only ``!=``;
ordering puts runs without the key last whichever the direction, and NaN after numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backends.errors import InvalidArgument
from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.interface.entities import LifecycleStage, ViewType
from backends.metadata.sql import search
from backends.metadata.sql.dialect import Dialect
from backends.metadata.sql.visibility import readable_condition, visible_experiment_ids

__all__ = [
    "build_search_experiments_sql",
    "build_search_runs_sql",
]

RUN_NAME_TAG = "mlflow.runName"
DATASET_CONTEXT_TAG = "mlflow.data.context"


@dataclass
class _Params:
    """Collects bound values in the order their placeholders appear in the SQL text."""

    dialect: Dialect
    values: list[object] = field(default_factory=list)

    def add(self, value: object) -> str:
        self.values.append(value)
        return self.dialect.parameter(len(self.values), value)

    def add_list(self, values: Sequence[object]) -> str:
        return "(" + ", ".join(self.add(value) for value in values) + ")"


def _flag(dialect: Dialect, column: str, on: bool) -> str:
    # A cast works whether the column is an INTEGER (SQLite) or a BOOLEAN.
    return f"{dialect.cast_int(column)} = {1 if on else 0}"


def _compare(params: _Params, column: str, op: str, value: search.Value) -> str:
    """``column op value`` for the operators of the grammar other than IS [NOT] NULL."""
    if op in ("IN", "NOT IN"):
        assert isinstance(value, tuple)
        return f"{column} {op} {params.add_list(value)}"
    if op == "ILIKE":
        return params.dialect.ilike(column, params.add(value))
    return f"{column} {op} {params.add(value)}"


def _stages(view_type: ViewType) -> list[str]:
    if view_type == ViewType.ACTIVE_ONLY:
        return [LifecycleStage.ACTIVE]
    if view_type == ViewType.DELETED_ONLY:
        return [LifecycleStage.DELETED]
    return []  # ALL: no condition


def _check_page(max_results: int, offset: int) -> None:
    if max_results < 1:
        raise InvalidArgument(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            "a positive integer"
        )
    if offset < 0:
        raise InvalidArgument(f"Invalid page token, parsed value={{'offset': {offset}}}")


# --------------------------------------------------------------------------- runs

_RUN_COLUMNS = {
    "run_id": "runs.run_id",
    "run_name": "runs.run_name",
    "status": "runs.status",
    "user_id": "runs.user_id",
    "artifact_uri": "runs.artifact_uri",
    "start_time": "runs.start_time",
    "end_time": "runs.end_time",
}
_NULLABLE_RUN_COLUMNS = frozenset({"start_time", "end_time"})
_KEY_VALUE_TABLES = {"param": "run_params", "tag": "run_tags"}
# Comparisons beyond this many are EXISTS subqueries instead of joins: SQLite joins at most
# 64 tables, and no real filter gains from more.
_MAX_FILTER_JOINS = 16


def _run_condition(params: _Params, c: search.Comparison, joins: list[str],
                   experiment_ids: Sequence[int] = ()) -> str:
    """The WHERE term for ``c``. A comparison on a param, tag or metric value joins its row
    (unique per run and key, so a run still appears once) and appends that JOIN to
    ``joins``: the planner may then start from a selective key/value index, and reads the
    value from a covering index (migration 0005)."""
    if c.entity == "attribute" and c.key == "run_name":
        # As MLflow does: the name lives in the mlflow.runName tag as well as the column.
        c = search.Comparison("tag", RUN_NAME_TAG, c.op, c.value)
    if c.entity == "attribute":
        return _compare(params, _RUN_COLUMNS[c.key], c.op, c.value)
    if c.entity in _KEY_VALUE_TABLES:
        table = _KEY_VALUE_TABLES[c.entity]
        if c.op in ("IS NULL", "IS NOT NULL") or len(joins) >= _MAX_FILTER_JOINS:
            key_match = (f"SELECT 1 FROM {table} kv WHERE kv.run_id = runs.run_id"
                         f" AND kv.key = {params.add(c.key)}")
            if c.op == "IS NULL":
                return f"NOT EXISTS ({key_match})"
            if c.op == "IS NOT NULL":
                return f"EXISTS ({key_match})"
            return f"EXISTS ({key_match} AND {_compare(params, 'kv.value', c.op, c.value)})"
        # The key goes to WHERE, not ON, so placeholders stay in text order.
        alias = f"f{len(joins) + 1}"
        joins.append(f"JOIN {table} {alias} ON {alias}.run_id = runs.run_id")
        # Params carry their run's experiment (migration 0006): naming the searched ones
        # lets the planner start from their (experiment, key, value) entries only.
        scope = (f"{alias}.experiment_id IN {params.add_list(list(experiment_ids))} AND "
                 if c.entity == "param" and experiment_ids else "")
        return (f"{scope}{alias}.key = {params.add(c.key)}"
                f" AND {_compare(params, f'{alias}.value', c.op, c.value)}")
    if c.entity == "metric":
        joined = len(joins) < _MAX_FILTER_JOINS
        alias = f"f{len(joins) + 1}" if joined else "m"
        if joined:
            joins.append(f"JOIN {params.dialect.series_of_run(alias)}"
                         f" ON {alias}.run_id = runs.run_id")
        key = params.add(c.key)
        column = params.dialect.unindexed(f"{alias}.latest_value")
        value = _compare(params, column, c.op, c.value)
        # NaN is stored as 0 plus a flag: it fails every comparison except "!=".
        if c.op == "!=":
            value = f"({value} OR {_flag(params.dialect, f'{alias}.latest_is_nan', True)})"
        else:
            value = f"{value} AND {_flag(params.dialect, f'{alias}.latest_is_nan', False)}"
        if not joined:
            return (f"EXISTS (SELECT 1 FROM metric_series m WHERE m.run_id = runs.run_id"
                    f" AND m.key = {key} AND {value})")
        return f"{alias}.key = {key} AND {value}"
    if c.entity == "dataset":
        if c.key == "context":
            key = params.add(DATASET_CONTEXT_TAG)
            return (
                "EXISTS (SELECT 1 FROM run_dataset_input_tags t"
                f" WHERE t.run_id = runs.run_id AND t.key = {key}"
                f" AND {_compare(params, 't.value', c.op, c.value)})"
            )
        return (
            "EXISTS (SELECT 1 FROM run_dataset_inputs i"
            " JOIN datasets d ON d.dataset_id = i.dataset_id WHERE i.run_id = runs.run_id"
            f" AND {_compare(params, f'd.{c.key}', c.op, c.value)})"
        )
    raise AssertionError(f"unknown entity {c.entity!r}")


def _run_order_terms(
    params: _Params, keys: Sequence[search.OrderKey]
) -> tuple[list[str], list[str]]:
    """(LEFT JOINs, ORDER BY terms) for the requested keys plus MLflow's tie-breakers."""
    joins: list[str] = []
    terms: list[str] = []
    for n, key in enumerate(keys, start=1):
        direction = "ASC" if key.ascending else "DESC"
        if key.entity == "attribute":
            column = _RUN_COLUMNS[key.key]
            if key.key in _NULLABLE_RUN_COLUMNS:
                terms.append(f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END")
            terms.append(f"{column} {direction}")
            continue
        alias = f"o{n}"
        if key.entity == "metric":
            joins.append(
                f"LEFT JOIN {params.dialect.series_of_run(alias)} ON {alias}.run_id = runs.run_id"
                f" AND {alias}.key = {params.add(key.key)}"
            )
            # Numbers, then NaN, then runs without the metric, whatever the direction.
            terms.append(
                f"CASE WHEN {alias}.run_id IS NULL THEN 2"
                f" WHEN {_flag(params.dialect, f'{alias}.latest_is_nan', True)} THEN 1 ELSE 0 END"
            )
            terms.append(f"{alias}.latest_value {direction}")
        else:
            table = _KEY_VALUE_TABLES[key.entity]
            joins.append(
                f"LEFT JOIN {table} {alias} ON {alias}.run_id = runs.run_id"
                f" AND {alias}.key = {params.add(key.key)}"
            )
            terms.append(f"CASE WHEN {alias}.value IS NULL THEN 1 ELSE 0 END")
            terms.append(f"{alias}.value {direction}")
    if not any(k.entity == "attribute" and k.key == "start_time" for k in keys):
        terms.append("runs.start_time DESC" + params.dialect.nulls_as_smallest(False))
    terms.append("runs.run_id ASC")
    return joins, terms


def build_search_runs_sql(
    dialect: Dialect,
    experiment_ids: Sequence[int],
    filter_string: str | None,
    view_type: ViewType,
    order_by: Sequence[str] | None,
    max_results: int,
    offset: int,
    visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """SQL and parameters selecting ``runs.run_id`` for one page of search_runs.

    The query returns up to ``max_results + 1`` ids starting at ``offset``; the caller
    fetches one extra to know whether there is a next page. Default order is
    ``start_time DESC, run_id ASC``; a requested order gets those as tie-breakers. Raises
    ``InvalidArgument`` for a bad filter or order_by, with MLflow's messages.
    """
    built = _search_runs_sql(dialect, experiment_ids, filter_string, view_type, order_by,
                             max_results, offset, visibility, numbers_only=False)
    assert built is not None
    return built


def build_search_runs_numbers_sql(
    dialect: Dialect,
    experiment_ids: Sequence[int],
    filter_string: str | None,
    view_type: ViewType,
    order_by: Sequence[str] | None,
    max_results: int,
    offset: int,
    visibility: Visibility | None = None,
) -> tuple[str, list[object]] | None:
    """When the first order key is a metric: the same page restricted to runs whose value of
    that metric is a number (no NaN, not missing), which sort first in MLflow's order.

    Walking the metric's ``(key, latest_value)`` index in order, the database stops after
    one page instead of sorting every matching run. If this query returns the full
    ``max_results + 1`` ids, they are exactly the page :func:`build_search_runs_sql` would
    return; otherwise the page reaches past the numbers and the caller runs that one.
    None when the first order key is not a metric."""
    return _search_runs_sql(dialect, experiment_ids, filter_string, view_type, order_by,
                            max_results, offset, visibility, numbers_only=True)


def _search_runs_sql(
    dialect: Dialect,
    experiment_ids: Sequence[int],
    filter_string: str | None,
    view_type: ViewType,
    order_by: Sequence[str] | None,
    max_results: int,
    offset: int,
    visibility: Visibility | None,
    *,
    numbers_only: bool,
) -> tuple[str, list[object]] | None:
    comparisons = search.parse_run_filter(filter_string)
    order_keys = search.parse_run_order_by(order_by)
    _check_page(max_results, offset)
    if numbers_only and (not order_keys or order_keys[0].entity != "metric"):
        return None

    params = _Params(dialect)
    joins, order_terms = _run_order_terms(params, order_keys)
    where: list[str] = []
    if numbers_only:
        # o1 (the first key's LEFT JOIN) becomes the driving table, numbers only; its two
        # leading order terms (the NaN/missing rank, then the value) reduce to the value.
        head, key_mark = joins[0].rsplit(" AND o1.key = ", 1)
        assert head == f"LEFT JOIN {dialect.series_of_run('o1')} ON o1.run_id = runs.run_id", head
        joins[0] = "JOIN runs ON runs.run_id = o1.run_id"
        where += [f"o1.key = {key_mark}", "o1.latest_is_nan = 0"]
        del order_terms[0]
        source = "SELECT runs.run_id FROM metric_series o1"
    else:
        source = "SELECT runs.run_id FROM runs"
    if experiment_ids:
        where.append(f"runs.experiment_id IN {params.add_list(list(experiment_ids))}")
    else:
        where.append("1 = 0")
    stages = _stages(view_type)
    if stages:
        where.append(f"runs.lifecycle_stage IN {params.add_list(stages)}")
    filter_joins: list[str] = []
    where.extend(_run_condition(params, c, filter_joins, experiment_ids)
                 for c in comparisons)
    if visibility is not None:  # only runs of experiments the caller may read
        visible = visible_experiment_ids(visibility, params.add, dialect)
        where.append(f"runs.experiment_id IN ({visible})")

    sql = " ".join(
        [
            source,
            *joins,
            *filter_joins,
            "WHERE " + " AND ".join(where),
            "ORDER BY " + ", ".join(order_terms),
            f"LIMIT {params.add(max_results + 1)} OFFSET {params.add(offset)}",
        ]
    )
    return sql, params.values


# --------------------------------------------------------------------------- experiments

_EXPERIMENT_COLUMNS = {
    "experiment_id": "experiments.experiment_id",
    "name": "experiments.name",
    "creation_time": "experiments.creation_time",
    "last_update_time": "experiments.last_update_time",
}
_NULLABLE_EXPERIMENT_COLUMNS = frozenset({"creation_time", "last_update_time"})
_DEFAULT_EXPERIMENT_ORDER = (
    search.OrderKey("attribute", "creation_time", False),
    search.OrderKey("attribute", "experiment_id", True),
)


def _experiment_condition(params: _Params, c: search.Comparison) -> str:
    if c.entity == "attribute":
        return _compare(params, _EXPERIMENT_COLUMNS[c.key], c.op, c.value)
    key_match = (
        "SELECT 1 FROM experiment_tags et"
        " WHERE et.experiment_id = experiments.experiment_id AND et.key = " + params.add(c.key)
    )
    if c.op == "IS NULL":
        return f"NOT EXISTS ({key_match})"
    if c.op == "IS NOT NULL":
        return f"EXISTS ({key_match})"
    return f"EXISTS ({key_match} AND {_compare(params, 'et.value', c.op, c.value)})"


def _experiment_order_terms(dialect: Dialect, keys: Sequence[search.OrderKey]) -> list[str]:
    keys = list(keys or _DEFAULT_EXPERIMENT_ORDER)
    if not any(k.key == "experiment_id" for k in keys):
        # MLflow's tie-breaker for a requested order is experiment_id descending.
        keys.append(search.OrderKey("attribute", "experiment_id", False))
    terms = []
    for key in keys:
        term = f"{_EXPERIMENT_COLUMNS[key.key]} {'ASC' if key.ascending else 'DESC'}"
        if key.key in _NULLABLE_EXPERIMENT_COLUMNS:
            term += dialect.nulls_as_smallest(key.ascending)
        terms.append(term)
    return terms


def build_search_experiments_sql(
    dialect: Dialect,
    workspace: str,
    filter_string: str | None,
    view_type: ViewType,
    order_by: Sequence[str] | None,
    max_results: int,
    offset: int,
    visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """SQL and parameters selecting ``experiments.experiment_id`` for one page of
    search_experiments in ``workspace``.

    Returns up to ``max_results + 1`` ids starting at ``offset``. Default order is
    ``creation_time DESC, experiment_id ASC``; a requested order without experiment_id
    gets ``experiment_id DESC`` as tie-breaker, as MLflow does. Raises ``InvalidArgument``
    for a bad filter or order_by, with MLflow's messages.
    """
    comparisons = search.parse_experiment_filter(filter_string)
    order_keys = search.parse_experiment_order_by(order_by)
    _check_page(max_results, offset)

    params = _Params(dialect)
    where = [f"experiments.workspace = {params.add(workspace)}"]
    stages = _stages(view_type)
    if stages:
        where.append(f"experiments.lifecycle_stage IN {params.add_list(stages)}")
    where.extend(_experiment_condition(params, c) for c in comparisons)
    if visibility is not None:  # only experiments the caller may read
        where.append(readable_condition(visibility, params.add, "experiment",
                                        "experiments.workspace",
                                        dialect.cast_text("experiments.experiment_id")))
    sql = " ".join(
        [
            "SELECT experiments.experiment_id FROM experiments",
            "WHERE " + " AND ".join(where),
            "ORDER BY " + ", ".join(_experiment_order_terms(dialect, order_keys)),
            f"LIMIT {params.add(max_results + 1)} OFFSET {params.add(offset)}",
        ]
    )
    return sql, params.values
