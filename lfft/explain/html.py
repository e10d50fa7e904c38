"""The ``lfft explain`` page: one table row per explained response, its tokens coloured by the
head's P(modify), the user's modify marks underlined, and with a baseline a second line coloured
by the change in log-probability. Sortable by score and token F1; all data text escaped."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lfft.explain.core import Explanation
from lfft.report_html import esc, fmt, num_cell, page, table

LEGEND = (
    '<p class="legend">'
    '<span><i class="sw r10"></i>head: modify (P(keep) &lt; 0.5)'
    '</span><span><i class="sw r0"></i>head: keep</span>'
    '<span><i class="sw tokm"></i>user marked: modify</span>'
    "{extra}</p>"
    "<p>Red shading grows with the head's P(modify) = 1 - P(keep) of each token; hover a token for"
    " its numbers: P(modify), the user's mark, and with a baseline d = the change in"
    " log-probability (nats). Score: the head's sequence score (P(positive)) at the last"
    " response token."
    " Token F1: F1 of the tokens the head calls <i>modify</i> against the user's marks.</p>"
)
DELTA_LEGEND = (
    '<span><i class="sw g5"></i>more likely than baseline</span>'
    '<span><i class="sw o5"></i>less likely than baseline'
    "</span>"
)


# Colours by class (ten shades of red, five of green and orange).
STYLE = (
    "".join(f".r{i}{{background:rgba(214,39,40,{i * 0.08:.2f})}}" for i in range(11))
    + "".join(f".g{i}{{background:rgba(44,160,44,{i * 0.14:.2f})}}" for i in range(6))
    + "".join(f".o{i}{{background:rgba(255,127,14,{i * 0.14:.2f})}}" for i in range(6))
)
# The tokens of a row are drawn when the row scrolls into view, from the JSON block (text set
# with textContent, never parsed as HTML): a 500-row page has a few thousand elements at load
# instead of a quarter million spans, and loads in well under a second. Without script the
# plain response text is shown.
TOKENS_JS = """
var D=JSON.parse(document.getElementById('tokens').textContent);
function line(x,k){var div=document.createElement('div');div.className='tok resp';
 x.t.forEach(function(piece,i){var s=document.createElement('span'),m=x.m[i];
  if(k==='d'){var d=x.d[i];s.className=(d>0?'g':'o')+Math.min(5,Math.round(Math.abs(d)*2.5));
   s.title='d'+d.toFixed(2);}
  else{s.className='r'+Math.round(m*10)+(x.u[i]===0?' m':'');
   s.title=m.toFixed(2)+(x.u[i]>=0?(x.u[i]===1?' user:keep':' user:modify'):'')+
    (x.d?' d'+x.d[i].toFixed(2):'');}
  s.textContent=piece||'\u23ce';div.appendChild(s);});
 if(k!=='d'&&x.cut){var c=document.createElement('i');c.textContent=' [cut at --max-length]';
  div.appendChild(c);}
 return div;}
function draw(cell){var x=D[+cell.dataset.i],t=cell.querySelector('.plain');
 t.replaceWith(line(x,'m'));if(x.d)cell.appendChild(line(x,'d'));}
var io=new IntersectionObserver(function(es){es.forEach(function(e){
 if(e.isIntersecting){io.unobserve(e.target);draw(e.target);}});},{rootMargin:'600px'});
document.querySelectorAll('td.cell').forEach(function(c){io.observe(c);});
"""


def _data(x: Explanation) -> dict[str, Any]:
    """One row's tokens for the script: pieces, P(modify), user marks, log-prob changes."""
    out: dict[str, Any] = {
        "t": x.tokens,
        "m": [round(1.0 - p, 3) if math.isfinite(p) else 0.0 for p in x.p_keep],
        "u": [int(v) for v in x.labels],
        "cut": x.cut,
    }
    if x.delta is not None:
        out["d"] = [round(d, 3) for d in x.delta]
    return out


def json_block(element_id: str, data: Any) -> str:
    """Data for a script, safe inside HTML: ``<``, ``>`` and ``&`` as JSON escapes."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _response(i: int, x: Explanation) -> str:
    return (
        f'<td class="cell" data-i="{i}"><div class="prompt">{esc(x.prompt)}</div>'
        f'<div class="tok resp plain">{esc(x.response)}</div></td>'
    )


def render(explained: Sequence[Explanation], metrics: Mapping[str, Any], title: str) -> str:
    """The whole page for ``explained`` with the summary ``metrics`` (from ``core.summary``)."""
    baseline = any(x.delta is not None for x in explained)
    head = ["#", "interaction", "score", "label", "token F1"]
    head += ["mean dlogp"] if baseline else []
    head.append("prompt / response")
    rows = []
    for i, x in enumerate(explained):
        cells = [num_cell(i, 0), f"<td>{esc(x.interaction_id)}</td>", num_cell(x.score)]
        cells += [num_cell(x.label, 0), num_cell(x.f1)]
        if baseline:
            mean = sum(x.delta) / len(x.delta) if x.delta else math.nan
            cells.append(num_cell(mean))
        cells.append(_response(i, x))
        rows.append(cells)
    tok = metrics["token"]
    summary = (
        f"<p>{metrics['rows']} rows, {metrics['rows_marked']} with user marks; token F1 (modify) "
        f'<b id="f1">{fmt(tok["f1_modify"])}</b> over {tok["tokens"]} marked tokens, '
        f"accuracy {fmt(tok['accuracy'])}, mean per-row F1 {fmt(tok['mean_row_f1'])}.</p>"
    )
    sort = [0, 2, 3, 4] + ([5] if baseline else [])
    body = (
        '<h2 id="summary">Summary</h2>'
        + summary
        + '<h2 id="legend">Legend</h2>'
        + LEGEND.format(extra=DELTA_LEGEND if baseline else "")
        + '<h2 id="rows">Rows</h2>'
        + table(head, rows, sort=sort, cls="rows")
        + json_block("tokens", [_data(x) for x in explained])
    )
    return page(title, body, script=TOKENS_JS, style=STYLE)
