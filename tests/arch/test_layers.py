"""The package's import structure: no circle, and no import from a lower layer up to a higher one.

Layers, lowest first: a module may import from its own layer or below. A new top-level package must be given a
layer here, which is the point: where it sits in the data flow is a decision, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "safeset"

LAYERS: dict[str, int] = {
    # foundations: no safeset imports above them
    "__init__": 0,
    "errors": 0,
    "fsutil": 0,
    "policy": 0,
    "exec": 0,
    "registry": 0,  # names modules as strings: no static import of what it lists
    # input: datasets as Arrow batches
    "io": 1,
    "rundir": 2,
    "signals": 2,
    "findings": 2,
    # what is matched
    "banks": 3,
    "kinds": 4,
    "triage": 4,
    "expansion": 5,
    # the passes
    "scan": 7,
    "manifest": 8,
    "cases": 8,
    "services": 8,
    "release": 9,
    "report": 10,
    "review": 10,
    # entry points
    "demo": 11,
    "cli": 11,
    "__main__": 12,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """safeset module -> safeset modules it imports (at any depth in the file, TYPE_CHECKING blocks included)."""
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parents, base]).strip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t.startswith("safeset") and t in modules and t != name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        pytest.fail(f"{module}: top-level package {top!r} has no layer in tests/arch/test_layers.py")
    return LAYERS[top]


def test_no_import_runs_up_a_layer() -> None:
    upward = [
        f"{source} (layer {_layer(source)}) imports {target} (layer {_layer(target)})"
        for source, targets in sorted(_imports().items())
        for target in sorted(targets)
        if _layer(target) > _layer(source)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle() -> None:
    graph = _imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, circles


def test_the_walker_sees_imports() -> None:
    """The checks above would pass vacuously if the walker found nothing."""
    graph = _imports()
    assert "safeset.scan.task" in graph["safeset.scan.driver"]
    assert "safeset.exec.base" in graph["safeset.exec.local"]
