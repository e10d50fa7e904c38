"""``report.html`` of ``lfft evaluate`` and the inline-SVG charts it is drawn with."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from conftest import make_model_rows

from lfft.config import EvaluateConfig
from lfft.io import write_json_atomic, write_table
from lfft.model.evaluate import Scores, _json_safe, _predictions, compute_metrics, evaluate
from lfft.report_html import svg
from lfft.report_html.evaluate import METRICS, Run, render, write_report
from lfft.schemas import METRICS as METRICS_SCHEMA
from lfft.schemas import PREDICTIONS, make_metadata

SECTIONS = ("metrics", "training", "reliability", "distributions", "preference", "generations")
NASTY = '<script>alert("x")</script>'


def fake_eval(root: Path, n: int, seed: int = 0, name: str = "ckpt") -> Path:
    """An evaluation folder as evaluate writes it (metrics from compute_metrics, predictions from
    _predictions) of made-up scores, for a checkpoint folder with a training metrics.parquet."""
    rng = np.random.default_rng(seed)
    rows = (make_model_rows(n // 2 + 1, seed))[:n]
    for r in rows[:3]:
        r["prompt"] = NASTY + r["prompt"]
    scores = Scores(rng.normal(-20, 3, n), np.full(n, 10), rng.uniform(0, 1, n))
    model = root / name
    steps = list(range(0, 100, 10))
    train = {"step": steps, "split": ["train"] * 10, "loss": [5 - s / 50 for s in steps]}
    write_table(model / "metrics.parquet", pa.Table.from_pydict(
        {**{f.name: [None] * 10 for f in METRICS_SCHEMA}, **train}, schema=METRICS_SCHEMA),
        METRICS_SCHEMA, make_metadata("train"))  # fmt: skip
    out = root / f"eval-{name}"
    summary = compute_metrics(rows, scores)
    summary["model"] = str(model)
    write_json_atomic(out / "metrics.json", _json_safe(summary))
    preds = _predictions(rows, scores, None)
    write_table(out / "predictions.parquet", preds, PREDICTIONS, make_metadata("evaluate"))
    return out


def test_report_has_every_section_and_the_metrics_json_values(tmp_path):
    d = fake_eval(tmp_path, 40)
    html = write_report(d / "report.html", [d]).read_text()
    for key in SECTIONS:
        assert f'<h2 id="{key}">' in html
    metrics = json.loads((d / "metrics.json").read_text())
    auc = metrics["feedback"]["binary"]["auc"]
    assert f'<td>head AUC</td><td class="num" data-v="{auc!r}">{auc:.3f}</td>' in html
    assert html.count("<svg") >= 4 and "<polyline" in html  # curves and reliability drawn
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script>alert" not in html and "&lt;script&gt;alert" not in html  # no generations
    assert "No generations" in html


def test_histogram_bars_are_shares_of_each_group():
    chart = svg.histogram({"a": [0.05, 0.06, 0.95], "b": [0.5]}, "t", "x", bins=10)
    bar = r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)" fill="[^"]+" fill-opacity'
    heights = [float(h) for h in re.findall(bar, chart)]
    nonzero = sorted(h for h in heights if h > 0)
    # a: 2/3 and 1/3, b: 1 (the tallest): heights in ratio 1/3 : 2/3 : 1
    assert len(nonzero) == 3
    assert np.allclose(np.array(nonzero) / nonzero[-1], [1 / 3, 2 / 3, 1], atol=0.01)


def test_chart_labels_are_escaped():
    chart = svg.line_chart({NASTY: ([0, 1], [0, 1])}, NASTY, NASTY, NASTY)
    assert "<script>" not in chart and chart.count("&lt;script&gt;") == 4


def test_500_rows_render_fast_and_compare_runs(tmp_path):
    runs = [Run.load(fake_eval(tmp_path, 500, seed=i, name=f"m{i}")) for i in range(2)]
    t0 = time.perf_counter()
    html = render(runs)
    assert time.perf_counter() - t0 < 1.0
    assert '<h2 id="comparison">' in html and "<th>m0</th><th>m1</th>" in html


def test_evaluate_writes_the_report_and_compares_several(tmp_path, model_tiny_ckpt, model_splits):
    cfg = EvaluateConfig(device="cpu", generate=True, max_new_tokens=3, max_rows=4)
    result = evaluate(model_tiny_ckpt, model_splits / "test.parquet", tmp_path / "one", cfg,
                      model_tiny_ckpt)  # fmt: skip
    html = result.outputs["report"].read_text()
    assert all(f'<h2 id="{k}">' in html for k in SECTIONS)
    assert '<table class="gen sortable">' in html  # generations beside the baseline's
    assert "<td>generation tokens/s</td>" in html and "<td>baseline tokens/s</td>" in html
    r = subprocess.run(
        [sys.executable, "-m", "lfft", "evaluate", "-q", "--model", str(model_tiny_ckpt),
         "--model", str(model_tiny_ckpt), "--data", str(model_splits / "test.parquet"),
         "--out", str(tmp_path / "cmp"), "--max-rows", "4", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    table = json.loads((tmp_path / "cmp/comparison.json").read_text())
    assert list(table) == ["1-init", "2-init"] and set(table["1-init"]) == {m for m, _ in METRICS}
    assert table["1-init"] == table["2-init"]  # one checkpoint twice: the same numbers
    assert (tmp_path / "cmp/1-init/report.html").exists()
    assert '<h2 id="comparison">' in (tmp_path / "cmp/report.html").read_text()
