"""``lfft evaluate``: score a checkpoint on a test split (see ``docs/evaluate.md``).

    lfft evaluate --model ckpt/final --data splits/test.parquet --out eval/ [--baseline ckpt/init]
                  [--generate]

Reads a SPLIT artifact and a checkpoint; writes ``eval/predictions.parquet`` (PREDICTIONS: per
row the response's NLL, the feedback head's prediction and, with ``--generate``, the model's
answer and the head's score of it) and ``eval/metrics.json`` (perplexity on positive vs negative
responses, the head's accuracy/AUC/Brier/ECE, MSE/Spearman, token F1, preference accuracy, and
the win rate of the generations over ``--baseline``'s as judged by the head), plus PNG plots when
matplotlib is installed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from lfft.config import EvaluateConfig, as_dict
from lfft.errors import ConfigError, NoUsableRows
from lfft.io import ArtifactWriter, fingerprints, read_table, write_json_atomic
from lfft.model import metrics as M
from lfft.model import plots
from lfft.model.batching import batches, collate, encode, prompt_ids, render_prompt
from lfft.model.checkpoint import METRICS_FILE, load
from lfft.model.device import pick_device, pick_dtype
from lfft.model.forward import forward_batch
from lfft.model.generate import generate_texts
from lfft.model.losses import sequence_logps
from lfft.model.throughput import Throughput, describe
from lfft.report import StageResult
from lfft.report_html.evaluate import write_report
from lfft.schemas import PREDICTIONS, SPLIT, make_metadata

BCE_SIGNALS = ("binary", "pairwise")  # the rows whose head is trained with BCE on the label


@dataclass
class Scores:
    """Per-row results of one scoring pass (nan where a row could not be scored)."""

    logp: np.ndarray  # log p(response + eos | prompt), nats
    n_tokens: np.ndarray  # response tokens scored (eos included)
    head: np.ndarray  # sigmoid of the head's sequence logit: P(positive) / predicted score
    token_labels: np.ndarray = field(default_factory=lambda: np.zeros(0))  # 1 keep / 0 modify
    token_probs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # head P(keep)

    @property
    def nll(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_tokens > 0, -self.logp / self.n_tokens, np.nan)


@torch.inference_mode()
def score_rows(
    model,
    tokenizer,
    head,
    rows: Sequence[Mapping[str, Any]],
    *,
    max_length: int = 512,
    batch_size: int = 16,
    batch_tokens: int = 16_384,
) -> Scores:
    """Log-likelihood of each row's ``response`` and the head's prediction, batched."""
    device = next(model.parameters()).device
    n = len(rows)
    logp, n_tok, fb = np.full(n, np.nan), np.zeros(n, dtype=np.int64), np.full(n, np.nan)
    tok_labels, tok_probs = [], []
    for group in batches(encode(tokenizer, rows, max_length), batch_size, batch_tokens):
        batch = collate(group, tokenizer.pad_token_id).to(device)
        out = forward_batch(model, head, batch)
        idx = batch.row.cpu().numpy()
        logp[idx] = sequence_logps(out.token_logps, out.response_mask).double().cpu().numpy()
        n_tok[idx] = out.response_mask.sum(1).cpu().numpy()
        fb[idx] = torch.sigmoid(out.fb_seq_logits).double().cpu().numpy()
        labelled = batch.token_labels >= 0
        if bool(labelled.any()):
            tok_labels.append(batch.token_labels[labelled].double().cpu().numpy())
            tok_probs.append(torch.sigmoid(out.fb_token_logits[labelled]).double().cpu().numpy())
    cat = np.concatenate
    return Scores(
        logp,
        n_tok,
        fb,
        cat(tok_labels) if tok_labels else np.zeros(0),
        cat(tok_probs) if tok_probs else np.zeros(0),
    )


def head_scores(model, tokenizer, head, rows, responses: Sequence[str], **kw: Any) -> np.ndarray:
    """The head's score of each ``responses[i]`` as the answer to ``rows[i]``'s prompt."""
    candidates = [{**rows[i], "response": text} for i, text in enumerate(responses)]
    return score_rows(model, tokenizer, head, candidates, **kw).head


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    return np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows])


def compute_metrics(rows: Sequence[Mapping[str, Any]], s: Scores, bins: int = 10) -> dict[str, Any]:
    """The summary of one scoring pass (generation metrics are added by :func:`evaluate`)."""
    label, score = _column(rows, "label"), _column(rows, "score")
    signal = np.array([r.get("signal") or "none" for r in rows])
    nll_sum = -s.logp
    pos, neg = label == 1, label == 0
    lm = {
        "perplexity": M.perplexity(nll_sum, s.n_tokens),
        "perplexity_positive": M.perplexity(nll_sum[pos], s.n_tokens[pos]),
        "perplexity_negative": M.perplexity(nll_sum[neg], s.n_tokens[neg]),
        "rows_positive": int(pos.sum()),
        "rows_negative": int(neg.sum()),
    }
    binary = np.isin(signal, BCE_SIGNALS) & ~np.isnan(label)
    scalar = (signal == "scalar") & ~np.isnan(score)
    y, p = label[binary], s.head[binary]
    groups = [r.get("group_id") or "" for r in rows]
    pref_lp, pairs = M.preference_accuracy(groups, score, s.logp)
    pref_head, _ = M.preference_accuracy(groups, score, s.head)
    return {
        "rows": len(rows),
        "rows_scored": int(np.isfinite(s.logp).sum()),
        "lm": lm,
        "feedback": {
            "binary": {
                "rows": int(binary.sum()),
                "accuracy": M.accuracy(y, p),
                "auc": M.auc(y, p),
                "brier": M.brier(y, p),
                "ece": M.ece(y, p, bins),
                "reliability": M.reliability(y, p, bins),
            },
            "scalar": {
                "rows": int(scalar.sum()),
                "mse": M.mse(score[scalar], s.head[scalar]),
                "spearman": M.spearman(score[scalar], s.head[scalar]),
            },
            "token": {
                "tokens": int(len(s.token_labels)),
                "f1_modify": M.token_f1(s.token_labels, s.token_probs),
                "accuracy": M.accuracy(s.token_labels, s.token_probs),
            },
        },
        "preference": {
            "pairs": pairs,
            "accuracy_logprob": pref_lp,
            "accuracy_head": pref_head,
        },
    }


@dataclass
class Generations:
    texts: list[str | None]
    scores: np.ndarray
    baseline_texts: list[str | None]
    baseline_scores: np.ndarray
    metrics: dict[str, Any]


def run_generation(
    model, tokenizer, head, rows: list[dict[str, Any]], cfg: EvaluateConfig, baseline: Path | None
) -> Generations:
    """Answer each distinct prompt once (rows sharing context + prompt share the answer), score
    the answers with the head; with a baseline, its answers too, judged by the same head."""
    keys = [render_prompt(tokenizer, r) for r in rows]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    uniq = [rows[i] for i in first.values()]
    kw = _score_kw(cfg)
    speed = Throughput()
    texts = _answers(model, tokenizer, head, uniq, cfg, kw, speed)
    scores = head_scores(model, tokenizer, head, uniq, texts, **kw)
    metrics: dict[str, Any] = {
        "prompts": len(uniq),
        "best_of": cfg.best_of,
        "sampled": cfg.do_sample or cfg.best_of > 1,
        "mean_score": _mean(scores),
        "throughput": _speed_record(speed, model, cfg, cfg.best_of),
    }
    base_texts: list[str | None] = [None] * len(uniq)
    base_scores = np.full(len(uniq), np.nan)
    if baseline is not None:
        device = next(model.parameters()).device
        b_model, b_tok, b_head = load(baseline, device=device, dtype=next(model.parameters()).dtype)
        speed = Throughput()
        base_texts = _answers(b_model, b_tok, None, uniq, replace(cfg, best_of=1), kw, speed)
        metrics["baseline_throughput"] = _speed_record(speed, b_model, cfg, 1)
        del b_model, b_head
        base_scores = head_scores(model, tokenizer, head, uniq, base_texts, **kw)
        wins = np.where(scores > base_scores, 1.0, np.where(scores == base_scores, 0.5, 0.0))
        metrics["baseline_mean_score"] = _mean(base_scores)
        metrics["win_rate"] = _mean(wins)
    pos = {k: j for j, k in enumerate(first)}
    where = [pos[k] for k in keys]
    return Generations(
        [texts[j] for j in where],
        scores[where],
        [base_texts[j] for j in where],
        base_scores[where],
        metrics,
    )


def _speed_record(speed: Throughput, model, cfg: EvaluateConfig, n: int) -> dict[str, Any]:
    """``speed`` with the device, dtype and sequences per ``generate`` call (``n`` per prompt)."""
    param = next(model.parameters())
    return speed.record(param.device, param.dtype, max(1, cfg.batch_size // n) * n)


def _answers(model, tokenizer, head, rows, cfg: EvaluateConfig, kw, speed: Throughput) -> list[str]:
    scorer = None
    if head is not None and cfg.best_of > 1:

        def scorer(idx: list[int], texts: list[str]) -> list[float]:
            return head_scores(model, tokenizer, head, [rows[i] for i in idx], texts, **kw).tolist()

    return generate_texts(
        model,
        tokenizer,
        prompt_ids(tokenizer, rows),
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.do_sample,
        temperature=cfg.temperature,
        best_of=cfg.best_of,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        scorer=scorer,
        stats=speed,
    )


def _score_kw(cfg: EvaluateConfig) -> dict[str, int]:
    return {
        "max_length": cfg.max_length,
        "batch_size": cfg.batch_size,
        "batch_tokens": cfg.batch_tokens,
    }


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan


def check(cfg: EvaluateConfig) -> None:
    """Reject option values that would only fail deep inside generation."""
    for name in ("max_new_tokens", "best_of", "batch_size", "batch_tokens", "max_length"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.temperature <= 0:
        raise ConfigError("--temperature must be > 0 (use greedy decoding: no --sample)")
    if cfg.max_rows is not None and cfg.max_rows < 1:
        raise ConfigError("--max-rows must be at least 1")


def read_rows(data: Path, limit: int | None, verb: str) -> list[dict[str, Any]]:
    """The first ``limit`` rows (all: None) of a SPLIT artifact; none at all is an error."""
    table = read_table(data, schema=SPLIT, what=str(data))
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    if not rows:
        raise NoUsableRows(f"{data}: no rows to {verb}")
    return rows


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    out_dir: str | Path,
    cfg: EvaluateConfig,
    baseline: str | Path | None = None,
) -> StageResult:
    """Score ``model_dir`` on the SPLIT artifact ``data``; write predictions and metrics."""
    t0 = time.perf_counter()
    check(cfg)
    model_dir, data, out_dir = Path(model_dir), Path(data), Path(out_dir)
    baseline = Path(baseline) if baseline is not None else None
    rows = read_rows(data, cfg.max_rows, "evaluate")
    device = pick_device(cfg.device)
    model, tokenizer, head = load(model_dir, device=device, dtype=pick_dtype(cfg.precision, device))
    scores = score_rows(model, tokenizer, head, rows, **_score_kw(cfg))
    summary = compute_metrics(rows, scores, cfg.calibration_bins)
    gen = None
    if cfg.generate:
        gen = run_generation(model, tokenizer, head, rows, cfg, baseline)
        summary["generation"] = gen.metrics
    inputs = fingerprints([model_dir, data] + ([baseline] if baseline else []))
    summary.update(model=str(model_dir), data=str(data), baseline=baseline and str(baseline))
    summary["config"] = as_dict(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {"predictions": out_dir / "predictions.parquet", "metrics": out_dir / "metrics.json"}
    meta = make_metadata("evaluate", as_dict(cfg), inputs, {"rows": len(rows)})
    with ArtifactWriter(outputs["predictions"], PREDICTIONS, meta) as w:
        w.write(_predictions(rows, scores, gen))
    write_json_atomic(outputs["metrics"], _json_safe(summary))
    outputs["report"] = write_report(out_dir / "report.html", [out_dir])
    png = plots.calibration(
        summary["feedback"]["binary"]["reliability"], out_dir / "calibration.png"
    )
    if png:
        outputs["calibration_plot"] = png
    png = plots.training_curves(model_dir / METRICS_FILE, out_dir / "training.png")
    if png:
        outputs["training_plot"] = png
    return StageResult(
        stage="evaluate",
        rows_in=len(rows),
        rows_out=len(rows),
        seconds=time.perf_counter() - t0,
        outputs=outputs,
        extra=headline(summary),
    )


def _predictions(rows, s: Scores, gen: Generations | None) -> pa.Table:
    n = len(rows)
    none = [None] * n
    cols = {
        "interaction_id": [r["interaction_id"] for r in rows],
        "group_id": [r.get("group_id") for r in rows],
        "prompt": [r["prompt"] for r in rows],
        "response": [r["response"] for r in rows],
        "signal": [r.get("signal") for r in rows],
        "nll": _nullable(s.nll),
        "n_tokens": [int(k) if k > 0 else None for k in s.n_tokens],
        "feedback_pred": _nullable(s.head),
        "score": [r.get("score") for r in rows],
        "label": [r.get("label") for r in rows],
        "generation": gen.texts if gen else none,
        "generation_score": _nullable(gen.scores) if gen else none,
        "baseline_generation": gen.baseline_texts if gen else none,
        "baseline_score": _nullable(gen.baseline_scores) if gen else none,
    }
    return pa.Table.from_pydict(cols, schema=PREDICTIONS)


def _nullable(x: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in x]


def _json_safe(obj: Any) -> Any:
    """nan/inf -> null (strict JSON), numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def headline(summary: Mapping[str, Any]) -> dict[str, str]:
    """The few numbers worth a glance, formatted for the summary table."""
    lm, fb, pref = summary["lm"], summary["feedback"], summary["preference"]
    out = {
        "perplexity (+ / -)": f"{_f(lm['perplexity_positive'])} / {_f(lm['perplexity_negative'])}",
    }
    if fb["binary"]["rows"]:
        b = fb["binary"]
        out["head binary"] = (
            f"acc {_f(b['accuracy'])}  AUC {_f(b['auc'])}  "
            f"Brier {_f(b['brier'])}  ECE {_f(b['ece'])}  (n={b['rows']})"
        )
    if fb["scalar"]["rows"]:
        sc = fb["scalar"]
        out["head scalar"] = f"MSE {_f(sc['mse'])}  Spearman {_f(sc['spearman'])}  (n={sc['rows']})"
    if fb["token"]["tokens"]:
        out["head token F1"] = f"{_f(fb['token']['f1_modify'])} (n={fb['token']['tokens']})"
    if pref["pairs"]:
        out["preference acc"] = (
            f"log-prob {_f(pref['accuracy_logprob'])}  head {_f(pref['accuracy_head'])}  "
            f"(pairs={pref['pairs']})"
        )
    gen = summary.get("generation")
    if gen:
        text = f"mean head score {_f(gen['mean_score'])} over {gen['prompts']} prompts"
        if "win_rate" in gen:
            text += f"; win rate vs baseline {_f(gen['win_rate'])}"
        out["generation"] = text
        out["generation speed"] = describe(gen["throughput"])
        if "baseline_throughput" in gen:
            out["baseline speed"] = describe(gen["baseline_throughput"])
    return out


def _f(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"
