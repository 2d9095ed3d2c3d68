"""The DVC plots as `dvc plots show` draws them (issue 28 point 6).

The project's dvc.yaml, params.yaml and plot templates are copied into a temporary DVC
repository whose metrics/ CSVs are written by the stages' own writers; `dvc plots show
--json` gives the filled vega-lite specs, which vl-convert renders to SVG (vega's own
renderer, no browser). What is checked is what a reader sees: the per-class bars in the
class table's order (DVC's bar templates sort a nominal axis alphabetically), every class
of the table on the heads' IoU plot (an absent one labelled, not dropped), and no
per-image point cut by the plot's frame.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spino_core.data.class_table import table_from_categories
from spino_core.stages.outputs import write_heads_metrics, write_panoptic_metrics

vl_convert = pytest.importorskip("vl_convert")

REPO = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).parent / "dvc"

# Table order differs from both alphabetical and category-id order.
CLASSES = table_from_categories(
    [
        {"id": 5, "name": "zebra crossing", "isthing": 0},
        {"id": 1, "name": "asphalt", "isthing": 0},
        {"id": 9, "name": "moped", "isthing": 1},
        {"id": 3, "name": "bus", "isthing": 1},
    ],
    "test",
)
ABSENT = "moped"  # neither in the ground truth nor predicted
_TEXT = re.compile(r"<text[^>]*>([^<]*)</text>")
_POINT = re.compile(r'transform="translate\(([-\d.e]+),([-\d.e]+)\)" d="M([\d.]+),0A')


def _panoptic_metrics() -> dict:
    per_class = {}
    for c in CLASSES.classes:
        n = 0 if c.name == ABSENT else 2
        per_class[c.id] = {"pq": 0.5 * (n > 0), "sq": 0.8 * (n > 0), "rq": 0.6 * (n > 0),
                           "tp": n, "fp": n, "fn": 0, "iou": 0.7 if n else None}  # fmt: skip
    group = {"pq": 0.5, "sq": 0.8, "rq": 0.6, "n": 3}
    return {"All": group, "Things": group, "Stuff": group, "per_class": per_class}


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Plot path (metrics/...) -> the vega-lite spec `dvc plots show` fills."""
    repo = tmp_path_factory.mktemp("plots") / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, repo / name)
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    subprocess.run([str(DVC), "init", "--no-scm", "-q"], cwd=repo, env=env, check=True)
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)
    metrics = repo / "metrics"
    shutil.copytree(REPO / "metrics", metrics)  # the history plots' committed data
    val_iou = {c.name: 0.25 * (i + 1) for i, c in enumerate(CLASSES.classes) if c.name != ABSENT}
    write_heads_metrics(metrics, {"val_iou": val_iou}, classes=CLASSES.names)
    per_image = repo / "per_image.csv"  # edge values: PQ 0 and 1, the first and last image
    per_image.write_text(
        "stem,pq,sq,rq,n_segments,n_gt_segments\n"
        + "".join(f"s{i:03d},{pq},{pq},{pq},3,3\n" for i, pq in enumerate([0, 0.4, 0.7, 1]))
    )
    for name in ("student", "pseudo_labels"):
        write_panoptic_metrics(metrics, name, _panoptic_metrics(), per_image, CLASSES)
    done = subprocess.run(
        [str(DVC), "plots", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        path: entries[0]["content"] for path, entries in json.loads(done.stdout)["data"].items()
    }


def _texts(spec: dict) -> list[str]:
    return _TEXT.findall(vl_convert.vegalite_to_svg(spec))


PER_CLASS = ["heads_per_class", "student_per_class", "pseudo_labels_per_class"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PER_CLASS)
def test_per_class_bars_follow_the_class_table_and_show_every_class(
    specs: dict[str, dict], name: str
) -> None:
    texts = _texts(specs[f"metrics/{name}.csv"])
    assert [t for t in texts if t in CLASSES.names] == CLASSES.names  # table order, each once
    assert texts.count("absent") == 1  # the absent class is on the axis and labelled


@pytest.mark.slow
@pytest.mark.parametrize("name", PER_CLASS)
def test_per_class_bars_start_at_zero(specs: dict[str, dict], name: str) -> None:
    """DVC's bar_horizontal sets ``zero: false``: the lowest class would get no bar."""
    texts = _texts(specs[f"metrics/{name}.csv"])
    assert "0.0" in texts and "1.0" in texts  # a fraction axis from 0 to 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["student_per_image", "pseudo_labels_per_image"])
def test_per_image_points_lie_inside_the_frame(specs: dict[str, dict], name: str) -> None:
    spec = specs[f"metrics/{name}.csv"]
    svg = vl_convert.vegalite_to_svg(spec)
    start = svg.index('class="mark-symbol role-mark')
    symbols = svg[start : svg.index("</g>", start)]  # the points, not the legend's symbol
    points = [tuple(map(float, m)) for m in _POINT.findall(symbols)]
    assert len(points) == 4
    width, height = spec["width"], spec["height"]
    for x, y, radius in points:
        assert radius <= x <= width - radius and radius <= y <= height - radius, (x, y)
