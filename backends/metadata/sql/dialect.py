"""What differs between the databases the shared SQL (:mod:`backends.metadata.sql`) runs on.

Each database has one subclass, in its own module under :mod:`backends.metadata.dialects`;
the shared SQL asks the dialect and never compares names. Statements are otherwise written
once with ``?`` placeholders, which a driver that numbers them translates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["Dialect"]


class Dialect(ABC):
    """One database's SQL where it differs from the others'."""

    name: str  # a label for messages, and the folder of the database's migrations

    @abstractmethod
    def placeholder(self, n: int) -> str:
        """The placeholder for the ``n``-th (1-based) parameter of a compiled search."""

    def parameter(self, n: int, value: object) -> str:
        """The placeholder for the ``n``-th parameter, bound to ``value``: where the driver
        cannot infer its type from the column, say it."""
        return self.placeholder(n)

    @abstractmethod
    def ilike(self, column: str, placeholder: str) -> str:
        """A case-insensitive LIKE."""

    @abstractmethod
    def nulls_as_smallest(self, ascending: bool) -> str:
        """Suffix for an ORDER BY term so that NULLs sort as the smallest values."""

    def unindexed(self, column: str) -> str:
        """``column`` in a form the planner will not start a search from (for a planner
        that would pick a bad index for lack of value statistics)."""
        return column

    @abstractmethod
    def delete_first_points(self, first_points: str) -> str:
        """A DELETE of the metric points that ``SELECT <columns> {first_points}`` finds
        (``first_points`` is the query from its FROM on, with ``?`` for a series id and a
        row limit): what a purge removes in one step."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
