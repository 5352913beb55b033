"""Imports between our packages point one way (docs/architecture.md): no module of
`gateway`, `backends` or `auth` reaches itself through imports, and neither `backends` nor
`auth` imports `gateway`.

The graph is read from the source with `ast`, not by importing it, so every import counts:
those inside functions (a cycle hidden in a function is still a cycle, it only fails
later) and those under `if TYPE_CHECKING:` (they name a dependency as surely as a runtime
import does, and the next edit that needs the name at run time turns them into one).
A package's `__init__` is not an edge of its submodules: Python runs it on the way in,
but the author of `a.b.c` did not choose to depend on what `a/__init__.py` re-exports.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "backends", "auth")


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> Iterator[tuple[str, str, int]]:
    """``(module, name, line)`` of every import in ``path``, relative ones resolved:
    ``import x`` is ``("x", "", line)`` and ``from x import y`` is ``("x", "y", line)``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield base, alias.name, node.lineno


@functools.cache
def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module of ours it imports: line of the first such import}."""
    files = module_files()
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges = graph.setdefault(module, {})
        for base, name, line in imported_names(module, path):
            # "from x import y" depends on the module x.y if there is one, else on x.
            target = f"{base}.{name}" if f"{base}.{name}" in files else base
            if target in files and target != module:
                edges.setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    graph = import_graph()
    described = [
        [f"{a} -> {b} (line {graph[a][b]})" for a in component for b in graph[a] if b in component]
        for component in cycles(graph)
    ]
    assert not described, f"import cycles: {described}"


def test_backends_and_auth_do_not_import_gateway() -> None:
    graph = import_graph()
    upward = [f"{a} -> {b} (line {line})" for a, edges in graph.items()
              if not a.startswith("gateway") for b, line in edges.items()
              if b == "gateway" or b.startswith("gateway.")]
    assert not upward, f"imports into gateway: {upward}"


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walker resolves relative imports and finds those in functions and under
    TYPE_CHECKING, so a cycle made of them is reported."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    from .c import C\n"
        "def f():\n    import backends.errors\n"
        "    from ..registry import redact_uri\n"
    )
    path = tmp_path / "a.py"
    path.write_text(source, encoding="utf-8")
    names = {(base, name) for base, name, _ in imported_names("backends.metadata.a", path)}
    assert {("backends.metadata", "b"), ("backends.metadata.c", "C"), ("backends.errors", ""),
            ("backends.registry", "redact_uri")} <= names
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c"]]
