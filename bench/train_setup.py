"""The setup shared by the runs of bench/train_throughput.py: GPT-2's tokenizer from the merges
in the repo, the KTO demo as lfft rows, the starting checkpoint, and the step clock."""

from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPT2_MERGES = ROOT / "data" / "samples" / "models" / "gpt2-tokenizer" / "merges.txt"


def gpt2_tokenizer():
    """GPT-2's tokenizer (50,257 tokens) from its merges alone: the vocabulary is the 256 byte
    symbols in GPT-2's order, then one token per merge, then ``<|endoftext|>``."""
    from transformers import GPT2Tokenizer

    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
    lines = GPT2_MERGES.read_text(encoding="utf-8").splitlines()[1:]  # after "#version"
    merges = [tuple(line.split(" ")) for line in lines if line]
    vocab = {s: i for i, s in enumerate(symbols)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)
    if len(tok) != 50257 or tok("Hello world")["input_ids"] != [15496, 995]:
        sys.exit(f"error: {GPT2_MERGES} does not give GPT-2's tokenizer")
    return tok


def rows_from_demo(path: Path) -> list[dict]:
    """The KTO demo as SPLIT rows: the last assistant turn is the response, the rest context."""
    from lfft.data.records import interaction

    rows = []
    for i, rec in enumerate(json.loads(path.read_text(encoding="utf-8"))):
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


# The models a run can train: the CPU benchmark's small GPT-2, and SmolLM2-135M's architecture
# (HuggingFaceTB/SmolLM2-135M-Instruct's config; random weights: the same FLOPs as the real ones).
ARCHS = ("gpt2-tiny", "smollm2-135m")
SMOLLM2 = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    max_position_embeddings=2048,
    rope_theta=100000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)


def base_model(arch: str, tokenizer: Path | None):
    """``(model, tokenizer)`` of ``arch``, freshly initialised (seed 0)."""
    import torch
    from transformers import (
        AutoTokenizer,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if arch == "gpt2-tiny":
        return GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=512)), (
            AutoTokenizer.from_pretrained(tokenizer) if tokenizer else gpt2_tokenizer()
        )
    if tokenizer is None:
        sys.exit(f"error: --arch {arch} needs --tokenizer (its tokenizer folder)")
    tok = AutoTokenizer.from_pretrained(tokenizer)
    ids = dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id or tok.eos_token_id)
    return LlamaForCausalLM(LlamaConfig(**SMOLLM2, **ids)), tok


def prepare(
    work: Path,
    data: Path,
    arch: str = "gpt2-tiny",
    tokenizer: Path | None = None,
    split: Path | None = None,
):
    """Write the train rows (``split``, an lfft split parquet, else the KTO demo ``data``) and
    the starting checkpoint (``arch`` + a feedback head) into ``work``."""
    from lfft.config import InitConfig
    from lfft.data.records import to_table
    from lfft.io import write_table
    from lfft.model.init import init
    from lfft.schemas import NORMALIZED, SPLIT, make_metadata

    if split is not None:
        shutil.copyfile(split, work / "train.parquet")
    else:
        rows = to_table(rows_from_demo(data), NORMALIZED)
        write_table(work / "train.parquet", rows, SPLIT, make_metadata("split"))
    model, tok = base_model(arch, tokenizer)
    base = work / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    init(work / "init", InitConfig(base=str(base)))


class StepClock:
    """Wall and CPU time of optimizer steps ``warmup+1 .. last``, read after every step of a
    torch optimizer (whatever loop calls it), with the tokens counted up to that step."""

    def __init__(self, warmup: int, sync: bool = False):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.warmup, self.steps, self.sync = max(1, warmup), 0, sync  # sync: CUDA, before reads
        self.tokens = self.positions = 0
        self.mark = self.end = (0.0, 0.0, 0, 0)
        self.extra_wall = self.extra_cpu = 0.0
        register_optimizer_step_post_hook(self._step)

    def add(self, tokens: int, positions: int) -> None:
        self.tokens += tokens
        self.positions += positions

    def _now(self) -> tuple[float, float, int, int]:
        return time.perf_counter(), time.process_time(), self.tokens, self.positions

    def _step(self, optimizer, args, kwargs) -> None:
        if not type(optimizer).__module__.startswith("torch.optim"):
            return  # a wrapper (accelerate's) around the real one: count the real one
        self.steps += 1
        if self.sync:
            import torch

            torch.cuda.synchronize()
        self.end = self._now()
        if self.steps == self.warmup:
            self.mark = self.end

    @contextmanager
    def extra(self, share: float):
        """Charge ``share`` of the time spent in the block to the timed steps."""
        w0, c0, _, _ = self._now()
        yield
        w1, c1, _, _ = self._now()
        self.extra_wall += (w1 - w0) * share
        self.extra_cpu += (c1 - c0) * share

    def result(self) -> dict:
        (w0, c0, t0, p0), (w1, c1, t1, p1) = self.mark, self.end
        return {
            "steps": self.steps,
            "tokens": t1 - t0,
            "positions": p1 - p0,
            "wall": w1 - w0 + self.extra_wall,
            "cpu": c1 - c0 + self.extra_cpu,
        }
