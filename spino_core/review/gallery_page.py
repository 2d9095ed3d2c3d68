"""The gallery's HTML: static cards plus a small inline script (sort, filter, pick).

Every card is in the page as plain HTML (no client-side templating), so the page works,
and can be checked, without running its script; the script only reorders and hides cards.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;background:#fafafa;color:#222}
#bar{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ccc;z-index:1}
#bar label{margin-right:1em}
#grid{display:flex;flex-wrap:wrap;gap:8px;margin-top:8px}
.card{margin:0;background:#fff;border:1px solid #ddd;padding:4px;font-size:12px}
.card img{display:block;height:auto;background:#eee}
.card.picked{outline:3px solid #c00}
textarea{width:100%;height:6em;font-family:monospace}
"""

_SCRIPT = """
(function(){
  const grid=document.getElementById('grid');
  const cards=Array.from(grid.children);
  const sortSel=document.getElementById('sort'), cls=document.getElementById('cls');
  const text=document.getElementById('stem'), count=document.getElementById('count');
  const out=document.getElementById('picked');
  function conf(c){const v=c.dataset.conf;return v===''?NaN:parseFloat(v);}
  function key(c){
    const m=sortSel.value;
    if(m==='stem') return c.dataset.stem;
    if(m==='segments') return -parseInt(c.dataset.segments,10);
    const v=conf(c);
    if(isNaN(v)) return Infinity;
    return m==='conf-asc'?v:-v;
  }
  function apply(){
    const sorted=cards.slice().sort(function(a,b){
      const ka=key(a),kb=key(b);return ka<kb?-1:ka>kb?1:(a.dataset.stem<b.dataset.stem?-1:1);});
    const want=cls.value, sub=text.value.trim();
    let shown=0;
    for(const c of sorted){
      const ok=(!want||JSON.parse(c.dataset.classes).indexOf(want)>=0)&&
               (!sub||c.dataset.stem.indexOf(sub)>=0);
      c.style.display=ok?'':'none'; if(ok) shown++;
      grid.appendChild(c);
    }
    count.textContent=shown+' of '+cards.length+' images';
  }
  function picks(){
    const p=cards.filter(function(c){return c.querySelector('.pick').checked;});
    cards.forEach(function(c){c.classList.toggle('picked',c.querySelector('.pick').checked);});
    out.value=p.map(function(c){return c.dataset.stem;}).sort().join('\\n')+(p.length?'\\n':'');
  }
  sortSel.addEventListener('change',apply); cls.addEventListener('change',apply);
  text.addEventListener('input',apply); grid.addEventListener('change',picks);
  apply();
})();
"""


def card_html(card: Mapping[str, Any]) -> str:
    """One card: the two lazy thumbnails and the image's facts (escaped)."""
    h, w = card["size"]
    stem = html.escape(card["stem"], quote=True)
    conf = card["confidence"]
    conf_text = "–" if conf is None else f"{conf:.3f}"
    classes = html.escape(json.dumps(card["classes"]), quote=True)
    return (
        f'<figure class="card" data-stem="{stem}" data-conf="{"" if conf is None else conf}" '
        f'data-segments="{card["segments"]}" data-classes="{classes}">'
        f'<img loading="lazy" src="{card["image"]}" width="{w}" height="{h}" alt="{stem}">'
        f'<img loading="lazy" src="{card["label"]}" width="{w}" height="{h}" '
        f'alt="pseudo-label of {stem}">'
        f'<figcaption><label><input type="checkbox" class="pick"> {stem}</label><br>'
        f"confidence {conf_text} · {card['segments']} segments</figcaption></figure>"
    )


def render_page(title: str, cards: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """The whole page: controls, every card, the inline script."""
    options = "".join(
        f'<option value="{html.escape(n, quote=True)}">{html.escape(n)}</option>'
        for n in class_names
    )
    t = html.escape(title)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{t}</title>'
        f"<style>{_STYLE}</style></head><body>\n"
        f"<h1>{t}</h1>\n"
        "<p>Every pseudo-label as image | label. Tick the images whose labels the student "
        "should not learn from, copy the list below into the exclusion list "
        "(<code>student.exclude</code>, <code>review/exclude.txt</code>) and rerun "
        "<code>dvc repro</code>: only the student and its evaluation rerun.</p>\n"
        '<div id="bar"><label>sort <select id="sort">'
        '<option value="conf-asc">confidence, lowest first</option>'
        '<option value="conf-desc">confidence, highest first</option>'
        '<option value="stem">stem</option>'
        '<option value="segments">segments, most first</option></select></label>'
        f'<label>class <select id="cls"><option value="">all</option>{options}</select></label>'
        '<label>stem contains <input id="stem" type="search"></label>'
        f'<span id="count">{len(cards)} images</span></div>\n'
        '<div id="grid">\n' + "\n".join(card_html(c) for c in cards) + "\n</div>\n"
        "<h2>Ticked images (paste into the exclusion list)</h2>"
        '<textarea id="picked" readonly></textarea>\n'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
