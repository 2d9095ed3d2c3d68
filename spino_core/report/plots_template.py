"""An HTML page template for ``dvc plots show`` / ``dvc plots diff`` that works offline.

DVC's own page loads vega, vega-lite and vega-embed from a CDN (``<script src="https://
cdn.jsdelivr.net/...">``), so without a network the page is blank. DVC accepts a custom page
(``dvc plots show --html-template PATH`` or the config key ``plots.html_template``, relative to
``.dvc/``): a text with a ``{plot_divs}`` placeholder, where DVC puts one ``<div>`` per plot,
each with an inline ``vegaEmbed('#id', spec)`` call. DVC fills a ``{scripts}`` placeholder
with its CDN tags; this template has none, so no CDN is referenced.

The three libraries come from ``vl-convert-python``: :func:`vl_convert.javascript_bundle` is
one self-contained script that sets ``window.vegaEmbed`` (and ``vega``, ``vegaLite``). It is
inlined in ``<head>``, so it has run before the plots' inline scripts call ``vegaEmbed``.
It is wrapped in a function so its top-level names cannot clash with DVC's ``var spec``.
The page is ~0.9 MB and is generated (``make setup``), not committed: same vl-convert
version, same bytes.

Usage: ``python -m spino_core.report.plots_template .dvc/plots_template.html`` then
``dvc config --local plots.html_template plots_template.html`` (the Makefile does both).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spino_core.atomic import write_text_atomic
from spino_core.errors import SpinoError

#: The vega-lite major version of DVC's plot templates (their ``$schema`` is v5): the
#: bundle then compiles the specs with the version they were written for, no warning.
VEGA_LITE_VERSION = "5.21"

#: DVC's placeholders (dvc_render.html.HTML): plots are required, scripts deliberately absent.
PLOTS_PLACEHOLDER = "{plot_divs}"
REFRESH_PLACEHOLDER = "{refresh_tag}"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{refresh_tag}
<title>SPINO: DVC plots</title>
<!-- vega {vega}, vega-lite {vega_lite}, vega-embed {vega_embed}: bundled by
     vl-convert-python {vl_convert} (spino_core/report/plots_template.py), no CDN -->
<script type="text/javascript">
(function () {{
{bundle}
}})();
</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; }}
table {{ border-spacing: 15px; }}
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def render_plots_template() -> str:
    """The template text: DVC's two placeholders around the inlined vega bundle.

    Raises SpinoError (naming the package and the fix) when vl-convert-python is missing or
    its bundle does not define ``vegaEmbed``: the page would be blank, never silently.
    """
    try:
        import vl_convert
    except ImportError:
        raise SpinoError(
            "vl-convert-python is not installed: it ships the vega libraries for the offline "
            "`dvc plots` page; run `make setup` (pyproject.toml lists it)"
        ) from None
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    if "window.vegaEmbed" not in bundle:
        raise SpinoError(
            f"vl-convert-python {vl_convert.__version__}: its javascript_bundle() no longer "
            "sets window.vegaEmbed; pin the version that does (1.9.0 does)"
        )
    for placeholder in (PLOTS_PLACEHOLDER, REFRESH_PLACEHOLDER, "{scripts}"):
        if placeholder in bundle:  # DVC replaces these anywhere in the page
            raise SpinoError(f"the vega bundle contains DVC's placeholder {placeholder}")
    if "</script" in bundle.lower():  # would end the inline <script> early
        raise SpinoError("the vega bundle contains '</script': it cannot be inlined")
    return _PAGE.format(
        refresh_tag=REFRESH_PLACEHOLDER,
        plot_divs=PLOTS_PLACEHOLDER,
        bundle=bundle,
        vega=vl_convert.get_vega_version(),
        vega_lite=VEGA_LITE_VERSION,
        vega_embed=vl_convert.get_vega_embed_version(),
        vl_convert=vl_convert.__version__,
    )


def write_plots_template(path: str | Path) -> Path:
    """Write the template to ``path`` (atomically, parents created); returns the path."""
    path = Path(path)
    write_text_atomic(path, render_plots_template())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spino_core.report.plots_template",
        description="Write the offline HTML template for `dvc plots show` (vega bundled).",
    )
    parser.add_argument("out", nargs="?", default=".dvc/plots_template.html")
    args = parser.parse_args(argv)
    try:
        path = write_plots_template(args.out)
    except SpinoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB): offline page for `dvc plots`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
