"""``lfft train --report-to``: training curves where practitioners look for them, besides
``metrics.parquet`` (which is always written).

Like the Hugging Face Trainer's ``report_to``: ``tensorboard``, ``wandb``, ``mlflow`` (several
comma-separated) or ``none``. The default, ``auto``, writes TensorBoard event files into
``OUT/tensorboard/`` when the ``tensorboard`` package is installed and nothing otherwise: the
Trainer's own default is ``none`` (transformers 5) and its ``all`` takes every installed
integration, but wandb and mlflow send data to a server, so they run only when asked for. Asking
for one whose package is missing is an error before training starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lfft.errors import ConfigError

TARGETS = ("tensorboard", "wandb", "mlflow")
TB_DIR = "tensorboard"
KEYS = ("loss", "lm_loss", "fb_loss", "lr", "grad_norm", "tokens_per_s", "pad_share", "mem_mb")


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def resolve(value: str) -> list[str]:
    """The targets of a ``--report-to`` value (checked: known names, packages installed)."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    if names in (["none"], []):
        return []
    if names == ["auto"]:
        return ["tensorboard"] if _installed("tensorboard") else []
    for name in names:
        if name not in TARGETS:
            raise ConfigError(
                f"--report-to {name!r}: expected auto, none or some of {', '.join(TARGETS)}"
            )
    for name in names:
        if not _installed(name):
            raise ConfigError(f"--report-to {name}: the {name} package is not installed")
    return names


class Reporter:
    """Sends each ``metrics.parquet`` row (train or val) to the chosen targets."""

    def __init__(self, targets: list[str], out: Path, config: Mapping[str, Any]):
        self.sinks: list[Any] = []
        if "tensorboard" in targets:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(out / TB_DIR))
            self.sinks.append(self._tb)
        if "wandb" in targets:
            import wandb

            self.wandb = wandb.init(project="lfft", dir=str(out), config=dict(config))
            self.sinks.append(lambda step, values: self.wandb.log(values, step=step))
        if "mlflow" in targets:
            import mlflow

            self.mlflow = mlflow
            mlflow.start_run()
            mlflow.log_params({k: str(v) for k, v in config.items()})
            self.sinks.append(lambda step, values: mlflow.log_metrics(values, step=step))

    def _tb(self, step: int, values: Mapping[str, float]) -> None:
        for tag, v in values.items():
            self.tb.add_scalar(tag, v, step)
        self.tb.flush()

    def log(self, row: Mapping[str, Any]) -> None:
        values = {
            f"{row['split']}/{k}": float(row[k]) for k in KEYS if row.get(k) is not None
        }  # train/loss, val/loss, ... (the layout TensorBoard groups by)
        for sink in self.sinks:
            sink(int(row["step"]), values)

    def close(self) -> None:
        if hasattr(self, "tb"):
            self.tb.close()
        if hasattr(self, "wandb"):
            self.wandb.finish()
        if hasattr(self, "mlflow"):
            self.mlflow.end_run()


@contextmanager
def reporting(value: str, out: Path, config: Mapping[str, Any], writes: bool = True):
    """A :class:`Reporter` for the run (on the writing rank; others report nothing)."""
    reporter = Reporter(resolve(value) if writes else [], out, config)
    try:
        yield reporter
    finally:
        reporter.close()
