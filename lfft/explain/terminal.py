"""``lfft explain --prompt ... --response ...``: one pair in the terminal, with rich colours."""

from __future__ import annotations

import math

from rich.console import Console
from rich.text import Text

from lfft.explain.core import Explanation


def _modify_style(p_keep: float, label: float) -> str:
    modify = 1.0 - p_keep if math.isfinite(p_keep) else 0.0
    red = int(255 - 120 * modify), int(255 - 200 * modify)
    style = f"black on rgb(255,{red[0]},{red[1]})" if modify >= 0.5 else ""
    return style + (" underline" if label == 0 else "")


def _delta_style(delta: float) -> str:
    if abs(delta) < 0.25:
        return ""
    return "black on green" if delta > 0 else "black on dark_orange"


def show(x: Explanation, console: Console | None = None) -> None:
    """The response twice at most: coloured by the head's P(modify) (red: modify), and with a
    baseline by the change in log-probability (green: more likely, orange: less)."""
    console = console or Console()
    console.print(Text("prompt: ", style="bold") + Text(x.prompt))
    head = Text()
    for piece, p, label in zip(x.tokens, x.p_keep, x.labels, strict=True):
        head.append(piece or "⏎", style=_modify_style(p, label).strip() or None)
    console.print(Text("head:   ", style="bold") + head)
    if x.delta is not None:
        line = Text()
        for piece, d in zip(x.tokens, x.delta, strict=True):
            line.append(piece or "⏎", style=_delta_style(d) or None)
        console.print(Text("Δ logp: ", style="bold") + line)
    console.print(
        f"sequence score {x.score:.3f} (P(positive)); red tokens: P(modify) >= 0.5"
        + ("; green/orange: more/less likely than the baseline" if x.delta is not None else "")
    )
