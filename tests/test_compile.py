"""Which modules `--compile` compiles (lfft/model/compile.py): each decoder layer of a
transformers model by default, the whole backbone on request or when no layer stack exists; in
place, so checkpoints keep their keys. (tests/test_smoke_options.py trains through it.)"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from lfft.model.compile import compile_model, decoder_layers
from lfft.model.tiny import llama_config


def _compiled(module: nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def test_layers_scope_compiles_each_decoder_layer_in_place():
    from transformers import LlamaForCausalLM

    lm = LlamaForCausalLM(llama_config("tiny", 64, 32))
    keys = list(lm.state_dict())
    assert compile_model(lm, "layers") == "layers (4 x LlamaDecoderLayer)"
    assert all(_compiled(layer) for layer in lm.model.layers)
    assert not _compiled(lm.model) and list(lm.state_dict()) == keys


def test_model_scope_compiles_the_backbone():
    lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    assert decoder_layers(lm.transformer) is lm.transformer.h  # GPT-2's stack is `h`
    assert compile_model(lm, "model") == "model"
    assert _compiled(lm.transformer) and not any(_compiled(b) for b in lm.transformer.h)


def test_a_backbone_without_a_layer_stack_falls_back_to_the_whole_model():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.base_model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))

    lm = Flat()
    assert decoder_layers(lm.base_model) is None
    assert compile_model(lm, "layers") == "model"
    assert _compiled(lm.base_model)
    assert torch.isfinite(lm.base_model(torch.ones(2, 4))).all()


def test_identical_layers_share_one_compiled_graph():
    """Why regional compilation starts fast: 4 layers, one graph (whole-backbone: one graph that
    holds all 4), through forward and backward at two sequence lengths."""
    from torch._dynamo.utils import counters
    from transformers import LlamaForCausalLM

    torch._dynamo.reset()
    counters.clear()
    lm = LlamaForCausalLM(llama_config("tiny", 64, 32))
    compile_model(lm, "layers")
    for length in (10, 13):
        ids = torch.randint(0, 64, (2, length))
        lm.model(input_ids=ids, use_cache=False).last_hidden_state.sum().backward()
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["recompiles"]


def test_layers_are_found_under_a_lora_wrapper():
    import peft
    from transformers import LlamaForCausalLM

    lm = LlamaForCausalLM(llama_config("tiny", 64, 32))
    config = peft.LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")
    wrapped = peft.get_peft_model(lm, config)
    assert compile_model(wrapped, "layers") == "layers (4 x LlamaDecoderLayer)"
    assert all(_compiled(layer) for layer in lm.model.layers)


@pytest.mark.usefixtures("model_one_thread")
def test_compiled_layers_with_grad_checkpointing_train_like_eager(
    model_tiny_ckpt, model_splits, tmp_path
):
    """Three steps of `--compile --grad-checkpointing` (the checkpointed forward runs inside each
    compiled layer) take the eager run's losses and save the eager run's keys."""
    import pyarrow.parquet as pq
    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM

    from lfft.config import TrainConfig
    from lfft.model.train import train

    def losses(out, **kw) -> list[float]:
        cfg = TrainConfig(
            max_steps=3, batch_size=8, lr=1e-2, warmup_steps=0, log_every=1, eval_every=0,
            save_every=0, **kw,
        )  # fmt: skip
        train(model_tiny_ckpt, model_splits, out, cfg)
        rows = pq.read_table(out / "metrics.parquet").to_pylist()
        return [r["loss"] for r in rows if r["split"] == "train"]

    torch._dynamo.reset()
    counters.clear()
    eager = losses(tmp_path / "eager")
    compiled = losses(tmp_path / "compiled", compile=True, grad_checkpointing=True)
    assert counters["stats"]["unique_graphs"] > 0, "torch.compile compiled nothing"
    assert len(compiled) == 3
    assert compiled == pytest.approx(eager, rel=1e-4)  # float rounding only (fused kernels)
    info = json.loads((tmp_path / "compiled" / "lfft.json").read_text())
    assert info["compiled"] == "layers (2 x LlamaDecoderLayer)"
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "compiled").state_dict()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "eager").state_dict()
    assert list(saved) == list(plain)


def test_an_unknown_scope_is_a_one_line_error():
    import pytest

    from lfft.errors import ConfigError

    lm = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(ConfigError, match="--compile-scope 'layer'"):
        compile_model(lm, "layer")
