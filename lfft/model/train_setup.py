"""The parts a training run is made of, each from an explicit function that returns it: the
model and its reference, the splits' rows, the loss settings, the batch layout, the epoch plans,
the optimizer and the learning-rate schedule, what ``lfft.json`` records, and the summary of a
finished run."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lfft import __version__
from lfft.config import TrainConfig, as_dict
from lfft.errors import LfftError
from lfft.io import read_table
from lfft.model import checkpoint
from lfft.model.batching import Batch, Example, collate, pack, plan, plan_pad_share, use_packing
from lfft.model.feedback_lm import FeedbackLM
from lfft.model.forward import packing_works, unwrap
from lfft.model.objectives import (
    MIXED_BATCHES,
    NEEDS_REFERENCE,
    LossSettings,
    TrainSet,
    kto_weights,
)
from lfft.model.state import TrainState
from lfft.report import StageResult
from lfft.schemas import SPLIT

ROW_COLUMNS = [
    "context",
    "prompt",
    "response",
    "target",
    "score",
    "label",
    "weight",
    "signal",
    "token_spans",
    "group_id",
]


def split_paths(data: str | Path) -> tuple[Path, Path | None]:
    """``(train, val)``: a splits folder's ``train.parquet`` / ``val.parquet``, or one file."""
    data = Path(data)
    if not data.exists():
        raise LfftError(f"{data}: no such splits folder or file")
    if data.is_file() or data.suffix == ".parquet":  # one split (a file or a folder of parts)
        return data, None
    train_path, val_path = data / "train.parquet", data / "val.parquet"
    if not train_path.exists():
        raise LfftError(f"{data}: no train.parquet (make it with `lfft split ... --out {data}`)")
    return train_path, val_path if val_path.exists() else None


def read_rows(path: Path) -> list[dict[str, Any]]:
    table = read_table(path, columns=ROW_COLUMNS, schema=SPLIT, what=str(path))
    return table.to_pylist()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_for_training(
    cfg: TrainConfig, model_dir: Path, resume_dir: Path | None, device, train_head: bool
) -> tuple[FeedbackLM, FeedbackLM | None]:
    """``(model, reference)`` in training / eval mode: the LM and head of ``model_dir`` (of the
    step checkpoint ``resume_dir`` when resuming), with LoRA adapters and gradient checkpointing
    as configured (train() compiles); the frozen reference of kto/dpo is ``model_dir``'s LM
    (None with LoRA: the LM with its adapters disabled is the reference)."""
    weights = resume_dir if resume_dir is not None and not cfg.lora else model_dir
    lm = checkpoint.load_model(weights, device)
    head = checkpoint.load_head(resume_dir or model_dir, device)
    if cfg.lora:
        lm = _with_lora(lm, cfg, resume_dir)
    if cfg.grad_checkpointing:
        unwrap(lm).gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    model = FeedbackLM(lm, head, train_head).train()
    ref = None
    if cfg.objective in NEEDS_REFERENCE and not cfg.lora:
        ref_lm = checkpoint.load_model(model_dir, device)
        ref = FeedbackLM(ref_lm, None).eval().requires_grad_(False)
    return model, ref


def loss_settings(cfg: TrainConfig, trainset: TrainSet) -> LossSettings:
    """The loss of ``cfg``; KTO's class weights follow the training set's label counts."""
    w_d, w_u = cfg.desirable_weight or 1.0, cfg.undesirable_weight or 1.0
    if cfg.objective == "kto":
        labels = [e.label for e in trainset.examples]
        w_d, w_u = kto_weights(
            sum(x == 1 for x in labels),
            sum(x == 0 for x in labels),
            cfg.desirable_weight,
            cfg.undesirable_weight,
        )
    return LossSettings(
        cfg.objective,
        cfg.feedback_loss,
        cfg.lambda_,
        beta=cfg.beta,
        alpha=cfg.unlikelihood_alpha,
        desirable_weight=w_d,
        undesirable_weight=w_u,
        kto_reference=cfg.kto_reference,
        pref_sft=cfg.pref_sft or 0.0,
    )


def choose_packing(cfg: TrainConfig, trainset: TrainSet, lm) -> tuple[bool, float]:
    """``(packed, padded_share)``: ``--packing`` resolved for this data (``auto``: packed when
    the padded plan of the first epoch would be mostly padding), and that plan's pad share.
    ``on`` for a model that cannot keep packed examples apart is an error."""
    lengths = [len(e) for e in trainset.examples]
    padded = plan(lengths, cfg.batch_size, cfg.batch_tokens, True, cfg.seed, trainset.group)
    padded_share = plan_pad_share(lengths, padded)
    if not use_packing(cfg.packing, padded_share):
        return False, padded_share
    if packing_works(lm):
        return True, padded_share
    if cfg.packing == "on":
        name = type(unwrap(lm)).__name__
        raise LfftError(
            f"--packing on: {name} lets packed examples attend to each other; use --packing off"
        )
    return False, padded_share


def epoch_plans(
    trainset: TrainSet, cfg: TrainConfig, packed: bool
) -> Callable[[int], list[list[int]]]:
    """``plan_of(epoch)``: the micro-batches (example indices) of an epoch, a pure function of
    (examples, config, seed, epoch); the last epoch asked for is kept."""
    lengths = [len(e) for e in trainset.examples]

    @functools.lru_cache(maxsize=1)
    def plan_of(epoch: int) -> list[list[int]]:
        return plan(
            lengths,
            cfg.batch_size,
            cfg.batch_tokens,
            shuffle=True,
            seed=cfg.seed + epoch,
            group=trainset.group,
            packed=packed,
            mixed=cfg.objective in MIXED_BATCHES,  # not grouped by length
        )

    return plan_of


def make_batch(
    pad_id: int, packed: bool, max_length: int, device, examples: list[Example], indices: list[int]
) -> Batch:
    """One micro-batch on the device: packed rows or length-grouped padding."""
    chosen = [examples[i] for i in indices]
    batch = pack(chosen, pad_id, max_length) if packed else collate(chosen, pad_id)
    return batch.to(device)


def adamw(params: list[torch.nn.Parameter], cfg: TrainConfig, device) -> torch.optim.AdamW:
    """AdamW without weight decay on 1-D parameters (norms, biases); fused (one kernel over all
    parameters) on CUDA and the CPU: on the CPU 6x faster than the default foreach step
    (bench/optimizer_step.py), with the same results to 1e-8."""
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = True if device.type in ("cuda", "cpu") else None
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """lr multiplier at optimizer step s (0-based): linear warmup, then cosine down to 0."""

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = (s - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def run_info(
    cfg: TrainConfig,
    base: dict[str, Any],
    model_dir: Path,
    trainset: TrainSet,
    valset: TrainSet | None,
    settings: LossSettings,
    packed: bool,
) -> dict[str, Any]:
    """What ``lfft.json`` records about the run (``base``: the starting checkpoint's)."""
    counts = {"train_" + k: v for k, v in trainset.counts.items()}
    if valset:
        counts.update({"val_" + k: v for k, v in valset.counts.items()})
    return {
        "stage": "train",
        "version": __version__,
        "base": base.get("base"),
        "start": {"path": str(model_dir), "stage": base.get("stage"), "step": base.get("step")},
        "config": as_dict(cfg),
        "counts": counts,
        "trust_remote_code": base.get("trust_remote_code", False),
        "loss": asdict(settings),
        "packing": packed,
    }


def summary(
    cfg: TrainConfig,
    state: TrainState,
    trainset: TrainSet,
    settings: LossSettings,
    packing: tuple[bool, float],
    device_text: str,
    out: Path,
    seconds: float,
) -> StageResult:
    """The summary table of a finished run (``packing``: what :func:`choose_packing` chose)."""
    m = state.final_metrics()
    counts = trainset.counts
    packed, padded_share = packing
    extra = {
        "objective": cfg.objective,
        "device": device_text,
        "steps": m["steps"],
        "epochs": round(m["epochs"], 3),
        "train loss": m["train_loss"],
        "val loss": m["val_loss"],
        "tokens/s": round(m["tokens_per_s"] or 0),
        "packing": f"{'on' if packed else 'off'} ({cfg.packing}; padded batches"
        f" would be {padded_share:.1%} padding)",
        "pad share": round(m["pad_share"], 4),
        "train time s": round(m["train_seconds"], 2),
        "examples": len(trainset.examples),
    }
    if "pairs" in counts:
        extra["pairs"] = counts["pairs"]
    if cfg.objective == "kto":
        extra["kto weights"] = {
            "desirable": settings.desirable_weight,
            "undesirable": settings.undesirable_weight,
        }
    if m["early_stopped"]:
        extra["early stopped"] = f"best val {m['best_val_loss']:.4f} at step {m['best_step']}"
    return StageResult(
        stage="train",
        rows_in=counts["rows"],
        rows_out=counts.get("rows_in_pairs", counts["responses"]),
        seconds=seconds,
        outputs={"checkpoint": out, "metrics": out / checkpoint.METRICS_FILE},
        extra=extra,
    )


def _with_lora(model, cfg: TrainConfig, resume_dir: Path | None):
    try:
        import peft
    except ImportError:
        raise LfftError("--lora needs the peft package: pip install 'lfft[lora]'") from None
    config = peft.LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, config)
    if resume_dir is not None:
        from safetensors.torch import load_file

        state = load_file(resume_dir / checkpoint.ADAPTER_FILE)
        peft.set_peft_model_state_dict(model, state)
    return model
