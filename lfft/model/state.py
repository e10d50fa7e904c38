"""Where a training run stands (:class:`TrainState`, saved in every step checkpoint), the loss
window between two logged steps, and the numbers a finished run reports."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import torch

from lfft.model.batching import pad_share
from lfft.model.device import peak_memory_mb
from lfft.schemas import METRICS


@dataclass
class TrainState:
    """Everything a resumed run needs besides the weights, the optimizer/scheduler states and the
    RNG states (those are in ``trainer_state.pt``); saved as ``trainer_state.json``."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    pos: int = 0  # next micro-batch of the epoch's plan
    best: float | None = None  # best validation loss (early stopping)
    best_step: int | None = None
    bad_evals: int = 0  # validations since the best one (early stopping's patience)
    stopped: bool = False  # early stopping fired
    tokens: int = 0  # useful (non-pad) tokens trained on
    positions: int = 0  # positions computed (padded or packed rows)
    train_seconds: float = 0.0  # time in training steps (not validation or saving)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def advance(self, micro_batches: int, plan_length: int) -> None:
        """One optimizer step done over the next ``micro_batches`` of the epoch's plan."""
        self.step += 1
        self.pos += micro_batches
        if self.pos >= plan_length:
            self.epoch, self.pos = self.epoch + 1, 0

    def early_stop(self, loss: float, patience: int) -> bool:
        """Record a validation loss; True when it is the best so far (> 1e-4 better)."""
        if self.best is None or loss < self.best - 1e-4:
            self.best, self.best_step, self.bad_evals = loss, self.step, 0
            return True
        self.bad_evals += 1
        self.stopped = self.bad_evals >= patience
        return False

    def final_metrics(self) -> dict[str, Any]:
        """The last train and val losses, tokens/s and pad share of the whole run."""
        train_rows = [r for r in self.metrics if r["split"] == "train"]
        val_rows = [r for r in self.metrics if r["split"] == "val"]
        return {
            "steps": self.step,
            "epochs": train_rows[-1]["epoch"] if train_rows else 0.0,
            "train_loss": train_rows[-1]["loss"] if train_rows else None,
            "val_loss": val_rows[-1]["loss"] if val_rows else None,
            "best_val_loss": self.best,
            "best_step": self.best_step,
            "early_stopped": self.stopped,
            "tokens_per_s": self.tokens / self.train_seconds if self.train_seconds else None,
            "pad_share": pad_share(self.tokens, self.positions),
            "train_seconds": self.train_seconds,
        }

    def metrics_table(self) -> pa.Table:
        rows = [{k: r.get(k) for k in METRICS.names} for r in self.metrics]
        return pa.Table.from_pylist(rows, schema=METRICS)


class LossWindow:
    """Loss sums and token counts since the last logged step (kept on the device: no sync)."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, device=device)  # L, L_M, L_F
        self.restart()

    def restart(self) -> None:
        self.sums.zero_()
        self.n = self.tokens = self.positions = 0
        self.grad_norm: torch.Tensor | None = None
        self.start = time.perf_counter()

    def add(self, loss, lm, fb, tokens: int, positions: int) -> None:
        zero = torch.zeros((), device=loss.device)
        self.sums += torch.stack([loss, lm, zero if fb is None else fb]).detach().float()
        self.n += 1
        self.tokens += tokens
        self.positions += positions

    def sum_over_ranks(self, device: torch.device) -> None:
        """DDP/FSDP: the sums and counts of every rank (and FSDP's sharded gradient norm whole)."""
        import torch.distributed as dist

        dist.all_reduce(self.sums)
        counts = torch.tensor([self.n, self.tokens, self.positions], device=device)
        dist.all_reduce(counts)
        self.n, self.tokens, self.positions = counts.tolist()
        if hasattr(self.grad_norm, "full_tensor"):  # FSDP: a DTensor
            self.grad_norm = self.grad_norm.full_tensor()

    def log(self, state: TrainState, plan_length: int, lr: float, use_head: bool, device):
        """The ``metrics.parquet`` row of the steps since the last one (appended to ``state``):
        the losses' means are the only host sync of a logging step."""
        loss, lm, fb = (self.sums / max(1, self.n)).tolist()
        seconds = time.perf_counter() - self.start
        state.tokens += self.tokens
        state.positions += self.positions
        state.train_seconds += seconds
        row = {
            "step": state.step,
            "split": "train",
            "epoch": state.epoch + state.pos / max(1, plan_length),
            "loss": loss,
            "lm_loss": lm,
            "fb_loss": fb if use_head else None,
            "lr": lr,
            "grad_norm": None if self.grad_norm is None else float(self.grad_norm),
            "tokens": self.tokens,
            "tokens_per_s": self.tokens / seconds if seconds > 0 else None,
            "pad_share": pad_share(self.tokens, self.positions),
            "mem_mb": peak_memory_mb(device),
            "elapsed_s": state.train_seconds,
        }
        state.metrics.append(row)
        return row
