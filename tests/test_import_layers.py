"""The layers of docs/architecture.md, checked on the source with ``ast`` (nothing is imported).

- No import cycle between the repository's modules at module level (what runs at import time:
  top-level statements and class bodies, not ``if TYPE_CHECKING:`` blocks nor function bodies).
- An import inside a function that would close a cycle if it were at module level is allowed
  only when listed in :data:`LOCAL_CYCLE_BREAKERS` with its reason.
- Qt (PyQt5, pyqtgraph) is imported only under ``labctl/gui/``, at any level.
- ``instruments/`` and ``simulated_bench/`` never import each other: they meet over VISA.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labctl", "instruments", "protocols", "analysis", "simulated_bench")
QT = ("PyQt5", "pyqtgraph")

#: (importing module, imported module) -> why the import sits inside a function.
LOCAL_CYCLE_BREAKERS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    module: str    # the importing module, e.g. "labctl.api"
    target: str    # the imported module as resolved, e.g. "labctl.readers" or "numpy"
    line: int
    local: bool    # inside a function body (runs when the function is called)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def source_files() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return name in modules and modules[name].name == "__init__.py"


def resolve(module: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package(module, modules):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                visit(ast.Module(body=child.orelse, type_ignores=[]), local)
            elif isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, child.lineno, local) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = resolve(module, child, modules)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append(Import(module, sub if sub in modules else base, child.lineno, local))
            else:
                visit(child, local)

    visit(tree, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@functools.cache
def all_imports() -> tuple[Import, ...]:
    modules = source_files()
    return tuple(imp for name, path in modules.items() for imp in imports_of(name, path, modules))


def in_repo(target: str, modules: dict[str, Path]) -> str | None:
    """The repository module ``target`` names (or the closest enclosing one), else None."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return None


def graph(imports: tuple[Import, ...], *, local: bool) -> dict[str, set[str]]:
    modules = source_files()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        target = in_repo(imp.target, modules)
        if target is not None and target != imp.module and (local or not imp.local):
            edges[imp.module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v == goal:
            return True
        if v not in seen:
            seen.add(v)
            todo.extend(edges[v])
    return False


# ---------------------------------------------------------------------------- the checks
def test_the_checker_sees_the_repository():
    imports = all_imports()
    modules = source_files()
    assert {"labctl.api", "labctl.readers", "labctl.engine", "protocols.base", "instruments"} <= set(modules)
    edges = graph(imports, local=False)
    assert "labctl.readers" in edges["labctl.api"]  # "from . import readers" resolves to the submodule
    assert "labctl.store" in edges["labctl.readers"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_at_module_level():
    found = cycles(graph(all_imports(), local=False))
    assert found == [], "import cycles at module level: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_inside_functions_close_no_cycle_unless_listed():
    imports = all_imports()
    modules = source_files()
    module_level = graph(imports, local=False)
    closing = {}
    for imp in imports:
        target = in_repo(imp.target, modules)
        if imp.local and target is not None and target != imp.module and reaches(module_level, target, imp.module):
            closing[(imp.module, target)] = f"{modules[imp.module].relative_to(ROOT)}:{imp.line}"
    unlisted = {k: v for k, v in closing.items() if k not in LOCAL_CYCLE_BREAKERS}
    assert unlisted == {}, f"imports inside functions that would close a cycle: {unlisted}"
    stale = set(LOCAL_CYCLE_BREAKERS) - set(closing)
    assert not stale, f"listed cycle breakers that no longer close a cycle: {stale}"


def test_qt_only_under_labctl_gui():
    outside = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in all_imports()
               if imp.target.split(".")[0] in QT and not imp.module.startswith("labctl.gui")]
    assert outside == []


@pytest.mark.parametrize("a, b", [("instruments", "simulated_bench"), ("simulated_bench", "instruments")])
def test_instruments_and_simulated_bench_never_import_each_other(a, b):
    crossing = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in all_imports()
                if imp.module.split(".")[0] == a and imp.target.split(".")[0] == b]
    assert crossing == []
