"""The layout rules of the project, checked on the source itself.

DESIGN.md asks for small modules and functions, routers that do not reach into the
app's assembly, domains without import cycles and one way in for telemetry. These
tests read the code with ``ast`` so a change that breaks a rule fails here, naming
the place.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
PACKAGE = ROOT / "src" / "fieldwatch"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _python_files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "migrations" in path.parts or "results" in path.parts:
                continue
            yield path


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _imported_modules(tree: ast.AST) -> Iterator[tuple[str, ast.stmt]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node


def _nested_imports(tree: ast.Module) -> Iterator[ast.stmt]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    yield inner


SOURCES = list(_python_files(PACKAGE, ROOT / "bench"))


def test_the_rules_see_the_whole_code_base() -> None:
    names = {_name(path) for path in SOURCES}
    assert "src/fieldwatch/app.py" in names
    assert len(names) > 100


def test_no_module_is_over_the_line_budget() -> None:
    long = {
        _name(path): lines
        for path in SOURCES
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_the_line_budget() -> None:
    long: dict[str, int] = {}
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}:{node.lineno} {node.name}"] = lines
    assert long == {}


def test_only_the_app_assembly_imports_the_runtime() -> None:
    allowed = {"src/fieldwatch/app.py", "src/fieldwatch/runtime.py"}
    importers = {
        _name(path)
        for path in _python_files(PACKAGE)
        if any(module == "fieldwatch.runtime" for module, _ in _imported_modules(_tree(path)))
    }
    assert importers - allowed == set()


@pytest.mark.parametrize(("package", "forbidden"), [("devices", "fieldwatch.inventory")])
def test_a_domain_does_not_import_the_one_that_builds_on_it(package: str, forbidden: str) -> None:
    offenders = {
        f"{_name(path)}:{node.lineno}"
        for path in _python_files(PACKAGE / package)
        for module, node in _imported_modules(_tree(path))
        if module == forbidden or module.startswith(forbidden + ".")
    }
    assert offenders == set()


@pytest.mark.parametrize("package", ["devices", "inventory"])
def test_no_imports_hide_inside_functions(package: str) -> None:
    offenders = {
        f"{_name(path)}:{node.lineno}"
        for path in _python_files(PACKAGE / package)
        for node in _nested_imports(_tree(path))
    }
    assert offenders == set()


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def test_telemetry_ingestion_is_built_once() -> None:
    constructions = [
        f"{_name(path)}:{node.lineno}"
        for path in _python_files(PACKAGE)
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Call) and _called_name(node.func) == "TelemetryService"
    ]
    assert len(constructions) == 1, constructions
