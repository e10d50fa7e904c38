"""The report of ``bench/gpu_check.sh``: every figure of issue 15 that its parts measured, in
one table with its target and met / not met / not measured (from what WORK_DIR holds: the CLI
runs' metrics.parquet, the parts' JSON files); also written to WORK_DIR/gpu_check.json.

    python bench/gpu_check.py WORK_DIR [--prior gpu_check.json]

``--prior``: an earlier call's gpu_check.json (a device lent for minutes runs the parts as two
calls): its figures fill the rows this WORK_DIR did not measure.

Model FLOPs per useful (non-pad) token, forward and backward (x3 of the forward), counting only
the work a step needs:

- ``6 * N_body`` for the transformer blocks (every token),
- ``6 * V * H * r`` for the LM head, which lfft runs only on the positions that predict response
  tokens (``r``: their share of the tokens),
- ``6 * L * H * E[n]`` for causal attention (``n``: the length of the token's example; packed or
  padded, a token attends to its own example only).

MFU divides that by the GPU's dense bf16 peak (``PEAK_TFLOPS``, 989 for an H100/H200 SXM). The
first ``SKIP_WINDOWS`` logging windows (start-up, compilation, warm-up) are left out. Compile
start-up is the first window's time less its steps at the steady pace.
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
    first = rows[0]
    first_s = first["tokens"] / first["tokens_per_s"] if first["tokens_per_s"] else 0.0
    steps = rows[-1]["step"] - (rows[SKIP_WINDOWS - 1]["step"] if len(rows) > SKIP_WINDOWS else 0)
    return {
        "steps": rows[-1]["step"],
        "tokens/s": tokens / seconds,
        "start-up s": first_s - first["step"] * seconds / max(1, steps),
        "pad share": rows[-1]["pad_share"],
        "peak MiB": max(r["mem_mb"] for r in rows),
        "loss": rows[-1]["loss"],
    }


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


class Table:
    """The rows ``(part, figure, measured, target, met)``; met is met / not met / not measured
    (or empty: a figure reported without a target)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, part: str, figure: str, value, fmt="", target="", ok=None, note="") -> None:
        measured = "not measured" if value is None else format(value, fmt.removesuffix("x"))
        measured += "x" if value is not None and fmt.endswith("x") else ""
        measured += f" ({note})" if value is not None and note else ""
        met = "not measured" if value is None else ""
        if value is not None and ok is not None:
            met = "met" if ok(value) else "not met"
        self.rows.append(dict(part=part, figure=figure, measured=measured, target=target, met=met))

    def merge(self, prior: list[dict]) -> None:
        """Fill the rows not measured here with ``prior``'s, and add the figures only it has."""
        mine = {r["figure"]: r for r in self.rows}
        for old in [r for r in prior if r["measured"] != "not measured"]:
            row = mine.get(old["figure"])
            if row is None:
                self.rows.append({**old, "figure": old["figure"] + " (earlier call)"})
            elif row["measured"] == "not measured":
                row.update(old, figure=old["figure"] + " (earlier call)")
        parts = ["125m", "peers"]
        self.rows.sort(key=lambda r: parts.index(r["part"]) if r["part"] in parts else 2)


def cli_runs(work: Path, peak: float, table: Table) -> None:
    """The `lfft train` runs of part 125m (their metrics.parquet, as logged)."""
    ckpt = work / "ckpt"
    flops = None
    if (ckpt / "init" / "lfft.json").is_file() and (work / "splits" / "train.parquet").is_file():
        info = json.loads((ckpt / "init" / "lfft.json").read_text())
        max_length = int(info.get("config", {}).get("max_length", 1024))
        flops, _ = flops_per_token(ckpt / "init", work / "splits" / "train.parquet", max_length)
    ran = {run: steady(ckpt / run / "metrics.parquet") for run in ("eager", "compile", "packed")
           if (ckpt / run / "metrics.parquet").is_file()}  # fmt: skip
    goals = {"eager": ("≥ 30%", 0.30), "compile": ("≥ 45%", 0.45), "packed": ("reported", None)}
    for run, (target, goal) in goals.items():
        m = ran.get(run)
        mfu = flops * m["tokens/s"] / peak if m and flops else None
        ok = None if goal is None else (lambda v, g=goal: v >= g)
        table.add("125m", f"`lfft train` {run} MFU", mfu, ".1%", target, ok)
    m = ran.get("compile")
    start = m["start-up s"] if m else None
    table.add("125m", "`lfft train --compile` start-up s", start, ".0f", "≤ 60", lambda v: v <= 60)
    for run, m in ran.items():
        table.add("125m", f"`lfft train` {run} tokens/s", m["tokens/s"], ",.0f", "reported")
        table.add("125m", f"`lfft train` {run} peak GiB", m["peak MiB"] / 1024, ".1f", "reported")


def profile(work: Path, table: Table) -> None:
    """bench/train_profile.py's eager and regionally compiled steps (profile.json)."""
    runs = {r["variant"]: r for r in (_json(work / "profile.json") or {}).get("runs", [])}
    eager, comp = runs.get("off", {}), runs.get("layers", {})
    table.add("125m", "profile: eager MFU", eager.get("MFU"), ".1%", "≥ 30%", lambda v: v >= 0.30)
    table.add("125m", "profile: compiled MFU (layers)", comp.get("MFU"), ".1%", "≥ 45%",
              lambda v: v >= 0.45)  # fmt: skip
    table.add("125m", "profile: compile start-up s (layers)", comp.get("start-up s"), ".0f",
              "≤ 60", lambda v: v <= 60)  # fmt: skip
    for name, r in (("eager", eager), ("compiled", comp)):
        if r.get("peak GiB") is not None:
            table.add("125m", f"profile: {name} peak GiB", r["peak GiB"], ".1f", "reported")


def peers(work: Path, table: Table) -> None:
    """lfft against TRL on SmolLM2-135M (peers.json of bench/train_throughput.py)."""
    record = _json(work / "peers.json")
    goals = (record or {}).get("targets") or []
    for t in goals:
        note = f"{t.get('lfft')} vs {t.get('trl')}"
        ok = lambda v: v >= 1.5  # noqa: E731
        table.add("peers", t["target"], t.get("ratio"), ".2fx", "≥ 1.5x", ok, note=note)
    if not goals:
        for trainer in ("sft", "kto", "sft lora", "kto lora"):
            table.add("peers", f"lfft {trainer} ≥ 1.5x TRL's best", None, "", "≥ 1.5x")


def generation(work: Path, table: Table) -> None:
    """bench/generate_speed.py (generate.json) and `lfft evaluate --generate` (eval/)."""
    for r in (_json(work / "generate.json") or {}).get("results", []):
        figure = f"generate tokens/s, batch {r['batch_size']} ({r['dtype']})"
        table.add("125m", figure, r["tokens_per_s"], ",.0f", "reported")
    evaluated = _json(work / "eval" / "metrics.json") or {}
    speed = evaluated.get("generation", {}).get("throughput", {})
    note = f"{speed.get('dtype')}, batch {speed.get('batch_size')}"
    rate = speed.get("tokens_per_s")
    table.add("125m", "`lfft evaluate --generate` tokens/s", rate, ",.0f", "reported", note=note)


def main(argv: list[str]) -> None:
    work = Path(argv[0])
    prior = Path(argv[argv.index("--prior") + 1]) if "--prior" in argv else None
    peak = float(os.environ.get("PEAK_TFLOPS", 989)) * 1e12
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    head = f"gpu_check: {gpu}, torch {torch.__version__}, bf16 peak {peak / 1e12:.0f} TFLOP/s"
    for r in (_json(work / "profile.json") or {}).get("runs", []):
        shares = r.get("profile", {}).get("categories", {})
        text = ", ".join(f"{label} {share:.1%}" for label, share in shares.items())
        if text:
            print(f"  eager step time ({r['variant']}): {text}")
    table = Table()
    cli_runs(work, peak, table)
    profile(work, table)
    generation(work, table)
    peers(work, table)
    if prior is not None and prior.is_file():
        table.merge(json.loads(prior.read_text())["rows"])
    record = {"machine": head, "rows": table.rows}
    (work / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"\n{head}\n")
    print("| part | figure | measured | target | met |")
    print("| --- | --- | ---: | --- | --- |")
    for r in table.rows:
        print(f"| {r['part']} | {r['figure']} | {r['measured']} | {r['target']} | {r['met']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
