"""Issue 23 through the stage tasks (``task.fn``, no engine): the report stage writes the
gallery (and reruns into its own folder), the exclusion list reaches the student's data."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from spino_core.config import load_config
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.pseudo.files import PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.review.exclude import apply_exclusion
from spino_core.student.data import open_pseudo_set
from tasks.pseudo_label import finalize_pseudo_labels, label_one_shard, plan_pseudo_labels
from tasks.report import report_pseudo_labels
from tasks.split import make_split
from tasks.train_heads import train_label_heads


def test_report_writes_the_gallery_twice_and_the_exclusion_list_applies(
    tmp_path: Path, tiny_params
) -> None:
    params = tiny_params(tmp_path, split={"k": 3, "strategy": "random", "seed": 0})
    raw = yaml.safe_load(params.read_text())
    raw["student"]["exclude"] = "review/exclude.txt"
    params.write_text(yaml.safe_dump(raw))
    cfg = load_config(params)
    s = cfg.synth
    generate_synthetic_dataset(
        cfg.paths.raw, n_train=s.n_train, n_val=s.n_val, height=s.height, width=s.width,
        seed=s.seed, progress=False,
    )  # fmt: skip
    make_split.fn(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split, cfg.backbone)
    train_label_heads.fn(cfg)
    plan = plan_pseudo_labels.fn(cfg)
    rows = [r for i in range(len(plan.shards)) for r in label_one_shard.fn(i, plan, cfg)]
    finalize_pseudo_labels.fn(cfg, rows, plan.n_images)

    for _ in range(2):  # the second run must accept the folder the first one wrote
        out = report_pseudo_labels.fn(cfg)
    gallery = Path(out["paths"]["gallery"])
    assert gallery == Path(cfg.paths.pseudo_report) / "gallery" / "index.html"
    page = gallery.read_text(encoding="utf-8")
    unlabelled = (Path(cfg.paths.split) / "unlabelled.txt").read_text().split()
    assert all(f'data-stem="{stem}"' in page for stem in unlabelled)
    metrics = json.loads((Path(cfg.paths.metrics) / "pseudo_labels_estimate.json").read_text())
    assert metrics == {"estimate": "off (split.estimate_folds: 0)"}

    (tmp_path / "review").mkdir()
    (tmp_path / "review" / "exclude.txt").write_text(f"{unlabelled[0]}  # bad hood\n")
    pseudo_dir = Path(cfg.paths.pseudo)
    train = open_dataset("cityscapes", cfg.paths.raw, "train")
    pseudo = open_pseudo_set(pseudo_dir / PANOPTIC_JSON, pseudo_dir / PANOPTIC_DIR, train)
    left, n = apply_exclusion(pseudo, cfg.student.exclude, cfg.base_dir)
    assert n == 1 and sorted(left.stems) == sorted(unlabelled[1:])
