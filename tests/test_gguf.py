"""`lfft init --base model.gguf`: a tiny Llama written as a quantized GGUF (with the ``gguf``
package, the way llama.cpp lays one out) is de-quantized into a checkpoint that computes what the
original model computes, and trains; without the ``gguf`` extra the user gets one line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from lfft.config import InitConfig
from lfft.errors import LfftError
from lfft.model.init import init

LAYERS, HIDDEN, HEADS, KV_HEADS, FFN = 2, 32, 4, 2, 64

# transformers name -> llama.cpp name (per layer: blk.N.*)
LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _llama_cpp_permute(weight, heads: int):
    """llama.cpp stores q/k rows interleaved for its rotary kernel (convert_hf_to_gguf.py)."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_gguf(path: Path, model, tokenizer) -> Path:
    """``model`` (a LlamaForCausalLM) and its byte-level BPE ``tokenizer`` as one .gguf file:
    the metadata transformers reads, Q8_0 matrices and float32 norms and embeddings."""
    import gguf

    cfg = model.config
    vocab = [tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    special = set(tokenizer.all_special_tokens)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("lfft-test-tiny")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(len(vocab))
    writer.add_tokenizer_model("gpt2")  # byte-level BPE
    writer.add_token_list(vocab)
    writer.add_token_types([3 if t in special else 1 for t in vocab])  # 3: control token
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for i in range(cfg.num_hidden_layers):
        for hf, cpp in LAYER_NAMES.items():
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{cpp}.weight"
    state = model.state_dict()
    assert set(state) == set(names), set(state) ^ set(names)
    for hf, cpp in names.items():
        weight = state[hf].float().numpy()
        if ".attn_q." in cpp:
            weight = _llama_cpp_permute(weight, cfg.num_attention_heads)
        elif ".attn_k." in cpp:
            weight = _llama_cpp_permute(weight, cfg.num_key_value_heads)
        if weight.ndim == 2 and cpp != "token_embd.weight":
            q8 = gguf.GGMLQuantizationType.Q8_0
            packed = gguf.quants.quantize(weight, q8)
            writer.add_tensor(cpp, packed, raw_shape=packed.shape, raw_dtype=q8)
        else:
            writer.add_tensor(cpp, weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(model_splits, tmp_path_factory):
    """(path of the .gguf, the model it holds, its tokenizer); no tokenizer files beside it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lfft.model.tokenizer import split_texts, train_tokenizer

    tokenizer = train_tokenizer(split_texts(model_splits / "train.parquet"), 400)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # weights large enough that attention is far from uniform: a wrong
        for p in model.parameters():  # q/k layout then shows in the logits
            p.normal_(0, 0.3) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("gguf")
    return write_gguf(folder / "tiny.gguf", model, tokenizer), model, tokenizer


def _lfft(*args: str) -> None:
    """``lfft ARGS`` through the command line (in this process)."""
    from typer.testing import CliRunner

    from lfft.cli import app

    result = CliRunner().invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output


def test_init_from_a_gguf_file_then_train(tiny_gguf, model_splits, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, original, original_tok = tiny_gguf
    ckpt = tmp_path / "init"
    _lfft("init", "--base", str(path), "--out", str(ckpt))
    config = json.loads((ckpt / "config.json").read_text())
    assert "quantization_config" not in config  # de-quantized: a plain dense checkpoint
    assert (config["num_hidden_layers"], config["hidden_size"]) == (LAYERS, HIDDEN)
    assert config["num_key_value_heads"] == KV_HEADS
    assert json.loads((ckpt / "lfft.json").read_text())["base_kind"] == "gguf"

    model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    text = "What is 7 + 5? The answer is 12."
    ids = original_tok(text, add_special_tokens=False)["input_ids"]
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    with torch.no_grad():
        want = original(torch.tensor([ids])).logits
        got = model(torch.tensor([ids])).logits
    # Q8_0 rounds each weight to 1/127 of its block's largest: here the logits then differ by
    # ~3% of their largest; a wrong q/k layout differs by ~100% (measured when this was written)
    torch.testing.assert_close(got, want, atol=0.1 * want.abs().max().item(), rtol=0)

    final = tmp_path / "final"
    args = ["--model", str(ckpt), "--data", str(model_splits), "--out", str(final)]
    _lfft("train", *args, "--max-steps", "1", "--batch-size", "8")
    info = json.loads((final / "lfft.json").read_text())
    assert info["complete"] and info["metrics"]["steps"] == 1
    trained = AutoModelForCausalLM.from_pretrained(final).state_dict()
    before = model.state_dict()
    assert any(not torch.equal(trained[k], before[k]) for k in before)


@pytest.mark.parametrize("package", ["gguf", "accelerate"])
def test_a_missing_package_is_one_line_naming_the_extra(package, tmp_path, monkeypatch, capsys):
    from lfft.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    argv = ["lfft", "init", "--base", str(tmp_path / "m.gguf"), "--out", str(tmp_path / "x")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert package in err and "pip install 'lfft[gguf]'" in err
    assert not (tmp_path / "x").exists()


def test_an_import_error_while_loading_names_the_extra(tiny_gguf, tmp_path, monkeypatch):
    import transformers

    def fail(*args, **kwargs):
        raise ImportError("Please install torch and gguf>=0.10.0 to load a GGUF checkpoint.")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fail)
    with pytest.raises(LfftError, match=r"gguf>=0.10.0.*pip install 'lfft\[gguf\]'") as e:
        init(tmp_path / "x", InitConfig(base=str(tiny_gguf[0])))
    assert "\n" not in str(e.value)
