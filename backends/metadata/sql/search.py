"""MLflow's search grammar for runs and experiments: filters, order_by and page tokens.

Pure parsing, no I/O and no SQL; :mod:`backends.metadata.sql.tracking_search` compiles the result.
Input that MLflow rejects raises :class:`backends.errors.InvalidArgument` with MLflow's
message (mlflow ``utils/search_utils.py`` and ``store/tracking/sqlalchemy_store.py``).

A filter is a conjunction of comparisons joined by ``AND``::

    metrics.acc > 0.9 AND params.model = 'cnn' AND tags.`mlflow.user` LIKE 'a%'
    attributes.run_id IN ('a1', 'b2') AND datasets.context = 'train' AND tags.x IS NULL

Identifiers are ``<entity>.<key>`` (or a bare attribute); the key may be quoted with
backticks or double quotes. Strings are quoted with ``'`` or ``"``; their text is kept as
written, as MLflow does (``'it''s'`` stays ``it''s``). Numbers are bare. Keywords and
operators are case-insensitive.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from backends.errors import InvalidArgument
from backends.metadata.interface.validation import INT64_MAX, INT64_MIN, int64

__all__ = [
    "MAX_CLAUSES",
    "MAX_ORDER_KEYS",
    "Comparison",
    "OrderKey",
    "Value",
    "check_order_count",
    "decode_page_token",
    "encode_page_token",
    "parse_experiment_filter",
    "parse_experiment_order_by",
    "parse_run_filter",
    "parse_run_order_by",
]

Value = str | int | float | tuple[str, ...] | tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """One ``entity.key op value`` clause.

    ``entity`` is ``metric``, ``param``, ``tag``, ``attribute`` or ``dataset`` (runs) and
    ``attribute`` or ``tag`` (experiments). Attribute keys are canonical (``run_name`` for
    ``"run name"``, ``start_time`` for ``created``). ``op`` is upper case: ``= != < <= > >=
    LIKE ILIKE IN NOT IN IS NULL IS NOT NULL``. ``value`` is a float for metrics, an int or
    float for numeric attributes, a tuple for ``IN``/``NOT IN``, ``None`` for ``IS [NOT]
    NULL``, otherwise a string; experiment ids are ints.
    """

    entity: str
    key: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One order_by field; same ``entity`` names and canonical keys as :class:`Comparison`."""

    entity: str
    key: str
    ascending: bool


def _fail(message: str) -> NoReturn:
    raise InvalidArgument(message)


def _set_repr(items: Iterable[str]) -> str:
    # MLflow prints Python sets, whose order changes between processes; sorted is stable.
    return "{" + ", ".join(repr(item) for item in sorted(items)) + "}"


# --------------------------------------------------------------------------- tokens

_STRING = r"'(?:''|\\.|[^'\\])*'"
_DQUOTED = r'"(?:""|\\.|[^"\\])*"'
_BACKTICKED = r"`[^`]*`"
_IDENT = (
    rf"(?:[^\W\d]\w*|{_BACKTICKED}|{_DQUOTED})"
    rf"(?:\.(?:\w+|{_BACKTICKED}|{_DQUOTED}|{_STRING}))*"
)
_SCANNER = re.compile(
    rf"(?P<ws>\s+)"
    rf"|(?P<string>{_STRING})"
    rf"|(?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.]))"
    rf"|(?P<ident>{_IDENT})"
    rf"|(?P<op>[<>=~!]+)"
)
_OTHER = re.compile(r"\w+|.", re.DOTALL)
_BARE_WORD = re.compile(r"[^\W\d]\w*")
_INTEGER = re.compile(r"-?\d+")
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL"})
_WORD_OPERATORS = frozenset({"LIKE", "ILIKE", "RLIKE", "REGEXP"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ident | string | number | paren | op | keyword | other
    text: str  # as written
    word: str = ""  # upper-case, single-spaced form of an op or keyword


_OPERANDS = frozenset({"ident", "string", "number", "paren"})
_QUOTES = frozenset("'\"`")


def _closing_paren(text: str, start: int) -> int:
    """Index just past the ``)`` matching ``text[start] == "("``, or -1 if unbalanced."""
    depth, pos = 0, start
    while pos < len(text):
        char = text[pos]
        if char in _QUOTES:
            end = text.find(char, pos + 1)
            if end < 0:
                return -1
            pos = end + 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return -1


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "(":
            end = _closing_paren(text, pos)
            if end < 0:
                # An unbalanced "(" fails the filter anyway. Taking the rest of the text as
                # one invalid token keeps the scan linear: retrying from every later "(" or
                # quote would be quadratic in the length of a hostile filter.
                tokens.append(_Token("other", text[pos:]))
                break
            tokens.append(_Token("paren", text[pos:end]))
            pos = end
            continue
        match = _SCANNER.match(text, pos)
        if match is None or match.lastgroup is None:
            if char in _QUOTES:  # an unterminated quote; see above
                tokens.append(_Token("other", text[pos:]))
                break
            # Unknown text (``0x10``, ``;``) is reported as an invalid clause.
            other = _OTHER.match(text, pos)
            end = other.end() if other else pos + 1
            tokens.append(_Token("other", text[pos:end]))
            pos = end
            continue
        kind, raw = match.lastgroup, match.group()
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "op":
            tokens.append(_Token("op", raw, raw))
        elif kind == "ident" and _BARE_WORD.fullmatch(raw) and raw.upper() in _KEYWORDS:
            tokens.append(_Token("keyword", raw, raw.upper()))
        elif kind == "ident" and _BARE_WORD.fullmatch(raw) and raw.upper() in _WORD_OPERATORS:
            tokens.append(_Token("op", raw, raw.upper()))
        else:
            tokens.append(_Token(kind, raw))
    return _merge_not(tokens)


def _merge_not(tokens: list[_Token]) -> list[_Token]:
    """Fold ``NOT LIKE`` (and friends) into one operator and ``NOT NULL`` into one keyword."""
    merged: list[_Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.word == "NOT" and nxt is not None:
            text = f"{token.text} {nxt.text}"
            if nxt.kind == "op" and nxt.word in _WORD_OPERATORS:
                merged.append(_Token("op", text, f"NOT {nxt.word}"))
                i += 2
                continue
            if nxt.word == "NULL":
                merged.append(_Token("keyword", text, "NOT NULL"))
                i += 2
                continue
        merged.append(token)
        i += 1
    return merged


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True)
class _RawComparison:
    left: _Token
    op: str
    right: _Token | None


def _match_comparison(tokens: Sequence[_Token], i: int) -> tuple[_RawComparison, int] | None:
    def at(k: int) -> _Token | None:
        return tokens[k] if k < len(tokens) else None

    first, second, third, fourth = at(i), at(i + 1), at(i + 2), at(i + 3)
    if first is None or first.kind not in _OPERANDS or second is None:
        return None
    if second.kind == "op":
        if third is not None and third.kind in _OPERANDS:
            return _RawComparison(first, second.word, third), i + 3
        return None
    if first.kind != "ident" or third is None:
        return None
    if second.word == "IS" and third.word in ("NULL", "NOT NULL"):
        return _RawComparison(first, f"IS {third.word}", None), i + 3
    if second.word == "IN" and third.kind == "paren":
        return _RawComparison(first, "IN", third), i + 3
    if second.word == "NOT" and third.word == "IN" and fourth is not None and fourth.kind == "paren":
        return _RawComparison(first, "NOT IN", fourth), i + 4
    return None


# Bounds stock has not: each clause is a join or a subquery, and on PostgreSQL 200 tag
# clauses took 24 s to plan and run, 300 held a connection until the 60 s command timeout;
# 1,000 sort keys overflowed its limits (a 500). The UI and scripts use a handful.
MAX_CLAUSES = 50
MAX_ORDER_KEYS = 20


def check_order_count(order_by: Sequence[object] | None) -> None:
    if order_by is not None and len(order_by) > MAX_ORDER_KEYS:
        _fail(f"`order_by` has {len(order_by)} fields; at most {MAX_ORDER_KEYS} are allowed.")


def _split_clauses(filter_string: str, quote_invalid: bool) -> list[_RawComparison]:
    tokens = _tokenize(filter_string)
    if not tokens:
        _fail(f"Invalid filter '{filter_string}'. Could not be parsed.")
    semicolons = [k for k, t in enumerate(tokens) if t.text == ";"]
    if semicolons and semicolons[0] < len(tokens) - 1:
        _fail(
            f"Search filter contained multiple expression {filter_string!r}. "
            "Provide AND-ed expression list."
        )
    clauses: list[_RawComparison] = []
    invalid: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i].word == "AND":  # stray or repeated ANDs are accepted, as MLflow does
            i += 1
            continue
        found = _match_comparison(tokens, i)
        if found is None:
            invalid.append(tokens[i].text)
            i += 1
            continue
        clause, i = found
        clauses.append(clause)
    if invalid:
        shown = ", ".join(f"'{t}'" if quote_invalid else t for t in invalid)
        _fail(f"Invalid clause(s) in filter string: {shown}")
    if len(clauses) > MAX_CLAUSES:
        _fail(f"Search filter has {len(clauses)} clauses; at most {MAX_CLAUSES} are allowed.")
    for clause in clauses:
        if clause.left.kind != "ident":
            _fail(f"Invalid comparison clause. Expected 'Identifier' found '{clause.left.text}'")
    return clauses


def _is_quoted(text: str, quote: str) -> bool:
    return len(text) >= 2 and text.startswith(quote) and text.endswith(quote)


def _trim_backticks(text: str) -> str:
    return text[1:-1] if _is_quoted(text, "`") else text


def _strip_quotes(text: str, expect_quoted: bool = False) -> str:
    if _is_quoted(text, "'") or _is_quoted(text, '"'):
        return text[1:-1]
    if expect_quoted:
        _fail(
            "Parameter value is either not quoted or unidentified quote types used for "
            f"string value {text}. Use either single or double quotes."
        )
    return text


def _quoted_string(token: _Token) -> str | None:
    """The text of a quoted value; ``None`` if the token is no string at all."""
    if token.kind in ("string", "ident"):
        return _strip_quotes(token.text, expect_quoted=True)
    return None


def _string_list(token: _Token) -> tuple[str, ...]:
    try:
        parsed = ast.literal_eval(token.text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise InvalidArgument(
            "While parsing a list in the query, expected a non-empty list of string values, "
            "but got ill-formed list."
        ) from exc
    items = parsed if isinstance(parsed, tuple) else (parsed,)
    if not items:
        _fail(
            "While parsing a list in the query, expected a non-empty list of string values, "
            "but got empty list"
        )
    if not all(isinstance(item, str) for item in items):
        _fail(
            "While parsing a list in the query, expected string value, punctuation, or "
            f"whitespace, but got different type in list: {items}"
        )
    return tuple(str(item) for item in items)


_Number = TypeVar("_Number", int, float)

# Longer integer literals are read as floats (int() refuses more than 4,300 digits).
_MAX_INT_DIGITS = 40


def _number(token: _Token) -> int | float | None:
    if token.kind != "number":
        return None
    if _INTEGER.fullmatch(token.text) and len(token.text) <= _MAX_INT_DIGITS:
        return int(token.text)
    return float(token.text)


def _int_column_value(key: str, number: _Number) -> _Number:
    """``number`` to compare with the 64-bit integer column ``key``: an integer it cannot
    hold is refused (SQLite would overflow, PostgreSQL refuse it); a float compares as is."""
    if isinstance(number, int) and not INT64_MIN <= number <= INT64_MAX:
        _fail(f"Invalid value for numeric attribute '{key}': {number}. "
              "It must be a 64-bit integer.")
    return number


# --------------------------------------------------------------------------- runs

_RUN_ENTITIES = ["metric", "parameter", "tag", "attribute", "dataset"]
_RUN_ENTITY_ALIASES = {
    "metric": "metric",
    "metrics": "metric",
    "parameter": "param",
    "parameters": "param",
    "param": "param",
    "params": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
# MLflow says "parameter" where we say "param".
_MLFLOW_ENTITY_NAME = {"param": "parameter"}
_KEY_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}
_RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "created", "Created"})
_RUN_ORDERABLE_ATTRIBUTES = frozenset(
    {"run_id", "run_name", "status", "user_id", "artifact_uri", "start_time", "end_time"}
    | {"created", "Created"}
)
_RUN_SEARCHABLE_ATTRIBUTES = _RUN_ORDERABLE_ATTRIBUTES | {"run name", "Run name", "Run Name"}
_DATASET_KEYS = frozenset({"name", "digest", "context"})

_NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_KEY_VALUE_OPS = frozenset({"=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"})
_STRING_ATTRIBUTE_OPS = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
_LIST_OPS = frozenset({"IN", "NOT IN"})


def _run_identifier(identifier: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
    """(entity, key as written) of ``entity.key`` or a bare attribute."""
    if "." in identifier:
        entity_text, key = identifier.split(".", 1)
    else:
        entity_text, key = "attribute", identifier
    entity_text = _trim_backticks(entity_text)
    entity = _RUN_ENTITY_ALIASES.get(entity_text)
    if entity is None:
        _fail(f"Invalid entity type '{entity_text}'. Valid values are {_RUN_ENTITIES}")
    key = _trim_backticks(_strip_quotes(key))
    if entity == "attribute" and key not in valid_attributes:
        _fail(
            f"Invalid attribute key '{key}' specified. "
            f"Valid keys are '{_set_repr(valid_attributes)}'"
        )
    if entity == "dataset" and key not in _DATASET_KEYS:
        _fail(f"Invalid dataset key '{key}' specified. Valid keys are '{_set_repr(_DATASET_KEYS)}'")
    return entity, key


def _run_value(entity: str, key: str, token: _Token) -> Value:
    if entity == "metric":
        number = _number(token)
        if number is None:
            _fail(f"Expected numeric value type for metric. Found {token.text}")
        return float(number)
    if entity in ("param", "tag"):
        text = _quoted_string(token)
        if text is None:
            _fail(
                f"Expected a quoted string value for {_MLFLOW_ENTITY_NAME.get(entity, entity)} "
                f"(e.g. 'my-value'). Got value {token.text}"
            )
        return text
    if entity == "attribute":
        if key in _RUN_NUMERIC_ATTRIBUTES:
            number = _number(token)
            if number is None:
                _fail(
                    f"Expected numeric value type for numeric attribute: {key}. "
                    f"Found {token.text}"
                )
            return _int_column_value(key, number)
        text = _quoted_string(token)
        if text is not None:
            return text
        if token.kind == "paren":
            if key != "run_id":
                _fail(
                    "Only ['run_id'] attributes support comparison with a list of quoted "
                    "string values."
                )
            return _string_list(token)
        _fail(f"Expected a quoted string value for attributes. Got value {token.text}")
    # dataset
    text = _quoted_string(token)
    if text is not None:
        return text
    if token.kind == "paren":
        return _string_list(token)
    _fail(f"Expected a quoted string value for dataset attributes. Got value {token.text}")


def _check_run_operator(comparison: Comparison) -> None:
    entity, op = comparison.entity, comparison.op
    # The odd quoting below is MLflow's, kept so clients see the same text.
    if entity == "metric" and op not in _NUMERIC_OPS:
        _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_NUMERIC_OPS)}")
    if entity == "param" and op not in _KEY_VALUE_OPS:
        _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_KEY_VALUE_OPS)}'")
    if entity == "tag" and op not in _KEY_VALUE_OPS:
        _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_KEY_VALUE_OPS)}")
    if entity == "dataset" and op not in _STRING_ATTRIBUTE_OPS:
        _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_STRING_ATTRIBUTE_OPS)}")
    if entity == "attribute":
        if comparison.key in ("start_time", "end_time"):
            if op not in _NUMERIC_OPS:
                _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_STRING_ATTRIBUTE_OPS)}")
        elif op not in _STRING_ATTRIBUTE_OPS:
            _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_STRING_ATTRIBUTE_OPS)}'")
    _check_list_operator(comparison)


def _check_list_operator(comparison: Comparison) -> None:
    # MLflow lets ``run_id = ('a', 'b')`` through to the database, which then fails.
    if isinstance(comparison.value, tuple) and comparison.op not in _LIST_OPS:
        _fail(f"Invalid comparator '{comparison.op}' for a list of values. Use IN or NOT IN.")


def parse_run_filter(filter_string: str | None) -> list[Comparison]:
    """Parse a search_runs filter; an empty or missing filter matches every run.

    Raises ``InvalidArgument`` with MLflow's message for anything MLflow rejects: a clause
    that is not a comparison (``OR``, parentheses), an unknown entity or attribute, a value
    of the wrong type, an operator the entity does not support, a list outside ``run_id``
    and ``datasets.*``.
    """
    if not filter_string:
        return []
    parsed: list[Comparison] = []
    for clause in _split_clauses(filter_string, quote_invalid=True):
        entity, key = _run_identifier(clause.left.text, _RUN_SEARCHABLE_ATTRIBUTES)
        if clause.right is None:
            if entity not in ("tag", "param"):
                _fail(
                    "IS NULL / IS NOT NULL is only supported for tags and params, "
                    f"not for '{entity}' '{key}'"
                )
            value: Value = None
        else:
            value = _run_value(entity, key, clause.right)
        if entity == "attribute":
            key = _KEY_ALIASES.get(key, key)
        parsed.append(Comparison(entity, key, clause.op, value))
    # MLflow checks operators only when it builds the query, after parsing every clause.
    for comparison in parsed:
        _check_run_operator(comparison)
    return parsed


# --------------------------------------------------------------------------- order_by

_ORDER_DIRECTIONS = {"asc": True, "desc": False}


def _order_field(order_by: str) -> tuple[str, bool]:
    """Split ``field [ASC|DESC]`` into the unquoted field and the direction."""
    tokens = _tokenize(order_by)
    if not 1 <= len(tokens) <= 2 or tokens[0].kind != "ident":
        _fail(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    if len(tokens) == 1:
        return tokens[0].text, True
    direction = tokens[1]
    if direction.kind != "ident" or not _BARE_WORD.fullmatch(direction.text):
        _fail(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    if direction.text.lower() not in _ORDER_DIRECTIONS:
        _fail(f"Invalid ordering key in order_by clause '{order_by}'.")
    # With a direction, MLflow unquotes the whole field with shlex (backticks read as double
    # quotes), so ``"metrics".acc DESC`` names metric ``acc``; without one it does not.
    try:
        words = shlex.split(tokens[0].text.replace("`", '"'))
    except ValueError as exc:
        raise InvalidArgument(f"Invalid order_by clause '{order_by}'. Could not be parsed.") from exc
    if len(words) != 1:
        _fail(f"Invalid ordering key in order_by clause '{order_by}'.")
    return words[0], _ORDER_DIRECTIONS[direction.text.lower()]


def parse_run_order_by(order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse search_runs ``order_by`` fields (``metrics.k``, ``params.k``, ``tags.k``,
    ``attributes.a`` or bare ``a``, each with optional ``ASC``/``DESC``).

    Returns only what was asked for; the SQL adds MLflow's tie-breakers. Raises
    ``InvalidArgument`` for a malformed field, an unorderable attribute, ``datasets.*``,
    or the same field twice.
    """
    check_order_count(order_by)
    keys: list[OrderKey] = []
    seen: set[tuple[str, str]] = set()
    for clause in order_by or ():
        field, ascending = _order_field(clause)
        entity, key = _run_identifier(field, _RUN_ORDERABLE_ATTRIBUTES)
        if entity == "dataset":
            _fail("Invalid identifier type 'dataset'")
        if entity == "attribute":
            key = _KEY_ALIASES.get(key, key)
        if (entity, key) in seen:
            # MLflow raises this as INTERNAL_ERROR (500); it is the caller's mistake.
            _fail(f"`order_by` contains duplicate fields: {list(order_by or ())}")
        seen.add((entity, key))
        keys.append(OrderKey(entity, key, ascending))
    return keys


# --------------------------------------------------------------------------- experiments

_EXPERIMENT_ENTITIES = ("attribute", "tag", "tags")
_EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id", "creation_time", "last_update_time"})
_EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
_EXPERIMENT_TAG_OPS = frozenset({"=", "!=", "LIKE", "ILIKE"})


def _experiment_identifier(identifier: str) -> tuple[str, str]:
    if "." in identifier:
        entity_text, key = identifier.split(".", 1)
        if entity_text not in _EXPERIMENT_ENTITIES:
            _fail(
                f"Invalid entity type '{entity_text}'. "
                f"Valid entity types are {_EXPERIMENT_ENTITIES}"
            )
        entity = "attribute" if entity_text == "attribute" else "tag"
    else:
        entity, key = "attribute", identifier
    key = _trim_backticks(_strip_quotes(key))
    if entity == "attribute" and key not in _EXPERIMENT_ATTRIBUTES:
        _fail(
            f"Invalid attribute key '{key}' specified. "
            f"Valid keys are '{_set_repr(_EXPERIMENT_ATTRIBUTES)}'"
        )
    return entity, key


def _experiment_value(entity: str, key: str, token: _Token) -> Value:
    if entity == "tag":
        text = _quoted_string(token)
        if text is None:
            _fail(f"Expected a quoted string value for tag (e.g. 'my-value'). Got value {token.text}")
        return text
    if key in _EXPERIMENT_NUMERIC_ATTRIBUTES:
        number = _number(token)
        if number is None:
            _fail(f"Expected numeric value type for numeric attribute: {key}. Found {token.text}")
        return _int_column_value(key, number)
    text = _quoted_string(token)
    if text is not None:
        return text
    if token.kind == "paren":
        if key != "experiment_id":
            _fail(
                "Only ['experiment_id'] attributes support comparison with a list of quoted "
                "string values."
            )
        return _string_list(token)
    _fail(f"Expected a quoted string value for attributes. Got value {token.text}")


def _experiment_id(text: str) -> int:
    try:
        return int64(text)
    except ValueError as exc:
        raise InvalidArgument(
            f"Invalid experiment ID '{text}'. Experiment ID must be a valid integer."
        ) from exc


def _check_experiment_comparison(comparison: Comparison) -> Comparison:
    """Validate the operator and coerce the value, as MLflow does when building SQL."""
    op, key, value = comparison.op, comparison.key, comparison.value
    if comparison.entity == "tag":
        if op not in _EXPERIMENT_TAG_OPS | {"IS NULL", "IS NOT NULL"}:
            _fail(f"Invalid comparator for tag: {op}")
        return comparison
    if key == "experiment_id":
        if op not in ("=", "!=", "IN", "NOT IN"):
            _fail(f"Invalid comparator for experiment_id: {op}")
        _check_list_operator(comparison)
        if isinstance(value, tuple):
            ids = tuple(_experiment_id(str(item)) for item in value)
            return Comparison("attribute", key, op, ids)
        return Comparison("attribute", key, op, _experiment_id(str(value)))
    if key in _EXPERIMENT_NUMERIC_ATTRIBUTES:
        if op not in _NUMERIC_OPS:
            _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_STRING_ATTRIBUTE_OPS)}")
        if isinstance(value, float):
            _fail(f"Invalid value for numeric attribute '{key}': {str(value)!r}")
        return comparison
    if op not in _STRING_ATTRIBUTE_OPS:
        _fail(f"Invalid comparator '{op}' not one of '{_set_repr(_STRING_ATTRIBUTE_OPS)}'")
    if op not in _EXPERIMENT_TAG_OPS:
        _fail(f"Invalid comparator for string attribute: {op}")
    return comparison


def parse_experiment_filter(filter_string: str | None) -> list[Comparison]:
    """Parse a search_experiments filter over ``name``, ``experiment_id``,
    ``creation_time``, ``last_update_time`` and ``tags.<key>``.

    ``experiment_id`` values become ints; the times take integers only. Raises
    ``InvalidArgument`` with MLflow's message for anything MLflow rejects.
    """
    if not filter_string:
        return []
    parsed: list[Comparison] = []
    for clause in _split_clauses(filter_string, quote_invalid=False):
        entity, key = _experiment_identifier(clause.left.text)
        if clause.right is None:
            if entity != "tag":
                _fail(
                    "IS NULL / IS NOT NULL is only supported for tags, "
                    f"not for attribute '{key}'"
                )
            value: Value = None
        else:
            value = _experiment_value(entity, key, clause.right)
        parsed.append(Comparison(entity, key, clause.op, value))
    return [_check_experiment_comparison(comparison) for comparison in parsed]


def parse_experiment_order_by(order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse search_experiments ``order_by`` fields (``name``, ``experiment_id``,
    ``creation_time``, ``last_update_time``, with optional ``ASC``/``DESC``).

    Returns only what was asked for; the SQL adds the default order and the tie-breaker.
    Raises ``InvalidArgument`` for a malformed field, an unknown attribute or a tag.
    """
    keys: list[OrderKey] = []
    for clause in order_by or ():
        field, ascending = _order_field(clause)
        entity, key = _experiment_identifier(field)
        if entity != "attribute":
            _fail(f"Invalid order_by entity: {entity}")
        keys.append(OrderKey(entity, key, ascending))
    return keys


# --------------------------------------------------------------------------- page tokens


def encode_page_token(offset: int) -> str:
    """MLflow's token for the page starting at ``offset``: base64 of ``{"offset": N}``."""
    return base64.b64encode(json.dumps({"offset": offset}).encode("utf-8")).decode("ascii")


def decode_page_token(token: str | None) -> int:
    """The offset in a token from :func:`encode_page_token`; 0 for no token.

    Raises ``InvalidArgument`` with MLflow's messages for a token that is not base64, not
    JSON, has no positive ``offset``, or an offset that is not an integer.
    """
    if not token:
        return 0
    try:
        decoded = base64.b64decode(token)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument("Invalid page token, could not base64-decode") from exc
    try:
        parsed = json.loads(decoded)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"Invalid page token, decoded value={decoded!r}") from exc
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if not offset:
        _fail(f"Invalid page token, parsed value={parsed!r}")
    try:
        number = int(offset)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: inf
        raise InvalidArgument(f"Invalid page token, not stringable {offset}") from exc
    if not 0 <= number <= INT64_MAX:
        _fail(f"Invalid page token, parsed value={parsed!r}")
    return number
