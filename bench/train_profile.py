"""Where a training step's time goes, and what torch.compile costs and buys (a benchmark, not a
test).

    .venv/bin/python bench/train_profile.py --preset 125m --steps 3 --compile off,layers,model
    python bench/train_profile.py --device cuda --precision bf16 --model W/ckpt/init \\
        --splits W/splits --batch-tokens 65536 --max-length 1024 --json profile.json

Each variant of ``--compile`` (off = eager, layers = ``--compile``, model = ``--compile-scope
model``) is one ``lfft train`` run (the library's ``train()``, sft with the feedback head, as
bench/gpu_check.sh trains) of ``--warmup`` + ``--steps`` optimizer steps, each step timed (CUDA
synchronised). Start-up is the time to the end of the warmup steps less ``--warmup`` steady
steps: for a compiled run, mostly compilation. The eager run then trains ``--profile-steps``
more under torch.profiler (not timed: the profiler slows steps down): self time per op,
grouped into categories, and the top ops. Without
``--model``/``--splits`` the data are synthetic sessions (``lfft synth``: ~97 tokens an
example) through the data stages, and the model an ``lfft init --preset``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # gpu_check's FLOP count and bench_env, beside this file
from bench_env import parse  # noqa: E402

DEVICE_OPTIONS = {  # bench_env.parse adds them
    "--device": "auto|cpu|cuda[:N]",
    "--precision": "autocast dtype of training (auto: bf16 on a GPU, fp32 on the CPU)",
    "--threads": "torch CPU threads (0: torch's default)",
    "--json": "also write every figure here (read by the GPU check)",
}

# Self time of aten ops by what they do; the first pattern an op's name contains wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("compiled kernels", ("compiled", "triton", "cpp_fused", "inductor")),
    ("attention", ("attention", "flash", "_efficient", "flex")),
    ("optimizer", ("adam", "_foreach", "clip_grad", "norm_ ")),
    ("matmul", ("mm", "matmul", "linear", "gemm", "baddbmm")),
    (
        "casts, copies, zero-fill",
        ("::to", "_to_copy", "copy_", "fill_", "zero_", "clone", "contiguous"),
    ),
    ("embedding, gather, scatter", ("embedding", "index", "gather", "scatter", "take")),
    ("loss (log-softmax, log-sum-exp)", ("softmax", "logsumexp", "nll", "cross_entropy")),
    (
        "element-wise, norms, reductions",
        (
            "add",
            "mul",
            "sub",
            "div",
            "silu",
            "gelu",
            "rsqrt",
            "pow",
            "mean",
            "sum",
            "exp",
            "neg",
            "cat",
            "where",
            "masked",
            "sigmoid",
            "tanh",
            "cos",
            "sin",
        ),
    ),
]


def category(op: str) -> str:
    name = op.lower()
    for label, patterns in CATEGORIES:
        if any(p in name for p in patterns):
            return label
    return "other"


def lfft(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lfft", *args], check=True, stdout=subprocess.DEVNULL)


def prepare(args) -> tuple[Path, Path]:
    """``(checkpoint, splits)``: the given ones, or synthetic sessions through the data stages
    and an ``lfft init --preset`` (kept in ``--work`` for the next run)."""
    if args.model and args.splits:
        return Path(args.model), Path(args.splits)
    work = Path(args.work or tempfile.mkdtemp(prefix="lfft-profile-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "lfft.toml").write_text(
        '[collect]\nformat = "events"\n\n[split]\nkey = "session_id"\nratios = [0.98, 0.01, 0.01]\n'
    )
    if not (work / "logs").exists():
        lfft("synth", "--out", str(work / "logs"), "--sessions", str(args.sessions), "--seed", "0")
    splits, ckpt = work / "splits", work / "ckpt" / f"init-{args.preset}"
    if not (splits / "train.parquet").exists():
        lfft("pipeline", str(work / "logs"), "--work", str(work), "--until", "split",
             "--config", str(work / "lfft.toml"))  # fmt: skip
    if not (ckpt / "lfft.json").exists():
        lfft("init", "--out", str(ckpt), "--preset", args.preset, "--data",
             str(splits / "train.parquet"), "--vocab-size", str(args.vocab_size),
             "--max-length", str(args.max_length))  # fmt: skip
    return ckpt, splits


class Steps:
    """Seconds of each optimizer step (read at torch's optimizer-step hook) and, once the timed
    steps (``timed``) are done, the profiler started and stepped along."""

    def __init__(self, device: torch.device, timed: int, profiler=None):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.device, self.timed, self.profiler = device, timed, profiler
        self.times: list[float] = []
        self.last = time.perf_counter()
        self.handle = register_optimizer_step_post_hook(self._step)

    def _step(self, *_) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now
        if self.profiler is not None and len(self.times) == self.timed:
            self.profiler.start()
        elif self.profiler is not None and len(self.times) > self.timed:
            self.profiler.step()


def run(variant: str, ckpt: Path, splits: Path, out: Path, args, profile: bool) -> dict:
    from lfft.config import TrainConfig
    from lfft.model.device import pick_device
    from lfft.model.train import train

    device = pick_device(args.device)
    timed = args.warmup + args.steps
    cfg = TrainConfig(
        objective="sft", feedback_loss="auto", precision=args.precision, device=args.device,
        max_steps=timed + (args.profile_steps if profile else 0), warmup_steps=0, lr=6e-4,
        batch_size=100_000,
        batch_tokens=args.batch_tokens, max_length=args.max_length, log_every=1,
        eval_every=0, save_every=0, packing=args.packing, compile=variant != "off",
        compile_scope="model" if variant == "model" else "layers",
    )  # fmt: skip
    profiler = None
    if profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        profiler = torch.profiler.profile(activities=activities)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()
    clock = Steps(device, timed, profiler)
    try:
        train(ckpt, splits, out, cfg)
    finally:
        clock.handle.remove()
    if profiler is not None:
        profiler.stop()
    steady_times = clock.times[args.warmup : timed]
    steady = statistics.median(steady_times)
    info = json.loads((out / "lfft.json").read_text())
    import pyarrow.parquet as pq

    logged = [
        r for r in pq.read_table(out / "metrics.parquet").to_pylist() if r["split"] == "train"
    ]
    tokens = sum(r["tokens"] for r in logged if args.warmup < r["step"] <= timed)  # a row a step
    result = {
        "variant": variant,
        "compiled": info.get("compiled"),
        "steps": len(clock.times),
        "steady s/step": steady,
        "start-up s": sum(clock.times[: args.warmup]) - args.warmup * steady,
        "first step s": clock.times[0],
        "tokens/s": tokens / sum(steady_times),
        "peak GiB": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }
    if profiler is not None:
        result["profile"] = summarize(profiler, device, args.top)
        if args.trace:
            profiler.export_chrome_trace(str(args.trace))
    return result


def summarize(profiler, device: torch.device, top: int) -> dict:
    """Self time per category and the top ops (device time on CUDA, CPU time on the CPU)."""
    cuda = device.type == "cuda"
    rows = []
    for e in profiler.key_averages():
        t = e.self_device_time_total if cuda else e.self_cpu_time_total
        if t > 0:
            rows.append((e.key, t / 1e6, e.count))
    total = sum(t for _, t, _ in rows) or 1.0
    shares: dict[str, float] = {}
    for key, t, _ in rows:
        shares[category(key)] = shares.get(category(key), 0.0) + t / total
    rows.sort(key=lambda r: -r[1])
    return {
        "clock": "CUDA self time" if cuda else "CPU self time",
        "total s": total,
        "categories": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
        "top": [{"op": k, "s": t, "share": t / total, "calls": n} for k, t, n in rows[:top]],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="125m", help="lfft init --preset (without --model)")
    p.add_argument("--steps", type=int, default=3, help="steady steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation) first")
    p.add_argument("--profile-steps", type=int, default=3, help="eager steps profiled after")
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--sessions", type=int, default=2000, help="synthetic sessions (no --splits)")
    p.add_argument("--packing", default="off", help="off | on | auto")
    p.add_argument("--compile", default="off", help="comma list of off, layers, model")
    p.add_argument("--top", type=int, default=12, help="top ops listed")
    p.add_argument("--work", help="folder for the synthetic data and model (kept)")
    p.add_argument("--model", help="an existing checkpoint (with --splits)")
    p.add_argument("--splits", help="an existing splits folder (with --model)")
    p.add_argument("--trace", type=Path, help="write the eager run's chrome trace here")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (MFU)")
    args, device, _ = parse(p, DEVICE_OPTIONS)
    args.device = str(device)  # auto resolved, for the runs and the report
    ckpt, splits = prepare(args)
    variants = [v.strip() for v in args.compile.split(",") if v.strip()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            results.append(run(v, ckpt, splits, Path(tmp) / v, args, profile=v == "off"))
    if device.type == "cuda":  # model FLOPs utilisation, gpu_check's FLOP count
        from gpu_check import flops_per_token

        flops, _ = flops_per_token(ckpt, splits / "train.parquet", args.max_length)
        for r in results:
            r["MFU"] = flops * r["tokens/s"] / (args.peak_tflops * 1e12)
    report(results, args, ckpt)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "runs": results}, default=str))


def report(results: list[dict], args, ckpt: Path) -> None:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(ckpt)
    print(
        f"{ckpt.name}: {cfg.num_hidden_layers} layers, width {cfg.hidden_size}, vocab"
        f" {cfg.vocab_size}; {args.device}, {args.precision}, {torch.get_num_threads()} threads,"
        f" torch {torch.__version__}; batch tokens {args.batch_tokens}, max length"
        f" {args.max_length}, {args.warmup} warmup + {args.steps} steps; load"
        f" {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| variant | compiled | start-up s | steady s/step | vs eager | tokens/s | MFU | peak GiB |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    eager = next((r["steady s/step"] for r in results if r["variant"] == "off"), None)
    for r in results:
        speed = f"{eager / r['steady s/step']:.2f}x" if eager else ""
        peak = f"{r['peak GiB']:.1f}" if r["peak GiB"] is not None else ""
        mfu = f"{r['MFU']:.1%}" if "MFU" in r else ""
        print(
            f"| {r['variant']} | {r['compiled'] or 'eager'} | {r['start-up s']:.1f} |"
            f" {r['steady s/step']:.3f} | {speed} | {r['tokens/s']:,.0f} | {mfu} | {peak} |"
        )
    for r in results:
        if "profile" not in r:
            continue
        prof = r["profile"]
        print()
        print(f"Eager steady steps, {prof['clock']} ({prof['total s']:.2f} s in all):")
        print()
        print("| category | share |")
        print("| --- | ---: |")
        for label, share in prof["categories"].items():
            print(f"| {label} | {share:.1%} |")
        print()
        print("| op | calls | self s | share |")
        print("| --- | ---: | ---: | ---: |")
        for t in prof["top"]:
            print(f"| `{t['op']}` | {t['calls']} | {t['s']:.3f} | {t['share']:.1%} |")


if __name__ == "__main__":
    main()
