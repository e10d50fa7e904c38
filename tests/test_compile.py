"""`lfft train --compile --compile-scope layers|model`: a compiled run takes the steps of an eager
one and saves the same checkpoint keys; what is compiled is found in any transformers backbone and
falls back to the whole backbone."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from lfft.cli import app
from lfft.config import TrainConfig
from lfft.model.compile import compile_model, layer_list
from lfft.model.train import train

pytestmark = pytest.mark.usefixtures("model_one_thread")


def _run(ckpt, splits, out, **kw) -> list[float]:
    """The train losses of a 3-step run, one logged row per step."""
    cfg = TrainConfig(
        max_steps=3, batch_size=8, lr=1e-2, warmup_steps=0, log_every=1, eval_every=0,
        save_every=0, **kw,
    )  # fmt: skip
    train(ckpt, splits, out, cfg)
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    return [r["loss"] for r in rows if r["split"] == "train"]


def test_layers_scope_trains_like_eager_and_saves_the_same_keys(
    model_tiny_ckpt, model_splits, tmp_path
):
    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM

    torch._dynamo.reset()
    counters.clear()
    eager = _run(model_tiny_ckpt, model_splits, tmp_path / "eager")
    # with gradient checkpointing too: the checkpointed forward runs inside each compiled layer
    compiled = _run(
        model_tiny_ckpt, model_splits, tmp_path / "compiled", compile=True, grad_checkpointing=True
    )
    assert len(compiled) == 3
    assert counters["stats"]["unique_graphs"] > 0, "torch.compile compiled nothing"
    # the same losses up to float rounding (fused kernels sum in another order)
    assert compiled == pytest.approx(eager, rel=1e-4)
    info = json.loads((tmp_path / "compiled" / "lfft.json").read_text())
    assert info["config"]["compile_scope"] == "layers"
    assert info["compiled"] == "layers (2 x LlamaDecoderLayer)"
    assert json.loads((tmp_path / "eager" / "lfft.json").read_text())["compiled"] is None
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "compiled").state_dict()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "eager").state_dict()
    assert list(saved) == list(plain)
    assert all(torch.isfinite(w).all() for w in saved.values())


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=16, n_head=2, n_positions=32))


def test_layers_are_found_by_shape_not_name():
    lm = _gpt2()  # its blocks are `transformer.h`
    keys = list(lm.state_dict())
    assert compile_model(lm, "layers") == "layers (3 x GPT2Block)"
    assert all(block._compiled_call_impl is not None for block in lm.transformer.h)
    assert lm.transformer._compiled_call_impl is None
    assert list(lm.state_dict()) == keys  # no `_orig_mod.` in what a checkpoint saves


def test_layers_are_found_under_lora():
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")
    lm = peft.get_peft_model(_gpt2(), config)
    keys = list(lm.state_dict())
    assert compile_model(lm, "layers") == "layers (3 x GPT2Block)"
    assert all(block._compiled_call_impl is not None for block in lm.base_model.model.transformer.h)
    assert list(lm.state_dict()) == keys


def test_model_scope_compiles_the_backbone():
    lm = _gpt2()
    assert compile_model(lm, "model") == "model"
    assert lm.transformer._compiled_call_impl is not None
    assert all(block._compiled_call_impl is None for block in lm.transformer.h)


class _NoLayers(nn.Module):
    """A backbone whose blocks are plain attributes, not a list."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)
        self.heads = nn.ModuleList([nn.Linear(4, 4), nn.ReLU()])  # a list, but not of one kind

    @property
    def base_model(self):
        return self


def test_without_a_layer_list_the_backbone_is_compiled():
    lm = _NoLayers()
    assert layer_list(lm) is None
    assert compile_model(lm, "layers") == "model"
    assert lm._compiled_call_impl is not None


def test_train_help_names_the_scope():
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--compile-scope" in result.output
