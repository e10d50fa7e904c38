"""PNG plots: training curves from ``metrics.parquet`` and a calibration (reliability) diagram.

Only when matplotlib is importable (the ``plots`` extra); otherwise every function returns
``None`` and nothing is written, silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lfft.io import atomic_path, read_table


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def training_curves(metrics_path: str | Path, out_png: str | Path) -> Path | None:
    """Loss, L_M and L_F per step (train and val) from a train run's ``metrics.parquet``."""
    plt = _pyplot()
    if plt is None or not Path(metrics_path).exists():
        return None
    df = read_table(metrics_path).to_pandas()
    if df.empty:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, col in zip(axes, ("loss", "lm_loss", "fb_loss"), strict=True):
        for split, style in (("train", "-"), ("val", "o--")):
            part = df[(df["split"] == split) & df[col].notna()]
            if not part.empty:
                ax.plot(part["step"], part[col], style, label=split, markersize=3)
        ax.set_title(col)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    return _save(fig, plt, out_png)


def calibration(bins: Sequence[dict[str, float]], out_png: str | Path) -> Path | None:
    """Reliability diagram of the head (bins from :func:`lfft.model.metrics.reliability`)."""
    plt = _pyplot()
    if plt is None or not bins:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    ax.plot(
        [b["mean_pred"] for b in bins], [b["frac_pos"] for b in bins], "o-", label="feedback head"
    )
    ax.set_xlabel("predicted P(positive)")
    ax.set_ylabel("observed share positive")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    return _save(fig, plt, out_png)


def _save(fig, plt, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out_png
