"""search_logged_models: filter parsing, SQL and page tokens.

The filter grammar is MLflow's for logged models (``mlflow/utils/search_logged_model_utils.py``)
and the query follows its SQL store (``SqlAlchemyStore.search_logged_models``)::

    name LIKE 'clf%' AND metrics.accuracy > 0.9 AND params.lr = '0.01' AND tags.team = 'a'
    creation_time > 1700000000000 AND status IN ('LOGGED_MODEL_READY') AND source_run_id = 'r1'

A filter is comparisons joined by ``AND``. Identifiers are ``attributes.<key>`` or a bare
attribute, ``metrics.<name>``, ``params.<key>`` and ``tags.<key>``; a key may be quoted with
backticks. Attributes ``creation_time`` / ``creation_timestamp`` / ``last_updated_timestamp``
and metrics take ``= != < <= > >=`` and a number; everything else takes
``= != LIKE ILIKE IN NOT IN`` and a string (quoted or, as MLflow allows, bare).

Semantics, as in MLflow's SQL store:

* deleted models are never returned;
* a metric comparison matches if *any* logged point of that metric matches (every step,
  run and dataset), restricted to the request's ``datasets`` when given; with ``datasets``
  and no metric comparison, a model needs at least one metric point on those datasets;
* ``!=`` on a param or tag needs the key present with another value;
* ordering by ``metrics.<name>`` uses the model's latest point of that metric (greatest
  timestamp, then step, then smallest run id), among the points of the order's own
  ``dataset_name`` / ``dataset_digest`` if given; models without it sort last either way;
* a requested order gets ``creation_timestamp DESC`` and ``model_id ASC`` as tie-breakers
  unless it already names those fields.

Choices where MLflow's behaviour is a bug or depends on its backend: a NaN metric point
fails every comparison but ``!=`` and sorts after numbers and before missing values;
``status`` accepts the stored names (``LOGGED_MODEL_READY``), MLflow's short names
(``READY``) and its integer codes (``'2'``); ``experiment_id`` values must be integers;
double-quoted strings are unquoted; a dataset without a digest matches every digest of that
name (MLflow's REST handler turns a missing digest into ``dataset_digest IS NULL``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from backends.errors import InvalidArgument
from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.interface.validation import INT64_MAX
from backends.metadata.sql import search, tracking_search
from backends.metadata.sql.dialect import Dialect
from backends.metadata.sql.visibility import visible_experiment_ids

__all__ = [
    "Comparison",
    "build_search_logged_models_sql",
    "decode_page_token",
    "encode_page_token",
    "normalize_order_by",
    "parse_filter",
]

FilterValue = str | int | float | tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One parsed clause.

    ``entity`` is ``attribute``, ``metric``, ``param`` or ``tag``; an attribute ``key`` is
    its column name (``creation_timestamp_ms`` for ``creation_time``). ``value`` is a
    number for metrics and numeric attributes, a tuple for ``IN`` / ``NOT IN`` (possibly
    empty, as MLflow allows), otherwise a string; ``experiment_id`` values are ints.
    """

    entity: str
    key: str
    op: str
    value: FilterValue


def _fail(message: str) -> NoReturn:
    raise InvalidArgument(message)


# --------------------------------------------------------------------------- grammar

_ENTITY_TYPES = {"attributes": "attribute", "metrics": "metric", "params": "param", "tags": "tag"}
_ENTITY_NAMES = {entity: name for name, entity in _ENTITY_TYPES.items()}

# Attribute names accepted in filters and order_by, mapped to their column.
_ATTRIBUTE_ALIASES = {
    "creation_time": "creation_timestamp_ms",
    "creation_timestamp": "creation_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
}
_NUMERIC_COLUMNS = frozenset({"creation_timestamp_ms", "last_updated_timestamp_ms"})
_STRING_COLUMNS = frozenset(
    {"name", "model_id", "model_type", "status", "source_run_id", "artifact_location"}
    | {"status_message", "experiment_id"}
)
_FILTER_COLUMNS = _NUMERIC_COLUMNS | _STRING_COLUMNS
_FILTER_KEYS = _FILTER_COLUMNS | _ATTRIBUTE_ALIASES.keys()
_ORDER_COLUMNS = _FILTER_COLUMNS
_NULLABLE_COLUMNS = frozenset({"model_type", "source_run_id", "status_message"})

_NUMERIC_OPS = ("<", "<=", ">", ">=", "=", "!=")
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_LIST_OPS = ("IN", "NOT IN")

# Stored status names, in MLflow's integer order (which is also how it sorts them).
_STATUSES = (
    "LOGGED_MODEL_STATUS_UNSPECIFIED",
    "LOGGED_MODEL_PENDING",
    "LOGGED_MODEL_READY",
    "LOGGED_MODEL_UPLOAD_FAILED",
)
_STATUS_ALIASES = {
    **{str(code): name for code, name in enumerate(_STATUSES)},
    "UNSPECIFIED": _STATUSES[0],
    "PENDING": _STATUSES[1],
    "READY": _STATUSES[2],
    "FAILED": _STATUSES[3],
}


def _invalid_filter(filter_string: str) -> NoReturn:
    _fail(
        f"Invalid filter string: {filter_string!r}. Expected a list of comparisons "
        "separated by 'AND' (e.g. 'metrics.loss > 0.1 AND params.lr = 0.01')."
    )


def _strip_key(key: str) -> str:
    key = key.strip("`")
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        return key[1:-1]
    return key


def _identifier(text: str) -> tuple[str, str]:
    """(entity, key) of ``entity.key`` or a bare attribute; attribute keys are columns."""
    entity_text, dot, key = text.partition(".")
    entity_text = entity_text.strip("`")
    if dot and entity_text.isascii() and entity_text.isalpha() and entity_text.islower():
        entity = _ENTITY_TYPES.get(entity_text)
        if entity is None:
            _fail(f"Invalid entity type: {entity_text!r}. Expected one of {list(_ENTITY_TYPES)}.")
        key = _strip_key(key)
    else:
        entity, key = "attribute", _strip_key(text)
    if entity == "attribute":
        if key not in _FILTER_KEYS:
            _fail(
                f"Invalid attribute key '{key}' specified. "
                f"Valid keys are '{search._set_repr(_FILTER_KEYS)}'"
            )
        key = _ATTRIBUTE_ALIASES.get(key, key)
    return entity, key


def _is_numeric(entity: str, key: str) -> bool:
    return entity == "metric" or (entity == "attribute" and key in _NUMERIC_COLUMNS)


def _number(entity: str, key: str, token: search._Token) -> int | float:
    number: int | float | None = search._number(token)
    if number is None and token.kind == "ident":
        try:  # MLflow reads the value with float(): inf, nan and Infinity are numbers too.
            number = float(token.text)
        except ValueError:
            number = None
    if number is None:
        if entity == "metric":
            _fail(f"Expected numeric value type for metric. Found {token.text}")
        _fail(f"Expected numeric value type for numeric attribute: {key}. Found {token.text}")
    return float(number) if entity == "metric" else search._int_column_value(key, number)


def _string(token: search._Token) -> str:
    if token.kind == "string" or search._is_quoted(token.text, '"'):
        return token.text[1:-1]
    return token.text  # MLflow takes a bare word or number as written


def _value(entity: str, key: str, op: str, token: search._Token) -> FilterValue:
    if _is_numeric(entity, key):
        return _number(entity, key, token)
    attribute = key if entity == "attribute" else ""
    if op in _LIST_OPS:
        # MLflow lets an empty list through: IN () matches nothing, NOT IN () everything.
        values = () if not token.text[1:-1].strip() else search._string_list(token)
        if attribute == "status":
            return tuple(_STATUS_ALIASES.get(v, v) for v in values)
        if attribute == "experiment_id":
            return tuple(search._experiment_id(v) for v in values)
        return values
    if token.kind == "paren":
        _fail(f"Invalid comparator '{op}' for a list of values. Use IN or NOT IN.")
    value = _string(token)
    if attribute == "status" and op in ("=", "!="):
        return _STATUS_ALIASES.get(value, value)
    if attribute == "experiment_id" and op in ("=", "!="):
        return search._experiment_id(value)
    return value


def _check_op(entity: str, key: str, op: str) -> None:
    ops = _NUMERIC_OPS if _is_numeric(entity, key) else _STRING_OPS
    if op not in ops:
        _fail(
            f"Invalid comparison operator for {_ENTITY_NAMES[entity]}.{key}: {op!r}. "
            f"Expected one of {ops}."
        )


def parse_filter(filter_string: str | None) -> list[Comparison]:
    """Parse a search_logged_models filter; an empty or missing filter matches everything.

    Raises ``InvalidArgument`` with MLflow's message for a clause that is not a comparison
    (``OR``, parentheses, ``IS NULL``), an unknown entity or attribute, an operator the
    field does not take, or a non-numeric value for a numeric field.
    """
    if not filter_string:
        return []
    tokens = search._tokenize(filter_string)
    if not tokens:
        _fail(f"Invalid filter string: {filter_string!r}. Expected a single SQL expression.")
    if any(t.text == ";" for t in tokens[:-1]):
        _fail(f"Invalid filter string: {filter_string!r}. Expected a single SQL expression.")
    parsed: list[Comparison] = []
    i = 0
    while i < len(tokens):
        if tokens[i].word == "AND":  # stray or repeated ANDs are accepted, as MLflow does
            i += 1
            continue
        found = search._match_comparison(tokens, i)
        if found is None or found[0].left.kind != "ident":
            _invalid_filter(filter_string)
        raw, i = found
        if raw.right is None:
            _fail(
                f"Invalid comparison: {raw.left.text} {raw.op}. "
                "Expected a comparison with 3 tokens."
            )
        entity, key = _identifier(raw.left.text)
        _check_op(entity, key, raw.op)
        parsed.append(Comparison(entity, key, raw.op, _value(entity, key, raw.op, raw.right)))
    return parsed


# --------------------------------------------------------------------------- order_by


def normalize_order_by(order_by: Sequence[Mapping[str, object]] | None) -> list[dict[str, object]]:
    """The order_by entries as MLflow's handler builds them: ``field_name``, ``ascending``
    (default true), ``dataset_name`` and ``dataset_digest`` (``None`` when empty).

    Raises ``InvalidArgument`` for an entry without a field name or with a value of the
    wrong type.
    """
    normalized: list[dict[str, object]] = []
    for entry in order_by or ():
        if not isinstance(entry, Mapping):
            _fail(f"Invalid order_by entry: {entry!r}. Expected an object.")
        field_name = entry.get("field_name")
        if not isinstance(field_name, str) or not field_name:
            _fail(f"Invalid order by field name: {field_name}")
        ascending = entry.get("ascending")
        if ascending is None:
            ascending = True
        if not isinstance(ascending, bool):
            _fail(f"Invalid value {ascending!r} for 'ascending' in order_by. Expected a boolean.")
        item: dict[str, object] = {"field_name": field_name, "ascending": ascending}
        for key in ("dataset_name", "dataset_digest"):
            value = entry.get(key) or None
            if value is not None and not isinstance(value, str):
                _fail(f"Invalid value {value!r} for '{key}' in order_by. Expected a string.")
            item[key] = value
        normalized.append(item)
    return normalized


@dataclass(frozen=True, slots=True)
class _OrderKey:
    column: str  # a logged_models column; "" for a metric
    metric: str
    ascending: bool
    dataset_name: str | None = None
    dataset_digest: str | None = None


def _order_keys(order_by: Sequence[Mapping[str, object]] | None) -> list[_OrderKey]:
    search.check_order_count(order_by)
    keys: list[_OrderKey] = []
    for entry in normalize_order_by(order_by):
        field_name = str(entry["field_name"])
        ascending = bool(entry["ascending"])
        if "." not in field_name:
            column = _ATTRIBUTE_ALIASES.get(field_name, field_name)
            if column not in _ORDER_COLUMNS:
                _fail(f"Invalid order by field name: {field_name}")
            keys.append(_OrderKey(column, "", ascending))
            continue
        entity, name = field_name.split(".", 1)
        if entity != "metrics":
            _fail(f"Invalid order by field name: {field_name}. Only metrics are supported.")
        dataset_name, dataset_digest = entry["dataset_name"], entry["dataset_digest"]
        keys.append(
            _OrderKey(
                "",
                name,
                ascending,
                dataset_name if isinstance(dataset_name, str) else None,
                dataset_digest if isinstance(dataset_digest, str) else None,
            )
        )
    return keys


# --------------------------------------------------------------------------- SQL


def _column_sql(column: str) -> str:
    return f"logged_models.{column}"


def _status_rank() -> str:
    cases = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(_STATUSES))
    return f"CASE logged_models.status {cases} ELSE {len(_STATUSES)} END"


def _datasets(datasets: Sequence[Mapping[str, object]] | None) -> list[tuple[str, str | None]]:
    result: list[tuple[str, str | None]] = []
    for dataset in datasets or ():
        name = dataset.get("dataset_name")
        if not isinstance(name, str) or not name:
            _fail("`dataset_name` in the `datasets` clause must be specified.")
        digest = dataset.get("dataset_digest") or None
        if digest is not None and not isinstance(digest, str):
            _fail(f"Invalid value {digest!r} for 'dataset_digest' in the `datasets` clause.")
        result.append((name, digest))
    return result


def _dataset_condition(
    params: tracking_search._Params, alias: str, datasets: Sequence[tuple[str, str | None]]
) -> str:
    terms = []
    for name, digest in datasets:
        term = f"{alias}.dataset_name = {params.add(name)}"
        if digest is not None:
            term = f"({term} AND {alias}.dataset_digest = {params.add(digest)})"
        terms.append(term)
    return "(" + " OR ".join(terms) + ")"


def _compare(params: tracking_search._Params, column: str, op: str, value: FilterValue) -> str:
    if value == ():
        return "1 = 0" if op == "IN" else "1 = 1"
    return tracking_search._compare(params, column, op, value)


def _condition(
    params: tracking_search._Params, c: Comparison, datasets: Sequence[tuple[str, str | None]]
) -> str:
    if c.entity == "attribute":
        column = _column_sql(c.key)
        if c.key == "experiment_id" and c.op in ("LIKE", "ILIKE"):
            column = params.dialect.cast_text(column)
        return _compare(params, column, c.op, c.value)
    if c.entity in ("param", "tag"):
        table = "logged_model_params" if c.entity == "param" else "logged_model_tags"
        return (
            f"EXISTS (SELECT 1 FROM {table} kv WHERE kv.model_id = logged_models.model_id"
            f" AND kv.key = {params.add(c.key)}"
            f" AND {_compare(params, 'kv.value', c.op, c.value)})"
        )
    # metric: any point of the metric (on the requested datasets) that compares true
    assert isinstance(c.value, float)
    key = params.add(c.key)
    if math.isnan(c.value):
        value = "1 = 0"  # nothing compares with NaN, as in MLflow's SQLite store
    else:
        value = tracking_search._compare(params, "m.value", c.op, c.value)
        # NaN is stored as 0 with a flag: it fails every comparison except "!=".
        if c.op == "!=":
            value = f"({value} OR {tracking_search._flag(params.dialect, 'm.is_nan', True)})"
        else:
            value = f"{value} AND {tracking_search._flag(params.dialect, 'm.is_nan', False)}"
    sql = (
        "EXISTS (SELECT 1 FROM logged_model_metrics m WHERE m.model_id = logged_models.model_id"
        f" AND m.key = {key} AND {value}"
    )
    if datasets:
        sql += " AND " + _dataset_condition(params, "m", datasets)
    return sql + ")"


def _order_terms(
    params: tracking_search._Params, keys: Sequence[_OrderKey]
) -> tuple[list[str], list[str]]:
    """(LEFT JOINs, ORDER BY terms) for the requested keys plus MLflow's tie-breakers."""
    joins: list[str] = []
    terms: list[str] = []
    for n, key in enumerate(keys, start=1):
        direction = "ASC" if key.ascending else "DESC"
        if key.column:
            if key.column in _NULLABLE_COLUMNS:
                terms.append(f"CASE WHEN {_column_sql(key.column)} IS NULL THEN 1 ELSE 0 END")
            column = _status_rank() if key.column == "status" else _column_sql(key.column)
            terms.append(f"{column} {direction}")
            continue
        alias = f"o{n}"
        where = [f"key = {params.add(key.metric)}"]
        if key.dataset_name:
            where.append(f"dataset_name = {params.add(key.dataset_name)}")
        if key.dataset_digest:
            where.append(f"dataset_digest = {params.add(key.dataset_digest)}")
        joins.append(
            f"LEFT JOIN (SELECT model_id, value, is_nan, ROW_NUMBER() OVER (PARTITION BY"
            " model_id ORDER BY timestamp DESC, step DESC, run_id ASC) AS row_num"
            f" FROM logged_model_metrics WHERE {' AND '.join(where)}) {alias}"
            f" ON {alias}.model_id = logged_models.model_id AND {alias}.row_num = 1"
        )
        # Numbers, then NaN, then models without the metric, whatever the direction.
        nan = tracking_search._flag(params.dialect, f"{alias}.is_nan", True)
        terms.append(
            f"CASE WHEN {alias}.model_id IS NULL THEN 2 WHEN {nan} THEN 1 ELSE 0 END"
        )
        terms.append(f"{alias}.value {direction}")
    if not any(k.column == "creation_timestamp_ms" for k in keys):
        terms.append("logged_models.creation_timestamp_ms DESC")
    if not any(k.column == "model_id" for k in keys):
        terms.append("logged_models.model_id ASC")
    return joins, terms


def build_search_logged_models_sql(
    dialect: Dialect,
    experiment_ids: Sequence[int],
    filter_string: str | None,
    datasets: Sequence[Mapping[str, object]] | None,
    order_by: Sequence[Mapping[str, object]] | None,
    max_results: int,
    offset: int,
    visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """SQL and parameters selecting ``logged_models.model_id`` for one page of
    search_logged_models.

    Returns up to ``max_results + 1`` ids starting at ``offset`` (the extra one tells the
    caller there is a next page), from the non-deleted models of ``experiment_ids``.
    ``datasets`` entries have ``dataset_name`` and an optional ``dataset_digest``;
    ``order_by`` entries have ``field_name``, ``ascending`` (default true) and optional
    ``dataset_name`` / ``dataset_digest`` for metrics. Default order is
    ``creation_timestamp DESC, model_id ASC``. Raises ``InvalidArgument`` with MLflow's
    messages for a bad filter, dataset or order_by.
    """
    dataset_filters = _datasets(datasets)
    comparisons = parse_filter(filter_string)
    order_keys = _order_keys(order_by)
    tracking_search._check_page(max_results, offset)

    params = tracking_search._Params(dialect)
    joins, order_terms = _order_terms(params, order_keys)
    where: list[str] = []
    if experiment_ids:
        where.append(f"logged_models.experiment_id IN {params.add_list(list(experiment_ids))}")
    else:
        where.append("1 = 0")
    where.append(f"logged_models.lifecycle_stage != {params.add('deleted')}")
    where.extend(_condition(params, c, dataset_filters) for c in comparisons)
    if visibility is not None:  # only models of experiments the caller may read
        where.append("logged_models.experiment_id IN ("
                     f"{visible_experiment_ids(visibility, params.add, dialect)})")
    if dataset_filters and not any(c.entity == "metric" for c in comparisons):
        where.append(
            "EXISTS (SELECT 1 FROM logged_model_metrics d"
            " WHERE d.model_id = logged_models.model_id"
            f" AND {_dataset_condition(params, 'd', dataset_filters)})"
        )
    sql = " ".join(
        [
            "SELECT logged_models.model_id FROM logged_models",
            *joins,
            "WHERE " + " AND ".join(where),
            "ORDER BY " + ", ".join(order_terms),
            f"LIMIT {params.add(max_results + 1)} OFFSET {params.add(offset)}",
        ]
    )
    return sql, params.values


# --------------------------------------------------------------------------- page tokens


def _token_fields(
    experiment_ids: Sequence[int],
    filter_string: str | None,
    order_by: Sequence[Mapping[str, object]] | None,
) -> tuple[list[str], str | None, list[dict[str, object]] | None]:
    return (
        [str(e) for e in experiment_ids],
        filter_string or None,
        normalize_order_by(order_by) or None,
    )


def encode_page_token(
    offset: int,
    experiment_ids: Sequence[int],
    filter_string: str | None,
    order_by: Sequence[Mapping[str, object]] | None,
) -> str:
    """The token for the page starting at ``offset``, as MLflow writes it: base64 of
    ``{"experiment_ids": [...], "filter_string": ..., "order_by": [...], "offset": N}``
    (ids as strings, an empty filter or order_by as ``null``)."""
    ids, filter_value, order_value = _token_fields(experiment_ids, filter_string, order_by)
    payload = {
        "experiment_ids": ids,
        "filter_string": filter_value,
        "order_by": order_value,
        "offset": offset,
    }
    return base64.b64encode(json.dumps(payload).encode("utf-8")).decode("utf-8")


def decode_page_token(
    token: str | None,
    experiment_ids: Sequence[int],
    filter_string: str | None,
    order_by: Sequence[Mapping[str, object]] | None,
) -> int:
    """The offset in ``token``, 0 when there is none.

    Raises ``InvalidArgument`` for a token that does not decode, or, with MLflow's
    messages, one whose experiment ids, filter or order_by differ from the request's.
    """
    if not token:
        return 0
    try:
        parsed = json.loads(base64.b64decode(token.encode("utf-8")).decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidArgument(f"Invalid page token: {token}. {exc}") from exc
    if not isinstance(parsed, dict):
        _fail(f"Invalid page token: {token}. Expected a JSON object, got {parsed!r}")

    ids, filter_value, order_value = _token_fields(experiment_ids, filter_string, order_by)
    found_ids = parsed.get("experiment_ids")
    if found_ids != ids:
        _fail(
            "Experiment IDs in the page token do not match the requested experiment IDs. "
            f"Expected: {ids}. Found: {found_ids}"
        )
    found_filter = parsed.get("filter_string") or None
    if found_filter != filter_value:
        _fail(
            "Filter string in the page token does not match the requested filter string. "
            f"Expected: {filter_value}. Found: {found_filter}"
        )
    found_order = parsed.get("order_by") or None
    if found_order != order_value:
        _fail(
            "Order by in the page token does not match the requested order by. "
            f"Expected: {order_value}. Found: {found_order}"
        )
    offset = parsed.get("offset") or 0
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= INT64_MAX:
        _fail(f"Invalid page token, parsed value={parsed!r}")
    return offset
