"""The report of ``bench/gpu_check.sh``: every figure of issue 15 that its parts measured, in
one table with its target (the parts' JSON files and the CLI run's metrics.parquet in WORK_DIR).

    python bench/gpu_check.py WORK_DIR

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


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def rows(work: Path, peak: float) -> list[tuple[str, str, str, str]]:
    """``(figure, measured, target, met)`` for every part that ran (the others: not measured)."""
    out: list[tuple[str, str, str, str]] = []

    def add(figure: str, value: float | None, fmt: str, target: str = "", ok=None) -> None:
        text = "not measured" if value is None else format(value, fmt)
        met = "" if ok is None or value is None else ("yes" if ok(value) else "no")
        out.append((figure, text, target, met))

    for name, layout in (("profile.json", "padded"), ("profile-packed.json", "packed")):
        runs = {r["variant"]: r for r in (_json(work / name) or {}).get("runs", [])}
        eager, comp = runs.get("off", {}), runs.get("layers", {})
        add(f"eager MFU, {layout}", eager.get("MFU"), ".1%", "≥ 30%", lambda v: v >= 0.30)
        add(
            f"compiled MFU (layers), {layout}", comp.get("MFU"), ".1%", "≥ 45%", lambda v: v >= 0.45
        )
        add(
            f"compile start-up s, {layout}",
            comp.get("start-up s"),
            ".0f",
            "≤ 60",
            lambda v: v <= 60,
        )
        add(f"eager tokens/s, {layout}", eager.get("tokens/s"), ",.0f")
        add(f"peak GiB eager / compiled, {layout}", eager.get("peak GiB"), ".1f")
        if comp.get("peak GiB") is not None:
            out[-1] = (out[-1][0], f"{out[-1][1]} / {comp['peak GiB']:.1f}", "reported", "")
    metrics = work / "ckpt" / "eager" / "metrics.parquet"
    if metrics.is_file():
        m = steady(metrics)
        info = json.loads((work / "ckpt" / "eager" / "lfft.json").read_text())
        max_length = int(info.get("config", {}).get("max_length", 1024))
        flops, _ = flops_per_token(
            work / "ckpt" / "init", work / "splits" / "train.parquet", max_length
        )
        add("`lfft train` (CLI) MFU, as logged", flops * m["tokens/s"] / peak, ".1%")
    else:
        add("`lfft train` (CLI) MFU, as logged", None, "")
    for t in (_json(work / "peers.json") or {}).get("targets") or []:
        note = f" ({t['lfft']} vs {t['trl']})" if t.get("ratio") else ""
        add(t["target"] + note, t.get("ratio"), ".2f", "≥ 1.5x", lambda v: v >= 1.5)
    if not (work / "peers.json").is_file():
        add("lfft vs TRL on SmolLM2-135M (sft, kto, LoRA)", None, "", "≥ 1.5x")
    gen = _json(work / "generate.json") or {}
    for r in gen.get("results", []):
        add(f"generate tokens/s, batch {r['batch_size']} ({r['dtype']})", r["tokens_per_s"], ",.0f")
    evaluated = _json(work / "eval" / "metrics.json") or {}
    speed = evaluated.get("generation", {}).get("throughput", {})
    add("`lfft evaluate --generate` tokens/s", speed.get("tokens_per_s"), ",.0f", "reported")
    return out


def main(argv: list[str]) -> None:
    work = Path(argv[0])
    peak = float(os.environ.get("PEAK_TFLOPS", 989)) * 1e12
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"\ngpu_check: {gpu}, torch {torch.__version__}, bf16 peak {peak / 1e12:.0f} TFLOP/s")
    for name in ("profile.json", "profile-packed.json"):
        for r in (_json(work / name) or {}).get("runs", []):
            for label, share in r.get("profile", {}).get("categories", {}).items():
                print(f"  {name} eager time: {label} {share:.1%}")
    print()
    print("| figure | measured | target | met |")
    print("| --- | ---: | --- | --- |")
    for figure, value, target, met in rows(work, peak):
        print(f"| {figure} | {value} | {target} | {met} |")


if __name__ == "__main__":
    main(sys.argv[1:])
