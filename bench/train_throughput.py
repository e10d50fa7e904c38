"""Training throughput on the CPU: `lfft train` against a bare PyTorch loop and TRL (a benchmark,
not a test).

    .venv/bin/python bench/train_throughput.py             # lfft and the bare loops
    .venv-bench/bin/python bench/train_throughput.py --trl # + every TRL setting (make bench-train)

Same model (a 3.5M-parameter GPT-2: 4 layers, width 64, the GPT-2 tokenizer built from the merges
in ``data/samples/models/gpt2-tokenizer``), same data (the LLaMA-Factory KTO demo slice in
``data/samples/formats``: real multi-turn chats with thumbs), same maximum length, batch size,
learning rate and thread count, fp32. Each run is its own process (its peak RSS is its own) and
trains ``--steps`` optimizer steps; the first ``--warmup`` are not timed. Useful tokens are the
non-pad tokens of the batches (prompt and response). Time is wall time and CPU time (user + sys,
all threads) from the end of step ``--warmup`` to the end of the last step, read at every torch
optimizer step. The runs are interleaved (round robin, ``--repeat`` rounds, TRL's settings spread
over the rounds) and the table gives medians, the ratios those of the CPU-time rates, which a
shared machine disturbs less than wall time. Prints the Markdown tables of docs/benchmarks.md.

- ``lfft sft``: ``lfft train --objective sft --feedback-loss none`` (L_M alone, like the others);
  ``lfft sft packed`` with ``--packing on``; ``lfft sft+F`` adds the feedback head (lambda 0.5);
  ``lfft kto``: KTO with its frozen reference model.
- ``bare loop``: what a user writes by hand over lfft's very batches (same examples, same order),
  with lfft's tricks: the backbone's hidden states, the LM head on the positions that predict a
  response token only, cross-entropy; no padding mask (right padding under a causal mask: no real
  token sees a pad); clip, AdamW. ``bare loop, full logits`` is the textbook
  ``model(input_ids, attention_mask, labels)``: logits at every position.
- ``trl ...`` (``--trl``): every setting in bench/trl_runs.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # trl_runs and train_setup, beside this file
from train_setup import ARCHS, StepClock, prepare  # noqa: E402

DATA = ROOT / "data" / "samples" / "formats" / "llamafactory-kto-en-demo" / "kto_en_demo.json"
LFFT = {
    "lfft sft": "`--objective sft --feedback-loss none`",
    "lfft sft packed": "the same, `--packing on`",
    "lfft sft+F": "sft + the feedback head (λ 0.5)",
    "lfft kto": "KTO, frozen reference; reference point: {kto_ref}",
}
LORA = {  # with --lora: adapters of the same rank, alpha and layers as TRL's peft runs
    "lfft sft lora": "sft, `--lora` (r 8, alpha 16, all linear layers)",
    "lfft kto lora": "kto, `--lora` (the reference: adapters disabled)",
}
BARE = {
    "bare loop": "hidden states → LM head on response positions only → CE",
    "bare loop, full logits": "`model(input_ids, attention_mask, labels)`: logits everywhere",
}
TRL_KTO_REFERENCE = "mismatched prompt/completion pairs (KL completions)"


def run_lfft(name: str, work: Path, args, clock: StepClock) -> dict:
    import pyarrow.parquet as pq

    from lfft.config import TrainConfig
    from lfft.model.train import train

    cfg = TrainConfig(
        objective="kto" if name.startswith("lfft kto") else "sft",
        feedback_loss="auto" if name == "lfft sft+F" or "kto" in name else "none",
        device=args.device,
        precision=args.precision,
        lora=name.endswith("lora"),
        max_steps=args.steps,
        batch_size=args.batch_size,
        batch_tokens=args.batch_size * args.max_length,
        max_length=args.max_length,
        lr=args.lr,
        warmup_steps=0,
        log_every=args.warmup,
        eval_every=0,
        save_every=0,
        packing="on" if name.endswith("packed") else "off",
    )
    out = work / name.replace(" ", "-").replace("+", "")
    train(work / "init", work / "train.parquet", out, cfg)
    result = clock.result()
    # tokens from lfft's own log: its windows of `warmup` steps, the first one left out
    rows = [r for r in pq.read_table(out / "metrics.parquet").to_pylist() if r["split"] == "train"]
    rows = [r for r in rows if r["step"] > args.warmup]
    result["tokens"] = sum(r["tokens"] for r in rows)
    result["positions"] = sum(r["tokens"] / (1 - r["pad_share"]) for r in rows)
    return result


def run_bare(name: str, work: Path, args, clock: StepClock) -> dict:
    """The loop a user writes by hand, over lfft's batches (same examples, same order)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lfft.model.batching import collate, encode, plan
    from lfft.model.train import read_rows

    torch.manual_seed(0)
    device = torch.device(args.device)
    half = torch.autocast(device.type, torch.bfloat16, enabled=args.precision == "bf16")
    tok = AutoTokenizer.from_pretrained(work / "init")
    model = AutoModelForCausalLM.from_pretrained(work / "init", dtype=torch.float32)
    model = model.to(device).train()
    examples = encode(tok, read_rows(work / "train.parquet"), args.max_length)
    lengths = [len(e) for e in examples]
    order: list[list[int]] = []
    while len(order) < args.steps:
        bt = args.batch_size * args.max_length
        order += plan(lengths, args.batch_size, bt, shuffle=True, seed=len(order))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=True)
    full = name == "bare loop, full logits"
    for idx in order[: args.steps]:
        b = collate([examples[i] for i in idx], tok.pad_token_id).to(device)
        if full:
            labels = b.input_ids.masked_fill(~b.response_mask, -100)
            with half:
                out = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=labels)
            loss = out.loss
        else:
            with half:
                hidden = model.base_model(input_ids=b.input_ids, use_cache=False).last_hidden_state
                predicts = b.response_mask[:, 1:]  # position t-1 predicts the response token at t
                logits = model.get_output_embeddings()(hidden[:, :-1][predicts])
            loss = F.cross_entropy(logits.float(), b.input_ids[:, 1:][predicts])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        clock.add(b.tokens, b.positions)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return clock.result()


def child(name: str, work: Path, args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    clock = StepClock(args.warmup, sync=args.device == "cuda")
    if name in BARE:
        result = run_bare(name, work, args, clock)
    elif name.startswith("lfft"):  # LFFT and, with --lora, LORA
        result = run_lfft(name, work, args, clock)
    else:
        from trl_runs import run_trl

        from lfft.model.train import read_rows

        result = run_trl(name, work, args, read_rows(work / "train.parquet"), clock)
    if result["steps"] != args.steps:
        sys.exit(f"error: {name} ran {result['steps']} optimizer steps, not {args.steps}")
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cuda":  # the GPU's peak instead of the host's
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result))


def lfft_kto_reference() -> str:
    """How lfft's KTO estimates its reference point by default (``--kto-reference``)."""
    from lfft.config import TrainConfig

    if TrainConfig().kto_reference == "mismatched":
        return TRL_KTO_REFERENCE
    return "batch mean of the matched rows"


def schedule(names: list[str], trl: list[str], rounds: int, trl_rounds: int) -> list[str]:
    """Round robin: every round runs ``names`` (rotated by one each round), and TRL's runs are
    spread over the rounds, each between two of the others."""
    spread = [n for _ in range(trl_rounds) for n in trl]
    out: list[str] = []
    for r in range(rounds):
        k = r % max(1, len(names))
        core, extra = names[k:] + names[:k], spread[r::rounds]
        for i in range(max(len(core), len(extra))):
            out += core[i : i + 1] + extra[i : i + 1]
    return out


def parser() -> argparse.ArgumentParser:
    """The options (bench/train_work_ab.py parses the settings of its runs with them too)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps (also lfft's log)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--trl", action="store_true", help="also run TRL's trainers, every setting")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the lfft and bare-loop runs")
    p.add_argument("--trl-repeat", type=int, default=1, help="runs of each TRL setting")
    p.add_argument("--only-runs", help="comma-separated subset of the runs")
    p.add_argument("--data", type=Path, default=DATA, help="a KTO demo file (LLaMA-Factory)")
    p.add_argument("--split", type=Path, help="train on this lfft split parquet instead of --data")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of every run")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--arch", default="gpt2-tiny", choices=ARCHS, help="the model trained")
    p.add_argument("--tokenizer", type=Path, help="its tokenizer folder (smollm2-135m)")
    p.add_argument("--lora", action="store_true", help="also LoRA runs (lfft and TRL + peft)")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--only", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.only:
        child(args.only, Path(args.work), args)
        return
    if args.warmup < 1 or args.steps % args.warmup:
        sys.exit("error: --steps must be a multiple of --warmup >= 1 (lfft logs every --warmup)")
    from trl_runs import chosen, skipped

    names = [*LFFT, *BARE, *(LORA if args.lora else ())]
    if args.device == "cuda":  # what the targets compare; a GPU session's minutes are few
        names = [n for n in names if n not in ("lfft sft+F", *BARE)]
    model_type = "gpt2" if args.arch == "gpt2-tiny" else "llama"
    trl = chosen(args.device == "cuda", args.lora) if args.trl else []
    for name in [n for n in trl if skipped(n, model_type, args.device)]:
        print(f"{name}: not run: {skipped(name, model_type, args.device)}", file=sys.stderr)
        trl.remove(name)
    if args.only_runs:
        keep = args.only_runs.split(",")
        names, trl = [n for n in names if n in keep], [n for n in trl if n in keep]
    results: dict[str, list[dict]] = {n: [] for n in [*names, *trl]}
    with tempfile.TemporaryDirectory(prefix="lfft-bench-") as tmp:
        prepare(Path(tmp), args.data, args.arch, args.tokenizer, args.split)
        plan = schedule(names, trl, args.repeat, args.trl_repeat)
        for i, name in enumerate(plan):
            load0 = os.getloadavg()[0]
            r = run_child(name, Path(tmp))
            if r is None:
                continue
            r["load"] = (load0 + os.getloadavg()[0]) / 2
            results[name].append(r)
            print(
                f"[{i + 1}/{len(plan)}] {name}: {r['tokens'] / r['wall']:,.0f} tok/s, "
                f"{r['tokens'] / r['cpu']:,.0f} tok/CPU s, load {r['load']:.1f}",
                file=sys.stderr,
            )
    goals = report(results, args)
    if args.json:
        record = {"args": vars(args), "runs": results, "targets": goals}
        args.json.write_text(json.dumps(record, default=str))


def run_child(name: str, work: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--only", name, "--work", str(work), *sys.argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        print(f"{name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(line[-1][7:])


def _median(runs: list[dict], key) -> float:
    return statistics.median(key(r) for r in runs)


def report(results: dict[str, list[dict]], args) -> list[dict] | None:
    from trl_runs import SETTINGS, chosen, skipped, trl_version

    gpu = args.device == "cuda"  # a GPU's rate is per wall second; a shared CPU's per CPU second

    def cpu_rate(name: str) -> float | None:
        runs = results.get(name)
        clock = "wall" if gpu else "cpu"
        return _median(runs, lambda r: r["tokens"] / r[clock]) if runs else None

    import torch
    import transformers

    loads = [r["load"] for runs in results.values() for r in runs]
    print(
        f"\n`bench/train_throughput.py {' '.join(sys.argv[1:])}`: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} "
        f"thread(s); torch {torch.__version__}, transformers {transformers.__version__}, TRL "
        f"{trl_version()}; {args.arch} on {args.device} in {args.precision}, "
        f"batch {args.batch_size}, max length {args.max_length}, "
        f"{args.steps} steps ({args.warmup} untimed); medians of {args.repeat} rounds "
        f"(TRL: {args.trl_repeat}); load average {min(loads, default=0):.1f}-"
        f"{max(loads, default=0):.1f}\n"
    )
    kto_ref = lfft_kto_reference()
    notes = {**LFFT, **LORA, **BARE, **{n: s[2] for n, s in SETTINGS.items()}}
    notes["lfft kto"] = notes["lfft kto"].format(kto_ref=kto_ref)
    for name in ("trl kto", "trl kto precompute_ref"):
        notes[name] += f"; reference point: {TRL_KTO_REFERENCE}"
    bare = cpu_rate("bare loop")
    print(
        "| run | setting | runs | useful tok/s | useful tok/CPU s | vs bare loop | pad share "
        f"| peak {'GPU' if gpu else 'RSS'} MiB | load |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in results.items():
        if not runs:
            print(f"| {name} | {notes[name]} | 0 | failed | | | | | |")
            continue
        rate = cpu_rate(name)
        wall = _median(runs, lambda r: r["tokens"] / r["wall"])
        pad = _median(runs, lambda r: 1 - r["tokens"] / max(1, r["positions"]))
        rss, load = max(r["peak_mb"] for r in runs), _median(runs, lambda r: r["load"])
        ratio = f"{rate / bare:.2f}x" if bare else "-"
        print(
            f"| {name} | {notes[name]} | {len(runs)} | {wall:,.0f} | {rate:,.0f} | {ratio} "
            f"| {pad:.1%} | {rss:,.0f} | {load:.1f} |"
        )
    if args.trl:
        model_type = "gpt2" if args.arch == "gpt2-tiny" else "llama"
        tried = chosen(gpu, args.lora)
        for name in [n for n in tried if skipped(n, model_type, args.device)]:
            why = skipped(name, model_type, args.device)
            print(f"\n`{name}` ({notes[name]}) not run: {why}.")
    if not gpu:  # the CPU's targets, as before; with --lora the per-trainer table follows
        targets(results, cpu_rate, kto_ref)
    return gpu_targets(results, cpu_rate, kto_ref) if gpu or args.lora else None


def gpu_targets(results: dict[str, list[dict]], rate, kto_ref: str) -> list[dict]:
    """Issue 15's targets (on a GPU; on the CPU with --lora too): lfft's best setting >= 1.5x
    TRL's best, per trainer (``rate``: wall on a GPU, CPU time on a CPU); printed, and returned
    for bench/gpu_check.py."""

    def best(names: list[str]) -> str | None:
        return max(names, key=rate) if names else None

    rows = []
    print("\n| target | lfft tok/s (setting) | TRL's best tok/s (setting) | ratio | met |")
    print("| --- | --- | --- | ---: | --- |")
    for trainer in ("sft", "kto", "sft lora", "kto lora"):
        kind, lora = trainer.split()[0], trainer.endswith("lora")
        ran = [n for n in results if results[n] and n.split()[1] == kind]
        mine = best([n for n in ran if n.startswith("lfft") and n.endswith("lora") == lora])
        theirs = best([n for n in ran if n.startswith("trl") and ("lora" in n) == lora])
        goal = f"lfft {trainer} ≥ 1.5x TRL's best"
        if mine is None or theirs is None:
            print(f"| {goal} | not run | | | - |")
            rows.append({"target": goal, "ratio": None})
            continue
        ratio = rate(mine) / rate(theirs)
        rows.append({"target": goal, "lfft": mine, "trl": theirs, "ratio": ratio})
        print(
            f"| {goal} | {rate(mine):,.0f} ({mine}) | {rate(theirs):,.0f} ({theirs}) |"
            f" {ratio:.2f}x | {'yes' if ratio >= 1.5 else 'no'} |"
        )
    return rows


def targets(results: dict[str, list[dict]], cpu_rate, kto_ref: str) -> None:
    """The issue's targets, on the CPU-time rates (medians)."""

    def best(prefix: str) -> str | None:  # full finetunes (--lora's runs have their own table)
        names = [n for n in results if n.startswith(prefix) and "lora" not in n and results[n]]
        return max(names, key=cpu_rate) if names else None

    print("\n| target | measured (useful tok/CPU s, medians) | met |")
    print("| --- | --- | --- |")
    sft, kto = cpu_rate("lfft sft"), cpu_rate("lfft kto")
    for goal, other, factor, mine in (
        ("lfft sft ≥ 0.95x the bare loop", "bare loop", 0.95, sft),
        ("lfft sft ≥ 1.3x TRL's best SFT setting", best("trl sft"), 1.3, sft),
        ("lfft kto ≥ 2x TRL's best KTO setting", best("trl kto"), 2.0, kto),
    ):
        theirs = cpu_rate(other) if other else None
        if mine is None or theirs is None:
            print(f"| {goal} | not run | - |")
            continue
        ratio = mine / theirs
        note = ""
        if other.startswith("trl kto") and kto_ref != TRL_KTO_REFERENCE:
            note = f" (different algorithms: lfft's reference point is the {kto_ref})"
        if other == "bare loop":  # the runs of a round ran one after the other
            pairs = zip(results["lfft sft"], results["bare loop"], strict=False)
            each = ", ".join(
                f"{a['tokens'] / a['cpu'] / (b['tokens'] / b['cpu']):.2f}" for a, b in pairs
            )
            note = f"; round by round: {each}"
        print(
            f"| {goal} | {ratio:.2f}x: {mine:,.0f} against {theirs:,.0f} ({other}){note} "
            f"| {'yes' if ratio >= factor else 'no'} |"
        )


if __name__ == "__main__":
    main()
