"""Evaluation metrics, pure numpy (no torch, no scikit-learn): arrays in, floats out.

Every function drops the rows where an input is nan and returns nan when nothing is left to
measure (or the metric is undefined, e.g. AUC with one class), so callers need no special cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray

NAN = float("nan")


def _finite(*arrays: ArrayLike) -> list[np.ndarray]:
    arrs = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    ok = np.ones(arrs[0].shape, dtype=bool)
    for a in arrs:
        ok &= np.isfinite(a)
    return [a[ok] for a in arrs]


def rankdata(x: ArrayLike) -> np.ndarray:
    """1-based ranks, ties given their average rank (as ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2  # mean of ranks s+1 .. e
    return ranks


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC: the probability that a random positive scores above a random negative (ties 1/2)."""
    y, s = _finite(labels, scores)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return NAN
    r = rankdata(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def brier(labels: ArrayLike, probs: ArrayLike) -> float:
    """Mean squared error of predicted probabilities against 0/1 outcomes (lower is better)."""
    y, p = _finite(labels, probs)
    return float(np.mean((p - y) ** 2)) if len(y) else NAN


def reliability(labels: ArrayLike, probs: ArrayLike, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width probability bins on [0, 1]: count, mean prediction and share of positives.

    The points of a reliability diagram; empty bins are left out.
    """
    y, p = _finite(labels, probs)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out.append(
                {
                    "lo": b / bins,
                    "hi": (b + 1) / bins,
                    "count": int(sel.sum()),
                    "mean_pred": float(p[sel].mean()),
                    "frac_pos": float(y[sel].mean()),
                }
            )
    return out


def ece(labels: ArrayLike, probs: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error: ``sum_b (n_b / N) |frac_pos_b - mean_pred_b|`` (Naeini 2015)."""
    table = reliability(labels, probs, bins)
    n = sum(b["count"] for b in table)
    if n == 0:
        return NAN
    return float(sum(b["count"] * abs(b["frac_pos"] - b["mean_pred"]) for b in table) / n)


def accuracy(labels: ArrayLike, probs: ArrayLike, threshold: float = 0.5) -> float:
    """Share of rows where ``prob >= threshold`` agrees with the 0/1 label."""
    y, p = _finite(labels, probs)
    return float(np.mean((p >= threshold) == (y == 1))) if len(y) else NAN


def mse(targets: ArrayLike, preds: ArrayLike) -> float:
    t, p = _finite(targets, preds)
    return float(np.mean((p - t) ** 2)) if len(t) else NAN


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation (Pearson on average ranks); nan if either side is constant."""
    x, y = _finite(a, b)
    if len(x) < 2:
        return NAN
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    den = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / den) if den > 0 else NAN


def token_f1(
    labels: ArrayLike, probs: ArrayLike, positive: int = 0, threshold: float = 0.5
) -> float:
    """F1 of finding the tokens of class ``positive`` (default 0: "modify", the tokens a user
    changed), over tokens with a label >= 0; ``probs`` are the head's P(keep) per token."""
    y, p = _finite(labels, probs)
    keep = y >= 0
    y, p = y[keep], p[keep]
    if len(y) == 0:
        return NAN
    pred = (p >= threshold).astype(int)
    truth = (y == 1).astype(int)
    if positive == 0:
        pred, truth = 1 - pred, 1 - truth
    tp = int((pred & truth).sum())
    fp = int((pred & (1 - truth)).sum())
    fn = int(((1 - pred) & truth).sum())
    if tp + fp + fn == 0:
        return NAN
    return 2 * tp / (2 * tp + fp + fn)


def preference_accuracy(
    groups: Sequence[object], truth: ArrayLike, values: ArrayLike
) -> tuple[float, int]:
    """Within each group, every pair of rows whose ``truth`` (e.g. score) differs is a preference;
    the share of pairs where ``values`` (e.g. log-prob or head score) orders them the same way
    (ties 1/2), and the number of pairs. ``(nan, 0)`` when there is no pair."""
    t = np.asarray(truth, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray([str(x) for x in groups], dtype=object)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v, g = t[ok], v[ok], g[ok]
    hits, pairs = 0.0, 0
    order = np.argsort(g, kind="mergesort")
    g, t, v = g[order], t[order], v[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1] if len(g) else np.array([], int)
    ends = np.r_[starts[1:], len(g)] if len(g) else np.array([], int)
    for s, e in zip(starts, ends, strict=True):
        if e - s < 2:
            continue
        dt = np.sign(t[s:e, None] - t[None, s:e])
        dv = np.sign(v[s:e, None] - v[None, s:e])
        upper = np.triu(dt != 0, k=1)
        pairs += int(upper.sum())
        hits += float((dt == dv)[upper].sum()) + 0.5 * float((dv == 0)[upper].sum())
    return (hits / pairs if pairs else NAN), pairs


def perplexity(nll_sum: ArrayLike, n_tokens: ArrayLike) -> float:
    """``exp(sum of token NLLs / number of tokens)`` over rows; nan without tokens."""
    s, n = _finite(nll_sum, n_tokens)
    total = n.sum()
    return float(np.exp(s.sum() / total)) if total > 0 else NAN
