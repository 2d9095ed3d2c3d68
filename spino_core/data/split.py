"""The k-shot split: which k training images get annotations, which form the unlabelled pool.

SPINO's premise is that a user annotates only k images, so the choice must be reproducible
(same seed, same images), reproducible across papers (an explicit list of stems), or
deliberate (greedy class coverage, so rare classes are seen at least once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spino_core.atomic import write_text_atomic
from spino_core.errors import ConfigError, DataError
from spino_core.input_files import read_regular

LABELLED_FILE = "labelled.txt"
UNLABELLED_FILE = "unlabelled.txt"
VAL_FILE = "val.txt"


@dataclass(frozen=True)
class KShotSplit:
    labelled: list[str]  # in selection order
    unlabelled: list[str]  # sorted


def choose_k_shot(
    stems: Sequence[str],
    *,
    k: int,
    strategy: str = "random",
    seed: int = 0,
    explicit: Sequence[str] = (),
    indices: Sequence[int] = (),
    classes_of: Callable[[str], set[int]] | None = None,
    pick_diverse: Callable[[list[str], int, int], list[int]] | None = None,
) -> KShotSplit:
    """Pick k labelled stems out of ``stems``; the rest become the unlabelled pool.

    ``indices`` picks positions in the *sorted* stems, in the given order: the official
    SPINO configs' ``train_sample_indices`` index the sorted list of Cityscapes ground-truth
    paths (``gtFine/train/<city>/<stem>_gtFine_labelIds.png``), which sorts like the stems
    because no Cityscapes city name is a prefix of another.

    ``random`` shuffles the *sorted* stems with a seeded generator, so the result depends on
    the seed and the set of images, not on file-system order. ``coverage`` greedily picks
    the image adding the most classes not yet covered (``classes_of(stem)`` gives the
    trainIds present); once every class seen so far is covered it starts a new round, and
    ties go to the seeded random order (an oracle for benchmarks: it reads every image's
    labels). ``diverse`` needs no label: ``pick_diverse(sorted stems, k, seed)`` gives the
    positions (seeded k-center greedy on backbone features, ``spino_core.data.diverse``).
    """
    pool = sorted(set(stems))
    if len(pool) != len(stems):
        raise DataError("split: duplicate image stems in the training set")
    if k > len(pool):
        raise ConfigError(
            f"params: split.k: {k} is larger than the {len(pool)} training images; lower split.k"
        )
    if strategy == "stems":
        unknown = [s for s in explicit if s not in set(pool)]
        if unknown:
            raise ConfigError(
                f"params: split.stems: unknown image stem(s) {unknown[:5]}; "
                f"stems look like {pool[0]!r}"
            )
        labelled = list(explicit)
    elif strategy == "indices":
        if len(indices) != k or len(set(indices)) != k:
            raise ConfigError(f"params: split.indices: need {k} distinct positions, got {indices}")
        bad = [i for i in indices if not 0 <= i < len(pool)]
        if bad:
            raise ConfigError(
                f"params: split.indices: {bad[:5]} out of range for the {len(pool)} training "
                f"images (positions 0..{len(pool) - 1} in the sorted stems)"
            )
        labelled = [pool[i] for i in indices]
    elif strategy == "random":
        order = np.random.default_rng(seed).permutation(len(pool))
        labelled = [pool[i] for i in order[:k]]
    elif strategy == "coverage":
        if classes_of is None:
            raise ValueError("coverage strategy needs classes_of")
        labelled = _greedy_coverage(pool, k, seed, classes_of)
    elif strategy == "diverse":
        if pick_diverse is None:
            raise ValueError("diverse strategy needs pick_diverse")
        labelled = [pool[i] for i in pick_diverse(pool, k, seed)]
    else:
        raise ConfigError(
            f"params: split.strategy: unknown {strategy!r}; "
            "valid: random, stems, indices, coverage, diverse"
        )
    chosen = set(labelled)
    return KShotSplit(labelled=labelled, unlabelled=[s for s in pool if s not in chosen])


def _greedy_coverage(
    pool: list[str], k: int, seed: int, classes_of: Callable[[str], set[int]]
) -> list[str]:
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    present = {s: frozenset(classes_of(s)) for s in order}
    chosen: list[str] = []
    covered: set[int] = set()
    remaining = list(order)
    while len(chosen) < k:
        gains = [len(present[s] - covered) for s in remaining]
        if max(gains) == 0:
            if covered:  # everything reachable is covered: start a new round
                covered = set()
                continue
            best = 0  # images without any class: take them in seeded order
        else:
            best = int(np.argmax(gains))  # first maximum = seeded tie-break
        stem = remaining.pop(best)
        chosen.append(stem)
        covered |= present[stem]
    return chosen


def class_coverage(stems: Sequence[str], classes_of: Callable[[str], set[int]]) -> dict[int, int]:
    """trainId -> number of the given images that contain it."""
    counts: dict[int, int] = {}
    for s in stems:
        for c in classes_of(s):
            counts[c] = counts.get(c, 0) + 1
    return dict(sorted(counts.items()))


def check_list_names(stems: Sequence[str], path_of: Callable[[str], Path]) -> None:
    """DataError naming the image whose stem a split list cannot hold exactly.

    The lists hold one name per line and are read back stripped (:func:`read_stem_list`):
    a name with a line break, leading or trailing whitespace, no characters, or bytes that
    are not UTF-8 would come back as another name (or two). Called before any list is written.
    """
    for stem in stems:
        problem = _unlistable(stem)
        if problem:
            raise DataError(
                f"{str(path_of(stem))!r}: the image name {problem}, which the split lists "
                "(one name per line) cannot hold; rename the file"
            )


def _unlistable(stem: str) -> str | None:
    if not stem:
        return "is empty"
    if len(stem.splitlines()) != 1 or stem.endswith(("\n", "\r")):
        return "contains a line break"
    if stem != stem.strip():
        return "starts or ends with whitespace"
    try:
        stem.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def write_split(out_dir: Path, split: KShotSplit, val: Sequence[str]) -> None:
    """Write the three stem lists (one stem per line), each atomically."""
    out_dir = Path(out_dir)
    for name, stems in (
        (LABELLED_FILE, split.labelled),
        (UNLABELLED_FILE, split.unlabelled),
        (VAL_FILE, list(val)),
    ):
        write_text_atomic(out_dir / name, "".join(f"{s}\n" for s in stems))


def read_stem_list(path: Path) -> list[str]:
    """Read a split list; a missing file points at the stage that makes it."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        raise DataError(f"{path}: split list not found; run `spino split` first")
    data = read_regular(path, "split list")  # a FIFO or a device: one line naming it
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: split list is not UTF-8 text; rerun `spino split`") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
