"""``report.html`` of ``lfft evaluate``: the metrics table, training curves, the head's
reliability diagram, score distributions of positive and negative rows, preference accuracy,
generation samples beside the baseline's, and with several checkpoints one comparison.

A report is drawn from finished evaluation folders (``metrics.json`` + ``predictions.parquet``,
and the evaluated checkpoint's training ``metrics.parquet`` when it has one), so the same code
writes a single model's report and the comparison of ``lfft evaluate --model A --model B``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfft.io import read_table, write_text_atomic
from lfft.model.checkpoint import METRICS_FILE
from lfft.report_html import esc, num_cell, page, svg, table

SAMPLES = 20  # generation samples shown
# (label in the tables, path in metrics.json)
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rows", ("rows",)),
    ("perplexity", ("lm", "perplexity")),
    ("perplexity positive", ("lm", "perplexity_positive")),
    ("perplexity negative", ("lm", "perplexity_negative")),
    ("head accuracy", ("feedback", "binary", "accuracy")),
    ("head AUC", ("feedback", "binary", "auc")),
    ("head Brier", ("feedback", "binary", "brier")),
    ("head ECE", ("feedback", "binary", "ece")),
    ("head scalar MSE", ("feedback", "scalar", "mse")),
    ("head scalar Spearman", ("feedback", "scalar", "spearman")),
    ("token F1 (modify)", ("feedback", "token", "f1_modify")),
    ("token accuracy", ("feedback", "token", "accuracy")),
    ("preference pairs", ("preference", "pairs")),
    ("preference acc (log-prob)", ("preference", "accuracy_logprob")),
    ("preference acc (head)", ("preference", "accuracy_head")),
    ("generation mean score", ("generation", "mean_score")),
    ("baseline mean score", ("generation", "baseline_mean_score")),
    ("win rate vs baseline", ("generation", "win_rate")),
    ("generation tokens/s", ("generation", "throughput", "tokens_per_s")),
    ("baseline tokens/s", ("generation", "baseline_throughput", "tokens_per_s")),
)
COMPARED = {  # short axis label: metric label (all in [0, 1], so one axis fits them)
    "acc": "head accuracy",
    "AUC": "head AUC",
    "tok F1": "token F1 (modify)",
    "pref lp": "preference acc (log-prob)",
    "pref head": "preference acc (head)",
    "win": "win rate vs baseline",
}


@dataclass
class Run:
    """One finished evaluation: its name, metrics.json, predictions and training metrics."""

    name: str
    summary: dict[str, Any]
    predictions: dict[str, list]
    training: dict[str, list] | None

    @classmethod
    def load(cls, eval_dir: Path, name: str | None = None) -> Run:
        summary = json.loads((eval_dir / "metrics.json").read_text())
        preds = read_table(eval_dir / "predictions.parquet").to_pydict()
        train_file = Path(summary.get("model") or "") / METRICS_FILE
        training = read_table(train_file).to_pydict() if train_file.is_file() else None
        return cls(name or Path(summary.get("model") or eval_dir).name, summary, preds, training)

    def metric(self, path: Sequence[str]) -> float | None:
        value: Any = self.summary
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _metrics_table(runs: Sequence[Run]) -> str:
    rows = [
        [f"<td>{esc(label)}</td>"] + [num_cell(r.metric(path)) for r in runs]
        for label, path in METRICS
        if any(r.metric(path) is not None for r in runs)
    ]
    return table(["metric", *[r.name for r in runs]], rows, cls="metrics")


def _curves(runs: Sequence[Run]) -> str:
    charts = []
    for col, title in (("loss", "L"), ("lm_loss", "L_M"), ("fb_loss", "L_F")):
        series = {}
        for r in runs:
            if not r.training:
                continue
            t = r.training
            for split in ("train", "val"):
                idx = [i for i, s in enumerate(t["split"]) if s == split and t[col][i] is not None]
                if idx:
                    name = f"{r.name} {split}" if len(runs) > 1 else split
                    series[name] = ([t["step"][i] for i in idx], [t[col][i] for i in idx])
        if series:
            charts.append(svg.line_chart(series, title, "step", col, markers=True))
    return "".join(charts) or "<p>No training metrics (the checkpoint was not trained by lfft).</p>"


def _reliability(runs: Sequence[Run]) -> str:
    series = {}
    for r in runs:
        bins = ((r.summary.get("feedback") or {}).get("binary") or {}).get("reliability") or []
        if bins:
            series[r.name] = ([b["mean_pred"] for b in bins], [b["frac_pos"] for b in bins])
    if not series:
        return "<p>No binary feedback rows: no reliability diagram.</p>"
    chart = svg.line_chart(
        series, "reliability", "predicted P(positive)", "share positive", unit_square=True,
        markers=True,
    )  # fmt: skip
    return chart + "<p>Dashed: perfect calibration. Points: bins of the head's prediction.</p>"


def _distributions(runs: Sequence[Run]) -> str:
    charts = []
    for r in runs:
        p, y = r.predictions["feedback_pred"], r.predictions["label"]
        groups = {
            "positive": [v for v, lab in zip(p, y, strict=True) if lab == 1],
            "negative": [v for v, lab in zip(p, y, strict=True) if lab == 0],
        }
        charts.append(svg.histogram(groups, f"head score: {r.name}", "head score"))
    return "".join(charts)


def _preference(runs: Sequence[Run]) -> str:
    series = {
        r.name: [r.metric(("preference", k)) for k in ("accuracy_logprob", "accuracy_head")]
        for r in runs
    }
    pairs = ", ".join(f"{esc(r.name)}: {int(r.metric(('preference', 'pairs')) or 0)}" for r in runs)
    return (
        svg.bars(["log-prob", "head"], series, "preference accuracy", unit=True)
        + f"<p>Pairs of rows in a group with different scores ({pairs}); ties count 1/2.</p>"
    )


def _generations(run: Run) -> str:
    p = run.predictions
    if not any(g is not None for g in p["generation"]):
        return "<p>No generations (run evaluate with <code>--generate</code>).</p>"
    seen: set[str] = set()
    rows = []
    for i, prompt in enumerate(p["prompt"]):
        if prompt in seen or len(rows) >= SAMPLES:
            continue
        seen.add(prompt)
        rows.append(
            [
                f"<td>{esc(prompt)}</td>",
                f"<td>{esc(p['generation'][i] or '')}</td>",
                num_cell(p["generation_score"][i]),
                f"<td>{esc(p['baseline_generation'][i] or '')}</td>",
                num_cell(p["baseline_score"][i]),
            ]
        )
    head = ["prompt", f"{run.name}", "score", "baseline", "baseline score"]
    return table(head, rows, sort=[2, 4], cls="gen")


def render(runs: Sequence[Run], title: str = "lfft evaluation report") -> str:
    sections = [
        ("metrics", "Metrics", _metrics_table(runs)),
        ("training", "Training curves", _curves(runs)),
        ("reliability", "Reliability of the feedback head", _reliability(runs)),
        ("distributions", "Head scores of positive and negative rows", _distributions(runs)),
        ("preference", "Preference accuracy", _preference(runs)),
        ("generations", "Generations vs baseline", _generations(runs[0])),
    ]
    if len(runs) > 1:
        paths = [dict(METRICS)[label] for label in COMPARED.values()]
        series = {r.name: [r.metric(path) for path in paths] for r in runs}
        chart = svg.bars(list(COMPARED), series, "headline metrics", unit=True)
        legend = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in COMPARED.items())
        sections.append(("comparison", "Checkpoints compared", f"{chart}<p>{legend}</p>"))
    body = "".join(
        f'<h2 id="{key}">{esc(head)}</h2><div class="plots">{html}</div>'
        for key, head, html in sections
    )
    return page(title, body)


def write_report(out: Path, eval_dirs: Sequence[Path], names: Sequence[str] | None = None) -> Path:
    """Write the report of the evaluation folders ``eval_dirs`` (one, or several compared)."""
    runs = [Run.load(d, names[i] if names else None) for i, d in enumerate(eval_dirs)]
    write_text_atomic(out, render(runs))
    return out


def run_names(models: Sequence[Path]) -> list[str]:
    """Folder names of the checkpoints, numbered where two would clash (``1-final``)."""
    names = [m.name or "model" for m in models]
    if len(set(names)) == len(names):
        return names
    return [f"{i + 1}-{n}" for i, n in enumerate(names)]


def evaluate_many(
    models: Sequence[Path], data: Path, out: Path, cfg: Any, baseline: Path | None = None
) -> list[Any]:
    """``lfft evaluate --model A --model B ...``: each checkpoint into ``out/NAME/`` (its own
    report included), then ``out/report.html`` and ``out/comparison.json`` comparing them."""
    from lfft.io import write_json_atomic
    from lfft.model.evaluate import evaluate

    names = run_names(models)
    results = [
        evaluate(m, data, out / n, cfg, baseline) for m, n in zip(models, names, strict=True)
    ]
    runs = [Run.load(out / n, n) for n in names]
    write_text_atomic(out / "report.html", render(runs, "lfft evaluation: checkpoints compared"))
    table = {r.name: {label: r.metric(path) for label, path in METRICS} for r in runs}
    write_json_atomic(out / "comparison.json", table)
    return results
