"""The review gallery renders with every image present (HTML parse, files on disk)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import pytest

from spino_core.data.coco_panoptic import read_panoptic_json
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.review.gallery import write_gallery


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.cards: list[dict[str, str | None]] = []
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "figure":
            self.cards.append(a)
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "link":
            self.links.append(a)


@pytest.fixture(scope="module")
def pseudo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("gallery")
    generate_synthetic_dataset(
        root / "raw", n_train=5, n_val=0, height=64, width=128, seed=4, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    convert_dataset_to_coco(ds, root / "p.json", root / "p", progress=False)
    return root, ds


def test_gallery_has_every_image_lazy_and_offline(pseudo, tmp_path: Path) -> None:
    root, ds = pseudo
    pset = read_panoptic_json(root / "p.json", root / "p")
    conf = {s: 0.5 + i / 10 for i, s in enumerate(ds.stems[:-1])}  # the last one: unknown
    out = tmp_path / "report" / "gallery"
    result = write_gallery(pset, ds.image_path, out, confidence=conf, progress=False)
    assert result["n_images"] == 5
    page = _Page()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    assert sorted(c["data-stem"] for c in page.cards) == ds.stems
    assert len(page.imgs) == 2 * len(ds.stems)
    for img in page.imgs:
        assert img["loading"] == "lazy"
        thumb = cv2.imread(str(out / img["src"]))
        assert thumb is not None and thumb.shape[1] == 240  # a small file, not the original
    assert not any(s.get("src") for s in page.scripts) and not page.links  # no CDN
    by_stem = {c["data-stem"]: c for c in page.cards}
    assert float(by_stem[ds.stems[0]]["data-conf"]) == pytest.approx(0.5)
    assert by_stem[ds.stems[-1]]["data-conf"] == ""
    ann = pset.by_image_id[ds.stems[0]]
    names = {c["id"]: c["name"] for c in pset.categories}
    assert set(json.loads(by_stem[ds.stems[0]]["data-classes"])) == {
        names[s["category_id"]] for s in ann["segments_info"]
    }


def test_gallery_is_replaced_whole(pseudo, tmp_path: Path) -> None:
    root, ds = pseudo
    pset = read_panoptic_json(root / "p.json", root / "p")
    out = tmp_path / "gallery"
    write_gallery(pset, ds.image_path, out, progress=False)
    (out / "thumbs" / "stale.png").write_bytes(b"x")
    write_gallery(pset, ds.image_path, out, progress=False)
    assert not (out / "thumbs" / "stale.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery"]  # no work folder left


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_gallery_script_parses(pseudo, tmp_path: Path) -> None:
    root, ds = pseudo
    pset = read_panoptic_json(root / "p.json", root / "p")
    write_gallery(pset, ds.image_path, tmp_path / "g", progress=False)
    text = (tmp_path / "g" / "index.html").read_text(encoding="utf-8")
    script = text.split("<script>", 1)[1].split("</script>", 1)[0]
    (tmp_path / "s.js").write_text(script)
    res = subprocess.run(["node", "--check", str(tmp_path / "s.js")], capture_output=True)
    assert res.returncode == 0, res.stderr.decode()


_DOM_STUB = """
const cards = CARDS.map(function(c){
  return {dataset: c, style: {}, classList: {toggle: function(){}},
          querySelector: function(){ return {checked: c.stem === PICK}; }};
});
const grid = {children: cards.slice(), order: [],
              appendChild: function(c){ this.order.push(c); },
              addEventListener: function(e, f){ handlers.grid = f; }};
const handlers = {};
function control(id, value){ return {id: id, value: value, textContent: '',
  addEventListener: function(e, f){ handlers[id] = f; }}; }
const els = {grid: grid, sort: control('sort', SORT), cls: control('cls', CLS),
             stem: control('stem', ''), count: control('count', ''), picked: control('picked', '')};
global.document = {getElementById: function(id){ return els[id]; }};
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
@pytest.mark.parametrize(("sort", "cls"), [("conf-asc", ""), ("conf-desc", ""), ("stem", "car")])
def test_gallery_script_sorts_filters_and_picks(pseudo, tmp_path: Path, sort: str, cls: str):
    root, ds = pseudo
    pset = read_panoptic_json(root / "p.json", root / "p")
    conf = {s: [0.7, 0.2, 0.9, 0.4][i] for i, s in enumerate(ds.stems[:4])}  # last: none
    write_gallery(pset, ds.image_path, tmp_path / "g", confidence=conf, progress=False)
    text = (tmp_path / "g" / "index.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    cards = [
        {
            "stem": c["data-stem"],
            "conf": c["data-conf"],
            "segments": c["data-segments"],
            "classes": c["data-classes"],
        }
        for c in page.cards
    ]
    script = text.split("<script>", 1)[1].split("</script>", 1)[0]
    stub = (
        _DOM_STUB.replace("CARDS", json.dumps(cards))
        .replace("PICK", json.dumps(ds.stems[1]))
        .replace("SORT", json.dumps(sort))
        .replace("CLS", json.dumps(cls))
    )
    report = (
        "handlers.grid();"
        "console.log(JSON.stringify({order: grid.order.slice(-CARDS_N).map(function(c){"
        "return [c.dataset.stem, c.style.display];}), count: els.count.textContent,"
        "picked: els.picked.value}));"
    ).replace("CARDS_N", str(len(cards)))
    (tmp_path / "run.js").write_text(stub + script + report)
    res = subprocess.run(["node", str(tmp_path / "run.js")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    order = [stem for stem, _ in out["order"]]
    shown = [stem for stem, display in out["order"] if display != "none"]
    s = ds.stems
    if sort == "conf-asc":
        assert order == [s[1], s[3], s[0], s[2], s[4]]  # no confidence: last
    elif sort == "conf-desc":
        assert order == [s[2], s[0], s[3], s[1], s[4]]
    else:
        with_car = [c["stem"] for c in cards if "car" in json.loads(c["classes"])]
        assert order == sorted(s) and shown == sorted(with_car) and with_car
    assert out["count"] == f"{len(shown)} of {len(cards)} images"
    assert out["picked"] == f"{s[1]}\n"  # the ticked card, ready for review/exclude.txt
