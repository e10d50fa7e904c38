"""The ordered stage table that ``lfft pipeline`` runs, and the work-folder layout it writes.

Each :class:`Stage` names its inputs and outputs inside a work folder and how to run it; the
table :data:`STAGES` is a plain list, so tests (and other tools) can substitute their own.
The stage functions are imported when a stage runs, so ``lfft --help`` never imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfft.io import rejects_path
from lfft.model import checkpoint  # the checkpoint layout (imports no torch)
from lfft.report import StageResult


@dataclass(frozen=True)
class Layout:
    """Where every artifact lives in a work folder (``DESIGN.md``)."""

    root: Path

    @property
    def interactions(self) -> Path:
        return self.root / "interactions.parquet"

    @property
    def clean(self) -> Path:
        return self.root / "clean.parquet"

    @property
    def normalized(self) -> Path:
        """normalize's output (the ``feedback`` artifact)."""
        return self.root / "feedback.parquet"

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def train(self) -> Path:
        return self.splits / "train.parquet"

    @property
    def val(self) -> Path:
        return self.splits / "val.parquet"

    @property
    def test(self) -> Path:
        return self.splits / "test.parquet"

    @property
    def ckpt_init(self) -> Path:
        return self.root / "ckpt" / "init"

    @property
    def ckpt_final(self) -> Path:
        return self.root / "ckpt" / "final"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def completion_records(self) -> Path:
        """Completion records of ``lfft pipeline`` (one JSON per finished stage)."""
        return self.root / ".lfft"


# --- the stage functions (imported lazily; tests may monkeypatch these names) ---------------


def collect(inputs: list[Path], out: Path, cfg: Any) -> StageResult:
    from lfft.data.collect import collect as run

    return run(inputs, out, cfg)


def clean(input: Path, out: Path, cfg: Any) -> StageResult:
    from lfft.data.clean import clean as run

    return run(input, out, cfg)


def normalize(input: Path, out: Path, cfg: Any) -> StageResult:
    from lfft.data.normalize import normalize as run

    return run(input, out, cfg)


def split(input: Path, out_dir: Path, cfg: Any) -> StageResult:
    from lfft.data.split import split as run

    return run(input, out_dir, cfg)


def init(out: Path, cfg: Any) -> StageResult:
    from lfft.model.init import init as run

    return run(out, cfg)


def train(model: Path, data: Path, out: Path, cfg: Any, resume: bool = False) -> StageResult:
    from lfft.model.train import train as run

    return run(model, data, out, cfg, resume=resume)


def evaluate(
    model: Path, data: Path, out: Path, cfg: Any, baseline: Path | None = None
) -> StageResult:
    from lfft.model.evaluate import evaluate as run

    return run(model, data, out, cfg, baseline=baseline)


def can_resume(out: Path) -> bool:
    """True when a training output folder holds a step checkpoint to resume from."""
    return bool(checkpoint.step_dirs(out, complete=False))


# --- the table ------------------------------------------------------------------------------

Runner = Callable[[Layout, list[Path], Any, bool], StageResult]


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``inputs``/``outputs`` list the paths whose fingerprints decide whether the stage is up to
    date (the first output is the one shown in the summary); ``run(layout, raw_inputs, cfg,
    resume)`` does the work; ``configure`` fills in config fields the pipeline owns (paths);
    a ``resumable`` stage is rerun with ``resume=True`` after an interrupted run.
    """

    name: str
    inputs: Callable[[Layout, list[Path]], list[Path]]
    outputs: Callable[[Layout], list[Path]]
    run: Runner
    configure: Callable[[Any, Layout], Any] = lambda cfg, layout: cfg
    resumable: bool = False
    config: str | None = None  # TOML table / STAGE_CONFIGS key; defaults to ``name``

    @property
    def table(self) -> str:
        return self.config or self.name


def _data_outputs(path: Callable[[Layout], Path]) -> Callable[[Layout], list[Path]]:
    return lambda L: [path(L), rejects_path(path(L))]


STAGES: list[Stage] = [
    Stage(
        "collect",
        inputs=lambda L, raw: list(raw),
        outputs=_data_outputs(lambda L: L.interactions),
        run=lambda L, raw, cfg, resume: collect(list(raw), L.interactions, cfg),
    ),
    Stage(
        "clean",
        inputs=lambda L, raw: [L.interactions],
        outputs=_data_outputs(lambda L: L.clean),
        run=lambda L, raw, cfg, resume: clean(L.interactions, L.clean, cfg),
    ),
    Stage(
        "normalize",
        inputs=lambda L, raw: [L.clean],
        outputs=_data_outputs(lambda L: L.normalized),
        run=lambda L, raw, cfg, resume: normalize(L.clean, L.normalized, cfg),
    ),
    Stage(
        "split",
        inputs=lambda L, raw: [L.normalized],
        outputs=lambda L: [L.splits],
        run=lambda L, raw, cfg, resume: split(L.normalized, L.splits, cfg),
    ),
    Stage(
        "init",
        inputs=lambda L, raw: [L.train],
        outputs=lambda L: [L.ckpt_init],
        run=lambda L, raw, cfg, resume: init(L.ckpt_init, cfg),
        configure=lambda cfg, L: dataclasses.replace(cfg, data=str(L.train)),
    ),
    Stage(
        "train",
        inputs=lambda L, raw: [L.ckpt_init, L.train, L.val],
        outputs=lambda L: [L.ckpt_final],
        run=lambda L, raw, cfg, resume: train(L.ckpt_init, L.splits, L.ckpt_final, cfg, resume),
        resumable=True,
    ),
    Stage(
        "evaluate",
        inputs=lambda L, raw: [L.ckpt_final, L.test, L.ckpt_init],
        outputs=lambda L: [L.eval],
        run=lambda L, raw, cfg, resume: evaluate(
            L.ckpt_final, L.test, L.eval, cfg, baseline=L.ckpt_init
        ),
    ),
]

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
