"""The exclusion list: pseudo-labelled images a reviewer keeps out of the student's training.

A plain-text file (``student.exclude``, git-tracked and a DVC dep of ``train_student``, so
editing it reruns the student and what follows it, and nothing else): one image stem a
line; blank lines and ``#`` comments are ignored. Every stem must name a pseudo-labelled
image: a typo or a stale stem is an error naming the file and the line, never silently
ignored. The excluded images leave the student's pseudo-labelled set (and so its sampler);
the pseudo-labels themselves, the report and the k labelled images are unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from spino_core.errors import DataError
from spino_core.student.data import PseudoSet


def exclusion_path(exclude: str, base_dir: str | os.PathLike[str]) -> Path | None:
    """``student.exclude`` as a path (relative = beside the params file); None when ''."""
    if not exclude:
        return None
    path = Path(exclude)
    return path if path.is_absolute() else Path(base_dir or os.getcwd()) / path


def read_exclusion_list(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(line number, stem) of every stem in the list, in file order, duplicates dropped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{path}: exclusion list not found (student.exclude); create it (it may hold only "
            "comments) or set student.exclude: ''"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the exclusion list ({exc})") from None
    out: list[tuple[int, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stem = line.split("#", 1)[0].strip()
        if not stem:
            continue
        if any(c.isspace() for c in stem):
            raise DataError(
                f"{path}:{number}: {stem!r} is not one image stem; write one stem a line"
            )
        if stem not in seen:
            seen.add(stem)
            out.append((number, stem))
    return out


def exclude_stems(pseudo: PseudoSet, listed: list[tuple[int, str]], source: Path) -> PseudoSet:
    """``pseudo`` without the listed images; unknown stems and an empty result are errors."""
    known = set(pseudo.stems)
    unknown = [(n, s) for n, s in listed if s not in known]
    if unknown:
        where = ", ".join(f"line {n}: {s!r}" for n, s in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise DataError(
            f"{source}: {where}{more} not among the {len(known)} pseudo-labelled images; fix "
            "the stem or remove the line (stems as in reports/pseudo/gallery)"
        )
    drop = {s for _, s in listed}
    if not drop:
        return pseudo
    keep = [i for i, s in enumerate(pseudo.stems) if s not in drop]
    if not keep:
        raise DataError(
            f"{source}: excludes all {len(known)} pseudo-labelled images; the student needs "
            "at least one"
        )
    pset = pseudo.panoptic
    anns = [pset.annotations[i] for i in keep]
    ids = {a["image_id"] for a in anns}
    names = {a["file_name"] for a in anns}
    panoptic = dataclasses.replace(
        pset,
        images=[img for img in pset.images if img["id"] in ids],
        annotations=anns,
        by_image_id={k: v for k, v in pset.by_image_id.items() if k in ids},
        by_file_name={k: v for k, v in pset.by_file_name.items() if k in names},
    )
    return dataclasses.replace(
        pseudo, panoptic=panoptic, image_paths=tuple(pseudo.image_paths[i] for i in keep)
    )


def apply_exclusion(pseudo: PseudoSet, exclude: str, base_dir: str) -> tuple[PseudoSet, int]:
    """``student.exclude`` applied to ``pseudo``: (the set left, how many were excluded)."""
    path = exclusion_path(exclude, base_dir)
    if path is None:
        return pseudo, 0
    left = exclude_stems(pseudo, read_exclusion_list(path), path)
    return left, len(pseudo) - len(left)
