"""Distributed training on 2 CPU processes (gloo): the same loss curve and weights as one process
with the same global batch; FSDP2 resumes a checkpoint and writes the optimizer state in torch's
own layout; each step's micro-batches are split over ranks with nothing duplicated or dropped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

import lfft
from lfft.config import TrainConfig
from lfft.errors import LfftError
from lfft.model import checkpoint, distributed
from lfft.model.train import train

# 40 examples in batches of 6 = 7 micro-batches per epoch. One process accumulates 2 per step;
# 2 processes take 1 each, so the 4th step of an epoch has one micro-batch and a filler.
SETTINGS = dict(max_steps=6, batch_size=6, lr=3e-3, warmup_steps=1, log_every=1, eval_every=2)
SETTINGS.update(save_every=2, seed=3, device="cpu")


def _flags(**kw) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in {**SETTINGS, **kw}.items()]


def _start(ckpt, splits, out, *extra: str) -> subprocess.Popen:
    """``lfft train --nproc 2 ...`` (torchrun, 2 gloo processes) with 1 micro-batch per rank."""
    cmd = [sys.executable, "-m", "lfft", "train", "--nproc", "2", "--model", str(ckpt)]
    cmd += ["--data", str(splits), "--out", str(out), *_flags(grad_accum=1), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows(folder) -> list[dict]:
    return pq.read_table(folder / "metrics.parquet").to_pylist()


def _weights(folder) -> dict[str, torch.Tensor]:
    model, _, head = lfft.load(folder)
    return {**model.state_dict(), **{"head." + k: v for k, v in head.state_dict().items()}}


def _assert_same_run(a, b) -> None:
    """Same loss curve (train and val) within float tolerance, and the same final weights."""
    rows_a, rows_b = _rows(a), _rows(b)
    assert [(r["step"], r["split"], r["tokens"]) for r in rows_a] == [
        (r["step"], r["split"], r["tokens"]) for r in rows_b
    ]
    for key in ("loss", "lm_loss", "fb_loss", "grad_norm", "epoch", "lr"):
        got = [r[key] for r in rows_b if r[key] is not None]
        want = [r[key] for r in rows_a if r[key] is not None]
        assert got == pytest.approx(want, rel=1e-5), key
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def runs(model_tiny_ckpt, model_splits, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """The reference (one process, 2 micro-batches per step: the global batch of 2 ranks x 1),
    a DDP run, and an FSDP run resumed from the reference's step-2 checkpoint (as after a kill),
    all three at the same time where they can. ``{name: (out folder, printed text)}``."""
    root = tmp_path_factory.mktemp("distributed")
    single = root / "single"
    procs = {"ddp": _start(model_tiny_ckpt, model_splits, root / "ddp")}
    try:
        train(model_tiny_ckpt, model_splits, single, TrainConfig(**SETTINGS, grad_accum=2))
        shutil.copytree(checkpoint.step_dir(single, 2), checkpoint.step_dir(root / "fsdp", 2))
        procs["fsdp"] = _start(model_tiny_ckpt, model_splits, root / "fsdp", "--fsdp", "--resume")
        printed = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()  # no-op once finished
    for name, proc in procs.items():
        assert proc.returncode == 0, printed[name]
    return {"single": (single, ""), **{name: (root / name, printed[name]) for name in procs}}


def test_ddp_on_two_processes_matches_one_process(runs):
    (single, _), (out, printed) = runs["single"], runs["ddp"]
    _assert_same_run(single, out)
    info = json.loads((out / "lfft.json").read_text())
    assert info["complete"] and info["distributed"]["world_size"] == 2
    assert info["distributed"]["strategy"] == "ddp"
    assert [p.name for p in checkpoint.step_dirs(out)] == ["step-2", "step-4"]
    assert printed.count("step      6/6") == 1 and printed.count("lfft train") == 1  # rank 0


def test_fsdp_resumes_and_saves_in_the_single_process_layout(runs):
    (single, _), (out, _) = runs["single"], runs["fsdp"]
    _assert_same_run(single, out)
    assert json.loads((out / "lfft.json").read_text())["distributed"]["strategy"] == "fsdp"
    # the step-4 optimizer state was gathered into torch's Optimizer.state_dict() layout
    want, _ = checkpoint.read_state(checkpoint.step_dir(single, 4))
    got, _ = checkpoint.read_state(checkpoint.step_dir(out, 4))
    want, got = want["optimizer"], got["optimizer"]
    assert got["state"].keys() == want["state"].keys()
    for i, state in want["state"].items():
        for k, v in state.items():
            torch.testing.assert_close(got["state"][i][k], v, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_each_micro_batch_goes_to_exactly_one_rank(world, n):
    batches = [[i] for i in range(n)]
    shares = [distributed.share(batches, r, world) for r in range(world)]
    assert len({len(mine) + filler for mine, filler in shares}) == 1  # as many passes per rank
    got = sorted(b[0] for mine, _ in shares for b in mine)
    assert got == list(range(n))


def test_nproc_launches_torchrun_without_the_option(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed.subprocess, "call", lambda cmd: calls.append(cmd) or 3)
    argv = ["train", "--nproc", "4", "--model", "m", "--nproc=4", "--fsdp"]
    assert distributed.launch(4, argv) == 3
    cmd = calls[0]
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=4" in cmd
    assert cmd[cmd.index("lfft") :] == ["lfft", "train", "--model", "m", "--fsdp"]


def test_fsdp_without_several_processes_is_a_one_line_error(
    model_tiny_ckpt, model_splits, tmp_path, monkeypatch
):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(LfftError, match="--nproc"):
        train(model_tiny_ckpt, model_splits, tmp_path / "x", TrainConfig(fsdp=True, max_steps=1))


def test_fsdp_gathers_the_full_weights_to_save_without_drawing_random_numbers():
    """A step checkpoint's RNG state is taken before the save; a save that drew random numbers
    would make the resumed run's randomness (dropout) differ from the uninterrupted one."""
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM

    from lfft.model.feedback_lm import FeedbackLM
    from lfft.model.head import FeedbackHead

    config = LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    lm, head = LlamaForCausalLM(config), FeedbackHead(32)
    want = {"lm." + k: v.clone() for k, v in lm.state_dict().items()}
    want.update({"head." + k: v.clone() for k, v in head.state_dict().items()})
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    try:
        ctx = distributed.Context(1, 0, 0, torch.device("cpu"), fsdp=True, owner=False)
        model, _ = distributed.wrap(FeedbackLM(lm, head), None, ctx)
        rng = torch.get_rng_state()
        got_lm, got_head = checkpoint.trained_parts(model)
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        dist.destroy_process_group()
    got = {"lm." + k: v for k, v in got_lm.state_dict().items()}
    got.update({"head." + k: v for k, v in got_head.state_dict().items()})
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
