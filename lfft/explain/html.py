"""The ``lfft explain`` page: one table row per explained response, its tokens coloured by the
head's P(modify), the user's modify marks underlined, and with a baseline a second line coloured
by the change in log-probability. Sortable by score and token F1; all data text escaped."""

from __future__ import annotations

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


# Colours by class (ten shades of red, five of green and orange), so that a token costs a short
# tag: a 500-row page stays a few MB and renders in well under a second.
STYLE = (
    "".join(f".r{i}{{background:rgba(214,39,40,{i * 0.08:.2f})}}" for i in range(11))
    + "".join(f".g{i}{{background:rgba(44,160,44,{i * 0.14:.2f})}}" for i in range(6))
    + "".join(f".o{i}{{background:rgba(255,127,14,{i * 0.14:.2f})}}" for i in range(6))
)
EOS = "&#9166;"  # eos shown as a return symbol


def _token(piece: str, p_keep: float, label: float, delta: float | None) -> str:
    modify = 1.0 - p_keep if math.isfinite(p_keep) else 0.0
    tip = f"{modify:.2f}"
    if label >= 0:
        tip += " user:" + ("keep" if label == 1 else "modify")
    if delta is not None:
        tip += f" d{delta:+.2f}"
    cls = f"r{round(modify * 10)}" + (" m" if label == 0 else "")
    return f'<span class="{cls}" title="{tip}">{esc(piece) if piece else EOS}</span>'


def _delta_token(piece: str, delta: float) -> str:
    level = min(5, round(abs(delta) * 2.5))  # |dlogp| of 2 nats: full colour
    cls = ("g" if delta > 0 else "o") + str(level)
    return f'<span class="{cls}">{esc(piece) if piece else EOS}</span>'


def _response(x: Explanation) -> str:
    deltas: Sequence[float | None] = x.delta if x.delta is not None else [None] * len(x.tokens)
    head = "".join(map(_token, x.tokens, x.p_keep, x.labels, deltas))
    if x.cut:
        head += " <i>[cut at --max-length]</i>"
    out = f'<div class="prompt">{esc(x.prompt)}</div><div class="tok resp">{head}</div>'
    if x.delta is not None:
        line = "".join(map(_delta_token, x.tokens, x.delta))
        out += f'<div class="tok resp" style="margin-top:.3em">{line}</div>'
    return out


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
        cells.append(f"<td>{_response(x)}</td>")
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
    )
    return page(title, body, style=STYLE)
