"""The import graph of the ``autoprune`` package (with ``autoprune.envs`` and ``autoprune.search_spaces``,
which live in their own folders) has no circle.

Every import counts, also one inside a function: a deferred import hides a circle from Python's
loader but not from a reader, who still cannot change one module without the other. Imports only for
type checking (under ``if TYPE_CHECKING:``) do not: they name a type, they do not use its module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "autoprune"
#: Folders installed as subpackages of ``autoprune`` (pyproject's package-dir).
SUBPACKAGES = {"autoprune.envs": ROOT / "envs", "autoprune.search_spaces": ROOT / "search_spaces"}


def _module_names(package: Path, prefix: str | None = None) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) for every module below ``package`` (named ``prefix``)."""
    modules = {}
    for file in package.rglob("*.py"):
        parts = list(file.relative_to(package).with_suffix("").parts)
        parts = [*(prefix or package.name).split("."), *parts]
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (file, is_package)
    return modules


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        nodes.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def import_graph(package: Path, extra: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module -> the modules of the same package that it imports (anywhere in its body)."""
    modules = _module_names(package)
    for prefix, folder in (extra or {}).items():
        modules.update(_module_names(folder, prefix))
    graph: dict[str, set[str]] = {}
    for name, (file, is_package) in modules.items():
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: drop one part per dot beyond the first, from this module's package
                    base = name.split(".")[: None if is_package else -1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        targets.add(submodule)
                    elif source in modules:
                        targets.add(source)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_autoprune_has_no_import_circle() -> None:
    graph = import_graph(PACKAGE, SUBPACKAGES)
    assert {"autoprune.models.zoo", "autoprune.envs.factory", "autoprune.search_spaces.spec"} <= set(graph)
    circles = find_circles(graph)
    assert not circles, f"import circles (each list imports itself through its members): {circles}"


def test_a_deferred_import_circle_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg import a\n")  # imports into the circle, not part of it
    (package / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import f\n")
    (package / "f.py").write_text("from pkg import e\n")  # a type-only import back is not a circle
    assert find_circles(import_graph(package)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
