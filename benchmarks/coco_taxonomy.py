"""The synthetic world through the coco_panoptic layout on 6 classes vs the 19-class run.

One synthetic world (``synth.*`` of the params), two full runs of the stages (split, heads,
pseudo-labels, student, evaluate) with the params' settings:

- ``19 classes``: the Cityscapes layout and table, as ``make demo`` runs it;
- ``6 classes (coco_panoptic)``: the same world written as an annotation tool's export
  (``spino_core.data.tool_export``: the same k labelled images as the 19-class split, the
  val images as a val export, every image as a PNG in one folder; ``SYNTH_6_CLASSES``: ground,
  structure, vegetation, sky, human, vehicle), read through ``data.layout: coco_panoptic``.

Pseudo-label PQ: against the unlabelled pool's ground truth (the 6-class run's folded with
the same table, since the export's pool has none). Student PQ: the evaluate stage on val.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/coco_taxonomy.py --workdir /tmp/taxonomy \\
        [--params params.yaml] [--out benchmarks/results/coco_taxonomy.json] [-S key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from spino_core.config import SpinoConfig, config_from_dict, load_config
from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import class_table_for
from spino_core.data.split import UNLABELLED_FILE, read_stem_list
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.data.tool_export import SYNTH_6_CLASSES, write_export, write_images
from spino_core.metrics.evaluate_files import evaluate_panoptic_files
from spino_core.stages.evaluate import evaluate_student
from spino_core.stages.pseudo_label import (
    finalize_pseudo_labels,
    label_one_shard,
    plan_pseudo_labels,
)
from spino_core.stages.split import make_split
from spino_core.stages.train_heads import train_label_heads
from spino_core.stages.train_student import train_student_model


def _in(cfg: SpinoConfig, work: Path, **data: Any) -> SpinoConfig:
    names = [f.name for f in dataclasses.fields(cfg.paths)]
    paths = dataclasses.replace(cfg.paths, **{n: str(work / n) for n in names})
    mlflow = dataclasses.replace(cfg.mlflow, enabled=False)
    return dataclasses.replace(
        cfg, paths=paths, mlflow=mlflow, data=dataclasses.replace(cfg.data, **data)
    )


def _pseudo_pq(cfg: SpinoConfig, gt_root: Path, table: Any, work: Path) -> dict[str, float]:
    """PQ of the pseudo-labels against the pool's ground truth (in ``table``), by stem."""
    stems = read_stem_list(Path(cfg.paths.split) / UNLABELLED_FILE)
    plain = [s.split("__")[-1] for s in stems]  # export stems are <folder>__<stem>
    gt = CityscapesDataset(gt_root, "train", table)
    convert_dataset_to_coco(gt, work / "gt.json", work / "gt", stems=plain, progress=False)
    pseudo = json.loads((Path(cfg.paths.pseudo) / "panoptic.json").read_text())
    for key, field in (("images", "id"), ("annotations", "image_id")):
        for entry in pseudo[key]:
            entry[field] = str(entry[field]).split("__")[-1]
    (work / "pred.json").write_text(json.dumps(pseudo))
    m = evaluate_panoptic_files(
        work / "gt.json", work / "gt", work / "pred.json", Path(cfg.paths.pseudo) / "panoptic",
        progress=False,
    )  # fmt: skip
    return {"pq": m["All"]["pq"], "pq_things": m["Things"]["pq"], "pq_stuff": m["Stuff"]["pq"]}


def _run(cfg: SpinoConfig, gt_root: Path, table: Any, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    make_split(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split)
    heads = train_label_heads(cfg)["metrics"]
    plan = plan_pseudo_labels(cfg)
    rows = [r for i in range(len(plan.shards)) for r in label_one_shard(i, plan, cfg)]
    finalize_pseudo_labels(cfg, rows, plan.n_images)
    pseudo = _pseudo_pq(cfg, gt_root, table, work)
    train_student_model(cfg)
    m = evaluate_student(cfg)["metrics"]
    return {
        "classes": table.num_classes,
        "heads_val_miou": heads.get("val_miou"),
        "pseudo": pseudo,
        "student": {
            "pq": m["All"]["pq"],
            "pq_things": m["Things"]["pq"],
            "pq_stuff": m["Stuff"]["pq"],
            "miou": m.get("miou"),
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/coco_taxonomy.json"))
    ap.add_argument("-S", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)
    base = load_config(args.params, args.overrides)
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    raw = work / "raw"
    s = base.synth
    generate_synthetic_dataset(raw, n_train=s.n_train, n_val=s.n_val, height=s.height,
                               width=s.width, seed=s.seed, progress=False)  # fmt: skip
    rows = {}
    # 19 classes, Cityscapes layout (the demo)
    cfg19 = _in(base, work / "c19")
    cfg19 = dataclasses.replace(cfg19, paths=dataclasses.replace(cfg19.paths, raw=str(raw)))
    rows["19 classes (cityscapes layout)"] = _run(
        cfg19, raw, class_table_for(cfg19.data, raw), work / "c19"
    )
    # 6 classes, the same world as a tool's export with the same k labelled images
    six = class_table_for(config_from_dict({"data": {"classes": SYNTH_6_CLASSES}}).data, raw)
    train, val = CityscapesDataset(raw, "train", six), CityscapesDataset(raw, "val", six)
    export = work / "export"
    write_images(train, export / "images", ext=".png")
    write_images(val, export / "images", ext=".png")
    labelled = read_stem_list(Path(cfg19.paths.split) / "labelled.txt")
    write_export(train, labelled, export / "labelled.json", ext=".png")
    write_export(val, val.stems, export / "val.json", ext=".png")
    coco = {"layout": "coco_panoptic", "images": "images", "labelled": "labelled.json",
            "val": "val.json", "classes": "auto"}  # fmt: skip
    cfg6 = _in(base, work / "c6", **coco)
    cfg6 = dataclasses.replace(cfg6, paths=dataclasses.replace(cfg6.paths, raw=str(export)))
    rows["6 classes (coco_panoptic export)"] = _run(cfg6, raw, six, work / "c6")
    doc = {"params": args.params, "overrides": args.overrides, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{'run':34s} {'pseudo PQ':>9s} {'things':>7s} {'stuff':>7s} {'student PQ':>10s} "
          f"{'things':>7s} {'stuff':>7s} {'s':>6s}")  # fmt: skip
    for name, r in rows.items():
        p, st = r["pseudo"], r["student"]
        print(f"{name:34s} {100 * p['pq']:9.1f} {100 * p['pq_things']:7.1f} "
              f"{100 * p['pq_stuff']:7.1f} {100 * st['pq']:10.1f} {100 * st['pq_things']:7.1f} "
              f"{100 * st['pq_stuff']:7.1f} {r['seconds']:6.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
