"""Checkpoints: exact resume after a kill, keeping the last K, atomic writes, RNG state, load()."""

from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import lfft
from lfft.config import TrainConfig
from lfft.errors import LfftError
from lfft.model import checkpoint
from lfft.model.display import TrainDisplay
from lfft.model.train import train

pytestmark = pytest.mark.usefixtures("model_one_thread")


class Killed(Exception):
    """A simulated kill."""


def _cfg(**kw) -> TrainConfig:
    base = dict(
        max_steps=6, batch_size=8, lr=3e-3, warmup_steps=2, log_every=1, eval_every=2, seed=7
    )
    return TrainConfig(**{**base, **kw})


def _weights(folder):
    model, _, head = lfft.load(folder)
    return {
        **dict(model.named_parameters()),
        **{"head." + k: v for k, v in head.state_dict().items()},
    }


@pytest.mark.parametrize(
    "objective,lora,packing",
    [("sft", False, "off"), ("kto", False, "off"), ("kto", True, "off"), ("kto", False, "on")],
)
def test_resume_after_a_kill_reaches_the_same_weights(
    objective, lora, packing, model_tiny_ckpt, model_splits, tmp_path, monkeypatch
):
    if lora:
        pytest.importorskip("peft")
    # 40 examples in batches of 16 = 3 batches per epoch: 6 steps cross an epoch, so the data
    # order of the next epoch must resume exactly too.
    cfg = _cfg(
        objective=objective,
        save_every=3,
        batch_size=16,
        batch_tokens=10_000,
        lora=lora,
        packing=packing,
    )
    straight = tmp_path / "straight"
    train(model_tiny_ckpt, model_splits, straight, cfg)

    resumed = tmp_path / "resumed"
    real_advance = TrainDisplay.advance

    def dying_advance(self, step):
        if step == 5:  # killed during step 5 (before it is logged), after the step-3 checkpoint
            raise Killed
        real_advance(self, step)

    monkeypatch.setattr(TrainDisplay, "advance", dying_advance)
    with pytest.raises(Killed):
        train(model_tiny_ckpt, model_splits, resumed, cfg)
    assert [p.name for p in checkpoint.step_dirs(resumed)] == ["step-3"]
    assert not (resumed / "lfft.json").exists()
    monkeypatch.setattr(TrainDisplay, "advance", real_advance)
    result = train(model_tiny_ckpt, model_splits, resumed, cfg, resume=True)
    assert result.extra["steps"] == 6

    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    rows_a = pq.read_table(straight / "metrics.parquet").to_pylist()
    rows_b = pq.read_table(resumed / "metrics.parquet").to_pylist()
    keys = ("step", "split", "epoch", "loss", "lm_loss", "fb_loss", "lr", "tokens", "pad_share")
    assert [[r[k] for k in keys] for r in rows_a] == [[r[k] for k in keys] for r in rows_b]


def test_resume_of_a_finished_run_does_nothing(model_tiny_ckpt, model_splits, tmp_path):
    out = tmp_path / "done"
    train(model_tiny_ckpt, model_splits, out, _cfg(max_steps=2))
    assert train(model_tiny_ckpt, model_splits, out, _cfg(max_steps=2), resume=True).skipped
    result = train(model_tiny_ckpt, model_splits, out, _cfg(max_steps=3), resume=True)
    assert not result.skipped and result.extra["steps"] == 3  # another config: trains


def test_keeps_the_last_k_step_checkpoints(model_tiny_ckpt, model_splits, tmp_path):
    out = tmp_path / "keep"
    train(model_tiny_ckpt, model_splits, out, _cfg(max_steps=5, save_every=1, keep_last=2))
    assert [p.name for p in checkpoint.step_dirs(out)] == ["step-3", "step-4"]
    step = out / "checkpoints" / "step-4"
    tensors, progress = checkpoint.read_state(step)  # weights_only=True inside
    assert progress["step"] == 4 and {"optimizer", "scheduler", "rng"} <= set(tensors)
    assert not [p for p in step.iterdir() if p.suffix == ".bin"]
    torch.load(step / checkpoint.STATE_PT, weights_only=True)
    lfft.load(step)  # a step checkpoint is a loadable checkpoint too
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


def test_a_failed_save_leaves_nothing_behind(model_tiny_ckpt, tmp_path, monkeypatch):
    model, tok, head = lfft.load(model_tiny_ckpt)

    def broken(folder, head):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_head", broken)
    target = tmp_path / "ckpt"
    with pytest.raises(OSError):
        checkpoint.save_folder(target, model, tok, head, {"stage": "test"})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_final_save_leaves_the_run_resumable(
    model_tiny_ckpt, model_splits, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    real = checkpoint.save_head

    def full_disk_at_the_end(folder, head):
        if folder.name.startswith(f".{out.name}."):  # the final folder's temporary name
            raise OSError("disk full")
        real(folder, head)

    monkeypatch.setattr(checkpoint, "save_head", full_disk_at_the_end)
    cfg = _cfg(max_steps=2, save_every=1)
    with pytest.raises(OSError):
        train(model_tiny_ckpt, model_splits, out, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary left
    # no lfft.json: unfinished; the TensorBoard curves so far (--report-to auto) are kept
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "tensorboard"]
    assert [p.name for p in checkpoint.step_dirs(out)] == ["step-1"]
    monkeypatch.setattr(checkpoint, "save_head", real)
    result = train(model_tiny_ckpt, model_splits, out, cfg, resume=True)
    assert result.extra["steps"] == 2 and (out / "metrics.parquet").exists()
    assert (out / "checkpoints" / "step-1").is_dir()  # step checkpoints stay in the final folder


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    random.gauss(0, 1)  # leaves a cached gaussian in the python state
    state = checkpoint.rng_state()
    torch.save(state, "/dev/null")
    first = (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(2).tolist())
    checkpoint.set_rng_state(state)
    assert (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(2).tolist()) == first


def test_load_returns_model_tokenizer_and_head(model_tiny_ckpt, model_splits):
    model, tok, head = lfft.load(model_tiny_ckpt)
    assert not model.training and not head.training
    assert tok.pad_token_id is not None and tok.chat_template
    hidden = torch.zeros(2, 3, model.config.hidden_size)
    assert head(hidden).shape == (2, 3)
    with pytest.raises(LfftError, match="not an lfft checkpoint"):
        lfft.load(model_splits)
    with pytest.raises(LfftError, match="no such checkpoint"):
        lfft.load(model_splits / "nope")
