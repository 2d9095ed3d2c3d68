"""The layout rules of docs/architecture.md, checked on the source (AST, no imports run).

- spino_core is a plain library: it imports no orchestration (Prefect, DVC, MLflow);
- no project module imports another module's private (``_name``) helper;
- imports go one way: spino_core never imports tasks/flows/benchmarks, tasks never flows;
- a Prefect task is a thin wrapper: its function is at most 15 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("spino_core", "tasks", "flows", "benchmarks")
ORCHESTRATION = ("prefect", "prefect_dask", "dvc", "mlflow")


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import in the file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_library_imports_no_orchestration_and_nothing_above_it() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _sources("spino_core")
        for line, module, _ in _imports(path)
        if _top(module) in ORCHESTRATION or _top(module) in ("tasks", "flows", "benchmarks")
    ]
    assert not bad, "\n".join(bad)


def test_tasks_import_no_flows() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _sources("tasks")
        for line, module, _ in _imports(path)
        if _top(module) in ("flows", "benchmarks")
    ]
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_private_helper_of_another() -> None:
    bad = []
    for path in _sources(*PACKAGES):
        me = _module(path)
        for line, module, names in _imports(path):
            if _top(module) not in PACKAGES or module == me:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {module} {private}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", _sources("tasks"), ids=lambda p: p.name)
def test_a_prefect_task_is_a_thin_wrapper(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        names = [
            d.func.id if isinstance(d, ast.Call) and isinstance(d.func, ast.Name) else ""
            for d in node.decorator_list
        ]
        if "task" in names:
            body = node.body[0].lineno, node.end_lineno or node.body[0].lineno
            n_lines = body[1] - body[0] + 1
            assert n_lines <= 15, f"{path.name}:{node.name}: {n_lines} lines of body"
