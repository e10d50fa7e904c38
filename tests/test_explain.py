"""``lfft explain`` on the FineGrained-RLHF sample (user-marked error spans) after a short
training of a tiny model: the page, its metrics, the one-pair terminal view."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lfft.config import (
    CleanConfig,
    CollectConfig,
    ExplainConfig,
    InitConfig,
    NormalizeConfig,
    SplitConfig,
    TrainConfig,
)
from lfft.explain import explain, metrics_path
from lfft.explain.core import Explanation, explain_rows, summary
from lfft.explain.html import render
from lfft.io import read_table
from lfft.model import metrics as M
from lfft.model.checkpoint import load, load_model
from lfft.model.evaluate import score_rows

SAMPLE = Path(__file__).parent.parent / "data/samples/formats/finegrained-rlhf-qa-feedback"
CPU = ExplainConfig(device="cpu")


@pytest.fixture(scope="module")
def fg(tmp_path_factory) -> dict[str, Path]:
    """FineGrained-RLHF sample -> feedback rows -> tiny init -> 8 training steps."""
    from lfft.data.clean import clean
    from lfft.data.collect import collect
    from lfft.data.normalize import normalize
    from lfft.data.split import split
    from lfft.model.init import init
    from lfft.model.train import train

    d = tmp_path_factory.mktemp("explain")
    collect([SAMPLE], d / "i.parquet", CollectConfig())
    clean(d / "i.parquet", d / "c.parquet", CleanConfig())
    normalize(d / "c.parquet", d / "f.parquet", NormalizeConfig())
    split(d / "f.parquet", d / "splits", SplitConfig())
    init(
        d / "init",
        InitConfig(data=str(d / "f.parquet"), layers=2, hidden=32, heads=4, vocab_size=400),
    )
    cfg = TrainConfig(
        max_steps=8, lambda_=1.0, lr=3e-3, device="cpu", eval_every=0, save_every=0, log_every=4
    )
    train(d / "init", d / "splits", d / "final", cfg)
    return {"dir": d, "rows": d / "f.parquet", "init": d / "init", "final": d / "final"}


@pytest.fixture(scope="module")
def explain_page(fg) -> Path:
    out = fg["dir"] / "explain.html"
    result = explain(fg["final"], fg["rows"], out, CPU, baseline=fg["init"])
    assert result.rows_in == result.rows_out + sum(result.rejects.values())
    return out


def _explained(fg, baseline: Path | None = None) -> tuple[list[dict], list[Explanation]]:
    rows = read_table(fg["rows"]).to_pylist()
    model, tok, head = load(fg["final"])
    base = load_model(baseline).eval() if baseline else None
    return rows, explain_rows(model, tok, head, rows, baseline=base)


def test_user_marks_are_the_spans_modify_characters(fg):
    rows, got = _explained(fg)
    marked = [x for x in got if x.marked]
    assert len(marked) == sum(bool(r["token_spans"]) for r in rows) > 0
    for x in got:  # the pieces are the response, or its start when cut at --max-length
        assert x.response.startswith("".join(x.tokens))
        assert ("".join(x.tokens) == x.response) == (not x.cut)
    for x in marked:
        spans = rows[x.row]["token_spans"]
        pos = 0
        for piece, label in zip(x.tokens, x.labels, strict=True):
            chars = range(pos, pos + len(piece))
            in_modify = any(
                s["label"] == 0 and s["start"] < chars.stop and chars.start < s["end"]
                for s in spans
                if piece.strip()
            )
            if piece.strip() and label >= 0:
                assert (label == 0) == in_modify, (piece, label)
            pos += len(piece)


def test_scores_are_evaluates_and_f1_is_per_row(fg):
    """The page shows what evaluate measures: the same sequence scores and token probabilities."""
    rows, got = _explained(fg)
    model, tok, head = load(fg["final"])
    s = score_rows(model, tok, head, rows)
    np.testing.assert_allclose([x.score for x in got], s.head[[x.row for x in got]], rtol=1e-5)
    probs = np.concatenate([np.array(x.p_keep)[np.array(x.labels) >= 0] for x in got])
    np.testing.assert_allclose(np.sort(probs), np.sort(s.token_probs), rtol=1e-5)
    for x in got:
        if x.marked:
            assert x.f1 == M.token_f1(x.labels, x.p_keep) or np.isnan(x.f1)
    m = summary(got)
    assert m["token"]["f1_modify"] == pytest.approx(M.token_f1(s.token_labels, s.token_probs))


def test_baseline_delta_is_the_logprob_change(fg):
    rows, got = _explained(fg, baseline=fg["init"])
    model, tok, head = load(fg["final"])
    ours = score_rows(model, tok, head, rows).logp
    b_model, b_tok, b_head = load(fg["init"])
    theirs = score_rows(b_model, b_tok, b_head, rows).logp
    for x in got:
        assert sum(x.delta) == pytest.approx(ours[x.row] - theirs[x.row], rel=1e-4, abs=1e-3)
    _, same = _explained(fg, baseline=fg["final"])
    assert all(abs(d) < 1e-4 for x in same for d in x.delta)


def test_page_and_metrics_json_agree(explain_page):
    html = explain_page.read_text()
    metrics = json.loads(metrics_path(explain_page).read_text())
    shown = re.search(r'<b id="f1">([^<]+)</b>', html).group(1)
    assert shown == f"{metrics['token']['f1_modify']:.3f}"
    assert metrics["rows_marked"] == sum(r["marked_tokens"] > 0 for r in metrics["per_row"]) == 8
    assert len(re.findall(r'<tr><td class="num" data-v=', html)) == metrics["rows"] == 32
    for r in metrics["per_row"]:
        if r["token_f1"] is not None:
            assert f">{r['token_f1']:.3f}</td>" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html  # offline
    assert 'class="sort"' in html and 'id="legend"' in html


def _hostile() -> Explanation:
    nasty = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    return Explanation(
        0,
        nasty,
        nasty,
        nasty,
        [nasty[:20], nasty[20:], ""],
        [0.2, 0.9, 0.5],
        [0.0, 1.0, -1.0],
        [-1.0, -2.0, -0.5],
        [0.5, -0.5, 0.0],
        0.4,
        1.0,
        0.5,
    )


def test_data_text_is_escaped():
    x = _hostile()
    html = render([x], summary([x]), "t")
    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)" in html


def test_500_rows_render_fast():
    xs = [_hostile() for _ in range(500)]
    for x in xs:
        x.tokens, x.p_keep, x.labels = x.tokens * 40, x.p_keep * 40, x.labels * 40
        x.logp, x.delta = x.logp * 40, x.delta * 40
    t0 = time.perf_counter()
    html = render(xs, summary(xs), "t")
    assert time.perf_counter() - t0 < 1.0
    assert html.count("<tr>") == 501


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lfft", "explain", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_one_pair_in_the_terminal(fg):
    r = _cli(
        "--model",
        str(fg["final"]),
        "--baseline",
        str(fg["init"]),
        "--device",
        "cpu",
        "--prompt",
        "Who wrote it?",
        "--response",
        "Nobody [really] knows.",
    )
    assert r.returncode == 0, r.stderr
    assert "Nobody [really] knows." in r.stdout  # rich markup in data is shown, not parsed
    assert "sequence score" in r.stdout and "Δ logp" in r.stdout


def test_cli_errors_are_one_line(fg):
    r = _cli("--model", str(fg["final"]), "--prompt", "only a prompt")
    assert r.returncode == 2 and r.stderr.startswith("error: one pair needs")
    r = _cli("--model", str(fg["final"]), "--data", str(fg["rows"]), "--out", "x.txt")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "html" in r.stderr
