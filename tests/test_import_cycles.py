"""No import cycles between kerastl modules, at import time or through lazy imports.

:func:`import_graph`: only imports that run when a module is imported count:
module-level ``import`` and ``from ... import`` statements, including those
under ``if``/``try``/``with`` and in class bodies, but not those inside
functions (lazy imports) or under ``if TYPE_CHECKING:``. Importing ``a.b.c``
also runs ``a/b/__init__.py``, so an edge to a module is also an edge to its
packages, except the importer's own packages (those are already being
imported). Read with ``ast``; nothing is imported.

:func:`lazy_import_graph` adds what runs later: imports inside functions, a
package's ``TYPE_CHECKING`` imports (they mirror its PEP 562 ``__getattr__``,
e.g. ``kerastl/__init__.py``), and importing a *name* from one's own package
(``from kerastl import __version__`` inside ``kerastl.paths`` runs the whole
``kerastl/__init__.py``). A cycle there means two layers need each other: the
shared code belongs in the lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kerastl"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time_statements(body):
    """Statements run at import: into if/try/with/class bodies, not into functions."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            yield from _import_time_statements(node.body)
            for handler in node.handlers:
                yield from _import_time_statements(handler.body)
            yield from _import_time_statements(node.orelse)
            yield from _import_time_statements(node.finalbody)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _import_time_statements(node.body)


def _targets(module: str, path: Path, node, modules) -> set[str]:
    """The kerastl modules an import statement loads (the deepest existing ones)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        # "from pkg import sub" loads the submodule when sub is one, else pkg itself
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                 for alias in node.names]
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name.split(".")[0] == "kerastl":
            found.add(name)
    return found


def _packages(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = set()
        for node in _import_time_statements(tree.body):
            for target in _targets(module, path, node, modules):
                edges |= {target} | _packages(target)
        graph[module] = edges - _packages(module) - {module}
    return graph


def _all_import_statements(tree, package_init: bool):
    """Every import statement, lazy ones too; ``TYPE_CHECKING`` ones only in a package."""
    skipped = set()
    if not package_init:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
            yield node


def lazy_import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges, own = set(), set()
        for node in _all_import_statements(tree, path.name == "__init__.py"):
            for target in _targets(module, path, node, modules):
                edges |= {target} | _packages(target)
                if target in _packages(module):
                    own.add(target)  # a name from one's own package's __init__
        graph[module] = edges - (_packages(module) - own) - {module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component of size > 1."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):  # Tarjan; the graph is a few hundred nodes, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        members, start = set(component), component[0]
        paths, queue = {start: [start]}, [start]  # shortest path back to start, inside it
        while queue:
            node = queue.pop(0)
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    queue = []
                    cycles.append(paths[node] + [start])
                    break
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    queue.append(nxt)
    return cycles


def test_the_cycle_finder_finds_cycles_and_reads_the_code():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert len(graph) > 50
    # a module-level import is an edge; a function-local one is not
    assert "kerastl.errors" in graph["kerastl.training.schedules"]
    assert "kerastl.reports.plots" in graph["kerastl.training.run"]
    assert "kerastl.reports.plots" not in graph["kerastl.training.lr_finder"]
    # importing kerastl.reports.plots runs kerastl/reports/__init__.py too
    assert "kerastl.reports" in graph["kerastl.training.run"]
    # ... but a module's own packages are already loading: no edge
    assert "kerastl.training" not in graph["kerastl.training.run"]


def test_no_import_cycles_between_kerastl_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles)


def test_the_lazy_graph_sees_function_imports_and_names_from_the_own_package():
    graph = lazy_import_graph()
    # a function-local import is an edge here
    assert "kerastl.reports.plots" in graph["kerastl.training.lr_finder"]
    # the root package's lazy names (mirrored under TYPE_CHECKING) are edges
    assert "kerastl.training" in graph["kerastl"]
    # a TYPE_CHECKING import outside a package's __init__ is not
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    # importing a submodule of one's own package is not an edge to the package
    assert "kerastl.training" not in graph["kerastl.training.fine_tune"]


def test_no_import_cycles_even_through_lazy_imports():
    """E.g. export -> paths -> kerastl (``from kerastl import __version__``) -> export, or
    training.fine_tune -> transfer (add_l2) -> transfer.cross_validation -> training."""
    cycles = find_cycles(lazy_import_graph())
    assert not cycles, "import cycles (counting lazy imports):\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles)
