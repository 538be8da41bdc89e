"""Benchmarks are not run by the suite (they measure, and take minutes), so a refactor can leave one importing a
module or name that no longer exists. Every `safeset` import in benchmarks/, at any depth of the file, must
resolve."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


def _safeset_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every import of safeset in the file."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "safeset"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "safeset":
            found += [(node.lineno, node.module or "", a.name) for a in node.names]
    return found


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_safeset_import_of_a_benchmark_resolves(path: Path) -> None:
    missing = []
    for line, module, name in _safeset_imports(path):
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"line {line}: {module} ({exc})")
            continue
        if name is not None and not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"line {line}: {module}.{name}")
    assert not missing, f"{path.name}: " + "; ".join(missing)


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "b.py"
    sample.write_text("def f():\n    from safeset.nowhere import thing\n    import safeset.errors\n")
    assert _safeset_imports(sample) == [(2, "safeset.nowhere", "thing"), (3, "safeset.errors", None)]
