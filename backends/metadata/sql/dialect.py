"""What differs between the databases the shared SQL (:mod:`backends.metadata.sql`) runs on.

Each database has one subclass, in its own module under :mod:`backends.metadata.dialects`;
the shared SQL asks the dialect and never compares names. Statements are otherwise written
once with ``?`` placeholders, which a driver that numbers them translates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from backends.metadata.sql.connection import Connection

__all__ = ["Dialect", "OnConflict", "Returning"]


class Dialect(ABC):
    """One database's SQL where it differs from the others'."""

    name: str  # a label, for messages
    # What orders a key/value table's rows as they were inserted (params and tags are
    # returned in the order they were logged, as MLflow does).
    insertion_order: str

    @abstractmethod
    def placeholder(self, n: int) -> str:
        """The placeholder for the ``n``-th (1-based) parameter of a compiled search."""

    def parameter(self, n: int, value: object) -> str:
        """The placeholder for the ``n``-th parameter, bound to ``value``: where the driver
        cannot infer its type from the column, say it."""
        return self.placeholder(n)

    def among(self, values: Sequence[str]) -> tuple[str, Sequence[object]]:
        """``(condition, parameters)`` for "the column is one of ``values``", to follow a
        column name: ``IN (?, ...)`` by default."""
        return f"IN ({', '.join('?' * len(values))})", values

    @abstractmethod
    def ilike(self, column: str, placeholder: str) -> str:
        """A case-insensitive LIKE."""

    @abstractmethod
    def nulls_as_smallest(self, ascending: bool) -> str:
        """Suffix for an ORDER BY term so that NULLs sort as the smallest values."""

    def cast_text(self, expr: str) -> str:
        """``expr`` (an integer column, such as an id) as a string, to compare with a text
        column or pattern: ``CAST(expr AS TEXT)`` by default."""
        return f"CAST({expr} AS TEXT)"

    def cast_int(self, expr: str) -> str:
        """``expr`` (a 0/1 INTEGER or a BOOLEAN column) as an integer, to compare with 0
        or 1: ``CAST(expr AS INTEGER)`` by default."""
        return f"CAST({expr} AS INTEGER)"

    def unindexed(self, column: str) -> str:
        """``column`` in a form the planner will not start a search from (for a planner
        that would pick a bad index for lack of value statistics)."""
        return column

    def series_of_run(self, alias: str) -> str:
        """The table reference for ``metric_series`` joined to a run by (run_id, key)."""
        return f"metric_series {alias}"

    @abstractmethod
    def delete_first_points(self, first_points: str) -> str:
        """A DELETE of the metric points that ``SELECT <columns> {first_points}`` finds
        (``first_points`` is the query from its FROM on, with ``?`` for a series id and a
        row limit): what a purge removes in one step."""

    @abstractmethod
    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str],
               update: Sequence[str], *, when: str = "") -> str:
        """An INSERT of one row of ``columns`` (``?`` each) into ``table`` that, when a row
        with the same ``key`` exists, sets that row's ``update`` columns to the new values
        instead; with ``when``, only if that condition holds. ``when`` names the new row
        ``{new}`` and the stored one ``{old}``: ``"{new}.step > {old}.step"``."""

    @abstractmethod
    def insert_ignore(self, table: str, columns: Sequence[str],
                      key: Sequence[str] = ()) -> str:
        """An INSERT of one row of ``columns`` that does nothing when the row would violate
        ``key`` (any unique constraint if ``key`` is empty). Its rowcount is 1 when it
        inserted and 0 when it did nothing: callers tell a taken name by it."""

    @abstractmethod
    async def insert_returning(self, db: Connection, sql: str, params: Sequence[Any],
                               column: str) -> Any:
        """Run the one-row INSERT ``sql`` and return its ``column`` (a generated id)."""

    @abstractmethod
    async def delete_returning(self, db: Connection, table: str, where: str,
                               params: Sequence[Any], column: str) -> list[Any]:
        """Delete the rows of ``table`` that ``where`` selects and return their ``column``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class OnConflict(Dialect):
    """Upserts as PostgreSQL's ``INSERT ... ON CONFLICT`` (SQLite has it since 3.24)."""

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str],
               update: Sequence[str], *, when: str = "") -> str:
        sets = ", ".join(f"{c} = excluded.{c}" for c in update)
        where = " WHERE " + when.format(new="excluded", old=table) if when else ""
        return (f"{_insert(table, columns)} ON CONFLICT ({', '.join(key)})"
                f" DO UPDATE SET {sets}{where}")

    def insert_ignore(self, table: str, columns: Sequence[str],
                      key: Sequence[str] = ()) -> str:
        target = f" ({', '.join(key)})" if key else ""
        return f"{_insert(table, columns)} ON CONFLICT{target} DO NOTHING"


class Returning(Dialect):
    """Generated ids and deleted rows read back with a ``RETURNING`` clause (PostgreSQL;
    SQLite since 3.35)."""

    async def insert_returning(self, db: Connection, sql: str, params: Sequence[Any],
                               column: str) -> Any:
        row = await (await db.execute(f"{sql} RETURNING {column}", params)).fetchone()
        assert row is not None  # an INSERT without ON CONFLICT makes its row or raises
        return row[0]

    async def delete_returning(self, db: Connection, table: str, where: str,
                               params: Sequence[Any], column: str) -> list[Any]:
        cur = await db.execute(f"DELETE FROM {table} WHERE {where} RETURNING {column}", params)
        return [r[0] for r in await cur.fetchall()]


def _insert(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
