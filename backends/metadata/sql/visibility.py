"""SQL conditions limiting searches to what a caller may read (a :class:`Visibility`).

The conditions are parts of the search's WHERE clause, so a page holds ``max_results``
readable rows whenever that many exist. ``add`` is the search builder's placeholder
function (``?`` or ``$n``), so the fragments slot into either dialect's statement.
"""

from __future__ import annotations

from collections.abc import Callable

from backends.metadata.interface.auth_entities import Visibility
from backends.metadata.sql.dialect import Dialect

__all__ = ["readable_condition", "visible_experiment_ids"]

Add = Callable[[object], str]


def _principal_match(vis: Visibility, add: Add) -> str:
    assert vis.principals is not None
    if not vis.principals:
        return "1 = 0"
    terms = [f"(g.principal_type = {add(kind)} AND g.principal = {add(name)})"
             for kind, name in vis.principals]
    return "(" + " OR ".join(terms) + ")"


def readable_condition(vis: Visibility, add: Add, resource_type: str, workspace_col: str,
                       id_expr: str) -> str:
    """A condition true for rows of ``resource_type`` readable under ``vis``; ``id_expr`` is
    the row's resource id as text (a column expression, used twice), ``workspace_col`` its
    workspace column."""
    cond = f"{workspace_col} = {add(vis.workspace)}"
    if vis.principals is None:
        return cond

    def grant() -> str:  # built per use: each placeholder is bound once, in text order
        # The row's own grants, and role permissions on every row of the type ('*').
        return (f"SELECT 1 FROM auth_grants g WHERE g.resource_type = {add(resource_type)}"
                f" AND g.workspace = {workspace_col} AND g.resource_id IN ({id_expr}, '*')"
                f" AND (g.resource_id = {id_expr} OR g.principal_type = 'role')")

    cond += (f" AND NOT EXISTS ({grant()} AND g.permission = 'DENY'"
             f" AND {_principal_match(vis, add)})")
    if not vis.default_readable:
        cond += (f" AND EXISTS ({grant()} AND g.permission <> 'DENY'"
                 f" AND {_principal_match(vis, add)})")
    return cond


def visible_experiment_ids(vis: Visibility, add: Add, dialect: Dialect) -> str:
    """A sub-select of the experiment ids readable under ``vis`` (for runs and logged
    models, which inherit their experiment's permissions)."""
    return ("SELECT x.experiment_id FROM experiments x WHERE "
            + readable_condition(vis, add, "experiment", "x.workspace",
                                 dialect.cast_text("x.experiment_id")))
