"""The layering is checked, not hoped for: import-linter holds the layers (`make test` runs `lint-imports` with the
contracts in pyproject.toml), and this test finds any import circle in the whole tree, tests and bench included."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.servers import ROOT

TREES = ("chatbot", "tests", "bench")
TOP_MODULES = ("config.py", "wsgi.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The modules of this tree that a file imports, anywhere in it (inside functions too), by their full names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            within = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in known else node.module for name in within]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    files = [path for tree in TREES for path in (ROOT / tree).rglob("*.py")] + [ROOT / name for name in TOP_MODULES]
    known = {module_name(path) for path in files}
    return {module_name(path): imports_of(path, known) - {module_name(path)} for path in files}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other round (Tarjan's strongly connected components, of two or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.get(module, ()):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                found.append(sorted([module, *group]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_round_a_circle():
    assert circles(import_graph()) == []


def test_a_circle_is_found_where_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_tests_never_import_the_benchmarks():
    """bench/ builds on the tests' harness (tests/servers.py); the tests run the benchmarks as programs only."""
    graph = import_graph()
    assert [
        (module, imported)
        for module in graph
        if module.startswith("tests")
        for imported in graph[module]
        if imported.startswith("bench")
    ] == []


def test_the_settings_import_nothing_of_the_chat():
    """config.py is the bottom layer: what the settings mean as models lives in chatbot/services/models.py."""
    assert import_graph()["config"] == set()
