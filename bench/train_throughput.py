"""Training throughput on the CPU: `lfft train` against a bare PyTorch loop and TRL (a benchmark,
not a test).

    .venv/bin/python bench/train_throughput.py                 # lfft and the bare loop
    PYTHONPATH=... python bench/train_throughput.py --trl      # + TRL's SFTTrainer / KTOTrainer

Same model (a 3.5M-parameter GPT-2: 4 layers, width 64, the GPT-2 tokenizer), same data (the
LLaMA-Factory KTO demo in ``shared/datasets``: real multi-turn chats with thumbs), same maximum
length and batch size, same thread count. Each contender runs in its own process (its peak RSS is
its own) for ``--steps`` optimizer steps; the first ``--warmup`` steps are not timed. Useful
tokens are the non-pad tokens of the batches (prompt and response). Prints a Markdown table for
``docs/benchmarks.md``.

- ``lfft sft``: ``lfft train --objective sft --feedback-loss none`` (L_M alone, like the others);
  ``lfft sft packed`` is the same with ``--packing on`` (padding-free packed rows);
  ``lfft sft+F`` adds the feedback head (lambda 0.5); ``lfft kto`` is KTO with its reference.
- ``bare loop``: the loop a user would write over the very same batches (lfft's length-grouped
  plan): ``model(input_ids, attention_mask, labels)``, backward, clip, AdamW.
- ``trl ...`` (``--trl``; TRL is an optional extra installed in the benchmark's environment only):
  SFTTrainer without and with packing (TRL's default ``bfd`` packing, padding-free), and
  KTOTrainer; in fp32 without activation checkpointing like the others (TRL's CPU defaults turn
  on bf16 autocast and checkpointing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
DATA = SHARED / "datasets" / "llamafactory-kto-en-demo" / "kto_en_demo.json"
GPT2_TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
LFFT = ["lfft sft", "lfft sft packed", "lfft sft+F", "lfft kto", "bare loop"]
TRL = ["trl sft", "trl sft packed", "trl kto"]


def rows_from_demo() -> list[dict]:
    """The KTO demo as SPLIT rows: the last assistant turn is the response, the rest context."""
    from lfft.data.records import interaction

    rows = []
    for i, rec in enumerate(json.loads(DATA.read_text(encoding="utf-8"))):
        msgs = rec["messages"]
        row = interaction(
            session_id=f"s{i}",
            prompt=msgs[-2]["content"],
            response=msgs[-1]["content"],
            source="bench",
            context=msgs[:-2],
        )
        label = int(bool(rec["label"]))
        row.update(
            score=float(label),
            label=label,
            weight=1.0,
            signal="binary",
            target=row["response"],
            token_spans=[],
            critique=None,
            group_id=f"g{i}",
        )
        rows.append(row)
    return rows


def prepare(work: Path) -> None:
    """Write the split and the starting checkpoint (GPT-2 base + head) into ``work``."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from lfft.config import InitConfig
    from lfft.data.records import to_table
    from lfft.io import write_table
    from lfft.model.init import init
    from lfft.schemas import FEEDBACK, SPLIT, make_metadata

    write_table(
        work / "train.parquet", to_table(rows_from_demo(), FEEDBACK), SPLIT, make_metadata("split")
    )
    torch.manual_seed(0)
    base = work / "gpt2"
    config = GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=512)
    GPT2LMHeadModel(config).save_pretrained(base)
    AutoTokenizer.from_pretrained(GPT2_TOKENIZER).save_pretrained(base)
    init(work / "init", InitConfig(base=str(base)))


def run_lfft(name: str, work: Path, args) -> dict:
    import pyarrow.parquet as pq

    from lfft.config import TrainConfig
    from lfft.model.train import train

    objective = "kto" if name == "lfft kto" else "sft"
    cfg = TrainConfig(
        objective=objective,
        feedback_loss="none" if name in ("lfft sft", "lfft sft packed") else "auto",
        max_steps=args.steps,
        batch_size=args.batch_size,
        batch_tokens=args.batch_size * args.max_length,
        max_length=args.max_length,
        lr=1e-4,
        warmup_steps=0,
        log_every=args.warmup,
        eval_every=0,
        save_every=0,
        packing="on" if name.endswith("packed") else "off",
    )
    out = work / name.replace(" ", "-").replace("+", "")
    train(work / "init", work / "train.parquet", out, cfg)
    rows = pq.read_table(out / "metrics.parquet").to_pylist()[1:]  # drop the warm-up window
    tokens = sum(r["tokens"] for r in rows)
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in rows)
    pad = 1 - tokens / sum(r["tokens"] / (1 - r["pad_share"]) for r in rows)
    return {"tokens": tokens, "seconds": seconds, "pad_share": pad}


def run_bare(work: Path, args) -> dict:
    """The loop a user writes by hand, over lfft's batches (same examples, same order)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lfft.model.batching import collate, encode, plan
    from lfft.model.train import read_rows

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(work / "init")
    model = AutoModelForCausalLM.from_pretrained(work / "init", dtype=torch.float32).train()
    examples = encode(tok, read_rows(work / "train.parquet"), args.max_length)
    lengths = [len(e) for e in examples]
    order = []
    epoch = 0
    while len(order) < args.steps:
        bs, bt = args.batch_size, args.batch_size * args.max_length
        order += plan(lengths, bs, bt, shuffle=True, seed=epoch)
        epoch += 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = positions = 0
    start = 0.0
    for step, idx in enumerate(order[: args.steps]):
        if step == args.warmup:
            start, tokens, positions = time.perf_counter(), 0, 0
        b = collate([examples[i] for i in idx], tok.pad_token_id)
        labels = b.input_ids.masked_fill(~b.response_mask, -100)
        loss = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += b.tokens
        positions += b.positions
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "pad_share": 1 - tokens / positions}


def run_trl(name: str, work: Path, args) -> dict:
    """TRL's trainers on the same model and rows (conversational prompt/completion format)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lfft.model.train import read_rows

    tok = AutoTokenizer.from_pretrained(work / "init")
    model = AutoModelForCausalLM.from_pretrained(work / "init", dtype=torch.float32)
    rows = read_rows(work / "train.parquet")
    data = {
        "prompt": [list(r["context"]) + [{"role": "user", "content": r["prompt"]}] for r in rows],
        "completion": [[{"role": "assistant", "content": r["response"]}] for r in rows],
    }
    if name == "trl kto":
        data["label"] = [bool(r["label"]) for r in rows]
    dataset = Dataset.from_dict(data)
    counter = {"tokens": 0, "positions": 0}
    timer = _StepTimer(args.warmup, counter)
    common = dict(
        output_dir=str(work / name.replace(" ", "-")),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=1e-4,
        logging_steps=args.steps,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        max_length=args.max_length,
        # like every other run here: fp32 on the CPU, no activation checkpointing (TRL's CPU
        # defaults, bf16 autocast and checkpointing, were 5-8x slower on this machine)
        bf16=False,
        activation_checkpointing=False,
    )
    if name == "trl kto":
        from trl import KTOConfig, KTOTrainer

        trainer = KTOTrainer(
            model=model,
            args=KTOConfig(**common),
            train_dataset=dataset,
            processing_class=tok,
            callbacks=[timer],
        )
    else:
        from trl import SFTConfig, SFTTrainer

        cfg = SFTConfig(**common, packing=name == "trl sft packed")
        trainer = SFTTrainer(
            model=model,
            args=cfg,
            train_dataset=dataset,
            processing_class=tok,
            callbacks=[timer],
        )
    _count_tokens(trainer, counter)
    trainer.train()
    return {
        "tokens": counter["tokens"] - timer.tokens0,
        "seconds": timer.t1 - timer.t0,
        "pad_share": 1 - counter["tokens"] / max(1, counter["positions"]),
    }


def _count_tokens(trainer, counter: dict) -> None:
    """Count the non-pad tokens of every batch the trainer collates."""
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        mask = batch.get("attention_mask")
        if mask is None and "completion_attention_mask" in batch:  # KTO
            mask = batch["completion_attention_mask"]
        if mask is not None:
            counter["tokens"] += int(mask.sum())
            counter["positions"] += mask.numel()
        elif "input_ids" in batch:  # padding-free packing: every position is a real token
            counter["tokens"] += batch["input_ids"].numel()
            counter["positions"] += batch["input_ids"].numel()
        if "KL_completion_attention_mask" in batch:  # KTO's mismatched pairs: computed, not useful
            counter["positions"] += batch["KL_completion_attention_mask"].numel()
        return batch

    trainer.data_collator = counting


try:
    from transformers import TrainerCallback as _Base
except ImportError:  # pragma: no cover
    _Base = object


class _StepTimer(_Base):
    def __init__(self, warmup: int, counter: dict):
        self.warmup, self.counter = warmup, counter
        self.t0 = self.t1 = 0.0
        self.tokens0 = 0

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.warmup:
            self.t0, self.tokens0 = time.perf_counter(), self.counter["tokens"]
        self.t1 = time.perf_counter()


def child(name: str, work: Path, args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if name == "bare loop":
        result = run_bare(work, args)
    elif name.startswith("lfft"):
        result = run_lfft(name, work, args)
    else:
        result = run_trl(name, work, args)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trl", action="store_true", help="also run TRL's trainers")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the best of each is kept")
    p.add_argument("--only-runs", help="comma-separated subset of the runs")
    p.add_argument("--only", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        child(args.only, Path(args.work), args)
        return
    names = LFFT + (TRL if args.trl else [])
    if args.only_runs:
        names = [n for n in names if n in args.only_runs.split(",")]
    with tempfile.TemporaryDirectory(prefix="lfft-bench-") as tmp:
        work = Path(tmp)
        prepare(work)
        results: dict[str, dict] = {}
        for rep in range(args.repeat):  # round-robin, keep each run's best: least disturbed
            for name in names:
                r = run_child(name, work)
                if r is None:
                    continue
                rate = r["tokens"] / r["seconds"]
                print(f"[{rep + 1}/{args.repeat}] {name}: {rate:,.0f} tok/s", file=sys.stderr)
                best = results.get(name)
                if best is None or rate > best["tokens"] / best["seconds"]:
                    results[name] = {**r, "peak_mb": max(r["peak_mb"], (best or r)["peak_mb"])}
    report(results, args)


def run_child(name: str, work: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--only", name, "--work", str(work), *sys.argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        print(f"{name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(line[-1][7:])


def report(results: dict, args) -> None:
    bare = results.get("bare loop")
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} threads; GPT-2 3.5M, batch {args.batch_size}, max length "
        f"{args.max_length}, {args.steps} steps ({args.warmup} untimed), best of {args.repeat}\n"
    )
    print("| run | useful tok/s | vs bare loop | pad share | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        rate = r["tokens"] / r["seconds"]
        ratio = f"{rate / (bare['tokens'] / bare['seconds']):.2f}x" if bare else "-"
        print(f"| {name} | {rate:,.0f} | {ratio} | {r['pad_share']:.1%} | {r['peak_mb']:,.0f} |")


if __name__ == "__main__":
    main()
