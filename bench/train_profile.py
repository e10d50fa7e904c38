"""Where a training step's time goes (torch.profiler on eager steps), and what ``--compile``
costs at start-up and gains per step (a benchmark, not a test).

    .venv/bin/python bench/train_profile.py --preset 125m --steps 3 --warmup 2
    .venv/bin/python bench/train_profile.py --preset small --compile off,layers,model --no-profile
    python bench/train_profile.py --device cuda --precision bf16 --preset 125m \\
        --batch-tokens 65536 --compile off,layers,model --json out.json   # the GPU check

Data: ``lfft synth`` sessions through the data stages (examples of ~97 tokens), ``lfft init
--preset`` on them, in ``--work`` (kept and reused) unless ``--model`` and ``--splits`` name a
checkpoint and splits. Each run is ``lfft.model.train.train`` (sft with the feedback head, as in
bench/gpu_check.sh) in a process of its own with a fresh inductor cache, for ``--warmup`` +
``--steps`` optimizer steps; a step's time is read at the end of each optimizer step (after a
CUDA synchronize), the first one counted from the optimizer's creation.

- The profile (an eager run): the profiler records the ``--steps`` steps after ``--warmup``;
  self time (CPU, and the device's on CUDA) per category of op and the top ``--top`` ops.
- ``--compile off,layers,model``: per scope, steady s/step (median of the ``--steps`` steps) and
  compile start-up = the ``--warmup`` first steps minus as many steady steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gpu_check import flops_per_token  # noqa: E402

LFFT = [sys.executable, "-m", "lfft"]
CATEGORIES = {  # the first whose words are in an op's name (lower case) wins; order matters
    "optimizer": ("_foreach", "adam", "optimizer", "vector_norm"),  # vector_norm: clipping
    "loss": ("log_softmax", "nll_loss", "cross_entropy", "logsumexp", "binary_cross_entropy"),
    "attention": ("attention", "sdpa", "softmax"),
    "matmul/linear": ("mm", "matmul", "linear", "addmm", "bmm", "gemm"),
    "embedding/index": ("embedding", "index", "gather", "scatter", "nonzero", "masked_select"),
    "casts + copies + zero-fill": (
        "copy", "_to_copy", "aten::to", "clone", "contiguous", "fill_", "zero_", "zeros",
        "empty", "cat", "stack", "expand", "view", "reshape", "transpose", "permute", "slice",
        "select", "t", "split", "unsqueeze", "squeeze",
    ),
    "elementwise/activation/norm": (
        "add", "mul", "sub", "div", "neg", "pow", "rsqrt", "sqrt", "mean", "sum", "silu",
        "sigmoid", "gelu", "tanh", "exp", "norm", "where", "relu", "cos", "sin", "threshold",
    ),
}  # fmt: skip


def category(name: str) -> str:
    """An op's category: by its name's words (``aten::mm`` -> ``mm``); the rest is ``other``."""
    low = name.lower()
    op = low.split("::")[-1]
    if low.startswith(("profilerstep", "autograd::engine")):
        return "outside ops (Python, autograd)"
    for cat, words in CATEGORIES.items():
        if any(w == op or (len(w) > 2 and w in low) for w in words):
            return cat
    return "other"


def prepare(work: Path, args) -> tuple[Path, Path]:
    """``(checkpoint, splits)`` in ``work``: synth logs -> data stages -> ``lfft init``."""
    logs, splits = work / "logs", work / "splits"
    ckpt = work / "ckpt" / f"{args.preset}-v{args.vocab_size}-l{args.max_length}"
    config = work / "lfft.toml"
    config.write_text('[collect]\nformat = "events"\n\n[split]\nkey = "session_id"\n')
    if not logs.exists():
        synth = ["synth", "--out", str(logs), "--sessions", str(args.sessions), "--files", "4"]
        subprocess.run([*LFFT, *synth, "--seed", "0", "-q"], check=True)
    if not (splits / "train.parquet").exists():
        stages = ["pipeline", str(logs), "--work", str(work), "--until", "split"]
        subprocess.run([*LFFT, *stages, "--config", str(config)], check=True, stdout=sys.stderr)
    if not (ckpt / "lfft.json").exists():
        init = ["init", "--out", str(ckpt), "--preset", args.preset, "--data"]
        init += [str(splits / "train.parquet"), "--vocab-size", str(args.vocab_size)]
        subprocess.run([*LFFT, *init, "--max-length", str(args.max_length), "-q"], check=True)
    return ckpt, splits


def one_run(args, scope: str, profile: bool) -> dict:
    """One training run in this process: step times, tokens, and the profile's figures."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import lfft.model.train as train_mod
    from lfft.config import TrainConfig

    cfg = TrainConfig(
        objective="sft",
        max_steps=args.warmup + args.steps,
        batch_size=4096,
        batch_tokens=args.batch_tokens,
        max_length=args.max_length,
        lr=6e-4,
        warmup_steps=0,
        precision=args.precision,
        device=args.device,
        compile=scope != "off",
        compile_scope="model" if scope == "model" else "layers",
        log_every=10**6,
        eval_every=0,
        save_every=0,
    )
    cuda = args.device.startswith("cuda")
    marks: list[float] = []
    tokens: list[int] = [0]

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    # train() looks these up in its module when it starts: wrapped, they count each step's
    # tokens and mark the loop's start (no hook in the library for either)
    make_batch, adamw = train_mod.make_batch, train_mod.adamw

    def counted_batch(*a):
        batch = make_batch(*a)
        tokens[-1] += batch.tokens
        return batch

    def timed_adamw(*a):
        marks.append(now())  # the loop starts right after the optimizer is made
        return adamw(*a)

    def stepped(optimizer, *_):
        if type(optimizer).__module__.startswith("torch.optim"):
            marks.append(now())
            tokens.append(0)
            if prof is not None:
                prof.step()

    prof, figures = None, {}
    if profile:
        from torch.profiler import ProfilerActivity, schedule

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        plan = schedule(wait=max(0, args.warmup - 1), warmup=min(1, args.warmup), active=args.steps)
        ready = lambda p: figures.update(summarize(p, cuda, args))  # noqa: E731
        prof = torch.profiler.profile(activities=acts, schedule=plan, on_trace_ready=ready)
    train_mod.make_batch, train_mod.adamw = counted_batch, timed_adamw
    hook = register_optimizer_step_post_hook(stepped)
    with tempfile.TemporaryDirectory() as out, prof or contextlib.nullcontext():
        train_mod.train(args.model, args.splits, Path(out) / "run", cfg)
    hook.remove()
    steps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    steady = statistics.median(steps[args.warmup :])
    return {
        "scope": scope,
        "step_seconds": steps,
        "steady_s_per_step": steady,
        "startup_s": sum(steps[: args.warmup]) - args.warmup * steady,
        "tokens_per_step": statistics.mean(tokens[args.warmup : len(steps)]),
        "graphs": _graphs(),
        **figures,
    }


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def summarize(prof, cuda: bool, args) -> dict:
    """Self time per category and the top ops, CPU and (on CUDA) device, per profiled step. An op
    run by ``optimizer.step()`` counts as optimizer whatever it is (AdamW's ``mul_``, ``sqrt``)."""
    from torch.autograd import DeviceType

    per_cat: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    ops: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for e in prof.events():
        if e.device_type != DeviceType.CPU:
            continue  # a kernel: its time is in the self device time of the op that launched it
        cat = "optimizer" if _in_optimizer(e) else category(e.name)
        cpu = e.self_cpu_time_total / 1e6
        dev = e.self_device_time_total / 1e6 if cuda else 0.0
        for sums in (per_cat[cat], ops[e.name, cat]):
            sums[0] += cpu
            sums[1] += dev
        ops[e.name, cat][2] += 1
    if args.trace:
        prof.export_chrome_trace(str(args.trace))
    key = 1 if cuda else 0
    top = sorted(ops.items(), key=lambda kv: -kv[1][key])[: args.top]
    n = args.steps
    cats = {c: {"cpu_s": v[0] / n, "device_s": v[1] / n} for c, v in per_cat.items()}
    return {
        "profile_categories": cats,
        "profile_top": [
            {"op": op, "category": cat, "cpu_s": v[0] / n, "device_s": v[1] / n,
             "calls": v[2] / n}
            for (op, cat), v in top
        ],
    }  # fmt: skip


def _in_optimizer(event) -> bool:
    while event is not None:
        if event.name.startswith("Optimizer."):  # torch's Optimizer.step#AdamW.step range
            return True
        event = event.cpu_parent
    return False


def child(args) -> None:
    """``--_one SCOPE``: one run in a process of its own, its figures as JSON on stdout's end."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = one_run(args, args._one, profile=args._profile)
    print("RESULT " + json.dumps(result))


def spawn(args, scope: str, profile: bool) -> dict:
    argv = [a for a in sys.argv[1:]]
    argv += ["--model", str(args.model), "--splits", str(args.splits), "--_one", scope]
    argv += ["--_profile"] if profile else []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}  # compile from scratch
        done = subprocess.run(
            [sys.executable, __file__, *argv],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def share_table(cats: dict, cuda: bool) -> list[str]:
    col = "device_s" if cuda else "cpu_s"
    total = sum(v[col] for v in cats.values()) or 1.0
    lines = [f"| category | {'device' if cuda else 'CPU'} s/step | share |"]
    lines.append("| --- | ---: | ---: |")
    for c, v in sorted(cats.items(), key=lambda kv: -kv[1][col]):
        lines.append(f"| {c} | {v[col]:.3f} | {v[col] / total:.1%} |")
    return lines


def top_table(top: list[dict], cuda: bool) -> list[str]:
    col = "device_s" if cuda else "cpu_s"
    lines = ["| op | category | calls/step | self s/step |", "| --- | --- | ---: | ---: |"]
    for r in top:
        lines.append(f"| `{r['op']}` | {r['category']} | {r['calls']:.0f} | {r[col]:.4f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--preset", default="125m", help="lfft init --preset: tiny | small | 125m")
    ap.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16")
    ap.add_argument("--steps", type=int, default=3, help="timed (and profiled) steps")
    ap.add_argument("--warmup", type=int, default=2, help="steps before them (compilation)")
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--sessions", type=int, default=1000, help="lfft synth sessions")
    ap.add_argument("--compile", default="", help="comma list of off,layers,model")
    ap.add_argument("--no-profile", action="store_true", help="only the --compile runs")
    ap.add_argument("--top", type=int, default=15, help="ops in the top table")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--work", type=Path, help="folder for the data and checkpoint (reused)")
    ap.add_argument("--model", type=Path, help="an existing checkpoint (with --splits)")
    ap.add_argument("--splits", type=Path, help="an existing splits folder (with --model)")
    ap.add_argument("--trace", type=Path, help="write the profile's chrome trace here")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    ap.add_argument("--_profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        return child(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # (for the machine line: each run sets its own)
    scopes = [s for s in args.compile.split(",") if s]
    if any(s not in ("off", "layers", "model") for s in scopes):
        ap.error("--compile: a comma list of off, layers, model")
    if (args.model is None) != (args.splits is None):
        ap.error("--model and --splits go together")
    if args.model is None:
        work = args.work or Path(tempfile.mkdtemp(prefix="lfft-profile-"))
        work.mkdir(parents=True, exist_ok=True)
        args.model, args.splits = prepare(work, args)
    _, facts = flops_per_token(args.model, args.splits / "train.parquet", args.max_length)
    cuda = args.device.startswith("cuda")
    report: dict = {"argv": sys.argv[1:], "facts": facts, "machine": machine(), "runs": {}}
    print(f"`bench/train_profile.py {' '.join(sys.argv[1:])}`")
    print(f"{report['machine']}; {facts['examples']:,} examples of {facts['mean length']:.1f}"
          f" tokens on average; {facts['params'] / 1e6:.1f}M parameters\n")  # fmt: skip
    if not args.no_profile:
        prof = spawn(args, "off", profile=True)
        report["profile"] = prof
        print(f"Eager profile: {args.steps} steps after {args.warmup},"
              f" {prof['tokens_per_step']:,.0f} tokens/step, {prof['steady_s_per_step']:.3f} s/step"
              " under the profiler\n")  # fmt: skip
        print("\n".join(share_table(prof["profile_categories"], cuda)) + "\n")
        print("\n".join(top_table(prof["profile_top"], cuda)) + "\n")
    rows = ["| compile | start-up s | steady s/step | tokens/s | graphs | first steps s |"]
    rows.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for scope in scopes:
        r = spawn(args, scope, profile=False)
        report["runs"][scope] = r
        firsts = ", ".join(f"{s:.2f}" for s in r["step_seconds"][: args.warmup])
        rows.append(f"| {scope} | {r['startup_s']:.1f} | {r['steady_s_per_step']:.3f} |"
                    f" {r['tokens_per_step'] / r['steady_s_per_step']:,.0f} | {r['graphs']} |"
                    f" {firsts} |")  # fmt: skip
    if scopes:
        print("\n".join(rows))
    report["load_after"] = os.getloadavg()[0]
    print(f"\nload average at the end: {report['load_after']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def machine() -> str:
    import torch

    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    return (f"{platform.node()}, {os.cpu_count()} cores, {dev or platform.machine()}, torch"
            f" {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip


if __name__ == "__main__":
    main()
