"""One AdamW step over a model's parameters, per implementation: torch's per-tensor loop, foreach
(torch's default) and fused (what ``lfft train`` uses on CUDA and the CPU). A benchmark, not a
test.

    .venv/bin/python bench/optimizer_step.py --preset 125m --device cpu --repeat 5

The parameters are those of an ``lfft init --preset`` model (built from its config, random
weights), in fp32 with random gradients, in lfft's two groups (weight decay on matrices only).
Prints the median seconds per step and the largest difference from the loop's result after
``--repeat`` steps.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import LlamaForCausalLM

from lfft.model.tiny import PRESETS, llama_config

KINDS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="125m", choices=sorted(PRESETS))
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(args.preset, args.vocab_size, 1024)).to(args.device)
    start = [q.detach().clone() for q in model.parameters()]
    grads = [torch.randn_like(q) for q in start]
    seconds, finals = {}, {}
    for kind, kw in KINDS.items():
        params = [torch.nn.Parameter(q.clone()) for q in start]
        for q, g in zip(params, grads, strict=True):
            q.grad = g
        groups = [
            {"params": [q for q in params if q.ndim >= 2], "weight_decay": 0.1},
            {"params": [q for q in params if q.ndim < 2], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=1e-4, **kw)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            opt.step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        seconds[kind], finals[kind] = statistics.median(times), params
    n = sum(q.numel() for q in start)
    print(f"AdamW, {n / 1e6:.1f}M parameters ({args.preset}), {args.device}, {platform.machine()},")
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.repeat}")
    print()
    print("| AdamW | s / step | vs foreach | max abs diff from loop |")
    print("| --- | ---: | ---: | ---: |")
    for kind, s in seconds.items():
        diff = max(
            (a - b).abs().max().item() for a, b in zip(finals[kind], finals["loop"], strict=True)
        )
        print(f"| {kind} | {s:.3f} | {seconds['foreach'] / s:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
