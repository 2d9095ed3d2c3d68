"""dvc.yaml's `deps` cover every project file a stage's code imports.

A change to any module a stage runs must make DVC (and so the pipeline flow, which asks
DVC) rerun that stage. The stage's code is its flow module ``flows/<stage>.py`` and
everything it imports, transitively, inside the project's packages (including imports
inside functions, and the ``__init__.py`` of every package on the way).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("spino_core", "tasks", "flows")
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Project module names imported anywhere in ``path`` (``from a import b`` -> a, a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def import_closure(module: str) -> set[Path]:
    """Files of ``module`` and every project module it imports, with their packages."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imports(path))
    return {p.relative_to(REPO) for p in seen}


def _covered(path: Path, deps: list[Path]) -> bool:
    return any(path == d or d in path.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage: str) -> None:
    deps = [Path(d) for d in STAGES[stage].get("deps", []) if "${" not in d]
    missing = sorted(str(p) for p in import_closure(f"flows.{stage}") if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} misses deps: {missing}"
    stale = [str(d) for d in deps if not (REPO / d).exists()]
    assert not stale, f"dvc.yaml stage {stage!r} lists deps that do not exist: {stale}"


def test_closure_follows_function_level_and_from_imports() -> None:
    closure = import_closure("flows.pseudo_label")
    assert Path("spino_core/fusion/panoptic_fusion.py") in closure  # via the library
    assert Path("spino_core/__init__.py") in closure and Path("tasks/__init__.py") in closure


def test_evaluate_depends_on_the_student_files_not_on_its_resume_checkpoint() -> None:
    """``${paths.student}/checkpoint.pt`` is deliberately not a DVC output (the resume point,
    left alone by DVC). A dependency on the whole folder hashed it too: after a `dvc exp run`
    and a `dvc checkout` back, evaluate was reported modified by an old checkpoint."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    student_outs = {o for o in stages["train_student"]["outs"] if isinstance(o, str)}
    deps = set(stages["evaluate"]["deps"])
    assert "${paths.student}" not in deps
    assert {"${paths.student}/model.pt", "${paths.student}/config.json"} <= deps & student_outs


def test_no_dep_is_an_empty_file() -> None:
    """DVC warns "'<file>' is empty." on every `dvc repro` for an empty dep (issue 26)."""
    empty = sorted(
        {
            d
            for stage in STAGES.values()
            for d in stage.get("deps", [])
            if "${" not in d and (REPO / d).is_file() and (REPO / d).stat().st_size == 0
        }
    )
    assert not empty, f"empty files listed as dvc.yaml deps (DVC warns on each): {empty}"


@pytest.mark.parametrize("stage", ["train_student", "evaluate"])
def test_readers_of_the_pseudo_folder_do_not_depend_on_how_it_is_made(stage: str) -> None:
    """train-student and evaluate read the pseudo-label folder's files by name: editing the
    fusion or the shard threading must not rerun them (the names live in pseudo/files.py)."""
    closure = import_closure(f"flows.{stage}")
    assert Path("spino_core/pseudo/files.py") in closure
    made_by = {"spino_core/pseudo/generate.py", "spino_core/fusion/panoptic_fusion.py"}
    assert not {str(p) for p in closure} & made_by
