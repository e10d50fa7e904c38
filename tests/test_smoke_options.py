"""`lfft train --compile` and `--grad-checkpointing` on the CPU: each runs a real step through the
command line, writes a checkpoint transformers loads, and takes the same step as a plain run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from lfft.cli import app

pytestmark = pytest.mark.usefixtures("model_one_thread")


def _train(ckpt: Path, splits: Path, out: Path, *options: str) -> dict[str, float]:
    """One optimizer step through ``lfft train``: the step's logged loss and gradient norm, and
    how many times a feed-forward block of the (Llama) model ran."""
    from transformers import AutoModelForCausalLM
    from transformers.models.llama.modeling_llama import LlamaMLP

    calls = 0
    forward = LlamaMLP.forward

    def counted(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        return forward(self, *args, **kwargs)

    args = ["train", "--model", str(ckpt), "--data", str(splits), "--out", str(out)]
    args += ["--max-steps", "1", "--batch-size", "8", "--lr", "1e-2", "--warmup-steps", "0"]
    args += ["--eval-every", "0", "--save-every", "0", "--seed", "0", "-q", *options]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LlamaMLP, "forward", counted)
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "lfft.json").read_text())
    assert info["complete"] and info["metrics"]["steps"] == 1
    before = AutoModelForCausalLM.from_pretrained(ckpt).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert after.keys() == before.keys()
    assert any(not torch.equal(after[k], before[k]) for k in before), "the step moved no weight"
    assert all(torch.isfinite(w).all() for w in after.values())
    steps = pq.read_table(out / "metrics.parquet").to_pylist()
    (step,) = [s for s in steps if s["split"] == "train"]
    return {
        "loss": step["loss"],
        "grad_norm": step["grad_norm"],
        "mlp_calls": calls,
        "compiled": info.get("compiled"),
    }


@pytest.fixture(scope="module")
def plain_step(model_tiny_ckpt, model_splits, tmp_path_factory) -> dict[str, float]:
    return _train(model_tiny_ckpt, model_splits, tmp_path_factory.mktemp("plain") / "out")


# Same forward (the loss) and the same backward (the gradient norm) as a plain step. Weights are
# not compared: Adam's first step is about lr * sign(gradient), so a rounding difference in a
# gradient near 0 moves that weight by up to 2 * lr.


def test_grad_checkpointing_takes_the_same_step(
    model_tiny_ckpt, model_splits, plain_step, tmp_path
):
    got = _train(model_tiny_ckpt, model_splits, tmp_path / "gc", "--grad-checkpointing")
    assert got["mlp_calls"] > plain_step["mlp_calls"]  # the backward pass ran the layers again
    same = ("loss", "grad_norm")
    assert [got[k] for k in same] == pytest.approx([plain_step[k] for k in same], rel=1e-5)


def test_compile_takes_the_same_step(model_tiny_ckpt, model_splits, plain_step, tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    got = _train(model_tiny_ckpt, model_splits, tmp_path / "compiled", "--compile")
    assert counters["stats"]["unique_graphs"] > 0, "torch.compile compiled nothing"
    assert got["compiled"] == "layers (2 x LlamaDecoderLayer)"  # regional by default
    same = ("loss", "grad_norm")  # (in compiled code the feed-forward calls are not counted)
    assert [got[k] for k in same] == pytest.approx([plain_step[k] for k in same], rel=1e-4)
