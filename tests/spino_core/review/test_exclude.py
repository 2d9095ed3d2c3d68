"""The exclusion list keeps exactly its images out of the student's sampler."""

from __future__ import annotations

from pathlib import Path

import pytest

from spino_core.config import StudentConfig
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import DataError
from spino_core.review.exclude import apply_exclusion, read_exclusion_list
from spino_core.student.data import open_pseudo_set
from spino_core.student.train import _Dist, _step_batches

CFG = StudentConfig(input_height=56, input_width=112, batch_size=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("exclude")
    generate_synthetic_dataset(
        root / "raw", n_train=6, n_val=0, height=64, width=128, seed=2, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    convert_dataset_to_coco(ds, root / "p.json", root / "p", progress=False)  # as pseudo-labels
    return root, ds


def _sampled_stems(pseudo, gt) -> set[str]:
    """Stems of the pseudo-labelled images the student's batches draw over two epochs."""
    steps = _step_batches(pseudo, gt, (56, 112), CFG, _Dist())
    n = len(pseudo)
    drawn = {i for s in range(2 * n) for i in steps.indices(s) if i < n}
    return {pseudo.stems[i] for i in drawn}


def test_excluded_images_leave_the_sampler_and_nothing_else(data, tmp_path: Path) -> None:
    root, ds = data
    stems = ds.stems
    gt = [ds.load(stems[0])]
    full = open_pseudo_set(root / "p.json", root / "p", ds)
    assert _sampled_stems(full, gt) == set(stems)
    listed = tmp_path / "exclude.txt"
    listed.write_text(f"# reviewed\n{stems[2]}\n\n{stems[4]}  # hood painted as car\n{stems[2]}\n")
    left, n = apply_exclusion(full, "exclude.txt", str(tmp_path))  # relative to base_dir
    assert n == 2 and len(left) == 4
    assert _sampled_stems(left, gt) == set(stems) - {stems[2], stems[4]}
    assert left.stems == [s for s in full.stems if s not in {stems[2], stems[4]}]
    kept = [full.image_paths[full.stems.index(s)] for s in left.stems]
    assert list(left.image_paths) == kept  # images stay aligned with their labels
    assert {img["id"] for img in left.panoptic.images} == set(left.stems)
    assert apply_exclusion(full, "", str(tmp_path)) == (full, 0)  # no list: unchanged


def test_bad_lists_are_one_line_errors(data, tmp_path: Path) -> None:
    root, ds = data
    full = open_pseudo_set(root / "p.json", root / "p", ds)
    with pytest.raises(DataError, match=r"exclude\.txt: exclusion list not found"):
        apply_exclusion(full, "exclude.txt", str(tmp_path))
    (tmp_path / "exclude.txt").write_text(f"{ds.stems[0]}\nnot_a_stem\n")
    with pytest.raises(DataError, match=r"line 2: 'not_a_stem' not among the 6"):
        apply_exclusion(full, "exclude.txt", str(tmp_path))
    (tmp_path / "exclude.txt").write_text("".join(f"{s}\n" for s in ds.stems))
    with pytest.raises(DataError, match="excludes all 6"):
        apply_exclusion(full, "exclude.txt", str(tmp_path))
    (tmp_path / "two.txt").write_text("a b\n")
    with pytest.raises(DataError, match=r"two\.txt:1: 'a b' is not one image stem"):
        read_exclusion_list(tmp_path / "two.txt")


def test_the_shipped_list_is_valid_and_empty() -> None:
    repo = Path(__file__).resolve().parents[3]
    assert read_exclusion_list(repo / "review" / "exclude.txt") == []
