"""The connection protocol the shared SQL runs over, which each dialect's adapter
implements: ``execute`` returning a cursor with ``fetchone``, ``fetchall`` and
``rowcount``; ``executemany``; ``fetch_rows``. A driver's unique-constraint violation
reaches the SQL as :class:`UniqueViolation`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

__all__ = ["Connection", "Cursor", "FetchedCursor", "Row", "UniqueViolation"]


class Row(Protocol):
    def __getitem__(self, key: int | str, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    async def fetchone(self) -> Row | None: ...

    async def fetchall(self) -> Iterable[Row]: ...


class Connection(Protocol):
    async def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    async def fetch_rows(self, sql: str, parameters: Sequence[Any] = ..., /) -> list[Any]:
        """Every row of a query as a positional sequence (no access by name): the lean
        way to read many rows."""
        ...


class FetchedCursor:
    """A :class:`Cursor` over rows already read, for drivers that return them all at once."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: Sequence[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    async def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> Iterable[Row]:
        return self._rows


class UniqueViolation(Exception):
    """A driver's unique-constraint violation, translated by the connection adapter."""
