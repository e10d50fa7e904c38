"""``lfft explain``: what the feedback head and the finetune learnt, token by token
(``docs/explain.md``).

    lfft explain --model CKPT --data test.parquet --out explain.html [--baseline INIT] [--limit 50]
    lfft explain --model CKPT --prompt "..." --response "..."      # one pair, in the terminal

The page goes to ``--out``; the metrics (token F1 overall and per row) beside it as
``<stem>.metrics.json`` (``explain.html`` -> ``explain.metrics.json``), so that an explain page
written into an evaluation folder does not replace evaluate's ``metrics.json``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from lfft.config import ExplainConfig, as_dict
from lfft.errors import ConfigError, NoUsableRows
from lfft.io import fingerprints, write_json_atomic, write_text_atomic
from lfft.report import StageResult


def metrics_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metrics.json")


def _load(model_dir: Path, baseline: Path | None, cfg: ExplainConfig):
    from lfft.explain.core import same_vocabulary
    from lfft.model.checkpoint import load, load_model, load_tokenizer
    from lfft.model.device import pick_device, pick_dtype

    device = pick_device(cfg.device)
    dtype = pick_dtype("auto", device)
    model, tok, head = load(model_dir, device=device, dtype=dtype)
    base = None
    if baseline is not None:
        same_vocabulary(tok, load_tokenizer(baseline))
        base = load_model(baseline, device, dtype).eval()
    return model, tok, head, base


def explain_pair(
    model_dir: str | Path,
    prompt: str,
    response: str,
    cfg: ExplainConfig,
    baseline: str | Path | None = None,
) -> Any:
    """Explain one (prompt, response) pair; returns its :class:`Explanation`."""
    from lfft.explain.core import explain_rows

    model, tok, head, base = _load(Path(model_dir), baseline and Path(baseline), cfg)
    row = {"interaction_id": "pair", "prompt": prompt, "response": response, "context": []}
    got = explain_rows(model, tok, head, [row], baseline=base, max_length=cfg.max_length)
    if not got:
        raise NoUsableRows("the response has no token left within --max-length")
    return got[0]


def explain(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: ExplainConfig,
    baseline: str | Path | None = None,
) -> StageResult:
    """Explain the rows of a SPLIT/FEEDBACK artifact into the page ``out`` + its metrics."""
    from lfft.explain.core import explain_rows, summary
    from lfft.explain.html import render
    from lfft.model.evaluate import _json_safe, read_rows

    t0 = time.perf_counter()
    model_dir, data, out = Path(model_dir), Path(data), Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: expected an .html file")
    rows = read_rows(data, cfg.limit, "explain")
    base_path = Path(baseline) if baseline is not None else None
    model, tok, head, base = _load(model_dir, base_path, cfg)
    explained = explain_rows(
        model, tok, head, rows, baseline=base, max_length=cfg.max_length, batch_size=cfg.batch_size
    )
    metrics = summary(explained)
    metrics.update(model=str(model_dir), data=str(data), baseline=baseline and str(baseline))
    metrics["config"] = as_dict(cfg)
    metrics["inputs"] = fingerprints([model_dir, data] + ([base_path] if base_path else []))
    write_text_atomic(out, render(explained, metrics, f"lfft explain: {model_dir.name}"))
    write_json_atomic(metrics_path(out), _json_safe(metrics))
    dropped = len(rows) - len(explained)
    tok_m = metrics["token"]
    f1 = tok_m["f1_modify"]
    return StageResult(
        stage="explain",
        rows_in=len(rows),
        rows_out=len(explained),
        rejects=Counter({"no_response_token": dropped} if dropped else {}),
        seconds=time.perf_counter() - t0,
        outputs={"page": out, "metrics": metrics_path(out)},
        extra={
            "token F1 (modify)": "n/a" if f1 is None else f"{f1:.3f} (n={tok_m['tokens']})",
            "rows with user marks": str(metrics["rows_marked"]),
        },
    )
