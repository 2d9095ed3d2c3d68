"""The class table: which classes a run segments, their ids, names, colours, thing or stuff.

A :class:`ClassTable` is the one source of the number of classes and of their names for the
heads, the student, the fusion, the metrics and the reports. A class's *train index* is its
position in the table (the channel of the models' logits, the value of ``Sample.semantic``;
255 = void); its ``id`` is its category id in every panoptic file and in ``Sample.instance``
(``id * 1000 + k`` for a thing instance, the bare ``id`` for stuff: the Cityscapes encoding,
so ids lie in 1..999).

Tables come from a preset (``cityscapes``: the 19 Cityscapes training classes with their
labelIds as ids, the default; ``kitti360``: the same 19 classes, which KITTI-360 is mapped
onto), from params (a list of classes, each optionally folding several of the dataset's
label ids into one class: ``source_ids``), or from a COCO-panoptic export's ``categories``.
Heads and students record their table (:meth:`ClassTable.record`); loading them with another
one is a one-line error naming the difference (:meth:`ClassTable.check_same`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spino_core.data.classes import TRAIN_CLASSES, VOID
from spino_core.errors import SpinoError

#: Category ids lie in 1..MAX_CLASS_ID (thing instance ids are ``id * 1000 + k``).
MAX_CLASS_ID = 999
#: Train indices lie in 0..MAX_CLASSES-1 (``Sample.semantic`` is uint8, 255 = void).
MAX_CLASSES = 254


@dataclass(frozen=True)
class ClassDef:
    """One class of a table."""

    name: str
    id: int  # category id in panoptic files; instance ids are id * 1000 + k
    is_thing: bool  # has instances
    color: tuple[int, int, int]  # RGB, for overlays and the COCO ``categories``
    # the dataset's label ids (Cityscapes labelIds for the cityscapes/kitti360 layouts)
    # folded into this class; () = just ``id``
    source_ids: tuple[int, ...] = ()

    @property
    def sources(self) -> tuple[int, ...]:
        return self.source_ids or (self.id,)


@dataclass(frozen=True)
class ClassTable:
    """An ordered tuple of classes (index = train index) and the name of where it came from."""

    classes: tuple[ClassDef, ...]
    origin: str = "params"  # "cityscapes", "kitti360", "params" or the export's file name

    def __post_init__(self) -> None:
        _validate(self.classes, self.origin)

    # ---------------------------------------------------------------- sizes and names
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.classes]

    @property
    def thing_train_ids(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.classes) if c.is_thing)

    @property
    def stuff_train_ids(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.classes) if not c.is_thing)

    @property
    def thing_ids(self) -> frozenset[int]:
        """Category ids of the thing classes."""
        return frozenset(c.id for c in self.classes if c.is_thing)

    def by_id(self, category_id: int) -> ClassDef:
        for c in self.classes:
            if c.id == category_id:
                return c
        raise KeyError(f"category id {category_id} is not in the {self.origin} class table")

    def train_id_of(self, category_id: int) -> int:
        return self.ids.index(category_id)

    @property
    def is_identity(self) -> bool:
        """True when every class maps from exactly its own id (no folding of source ids)."""
        return all(c.sources == (c.id,) for c in self.classes)

    # ---------------------------------------------------------------- lookup tables
    def source_to_train_lut(self, size: int = 256) -> np.ndarray:
        """(size,) uint8: the dataset's label id -> train index (255 for unmapped ids)."""
        lut = np.full(size, VOID, dtype=np.uint8)
        for i, c in enumerate(self.classes):
            for s in c.sources:
                if s < size:
                    lut[s] = i
        return lut

    def train_to_id_lut(self) -> np.ndarray:
        """(256,) int32: train index -> category id (0 for void and unused indices)."""
        lut = np.zeros(256, dtype=np.int32)
        for i, c in enumerate(self.classes):
            lut[i] = c.id
        return lut

    def id_to_train_lut(self) -> np.ndarray:
        """(MAX_CLASS_ID + 1,) uint8: category id -> train index (255 for unknown ids)."""
        lut = np.full(MAX_CLASS_ID + 1, VOID, dtype=np.uint8)
        for i, c in enumerate(self.classes):
            lut[c.id] = i
        return lut

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 colours by train index (void black), for overlays."""
        pal = np.zeros((256, 3), dtype=np.uint8)
        for i, c in enumerate(self.classes):
            pal[i] = c.color
        return pal

    # ---------------------------------------------------------------- records
    def coco_categories(self) -> list[dict]:
        """COCO-panoptic ``categories`` of the outputs (the Cityscapes preset gives exactly
        what cityscapesscripts' createPanopticImgs writes)."""
        return [
            {
                "id": c.id,
                "name": c.name,
                "isthing": int(c.is_thing),
                "color": list(c.color),
                "supercategory": "thing" if c.is_thing else "stuff",
            }
            for c in self.classes
        ]

    def record(self) -> list[dict]:
        """What heads and students store: id, name, isthing, colour per class, in order."""
        return [
            {"id": c.id, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color)}
            for c in self.classes
        ]

    def difference(self, other: ClassTable) -> str | None:
        """One phrase naming the first difference of the classes (not of source ids), or
        None when ``other`` has the same classes in the same order."""
        if self.num_classes != other.num_classes:
            return (
                f"{self.num_classes} classes ({_short_names(self)}) vs {other.num_classes} "
                f"({_short_names(other)})"
            )
        for i, (a, b) in enumerate(zip(self.classes, other.classes, strict=True)):
            for what, x, y in (
                ("name", a.name, b.name),
                ("id", a.id, b.id),
                ("thing", a.is_thing, b.is_thing),
                ("colour", a.color, b.color),
            ):
                if x != y:
                    return f"class {i} {what} {x!r} vs {y!r}"
        return None

    def check_same(self, recorded: ClassTable, where: str, fix: str) -> None:
        """SpinoError ``<where>: trained for another class table (<difference>); <fix>``."""
        diff = recorded.difference(self)
        if diff is not None:
            raise SpinoError(
                f"{where}: made for another class table (recorded {recorded.origin} vs "
                f"this run's {self.origin}: {diff}); {fix}"
            )


# -------------------------------------------------------------------- construction


def table_from_categories(categories: Sequence[Mapping[str, Any]], origin: str) -> ClassTable:
    """A table from COCO ``categories`` (``id``, ``name``, ``isthing``, optional ``color``),
    in the given order. Missing colours are drawn from a fixed palette."""
    classes = []
    for i, c in enumerate(categories):
        if not isinstance(c, Mapping) or type(c.get("id")) is not int or "isthing" not in c:
            raise SpinoError(f"{origin}: categories[{i}] needs an integer 'id' and 'isthing'")
        name = c.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpinoError(f"{origin}: categories[{i}] (id {c['id']}) needs a 'name'")
        color = c.get("color")
        classes.append(
            ClassDef(
                name=name,
                id=c["id"],
                is_thing=bool(c["isthing"]),
                color=_color(color, i, origin) if color is not None else default_color(i),
            )
        )
    return ClassTable(tuple(classes), origin)


def table_from_record(record: Any, where: str) -> ClassTable:
    """The table a checkpoint recorded (:meth:`ClassTable.record`)."""
    if not isinstance(record, list) or not record:
        raise SpinoError(f"{where}: records no class table; retrain it")
    return table_from_categories(record, origin=where)


def _color(value: Any, i: int, origin: str) -> tuple[int, int, int]:
    ok = isinstance(value, Sequence) and len(value) == 3
    if not ok or not all(type(v) is int and 0 <= v <= 255 for v in value):
        raise SpinoError(f"{origin}: class {i} colour {value!r} must be [R, G, B] in 0..255")
    return (int(value[0]), int(value[1]), int(value[2]))


def default_color(i: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(1000 + i)  # fixed per index: the same colours every run
    r, g, b = (int(v) for v in rng.integers(40, 256, 3))
    return (r, g, b)


def _short_names(table: ClassTable) -> str:
    names = table.names
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def _validate(classes: Iterable[ClassDef], origin: str) -> None:
    classes = list(classes)
    if not classes:
        raise SpinoError(f"{origin}: the class table is empty; list at least one class")
    if len(classes) > MAX_CLASSES:
        raise SpinoError(f"{origin}: {len(classes)} classes, at most {MAX_CLASSES} are supported")
    names: dict[str, int] = {}
    ids: dict[int, str] = {}
    sources: dict[int, str] = {}
    for c in classes:
        if not 1 <= c.id <= MAX_CLASS_ID:
            raise SpinoError(
                f"{origin}: class {c.name!r} has id {c.id}; ids must lie in 1..{MAX_CLASS_ID} "
                "(renumber the categories)"
            )
        if c.name in names:
            raise SpinoError(
                f"{origin}: two classes are named {c.name!r} (ids {names[c.name]} and {c.id}); "
                "give each class its own name"
            )
        if c.id in ids:
            raise SpinoError(f"{origin}: classes {ids[c.id]!r} and {c.name!r} share id {c.id}")
        for s in c.sources:
            if s in sources:
                raise SpinoError(
                    f"{origin}: source id {s} is mapped onto both {sources[s]!r} and {c.name!r}"
                )
            if not 0 <= s <= 255:
                raise SpinoError(f"{origin}: class {c.name!r}: source id {s} is not in 0..255")
            sources[s] = c.name
        names[c.name] = c.id
        ids[c.id] = c.name


CITYSCAPES = ClassTable(
    tuple(ClassDef(c.name, c.label_id, c.is_thing, c.color) for c in TRAIN_CLASSES),
    origin="cityscapes",
)
#: KITTI-360 is read onto the Cityscapes labelIds (``kitti360.py``): the same 19 classes.
KITTI360 = ClassTable(CITYSCAPES.classes, origin="kitti360")
PRESETS: dict[str, ClassTable] = {"cityscapes": CITYSCAPES, "kitti360": KITTI360}


def preset(name: str) -> ClassTable:
    try:
        return PRESETS[name]
    except KeyError:
        raise SpinoError(
            f"unknown class table preset {name!r}; valid: {', '.join(sorted(PRESETS))}"
        ) from None


def recorded_table(meta: Mapping[str, Any], where: str) -> ClassTable:
    """The table a checkpoint's metadata records: ``categories`` (:meth:`ClassTable.record`),
    or, for files written before tables existed, the Cityscapes names in ``classes``."""
    if "categories" in meta:
        table = table_from_record(meta["categories"], where)
        if "classes" in meta and meta["classes"] != table.names:
            raise SpinoError(
                f"{where}: its class table is inconsistent ('classes' vs 'categories'); retrain it"
            )
        return table
    if meta.get("classes") == CITYSCAPES.names:
        return CITYSCAPES
    raise SpinoError(f"{where}: records no class table this version reads; retrain it")
