"""The package's import graph, read with ast: no import circles, and dependencies point one way.

Every import counts, at module level, inside functions and under TYPE_CHECKING: a circle broken only by a
late import is still two modules that cannot be read, tested or moved one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each package may import itself and the ones before it, never one after it (ARCHITECTURE.md).
LAYERS = ("vocab", "config", "core", "sources", "engine", "outputs", "mixin", "serve", "cli_common", "cli_reports",
          "cli", "__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the exporter modules it imports (a package's `__init__` when it imports the package)."""
    files = {module_name(p): p for p in (ROOT / "exporter").rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                names = [target, *(f"{target}.{a.name}" for a in node.names)]  # `from pkg import module`
            graph[mod].update(n for n in names if n in files and n != mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_cycles_finds_a_circle() -> None:
    """The check itself: a two-module circle and a three-module one are found, a chain is not."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert cycles(graph) == [["a", "b"], ["c", "d", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_every_kind_of_import() -> None:
    """Late imports and relative imports are edges too (cli.py imports the serve modules inside functions,
    __main__.py imports cli as `.cli`)."""
    graph = import_graph()
    assert "exporter.serve.httpapi" in graph["exporter.cli"]
    assert graph["exporter.__main__"] == {"exporter.cli"}
    assert "exporter.vocab.errors" in graph["exporter.core.window"]


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a package that comes later in LAYERS."""
    return sorted(f"{mod} imports {dep}" for mod, deps in graph.items() for dep in deps
                  if layer(mod) in LAYERS and layer(dep) in LAYERS
                  and LAYERS.index(layer(dep)) > LAYERS.index(layer(mod)))


def test_wrong_way_finds_an_upward_import() -> None:
    graph = {"exporter.config.schema": {"exporter.core.window", "exporter.vocab.errors"},
             "exporter.core.window": {"exporter.vocab.errors"}, "exporter.vocab.errors": set()}
    assert wrong_way(graph) == ["exporter.config.schema imports exporter.core.window"]


def test_dependencies_point_one_way() -> None:
    """vocab/ is a leaf; config/ reads only vocab/ (never core/); each package imports only those before it."""
    assert wrong_way(import_graph()) == []


def test_every_module_has_a_layer() -> None:
    """A new top-level package or module gets a place in LAYERS, so the test above sees it."""
    assert {layer(m) for m in import_graph()} - {"exporter"} <= set(LAYERS) | {"data"}
