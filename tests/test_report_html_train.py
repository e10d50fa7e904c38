"""``lfft train --report-to``: TensorBoard event files beside metrics.parquet, and the choice of
targets (auto, none, named; a missing package is an error before training)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lfft.config import TrainConfig
from lfft.errors import ConfigError
from lfft.io import read_table
from lfft.model import report_to
from lfft.model.train import train


def test_tensorboard_event_files_hold_the_logged_curves(tmp_path, model_tiny_ckpt, model_splits):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = TrainConfig(max_steps=4, log_every=2, eval_every=2, save_every=0, device="cpu",
                      report_to="tensorboard")  # fmt: skip
    out = tmp_path / "run"
    train(model_tiny_ckpt, model_splits, out, cfg)
    events = EventAccumulator(str(out / report_to.TB_DIR))
    events.Reload()
    metrics = read_table(out / "metrics.parquet").to_pylist()
    for split in ("train", "val"):
        want = [(r["step"], r["loss"]) for r in metrics if r["split"] == split]
        got = [(e.step, e.value) for e in events.Scalars(f"{split}/loss")]
        assert len(got) == len(want) == 2
        assert got == [(s, pytest.approx(v, rel=1e-6)) for s, v in want]


def test_targets(monkeypatch):
    assert report_to.resolve("none") == []
    assert report_to.resolve("auto") == ["tensorboard"]  # installed by the test extra
    monkeypatch.setattr(report_to, "_installed", lambda name: False)
    assert report_to.resolve("auto") == []  # auto: only what is installed
    with pytest.raises(ConfigError, match="wandb package is not installed"):
        report_to.resolve("wandb")
    with pytest.raises(ConfigError, match="expected auto, none"):
        report_to.resolve("tensorboard,comet")


def test_cli_rejects_an_unknown_target_before_loading(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "lfft", "train", "--model", str(tmp_path / "missing"), "--data",
         str(tmp_path), "--out", str(tmp_path / "o"), "--report-to", "comet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1 and r.stderr.startswith("error: --report-to 'comet'")
