"""``lfft evaluate``, generation and plots on the tiny checkpoint of ``conftest.py``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from lfft.config import EvaluateConfig
from lfft.errors import ConfigError, LfftError, NoUsableRows, SchemaError
from lfft.io import read_meta, read_table, write_table
from lfft.model import plots
from lfft.model.batching import prompt_ids
from lfft.model.checkpoint import load
from lfft.model.evaluate import Scores, compute_metrics, evaluate
from lfft.model.generate import generate_ids, generate_texts
from lfft.schemas import METRICS, NORMALIZED, PREDICTIONS, SPLIT, make_metadata

CPU = EvaluateConfig(device="cpu", max_new_tokens=4)


@pytest.fixture(scope="module")
def model_eval(tmp_path_factory, model_tiny_ckpt, model_splits) -> Path:
    """One evaluation with greedy generations against a baseline that is the same checkpoint:
    both sides answer alike, so every prompt is a tie."""
    out = tmp_path_factory.mktemp("model_eval")
    cfg = EvaluateConfig(device="cpu", generate=True, max_new_tokens=4)
    result = evaluate(model_tiny_ckpt, model_splits / "test.parquet", out, cfg, model_tiny_ckpt)
    assert result.rows_in == result.rows_out == 12
    return out


def test_predictions_have_the_schema_and_one_row_per_test_row(
    model_eval, model_splits, model_tiny_ckpt
):
    preds = read_table(model_eval / "predictions.parquet", schema=PREDICTIONS)
    test = read_table(model_splits / "test.parquet")
    assert preds.column("interaction_id").to_pylist() == test.column("interaction_id").to_pylist()
    assert all(n > 0 for n in preds.column("nll").to_pylist())
    assert all(0 < p < 1 for p in preds.column("feedback_pred").to_pylist())
    meta = read_meta(model_eval / "predictions.parquet")
    assert meta["stage"] == "evaluate" and meta["counts"]["rows"] == 12
    assert set(meta["inputs"]) == {str(model_tiny_ckpt), str(model_splits / "test.parquet")}


def test_nll_is_the_mean_response_token_nll(model_eval, model_tiny_ckpt, model_splits):
    """Checked against a plain transformers forward of the first row, one row alone."""
    model, tok, _ = load(model_tiny_ckpt)
    row = read_table(model_splits / "test.parquet").to_pylist()[0]
    prompt = prompt_ids(tok, [row])[0]
    response = tok(row["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logps = model(ids).logits.log_softmax(-1)[0, :-1].gather(1, ids[0, 1:, None])[:, 0]
    expected = -logps[len(prompt) - 1 :].mean().item()
    got = read_table(model_eval / "predictions.parquet").column("nll")[0].as_py()
    assert got == pytest.approx(expected, rel=1e-4)


def test_metrics_json_is_strict_and_complete(model_eval, model_splits):
    text = (model_eval / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert set(metrics["lm"]) >= {"perplexity_positive", "perplexity_negative"}
    assert set(metrics["feedback"]["binary"]) >= {"accuracy", "auc", "brier", "ece"}
    signals = read_table(model_splits / "test.parquet").column("signal").to_pylist()
    feedback = metrics["feedback"]
    assert feedback["binary"]["rows"] == sum(s in ("binary", "pairwise") for s in signals)
    assert feedback["scalar"]["rows"] == signals.count("scalar") > 0
    assert feedback["token"]["tokens"] > 0
    assert metrics["preference"]["pairs"] == 6  # one right/wrong pair per group


def test_a_checkpoint_against_itself_ties_on_every_prompt(model_eval):
    """Greedy answers of the same weights are the same text with the same head score: every
    prompt is a tie, and ties count half, so the win rate is exactly 0.5."""
    preds = read_table(model_eval / "predictions.parquet").to_pandas()
    assert (preds["generation"] == preds["baseline_generation"]).all()
    assert (preds["generation_score"] == preds["baseline_score"]).all()
    gen = json.loads((model_eval / "metrics.json").read_text())["generation"]
    assert gen["win_rate"] == 0.5 and gen["prompts"] == 6
    assert gen["mean_score"] == gen["baseline_mean_score"]


def _win_rate(preds) -> float:
    """The win rate recomputed from predictions.parquet: one vote per distinct prompt."""
    per_prompt = preds.drop_duplicates("prompt")
    mine, theirs = per_prompt["generation_score"], per_prompt["baseline_score"]
    return float(((mine > theirs) + 0.5 * (mine == theirs)).mean())


def test_generations_are_shared_by_rows_with_the_same_prompt(model_eval):
    preds = read_table(model_eval / "predictions.parquet").to_pandas()
    assert preds["generation"].notna().all() and preds["baseline_generation"].notna().all()
    assert (preds.groupby("prompt")["generation"].nunique() == 1).all()
    assert (preds.groupby("prompt")["generation_score"].nunique() == 1).all()


def test_max_rows_limits_the_rows(tmp_path, model_tiny_ckpt, model_splits):
    cfg = EvaluateConfig(device="cpu", max_rows=3)
    result = evaluate(model_tiny_ckpt, model_splits / "test.parquet", tmp_path, cfg)
    assert result.rows_out == 3
    assert read_table(tmp_path / "predictions.parquet").num_rows == 3
    assert read_table(tmp_path / "predictions.parquet").column("generation").null_count == 3


def test_perplexity_positive_vs_negative_by_hand():
    rows = [
        {"label": 1, "score": 1.0, "signal": "binary", "group_id": "g"},
        {"label": 0, "score": 0.0, "signal": "binary", "group_id": "g"},
        {"label": 1, "score": 1.0, "signal": "binary", "group_id": "h"},
    ]
    s = Scores(
        logp=np.array([-2.0, -9.0, -4.0]),
        n_tokens=np.array([2, 3, 2]),
        head=np.array([0.9, 0.2, 0.6]),
    )
    m = compute_metrics(rows, s, bins=2)
    assert m["lm"]["perplexity_positive"] == pytest.approx(math.exp(6 / 4))
    assert m["lm"]["perplexity_negative"] == pytest.approx(math.exp(3))
    assert m["feedback"]["binary"]["auc"] == 1.0
    assert m["preference"] == {"pairs": 1, "accuracy_logprob": 1.0, "accuracy_head": 1.0}


def test_batched_greedy_equals_one_by_one(model_tiny_ckpt, model_splits):
    """Left padding must not change a prompt's greedy answer."""
    model, tok, _ = load(model_tiny_ckpt)
    rows = read_table(model_splits / "test.parquet").to_pylist()
    rows[0] = {**rows[0], "context": [{"role": "system", "content": "Be brief. " * 5}]}
    prompts = prompt_ids(tok, rows[:4])
    kw = {"pad_id": tok.pad_token_id, "eos_id": tok.eos_token_id, "max_new_tokens": 6}
    batched = generate_ids(model, prompts, **kw)
    alone = [generate_ids(model, [p], **kw)[0] for p in prompts]
    assert batched == alone


def test_best_of_keeps_the_candidate_the_scorer_prefers(model_tiny_ckpt, model_splits):
    model, tok, _ = load(model_tiny_ckpt)
    prompts = prompt_ids(tok, read_table(model_splits / "test.parquet").to_pylist()[:2])
    seen: dict[int, list[str]] = {}

    def by_length(idx: list[int], texts: list[str]) -> list[float]:
        for i, t in zip(idx, texts, strict=True):
            seen.setdefault(i, []).append(t)
        return [float(len(t)) for t in texts]

    best = generate_texts(model, tok, prompts, max_new_tokens=6, best_of=4, scorer=by_length)
    assert [len(b) for b in best] == [max(len(t) for t in seen[i]) for i in range(2)]
    again = generate_texts(model, tok, prompts, max_new_tokens=6, best_of=4, scorer=by_length)
    assert again == best  # sampling is seeded


def test_missing_wrong_or_empty_data_are_user_errors(tmp_path, model_tiny_ckpt):
    with pytest.raises(LfftError, match="no such file"):
        evaluate(model_tiny_ckpt, tmp_path / "nope.parquet", tmp_path / "o", CPU)
    bad = tmp_path / "bad.parquet"
    write_table(bad, pa.table({"prompt": ["q"]}), pa.schema([("prompt", pa.string())]), {})
    with pytest.raises(SchemaError, match="missing column 'response'"):
        evaluate(model_tiny_ckpt, bad, tmp_path / "o", CPU)
    empty = tmp_path / "empty.parquet"
    write_table(empty, NORMALIZED.empty_table(), SPLIT, make_metadata("split"))
    with pytest.raises(NoUsableRows):
        evaluate(model_tiny_ckpt, empty, tmp_path / "o", CPU)


@pytest.mark.parametrize(
    "bad", [{"best_of": 0}, {"temperature": 0.0}, {"max_new_tokens": 0}, {"max_rows": 0}]
)
def test_bad_options_are_config_errors(tmp_path, model_tiny_ckpt, model_splits, bad):
    with pytest.raises(ConfigError):
        evaluate(model_tiny_ckpt, model_splits / "test.parquet", tmp_path, replace(CPU, **bad))


def test_cli_evaluate_and_its_one_line_error(tmp_path, model_tiny_ckpt, model_splits):
    test = str(model_splits / "test.parquet")
    args = [sys.executable, "-m", "lfft", "evaluate", "--data", test, "--device", "cpu"]
    ok = subprocess.run(
        [*args, "--model", str(model_tiny_ckpt), "--out", str(tmp_path / "e"), "--generate"]
        + ["--sample", "--temperature", "0.7", "--max-new-tokens", "3", "--best-of", "2"]
        + ["--baseline", str(model_tiny_ckpt), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["config"]["do_sample"] and metrics["generation"]["best_of"] == 2
    # best-of-2 samples against the baseline's single sample: the win rate is what the head's
    # scores in predictions.parquet say, one vote per prompt, ties half
    preds = read_table(tmp_path / "e" / "predictions.parquet").to_pandas()
    assert metrics["generation"]["win_rate"] == pytest.approx(_win_rate(preds), abs=1e-12)
    bad = subprocess.run(
        [*args, "--model", str(tmp_path), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error:") and "not an lfft checkpoint" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_plots_are_skipped_silently_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    bins = [{"mean_pred": 0.2, "frac_pos": 0.3, "count": 2, "lo": 0.0, "hi": 0.5}]
    assert plots.calibration(bins, tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()


def test_plots_written_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    bins = [{"mean_pred": 0.2, "frac_pos": 0.3, "count": 2, "lo": 0.0, "hi": 0.5}]
    png = plots.calibration(bins, tmp_path / "c.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    steps = {"step": [10, 20, 20], "split": ["train", "train", "val"], "loss": [2.0, 1.5, 1.7]}
    steps.update(lm_loss=[1.8, 1.3, 1.5], fb_loss=[0.4, 0.3, 0.35])
    table = pa.Table.from_pydict(
        {f.name: steps.get(f.name, [None] * 3) for f in METRICS}, schema=METRICS
    )
    write_table(tmp_path / "metrics.parquet", table, METRICS, make_metadata("train"))
    png = plots.training_curves(tmp_path / "metrics.parquet", tmp_path / "t.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
