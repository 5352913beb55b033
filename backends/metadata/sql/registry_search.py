"""MLflow's search grammar for the model registry, compiled to SQL.

``search_registered_models`` filters on ``name`` (``= != LIKE ILIKE IN NOT IN``) and
``tags.<key>`` (``= != LIKE ILIKE``), ordered by ``name``, ``timestamp`` or
``last_updated_timestamp`` (both last-updated, as in stock) with ``name ASC`` as tie-breaker.
``search_model_versions`` filters on ``name`` and ``run_id`` (string ops, lists too),
``source_path`` (string ops), ``version_number`` (numeric, integers only) and ``tags.<key>``;
order keys ``name``, ``version_number``, ``creation_timestamp``, ``last_updated_timestamp``,
default ``last_updated_timestamp DESC, name ASC, version_number DESC``.

Prompts (registered models, or versions, tagged ``mlflow.prompt.is_prompt = 'true'``) are left
out unless the filter asks for them with ``tags.`mlflow.prompt.is_prompt` = 'true'``
(mlflow ``store/model_registry/sqlalchemy_store.py``). The SQL uses ``?`` placeholders and
nothing dialect-specific (ILIKE is ``lower(x) LIKE lower(?)``), so SQLite and PostgreSQL run
it as is. Input that MLflow rejects raises :class:`backends.errors.InvalidArgument`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backends.errors import InvalidArgument
from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.interface.registry_entities import IS_PROMPT_TAG, STAGE_DELETED
from backends.metadata.interface.validation import int64
from backends.metadata.sql import search
from backends.metadata.sql.visibility import readable_condition

__all__ = [
    "MAX_MODEL_VERSIONS",
    "MAX_REGISTERED_MODELS",
    "build_search_model_versions_sql",
    "build_search_registered_models_sql",
]

MAX_REGISTERED_MODELS = 1000
MAX_MODEL_VERSIONS = 200_000

_TAG_OPS = frozenset({"=", "!=", "LIKE", "ILIKE"})
_STRING_OPS = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
_NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_ENTITIES = ("attribute", "tag", "tags")

_RM_ATTRIBUTES = frozenset({"name"})
_RM_ORDER = {"name": "rm.name", "timestamp": "rm.last_updated_timestamp",
             "last_updated_timestamp": "rm.last_updated_timestamp"}

_MV_ATTRIBUTES = frozenset({"name", "version_number", "run_id", "source_path"})
_MV_NUMERIC = frozenset({"version_number", "creation_timestamp", "last_updated_timestamp"})
_MV_LISTS = frozenset({"name", "run_id"})
_MV_COLUMNS = {"name": "mv.name", "version_number": "mv.version", "run_id": "mv.run_id",
               "source_path": "mv.source", "creation_timestamp": "mv.creation_timestamp",
               "last_updated_timestamp": "mv.last_updated_timestamp"}
_MV_DEFAULT_ORDER = ("last_updated_timestamp DESC", "name ASC", "version_number DESC")


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(message)


@dataclass(frozen=True, slots=True)
class _Clause:
    entity: str  # attribute | tag
    key: str
    op: str
    value: str | int | tuple[str, ...]


@dataclass
class _Sql:
    values: list[object] = field(default_factory=list)

    def add(self, value: object) -> str:
        self.values.append(value)
        return "?"

    def compare(self, column: str, op: str, value: object) -> str:
        if op in ("IN", "NOT IN"):
            assert isinstance(value, tuple)
            return f"{column} {op} (" + ", ".join(self.add(v) for v in value) + ")"
        if op == "ILIKE":
            return f"lower({column}) LIKE lower({self.add(value)})"
        return f"{column} {op} {self.add(value)}"


def _identifier(text: str, valid: frozenset[str]) -> tuple[str, str]:
    if "." in text:
        entity, key = text.split(".", 1)
        if entity not in _ENTITIES:
            raise _fail(f"Invalid entity type '{entity}'. Valid entity types are {_ENTITIES}")
        entity = "attribute" if entity == "attribute" else "tag"
    else:
        entity, key = "attribute", text
    if entity == "attribute" and key not in valid:
        raise _fail(f"Invalid attribute key '{key}' specified. "
                    f"Valid keys are '{search._set_repr(valid)}'")
    return entity, search._trim_backticks(search._strip_quotes(key))


def _parse(filter_string: str | None, valid: frozenset[str], lists: frozenset[str],
           numeric: frozenset[str]) -> list[_Clause]:
    if not filter_string:
        return []
    out: list[_Clause] = []
    for raw in search._split_clauses(filter_string, quote_invalid=False):
        entity, key = _identifier(raw.left.text, valid)
        if raw.right is None:  # IS [NOT] NULL
            raise _fail(f"Invalid comparator for {'tag' if entity == 'tag' else 'attribute'}:"
                        f" {raw.op}")
        token = raw.right
        value: str | int | tuple[str, ...]
        text = search._quoted_string(token) if token.kind in ("string", "ident") else None
        if entity == "tag":
            if text is None:
                raise _fail("Expected a quoted string value for tag (e.g. 'my-value'). "
                            f"Got value {token.text}")
            value = text
        elif text is not None:
            value = text
        elif token.kind == "paren":
            if key not in lists:
                raise _fail(f"Only {sorted(lists)} attributes support comparison with a list "
                            "of quoted string values.")
            value = search._string_list(token)
        elif token.kind == "number" and numeric:
            if key not in numeric:
                raise _fail(f"Only the '{search._set_repr(numeric)}' attributes support "
                            "comparison with numeric values.")
            number = search._number(token)
            assert number is not None
            if isinstance(number, float):
                raise _fail(f"Invalid value for numeric attribute '{key}': {number!r}")
            value = search._int_column_value(key, number)
        else:
            raise _fail("Expected a quoted string value or a list of quoted string values for "
                        f"attributes. Got value {token.text}")
        out.append(_Clause(entity, key, raw.op, value))
    return out


def _is_prompt_query(clauses: Sequence[_Clause]) -> bool:
    for c in clauses:
        if c.entity == "tag" and c.key == IS_PROMPT_TAG and isinstance(c.value, str):
            return (c.op == "=" and c.value.lower() == "true") or (
                c.op == "!=" and c.value.lower() == "false")
    return False


def _tag_conditions(sql: _Sql, clauses: Sequence[_Clause], exists_sql: str,
                    prompts: bool) -> list[str]:
    """One EXISTS per tag key; every condition on a key applies to the same tag row."""
    by_key: dict[str, list[_Clause]] = {}
    for c in clauses:
        if c.entity != "tag":
            continue
        if c.op not in _TAG_OPS:
            raise _fail(f"Invalid comparator for tag: {c.op}")
        by_key.setdefault(c.key, []).append(c)
    if not prompts:
        # Stock drops the prompt tag's own condition and anti-joins the prompts instead.
        by_key.pop(IS_PROMPT_TAG, None)
    out = []
    for key, items in by_key.items():
        parts = [f"t.key = {sql.add(key)}"]
        parts += [sql.compare("t.value", c.op, c.value) for c in items]
        out.append(f"EXISTS ({exists_sql} AND " + " AND ".join(parts) + ")")
    return out


def _order_terms(order_by: Sequence[str], valid: dict[str, str], message_keys: str,
                 *, prefixed: bool) -> tuple[list[str], set[str]]:
    terms: list[str] = []
    seen: set[str] = set()
    for clause in order_by:
        name, ascending = search._order_field(clause)
        if prefixed:
            entity, key = (name.split(".", 1) if "." in name else ("attribute", name))
            if entity not in _ENTITIES:
                raise _fail(f"Invalid entity type '{entity}'. "
                            f"Valid entity types are {_ENTITIES}")
            key = search._trim_backticks(search._strip_quotes(key))
            if entity != "attribute":
                raise _fail(f"Invalid order_by entity: {entity}")
        else:
            key = name.strip()
        if key not in valid:
            raise _fail(f"Invalid order by key '{key}' specified. Valid keys are {message_keys}")
        column = valid[key]
        if column in seen:
            raise _fail(f"`order_by` contains duplicate fields: {list(order_by)}")
        seen.add(column)
        terms.append(f"{column} {'ASC' if ascending else 'DESC'}")
    return terms, seen


def _page(sql: _Sql, max_results: int, offset: int) -> str:
    return f"LIMIT {sql.add(max_results + 1)} OFFSET {sql.add(offset)}"


def build_search_registered_models_sql(
    workspace: str, filter_string: str | None, order_by: Sequence[str] | None,
    max_results: int, offset: int, visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """SQL selecting ``name`` of up to ``max_results + 1`` registered models from ``offset``."""
    clauses = _parse(filter_string, _RM_ATTRIBUTES, frozenset({"name"}), frozenset())
    prompts = _is_prompt_query(clauses)
    sql = _Sql()
    where = [f"rm.workspace = {sql.add(workspace)}"]
    for c in clauses:
        if c.entity == "attribute":
            if c.op not in _STRING_OPS:
                raise _fail(f"Invalid comparator for attribute: {c.op}")
            where.append(sql.compare("rm.name", c.op, c.value))
    tag_rows = ("SELECT 1 FROM registered_model_tags t"
                " WHERE t.workspace = rm.workspace AND t.name = rm.name")
    where += _tag_conditions(sql, clauses, tag_rows, prompts)
    if not prompts:
        where.append(f"NOT EXISTS ({tag_rows} AND t.key = {sql.add(IS_PROMPT_TAG)}"
                     f" AND t.value = {sql.add('true')})")
    if visibility is not None:  # only models the caller may read
        where.append(readable_condition(visibility, sql.add, "registered_model",
                                        "rm.workspace", "rm.name"))
    terms, seen = _order_terms(order_by or (), _RM_ORDER, "'{'name', 'timestamp'}'",
                               prefixed=False)
    if "rm.name" not in seen:
        terms.append("rm.name ASC")
    text = (f"SELECT rm.name FROM registered_models rm WHERE {' AND '.join(where)}"
            f" ORDER BY {', '.join(terms)} {_page(sql, max_results, offset)}")
    return text, sql.values


def build_search_model_versions_sql(
    workspace: str, filter_string: str | None, order_by: Sequence[str] | None,
    max_results: int, offset: int, visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """SQL selecting ``(name, version)`` of up to ``max_results + 1`` live model versions."""
    clauses = _parse(filter_string, _MV_ATTRIBUTES, _MV_LISTS, _MV_NUMERIC)
    prompts = _is_prompt_query(clauses)
    sql = _Sql()
    where = [f"mv.workspace = {sql.add(workspace)}",
             f"mv.current_stage != {sql.add(STAGE_DELETED)}"]
    for c in clauses:
        if c.entity != "attribute":
            continue
        value = c.value
        if c.key in _MV_NUMERIC:
            if c.op not in _NUMERIC_OPS:
                raise _fail(f"Invalid comparator for attribute {c.key}: {c.op}")
            try:
                value = int64(value)  # type: ignore[arg-type]  # lists are name/run_id only
            except (TypeError, ValueError):
                raise _fail(f"Invalid value for numeric attribute '{c.key}': {value!r}") from None
        elif c.op not in _STRING_OPS or (c.op in ("IN", "NOT IN") and c.key not in _MV_LISTS):
            raise _fail(f"Invalid comparator for attribute: {c.op}")
        where.append(sql.compare(_MV_COLUMNS[c.key], c.op, value))
    tag_rows = ("SELECT 1 FROM model_version_tags t WHERE t.workspace = mv.workspace"
                " AND t.name = mv.name AND t.version = mv.version")
    where += _tag_conditions(sql, clauses, tag_rows, prompts)
    if not prompts:
        where.append("NOT EXISTS (SELECT 1 FROM model_version_tags p"
                     " WHERE p.workspace = mv.workspace AND p.name = mv.name"
                     f" AND p.key = {sql.add(IS_PROMPT_TAG)} AND p.value = {sql.add('true')})")
    if visibility is not None:  # versions of models the caller may read
        where.append(readable_condition(visibility, sql.add, "registered_model",
                                        "mv.workspace", "mv.name"))
    valid = {k: _MV_COLUMNS[k] for k in
             ("name", "version_number", "creation_timestamp", "last_updated_timestamp")}
    terms, seen = _order_terms(order_by or _MV_DEFAULT_ORDER, valid,
                               search._set_repr(valid), prefixed=True)
    if "mv.name" not in seen:
        terms.append("mv.name ASC")
    if "mv.version" not in seen:
        terms.append("mv.version DESC")
    text = (f"SELECT mv.name, mv.version FROM model_versions mv WHERE {' AND '.join(where)}"
            f" ORDER BY {', '.join(terms)} {_page(sql, max_results, offset)}")
    return text, sql.values
