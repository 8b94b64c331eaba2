"""The layout's rules, checked on the source: imports point inward to `core`, no two
packages depend on each other, no module grows past what a reader takes in at once."""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "vektor"
MAX_LINES = 400

# Top-level modules (app.py, routes.py, cli.py, models.py, server.py, __main__.py,
# __init__.py) wire the packages together; they may import anything and nothing checks them.
Graph = dict[str, dict[str, list[str]]]


def _packages() -> set[str]:
    return {path.name for path in SRC.iterdir() if (path / "__init__.py").is_file()}


def _imported(node: ast.Import | ast.ImportFrom, module: Path) -> list[str]:
    """The dotted names an import statement reaches, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        parts = ("vektor", *module.relative_to(SRC).parts[:-1])
        base = ".".join(parts[: len(parts) - node.level + 1])
        return [f"{base}.{node.module}" if node.module else base]
    if node.module == "vektor":  # `from vektor import chat`
        return [f"vektor.{alias.name}" for alias in node.names]
    return [node.module or ""]


def import_graph() -> Graph:
    """Package → imported package → where: every import, in functions and TYPE_CHECKING too."""
    packages = _packages()
    graph: Graph = defaultdict(lambda: defaultdict(list))
    for module in sorted(SRC.rglob("*.py")):
        relative = module.relative_to(SRC)
        if len(relative.parts) == 1:
            continue
        source = relative.parts[0]
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported(node, module):
                parts = name.split(".")
                target = parts[1] if parts[0] == "vektor" and len(parts) > 1 else None
                if target in packages and target != source:
                    graph[source][target].append(f"{relative}:{node.lineno}")
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle of packages (first package repeated at the end), or None."""
    done: set[str] = set()

    def visit(package: str, path: list[str]) -> list[str] | None:
        if package in path:
            return [*path[path.index(package) :], package]
        if package in done:
            return None
        for target in sorted(graph.get(package, {})):
            cycle = visit(target, [*path, package])
            if cycle:
                return cycle
        done.add(package)
        return None

    for package in sorted(graph):
        cycle = visit(package, [])
        if cycle:
            return cycle
    return None


def _describe(graph: Graph, cycle: list[str]) -> str:
    steps = []
    for source, target in itertools.pairwise(cycle):
        steps.append(f"{source} -> {target} ({', '.join(graph[source][target])})")
    return "; ".join(steps)


def test_core_imports_no_other_package() -> None:
    graph = import_graph()
    outward = dict(graph.get("core", {}))
    assert not outward, f"core must import no other vektor package: {outward}"


def test_no_cycle_between_packages() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"package cycle {' -> '.join(cycle)}: {_describe(graph, cycle)}"


def test_the_checks_see_a_cycle() -> None:
    graph: Graph = {"a": {"b": ["a/x.py:1"]}, "b": {"c": ["b/y.py:2"]}, "c": {"a": ["c/z.py:3"]}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["a/x.py:1"]}, "b": {}}) is None


def test_imports_inside_functions_and_type_checking_count() -> None:
    graph = import_graph()
    nested = ast.parse(
        "def f():\n    from vektor.chat import service\nif X:\n    import vektor.sync\n"
    )
    names = [
        name
        for node in ast.walk(nested)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in _imported(node, SRC / "core" / "x.py")
    ]
    assert names == ["vektor.chat", "vektor.sync"]
    assert graph, "no imports found: is SRC right?"


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(SRC)): lines
        for path in SRC.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
