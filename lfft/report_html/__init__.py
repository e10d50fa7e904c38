"""Self-contained HTML pages (no CDN, no network: CSS, script and SVG plots inline) for
``lfft explain`` and ``lfft evaluate``'s ``report.html``.

Every piece of text that comes from data goes through :func:`esc`; plots are inline SVG drawn
by :mod:`lfft.report_html.svg`, so the pages need nothing beyond lfft's own dependencies.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
vertical-align:top;text-align:left}th.sort{cursor:pointer;background:#f3f3f3}
th.sort:after{content:" \\2195";color:#999}.num{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;margin-right:1.2em}.sw{display:inline-block;width:1.2em;
height:.9em;vertical-align:middle;margin-right:.3em;border:1px solid #aaa}
.tok{white-space:pre-wrap}.tok span{border-bottom:3px solid transparent}
.tok span.m{border-bottom-color:#1f5fbf}.tokm{border-bottom:3px solid #1f5fbf}
.resp{font-family:ui-monospace,monospace;font-size:13px}
.prompt{color:#555;font-size:12px;margin-bottom:.3em}.plots svg{margin:0 1em 1em 0}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th.sort').forEach(function(th,i){th.addEventListener('click',function(){
  var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),k=th.cellIndex,
      d=th.dataset.dir==='asc'?-1:1;th.dataset.dir=d>0?'asc':'desc';
  rows.sort(function(x,y){var a=parseFloat(x.cells[k].dataset.v),c=parseFloat(y.cells[k].dataset.v);
   if(isNaN(a))return 1;if(isNaN(c))return -1;return d*(a-c);});
  rows.forEach(function(r){b.appendChild(r);});});});});
"""


def esc(text: object) -> str:
    """HTML-escape any value (quotes included: safe in attributes too)."""
    return html.escape(str(text), quote=True)


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def num_cell(x: float | None, digits: int = 3) -> str:
    """A table cell sortable by its number (``data-v``; n/a sorts last); an int shown as one."""
    v = "NaN" if x is None or not math.isfinite(x) else repr(float(x))
    text = str(x) if isinstance(x, int) else fmt(x, digits)
    return f'<td class="num" data-v="{v}">{text}</td>'


def table(
    head: Sequence[str], rows: Sequence[Sequence[str]], sort: Sequence[int] = (), cls: str = ""
) -> str:
    """A table; ``rows`` are lists of ready cells (``<td>...</td>``); the columns in ``sort``
    sort by their cells' ``data-v`` on a click (with ``SORT_JS``)."""
    th = "".join(
        f'<th class="sort">{esc(h)}</th>' if i in sort else f"<th>{esc(h)}</th>"
        for i, h in enumerate(head)
    )
    cls = (cls + " sortable").strip() if sort else cls
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def page(title: str, body: str, script: str = "", style: str = "") -> str:
    """The whole document: inline style and script, no external resource."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}{style}</style></head><body>"
        f"<h1>{esc(title)}</h1>{body}<script>{SORT_JS}{script}</script></body></html>\n"
    )
