"""Forward + backward time of packed batches under each attention kernel of ``lfft train
--attention`` (a benchmark, not a test), against the same examples right-padded (sdpa, no mask).

    .venv/bin/python bench/packed_attention.py --device cpu --backends sdpa,eager \\
        --lengths 24,48,96,160 --json attention.json

A ``--preset`` tiny base (random weights, lfft/model/tiny.py) trains on one batch of examples whose
lengths cycle through ``--lengths`` until ``--tokens`` tokens, packed into rows of
``--row-length`` (lfft/model/batching.py ``pack``, as ``--packing on`` does); the loss is the
response log-likelihood of lfft's forward (lfft/model/forward.py). Each kernel runs ``--steps``
timed forward + backward passes after one untimed pass (flex_attention compiles in it: its
seconds are reported apart). ``max |d logp|`` is the largest difference of the token log-probs
from the padded batch's: the kernel keeps the packed examples apart when it is ~0.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import cycle
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import finish, machine, machine_line, parse  # noqa: E402

from lfft.errors import LfftError  # noqa: E402
from lfft.model.attention import set_attention  # noqa: E402
from lfft.model.batching import Batch, Example, collate, pack  # noqa: E402
from lfft.model.forward import forward_batch  # noqa: E402
from lfft.model.tiny import PRESETS, llama_config  # noqa: E402

VOCAB = 2048


DEVICE_OPTIONS = {  # bench_env.parse adds them
    "--device": "auto|cpu|cuda[:N] (flex_attention: cuda only)",
    "--precision": "autocast dtype (auto: bf16 on a GPU, fp32 on the CPU)",
    "--threads": "torch CPU threads (0: torch's default)",
    "--json": "also write the table's numbers here",
}


def examples(lengths: list[int], tokens: int) -> list[Example]:
    """Examples of the given lengths (cycled) until ``tokens``; the second half is the response."""
    gen = torch.Generator().manual_seed(0)
    out, total = [], 0
    for n in cycle(lengths):
        if total + n > tokens:
            break
        ids = torch.randint(3, VOCAB, (n,), generator=gen).tolist()
        out.append(Example(ids=ids, prompt_len=n // 2, row=len(out)))
        total += n
    return out


def step(model, batch: Batch, dtype: torch.dtype) -> torch.Tensor:
    """One forward + backward; the token log-probs (detached)."""
    device = batch.input_ids.device
    with torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
        out = forward_batch(model, None, batch)
    loss = -out.token_logps.sum() / batch.response_mask.sum()
    loss.backward()
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out.token_logps.detach()


def timed(model, batch: Batch, dtype: torch.dtype, steps: int) -> tuple[float, float, torch.Tensor]:
    """(seconds of the untimed first pass, median seconds of the next ``steps``, log-probs)."""
    start = time.perf_counter()
    logps = step(model, batch, dtype)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(model, batch, dtype)
        times.append(time.perf_counter() - start)
    return first, sorted(times)[len(times) // 2], logps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sdpa,eager,flex_attention", help="comma-separated")
    ap.add_argument("--lengths", default="24,48,96,160", help="example lengths, cycled")
    ap.add_argument("--tokens", type=int, default=4096, help="tokens in the batch")
    ap.add_argument("--row-length", type=int, default=1024, help="tokens per packed row")
    ap.add_argument("--preset", default="small", choices=list(PRESETS))
    ap.add_argument("--steps", type=int, default=5)
    args, device, dtype = parse(ap, DEVICE_OPTIONS)
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    lengths = [int(n) for n in args.lengths.split(",")]
    config = llama_config(args.preset, VOCAB, max(max(lengths), args.row_length))
    model = LlamaForCausalLM(config).to(device).train()
    exs = examples(lengths, args.tokens)
    padded = collate(exs, 0).to(device)
    packed = pack(exs, 0, args.row_length).to(device)
    params = sum(p.numel() for p in model.parameters())
    m = machine(device, dtype)
    print(
        f"`bench/packed_attention.py`: {machine_line(m)}; {args.preset} {params / 1e6:.1f}M "
        f"params; {len(exs)} examples of lengths {args.lengths} ({padded.tokens:,} tokens): "
        f"{packed.pack_ids.shape[0]} packed rows of "
        f"{packed.pack_ids.shape[1]}, or {padded.input_ids.shape[0]} padded rows of "
        f"{padded.input_ids.shape[1]}; medians of {args.steps} steps\n"
    )
    set_attention(model, "sdpa", packed=False, device=device)
    first, sec, ref = timed(model, padded, dtype, args.steps)
    skipped: list[str] = []
    results = [{"batch": "padded", "kernel": "sdpa", "first_s": first, "step_s": sec, "diff": 0.0}]
    for name in args.backends.split(","):
        try:
            set_attention(model, name, packed=True, device=device)
        except LfftError as e:
            skipped.append(f"{name} not run: {e}")
            continue
        first, sec, logps = timed(model, packed, dtype, args.steps)
        diff = (logps - ref).abs().max().item()
        results.append(
            {"batch": "packed", "kernel": name, "first_s": first, "step_s": sec, "diff": diff}
        )
    print("| batch | kernel | first pass s | step s | tokens/s | max \\|d logp\\| |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        r["tokens_per_s"] = padded.tokens / r["step_s"]
        print(
            f"| {r['batch']} | {r['kernel']} | {r['first_s']:.2f} | {r['step_s']:.3f} "
            f"| {r['tokens_per_s']:,.0f} | {r['diff']:.1e} |"
        )
    print("".join(f"\n{line}" for line in skipped))
    record = {"bench": "packed_attention", "preset": args.preset, "params": params}
    finish(
        args, {**record, "machine": m, "lengths": lengths, "results": results, "skipped": skipped}
    )


if __name__ == "__main__":
    main()
