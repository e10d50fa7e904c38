"""Small inline-SVG charts (line, histogram, grouped bars) for the HTML pages: no plotting
library needed, so ``make demo`` users see the plots without an extra. Every label is escaped."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from lfft.report_html import esc

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
W, H, L, R, T, B = 380, 262, 52, 12, 40, 40  # size and margins (left, right, top, bottom)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _range(values: Sequence[float], lo: float | None = None, hi: float | None = None):
    vals = _finite(values)
    a = lo if lo is not None else (min(vals) if vals else 0.0)
    b = hi if hi is not None else (max(vals) if vals else 1.0)
    if b - a < 1e-12:
        a, b = a - 0.5, b + 0.5
    return a, b


def _num(x: float) -> str:
    return f"{x:.3g}"


def _frame(
    title: str,
    xlabel: str,
    ylabel: str,
    xr: tuple[float, float],
    yr: tuple[float, float],
    body: str,
    legend: Sequence[str],
    xticks: bool = True,
) -> str:
    pw, ph = W - L - R, H - T - B
    ticks = []
    for i in range(5):
        fx, fy = i / 4, i / 4
        x, y = L + fx * pw, T + ph - fy * ph
        if xticks:
            ticks.append(
                f'<line x1="{x:.1f}" y1="{T + ph}" x2="{x:.1f}" y2="{T + ph + 4}" stroke="#333"/>'
                f'<text x="{x:.1f}" y="{T + ph + 15}" text-anchor="middle">'
                f"{_num(xr[0] + fx * (xr[1] - xr[0]))}</text>"
            )
        ticks.append(
            f'<line x1="{L}" y1="{y:.1f}" x2="{L + pw}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{L - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_num(yr[0] + fy * (yr[1] - yr[0]))}</text>"
        )
    keys = "".join(
        f'<rect x="{L + 95 * i}" y="{T - 15}" width="10" height="10" fill="{COLORS[i % 7]}"/>'
        f'<text x="{L + 14 + 95 * i}" y="{T - 6}">{esc(name)}</text>'
        for i, name in enumerate(legend)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-size="11" font-family="sans-serif" role="img">'
        f'<text x="{W / 2}" y="15" text-anchor="middle" font-weight="bold">{esc(title)}</text>'
        f"{''.join(ticks)}"
        f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>'
        f"{body}{keys}"
        f'<text x="{L + pw / 2}" y="{H - 6}" text-anchor="middle">{esc(xlabel)}</text>'
        f'<text transform="translate(12 {T + ph / 2}) rotate(-90)" text-anchor="middle">'
        f"{esc(ylabel)}</text></svg>"
    )


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    unit_square: bool = False,
    markers: bool = False,
) -> str:
    """Lines (x, y) per named series; ``unit_square``: both axes 0..1 with the diagonal drawn
    (a reliability diagram). Points with a missing y are skipped."""
    xs = [x for sx, _ in series.values() for x in sx]
    ys = [y for _, sy in series.values() for y in sy]
    xr = (0.0, 1.0) if unit_square else _range(xs)
    yr = (0.0, 1.0) if unit_square else _range(ys)
    pw, ph = W - L - R, H - T - B

    def pt(x: float, y: float) -> str:
        px = L + (x - xr[0]) / (xr[1] - xr[0]) * pw
        return f"{px:.1f},{T + ph - (y - yr[0]) / (yr[1] - yr[0]) * ph:.1f}"

    body = ""
    if unit_square:
        diagonal = f"{pt(0, 0)} {pt(1, 1)}"
        body += f'<polyline points="{diagonal}" stroke="#999" stroke-dasharray="3 3" fill="none"/>'
    for i, (sx, sy) in enumerate(series.values()):
        pts = [pt(x, y) for x, y in zip(sx, sy, strict=True) if y is not None and math.isfinite(y)]
        c = COLORS[i % 7]
        if len(pts) > 1:
            body += (
                f'<polyline points="{" ".join(pts)}" stroke="{c}" fill="none" stroke-width="1.6"/>'
            )
        if markers or len(pts) == 1:
            body += "".join(
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{c}"/>'
                for p in pts
            )
    return _frame(title, xlabel, ylabel, xr, yr, body, list(series))


def histogram(
    groups: Mapping[str, Sequence[float | None]],
    title: str,
    xlabel: str,
    bins: int = 10,
    lo: float = 0.0,
    hi: float = 1.0,
) -> str:
    """Overlaid histograms (share of each group per bin) of values in [lo, hi]."""
    width = (hi - lo) / bins
    shares = {}
    for name, values in groups.items():
        vals = _finite(values)
        counts = [0] * bins
        for v in vals:
            counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
        shares[name] = [c / len(vals) if vals else 0.0 for c in counts]
    top = max([s for v in shares.values() for s in v] + [1e-9])
    pw, ph = W - L - R, H - T - B
    body = ""
    k = max(1, len(groups))
    for i, s in enumerate(shares.values()):
        for j, share in enumerate(s):
            x = L + (j + i / k) * pw / bins
            h = share / top * ph
            body += (
                f'<rect x="{x:.1f}" y="{T + ph - h:.1f}" width="{pw / bins / k:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[i % 7]}" fill-opacity="0.8"/>'
            )
    return _frame(title, xlabel, "share of rows", (lo, hi), (0.0, top), body, list(groups))


def bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    title: str,
    unit: bool = False,
) -> str:
    """Grouped bars: one group per category, one bar per named series (missing: no bar);
    ``unit``: the y axis runs 0..1 (shares, accuracies)."""
    vals = [v for s in series.values() for v in s]
    yr = (0.0, 1.0) if unit else _range([*vals, 0.0])
    pw, ph = W - L - R, H - T - B
    n, k = max(1, len(categories)), max(1, len(series))
    body = ""
    for i, s in enumerate(series.values()):
        for j, v in enumerate(s):
            if v is None or not math.isfinite(v):
                continue
            x = L + (j + 0.1 + 0.8 * i / k) * pw / n
            y0 = T + ph - (0 - yr[0]) / (yr[1] - yr[0]) * ph
            y1 = T + ph - (v - yr[0]) / (yr[1] - yr[0]) * ph
            body += (
                f'<rect x="{x:.1f}" y="{min(y0, y1):.1f}" width="{0.8 * pw / n / k:.1f}" '
                f'height="{abs(y1 - y0):.1f}" fill="{COLORS[i % 7]}">'
                f"<title>{_num(v)}</title></rect>"
            )
    for j, c in enumerate(categories):
        body += (
            f'<text x="{L + (j + 0.5) * pw / n:.1f}" y="{T + ph + 14}" text-anchor="middle" '
            f'font-size="9">{esc(c)}</text>'
        )
    return _frame(title, "", "", (0, n), yr, body, list(series), xticks=False)
