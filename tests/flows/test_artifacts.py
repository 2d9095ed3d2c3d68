"""What a run shows: one headline line per stage, Prefect table and link artifacts."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.artifacts import finish_stage, metrics_table, publish_pipeline_artifacts
from spino_core.config import load_config

PANOPTIC = {
    "All": {"pq": 0.1134, "sq": 0.7, "rq": 0.16},
    "Things": {"pq": 0.05, "sq": 0.6, "rq": 0.08},
    "Stuff": {"pq": 0.171, "sq": 0.8, "rq": 0.2},
    "miou": 0.42,
    "per_class": {},
}
RESULTS = {
    "synth": {"images": {"train": 6, "val": 2}},
    "split": {"k": 3, "strategy": "coverage", "labelled": ["a"], "n_unlabelled": 3, "n_val": 2},
    "train-heads": {"val_miou": 0.81, "boundary_f1": 0.5},
    "pseudo-label": {"n_images": 3, "n_ok": 3, "n_failed": 0, "n_resumed": 1},
    "report": PANOPTIC,
    "train-student": {"steps": 3, "resumed_from_step": 0, "final_loss": 1.23456},
    "evaluate": PANOPTIC
    | {
        "registry": {
            "name": "spino-student",
            "version": None,  # worse than the champion: logged on its run, not registered
            "promoted": False,
            "champion_version": 1,
            "registered": False,
            "pq": 0.1134,
            "model_uri": "runs:/abc/student",
            "repaired": [],
        }
    },
}


def test_every_stage_prints_its_headline_and_output_paths(
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = load_config(tiny_params(tmp_path))
    monkeypatch.chdir(tmp_path)
    for stage, result in RESULTS.items():
        finish_stage(stage, cfg, result)  # outside a flow run: no artifacts, no error
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "spino synth: 6 train, 2 val images -> data/raw",
        "spino split: k=3 labelled (coverage), 3 unlabelled, 2 val images -> data/split",
        "spino train-heads: val mIoU 81.0%, boundary F1 50.0% -> models/heads, metrics/heads.json",
        "spino pseudo-label: 3/3 images labelled (0 failed, 1 from an earlier run) -> data/pseudo",
        "spino report: pseudo-labels PQ 11.3% (things 5.0%, stuff 17.1%), mIoU 42.0% -> "
        "reports/pseudo/index.html, metrics/pseudo_labels.json",
        "spino train-student: 3 steps (resumed from step 0), final loss 1.2346 -> "
        "models/student, metrics/student_train.json",
        "spino evaluate: student PQ 11.3% (things 5.0%, stuff 17.1%), mIoU 42.0% -> "
        "reports/student/index.html, metrics/student.json; MLflow spino-student: not "
        "registered (PQ not above champion v1), logged as runs:/abc/student",
    ]


def test_the_pipeline_publishes_a_metrics_table_and_report_links(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    cfg = load_config(tiny_params(tmp_path))
    page = Path(cfg.paths.pseudo_report) / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")

    @flow
    def parent() -> None:
        publish_pipeline_artifacts(RESULTS, cfg)

    state = parent(return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in found}
    table = by_key["spino-metrics"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert rows == metrics_table(RESULTS)
    assert [r["stage"] for r in rows] == ["pseudo-labels", "student (val)"]
    # percent with one decimal, as the HTML reports print them (spino_core.report.html)
    assert rows[0]["PQ (%)"] == 11.3 and rows[1]["mIoU (%)"] == 42.0
    link = by_key["spino-pseudo-labels-report"]  # only the report that exists is linked
    assert page.resolve().as_uri() in link.data  # Prefect stores a link as markdown
    assert "spino-student-report" not in by_key


def test_the_table_artifact_and_the_html_report_show_the_same_numbers() -> None:
    """Issue 28: artifacts showed fractions (0.1134) where the reports show percent (11.3)."""
    from spino_core.report.html import _summary

    page = _summary(
        {g: PANOPTIC[g] | {"n": 1} for g in ("All", "Things", "Stuff")} | {"miou": 0.42}, []
    )
    (row,) = metrics_table({"report": PANOPTIC})
    for column, value in row.items():
        if column != "stage":
            assert f"<td>{value:.1f}</td>" in page, column


def test_a_stage_headline_is_its_records(
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 25: a stage's result line is declared in its record (no per-stage code in
    flows/artifacts.py); a toy stage added by a record prints its own headline."""
    from flows import stage_records
    from flows.stage_records import STAGES, StageRecord

    source = (Path(__file__).parents[2] / "flows/artifacts.py").read_text()
    assert [s.name for s in STAGES if f'"{s.name}"' in source] == []
    toy = StageRecord(
        "toy-stage",
        outputs=("student_report",),
        headline=lambda r, paths: f"{r['n']} toys -> {Path(paths.student_report).name}",
    )
    monkeypatch.setattr(stage_records, "STAGES", (*STAGES, toy))
    finish_stage("toy-stage", load_config(tiny_params(tmp_path)), {"n": 3})
    assert capsys.readouterr().out == "spino toy-stage: 3 toys -> student\n"


@pytest.mark.parametrize(
    ("registry", "says"),
    [
        (
            {"version": 2, "promoted": True, "champion_version": 2, "registered": True},
            "MLflow spino-student v2 (promoted)",
        ),
        (
            {"version": 1, "promoted": False, "champion_version": 1, "registered": False},
            "MLflow spino-student v1 (champion stays v1, identical model already registered)",
        ),
        (
            {
                "version": 3,
                "promoted": True,
                "champion_version": 3,
                "registered": True,
                "repaired": ["deleted half-registered version 2"],
            },
            "MLflow spino-student v3 (promoted; repaired: deleted half-registered version 2)",
        ),
    ],
)
def test_the_evaluate_line_says_what_the_registry_did(
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    registry: dict,
    says: str,
) -> None:
    """A worse student is no version any more (issue 27/28): the line must not say 'vNone'."""
    cfg = load_config(tiny_params(tmp_path))
    finish_stage("evaluate", cfg, PANOPTIC | {"registry": {"name": "spino-student", **registry}})
    line = capsys.readouterr().out
    assert says in line and "None" not in line
