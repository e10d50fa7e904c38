"""The report of ``bench/gpu_check.sh``: steady-state useful tokens/s, peak memory and MFU.

    python bench/gpu_check.py WORK_DIR RUN...

Model FLOPs per useful (non-pad) token, forward and backward (x3 of the forward), counting only
the work a step needs:

- ``6 * N_body`` for the transformer blocks (every token),
- ``6 * V * H * r`` for the LM head, which lfft runs only on the positions that predict response
  tokens (``r``: their share of the tokens),
- ``6 * L * H * E[n]`` for causal attention (``n``: the length of the token's example; packed or
  padded, a token attends to its own example only).

MFU divides that by the GPU's dense bf16 peak (``PEAK_TFLOPS``, 989 for an H100/H200 SXM). The
first ``SKIP_WINDOWS`` logging windows (start-up, compilation, warm-up) are left out.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch

SKIP_WINDOWS = 2


def flops_per_token(ckpt: Path, train: Path, max_length: int) -> tuple[float, dict]:
    from transformers import AutoConfig, AutoModelForCausalLM

    from lfft.model.batching import encode
    from lfft.model.checkpoint import load_tokenizer

    cfg = AutoConfig.from_pretrained(ckpt)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel()
    body = total - embed  # tied embeddings: the LM head is the embedding matrix
    tok = load_tokenizer(ckpt)
    rows = pq.read_table(train, columns=["context", "prompt", "response", "target"]).to_pylist()
    examples = encode(tok, rows, max_length)
    lengths = [len(e) for e in examples]
    tokens = sum(lengths)
    response = sum(len(e) - e.prompt_len for e in examples)
    n_mean = sum(n * n for n in lengths) / tokens
    h, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    flops = 6 * body + 6 * vocab * h * response / tokens + 6 * layers * h * n_mean
    facts = {
        "params": total,
        "body params": body,
        "examples": len(examples),
        "mean length": tokens / len(examples),
        "response share": response / tokens,
        "attention length E[n]": n_mean,
        "GFLOP per token": flops / 1e9,
    }
    return flops, facts


def steady(metrics: Path) -> dict:
    rows = [r for r in pq.read_table(metrics).to_pylist() if r["split"] == "train"]
    rows.sort(key=lambda r: r["step"])
    kept = rows[SKIP_WINDOWS:] or rows
    tokens = sum(r["tokens"] for r in kept)
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in kept if r["tokens_per_s"])
    return {
        "steps": rows[-1]["step"],
        "tokens/s": tokens / seconds,
        "pad share": rows[-1]["pad_share"],
        "peak MiB": max(r["mem_mb"] for r in rows),
        "loss": rows[-1]["loss"],
    }


def main(argv: list[str]) -> None:
    work, runs = Path(argv[0]), argv[1:]
    peak = float(os.environ.get("PEAK_TFLOPS", 989)) * 1e12
    info = json.loads((work / "ckpt" / runs[0] / "lfft.json").read_text())
    max_length = int(info.get("config", {}).get("max_length", 1024))
    flops, facts = flops_per_token(
        work / "ckpt" / "init", work / "splits" / "train.parquet", max_length
    )
    print(f"gpu: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else '?'}")
    print(f"torch {torch.__version__}")
    for k, v in facts.items():
        print(f"{k}: {v:,.3f}" if isinstance(v, float) else f"{k}: {v:,}")
    print()
    print("| run | steps | useful tokens/s | TFLOP/s | MFU | pad share | peak GiB | final loss |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in runs:
        m = steady(work / "ckpt" / run / "metrics.parquet")
        achieved = flops * m["tokens/s"]
        print(
            f"| {run} | {m['steps']} | {m['tokens/s']:,.0f} | {achieved / 1e12:.1f} | "
            f"{achieved / peak:.1%} | {m['pad share']:.3f} | {m['peak MiB'] / 1024:.1f} | "
            f"{m['loss']:.3f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
