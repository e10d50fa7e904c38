"""Batched generation throughput of a checkpoint (a benchmark, not a test): tokens/s of the
decoding ``lfft evaluate --generate`` runs (left-padded batches, KV cache, greedy), for each of
``--batch-sizes``.

    .venv/bin/python bench/generate_speed.py --model ckpt/final --data splits/test.parquet \\
        --batch-sizes 1,4,16 --prompts 32 --max-new-tokens 32 --device cpu --json speed.json

The first ``--prompts`` distinct prompts of the split (repeated when it has fewer) are answered
once per batch size, after one untimed batch (allocator and kernel warm-up). Tokens are counted
as in ``lfft evaluate`` (lfft/model/throughput.py: each sequence's new tokens up to its eos);
seconds are the wall time of the ``generate`` calls. Prints a Markdown table; ``--json`` writes
the same numbers with the machine for bench/gpu_check.sh to read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import finish, machine, machine_line, parse  # noqa: E402

from lfft.model.batching import prompt_ids, render_prompt  # noqa: E402
from lfft.model.checkpoint import load  # noqa: E402
from lfft.model.device import peak_memory_mb  # noqa: E402
from lfft.model.evaluate import read_rows  # noqa: E402
from lfft.model.generate import generate_ids  # noqa: E402
from lfft.model.throughput import Throughput  # noqa: E402

DEVICE_OPTIONS = {  # bench_env.parse adds them
    "--device": "auto|cpu|cuda[:N]",
    "--precision": "weights' dtype (auto: bf16 on a GPU, fp32 on the CPU)",
    "--threads": "torch CPU threads (0: torch's default)",
    "--json": "also write the results here (read by the GPU check)",
}


def prompts_of(tokenizer, data: Path, n: int) -> list[list[int]]:
    """The first ``n`` distinct prompts of ``data`` (cycled when there are fewer), tokenized."""
    rows = read_rows(data, None, "generate")
    uniq = list({render_prompt(tokenizer, r): r for r in rows}.values())
    return prompt_ids(tokenizer, [uniq[i % len(uniq)] for i in range(n)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="an lfft checkpoint folder")
    ap.add_argument("--data", type=Path, required=True, help="a splits parquet (prompts)")
    ap.add_argument("--batch-sizes", default="1,4,16", help="comma-separated")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args, device, dtype = parse(ap, DEVICE_OPTIONS)
    model, tok, _ = load(args.model, device=device, dtype=dtype)
    prompts = prompts_of(tok, args.data, args.prompts)
    kw = {"pad_id": tok.pad_token_id, "eos_id": tok.eos_token_id}
    kw["max_new_tokens"] = args.max_new_tokens
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    generate_ids(model, prompts[: max(sizes)], batch_size=max(sizes), **kw)  # warm-up
    params = sum(p.numel() for p in model.parameters())
    m = machine(device, dtype)
    print(
        f"`bench/generate_speed.py`: {machine_line(m)}; {args.model.name} {params / 1e6:.1f}M "
        f"params, {len(prompts)} prompts, up to {args.max_new_tokens} new tokens, greedy\n"
    )
    print(
        f"| batch size | sequences | tokens | seconds | tokens/s | vs batch {sizes[0]} | peak MiB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    results = []
    for b in sizes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        speed = Throughput()
        generate_ids(model, prompts, batch_size=b, stats=speed, **kw)
        rec = {**speed.record(device, dtype, b), "peak_mb": peak_memory_mb(device)}
        results.append(rec)
        ratio = rec["tokens_per_s"] / results[0]["tokens_per_s"]
        print(
            f"| {b} | {rec['sequences']} | {rec['tokens']:,} | {rec['seconds']:.2f} "
            f"| {rec['tokens_per_s']:,.0f} | {ratio:.2f}x | {rec['peak_mb']:,.0f} |"
        )
    finish(
        args,
        {
            "bench": "generate_speed",
            "model": str(args.model),
            "params": params,
            "machine": m,
            "max_new_tokens": args.max_new_tokens,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
