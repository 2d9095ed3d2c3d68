"""`dvc plots show` writes a page that works offline: vega inlined, no CDN script.

DVC's default page loads vega from cdn.jsdelivr.net (blank offline). ``make setup`` writes
``.dvc/plots_template.html`` (spino_core.report.plots_template) and points
``plots.html_template`` at it. Here the project's own dvc.yaml and committed metrics/ are
plotted in a temporary DVC repository, with DVC's default page first (it must reference the
CDN, or this test could not tell the difference) and then with the template. Where node is
installed the page's scripts are run and every plot is rendered to SVG.
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
import yaml

from spino_core.report.plots_template import render_plots_template, write_plots_template

REPO = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).parent / "dvc"
_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)


def _plot_defs() -> list[dict]:
    """Every plot of dvc.yaml as {path, title, x_label, y_label}."""
    out = []
    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values():
        for entry in stage.get("plots", []):
            ((path, props),) = entry.items()
            out.append({"path": path, **props})
    return out


def _dvc(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    res = subprocess.run([str(DVC), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"dvc {args} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res.stdout


def test_every_plot_has_a_title_and_axis_labels() -> None:
    defs = _plot_defs()
    assert len(defs) >= 7
    for d in defs:
        assert d.get("title") and d.get("x_label") and d.get("y_label"), d["path"]
    # per-image plots: a number on the x axis (the stem is a string: tooltip only)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for d in (d for d in defs if d.get("template") == "scatter_per_image"):
        csv_path = REPO / d["path"].replace("${paths.metrics}", params["paths"]["metrics"])
        header, first = csv_path.read_text().splitlines()[:2]
        value = dict(zip(header.split(","), first.split(","), strict=True))[d["x"]]
        assert value.isdigit(), f"{csv_path}: x column {d['x']!r} is {value!r}, not a number"


def test_template_has_dvc_placeholder_vega_inlined_and_no_cdn() -> None:
    page = render_plots_template()
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page  # no CDN tags
    assert "window.vegaEmbed=" in page and len(page) > 500_000  # the libraries themselves
    assert all("src=" not in attrs for attrs in _SCRIPT_TAG.findall(page))
    assert render_plots_template() == page  # same package version: same bytes


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC repository (no git) with the project's dvc.yaml, params, plot templates and
    committed metrics: enough for `dvc plots show`."""
    repo = tmp_path_factory.mktemp("plots") / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, repo / name)
    shutil.copytree(REPO / "metrics", repo / "metrics")
    _dvc(["init", "--no-scm", "-q"], repo)
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)
    return repo


@pytest.mark.slow
def test_dvc_plots_show_page_is_offline(plots_repo: Path) -> None:
    n_plots = len(_plot_defs())
    _dvc(["plots", "show", "-o", "cdn"], plots_repo)
    default = (plots_repo / "cdn" / "index.html").read_text()
    assert 'src="https://cdn.jsdelivr.net' in default  # DVC's own page: online only

    # what `make setup` does (Makefile target .dvc/plots_template.html)
    write_plots_template(plots_repo / ".dvc" / "plots_template.html")
    _dvc(["config", "--local", "plots.html_template", "plots_template.html"], plots_repo)
    _dvc(["plots", "show", "-o", "offline"], plots_repo)
    page = (plots_repo / "offline" / "index.html").read_text()
    tags = _SCRIPT_TAG.findall(page)
    assert not [t for t in tags if "src" in t], "a script is loaded from elsewhere"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "window.vegaEmbed=" in page and page.count("vegaEmbed('#") == n_plots
    assert len(tags) == n_plots + 1  # the inlined bundle + one call per plot
    for d in _plot_defs():
        assert json.dumps(d["title"]) in page and json.dumps(d["y_label"]) in page


# Runs the page's scripts in order with a do-nothing DOM (every property a callable stub),
# then renders every embedded view to SVG and prints the texts found in it as JSON.
_NODE_CHECK = r"""
const html = require('fs').readFileSync(process.argv[2], 'utf8');
const scripts = [...html.matchAll(/<script[^>]*>([\s\S]*?)<\/script>/g)].map(m => m[1]);
function stub() {
  const f = function () { return stub(); };
  return new Proxy(f, {
    get(t, k) {
      if (k === Symbol.toPrimitive) return () => 0;
      if (k === 'then') return undefined;
      if (k in t && k !== 'length' && k !== 'name') return t[k];
      return stub();
    },
    set(t, k, v) { t[k] = v; return true; },
  });
}
Object.assign(globalThis, {window: globalThis, document: stub(), addEventListener() {},
  removeEventListener() {}, ShadowRoot: class {}, HTMLElement: class {}, Element: class {}});
console.warn = () => {};
(0, eval)(scripts[0]);
const embed = window.vegaEmbed, views = [];
window.vegaEmbed = (id, spec) => views.push([id, embed(id, spec, {renderer: 'none', actions: false})]);
for (const s of scripts.slice(1)) (0, eval)(s);
(async () => {
  const out = {};
  for (const [id, p] of views) {
    const svg = await (await p).view.toSVG();
    out[id] = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map(m => m[1]);
  }
  process.stdout.write(JSON.stringify(out));
})();
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_offline_page_renders_every_plot(plots_repo: Path, tmp_path: Path) -> None:
    write_plots_template(plots_repo / ".dvc" / "plots_template.html")
    _dvc(["config", "--local", "plots.html_template", "plots_template.html"], plots_repo)
    _dvc(["plots", "show", "-o", "rendered"], plots_repo)
    script = tmp_path / "check.js"
    script.write_text(_NODE_CHECK)
    res = subprocess.run(
        ["node", str(script), str(plots_repo / "rendered" / "index.html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    texts = json.loads(res.stdout)
    defs = _plot_defs()
    assert len(texts) == len(defs)
    for d in defs:
        rendered = texts["#" + re.sub(r"\W", "_", d["path"].replace("${paths.metrics}", "metrics"))]
        for key in ("title", "x_label", "y_label"):
            assert d[key] in rendered, f"{d['path']}: {key} {d[key]!r} not drawn"


def _make_dry_run(*args: str) -> subprocess.CompletedProcess:
    """``make -n`` as a user types it: under ``make test`` the inherited MAKELEVEL/MAKEFLAGS
    would make it a sub-make that prints "Entering/Leaving directory" lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_setup_writes_the_template_and_sets_the_config() -> None:
    """A dry run (-n executes nothing): setup's recipe includes both steps."""
    res = _make_dry_run("-B", "setup")
    assert res.returncode == 0, res.stderr
    assert "-m spino_core.report.plots_template .dvc/plots_template.html" in res.stdout
    assert "dvc config --local plots.html_template plots_template.html" in res.stdout
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".dvc/plots_template.html"], cwd=REPO, timeout=60
    )
    assert ignored.returncode == 0, ".dvc/plots_template.html must be git-ignored (generated)"


def test_make_demo_ends_with_the_plots_page() -> None:
    res = _make_dry_run("demo")
    assert res.returncode == 0, res.stderr
    assert "dvc plots show" in res.stdout.strip().splitlines()[-1]
    ignored = subprocess.run(["git", "check-ignore", "-q", "dvc_plots/index.html"], cwd=REPO)
    assert ignored.returncode == 0, "dvc_plots/ (written by `make demo`) must be git-ignored"
