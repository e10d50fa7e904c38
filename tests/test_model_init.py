"""`lfft init`: the tiny base, a local folder, hub ids offline, .gguf; what the folder holds."""

from __future__ import annotations

import json

import pytest
import torch

from lfft.config import InitConfig
from lfft.errors import LfftError
from lfft.model.init import init
from lfft.model.tiny import PRESETS, llama_config


def test_tiny_checkpoint_loads_with_transformers_alone(model_tiny_ckpt, model_splits):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = {p.name for p in model_tiny_ckpt.iterdir()}
    assert {"model.safetensors", "feedback_head.safetensors", "lfft.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    model = AutoModelForCausalLM.from_pretrained(model_tiny_ckpt)
    tok = AutoTokenizer.from_pretrained(model_tiny_ckpt)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok) <= 400
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|im_end|>"
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok("The answer is 4.", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "The answer is 4."
    assert len(ids) < len("The answer is 4.")  # BPE merges learnt from the data

    info = json.loads((model_tiny_ckpt / "lfft.json").read_text())
    assert info["base"] == "tiny" and info["config"]["hidden"] == 32
    assert list(info["inputs"]) == [str(model_splits / "train.parquet")]
    assert info["head"]["hidden_size"] == 32 and info["fingerprint"]


def test_same_seed_same_checkpoint(tmp_path, model_splits):
    cfg = InitConfig(data=str(model_splits / "train.parquet"), layers=1, hidden=32, vocab_size=300)
    init(tmp_path / "a", cfg)
    init(tmp_path / "b", cfg)
    for name in ("model.safetensors", "tokenizer.json", "feedback_head.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_without_data_the_tokenizer_is_bytes_only(tmp_path):
    result = init(tmp_path / "c", InitConfig(layers=1, hidden=32))
    assert result.extra["vocab"] == 256 + 4  # the byte alphabet and the special tokens


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_sizes(preset):
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(llama_config(preset, vocab_size=2048, max_length=512))
    n = sum(p.numel() for p in model.parameters())
    low, high = {"tiny": (1e6, 4e6), "small": (5e6, 40e6), "125m": (100e6, 150e6)}[preset]
    assert low <= n <= high


def test_explicit_sizes_override_the_preset():
    cfg = llama_config("small", 500, 128, layers=3, hidden=64, heads=2)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (3, 64, 2)
    with pytest.raises(LfftError, match="not divisible"):
        llama_config("tiny", 500, 128, hidden=50, heads=4)


def _gpt2_style_tokenizer():
    """A byte-level BPE like GPT-2's: ``<|endoftext|>`` is bos, eos and unk; no pad token and no
    chat template (what lfft must add)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["Hello world.", "What is 2 + 2? The answer is 4."] * 5, trainer)
    end = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=end, eos_token=end, unk_token=end
    )


def test_local_folder_base(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    base = tmp_path / "gpt2-tiny"
    tok = _gpt2_style_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tok))
    GPT2LMHeadModel(config).save_pretrained(base)
    tok.save_pretrained(base)
    result = init(tmp_path / "ckpt", InitConfig(base=str(base)))
    assert result.extra["model"] == "gpt2" and result.extra["hidden"] == 32
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    assert model.config.n_embd == 32
    assert tok2.pad_token == tok2.eos_token == "<|endoftext|>"  # padded with eos
    assert "<|im_start|>assistant" in tok2.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    info = json.loads((tmp_path / "ckpt" / "lfft.json").read_text())
    assert info["base_kind"] == "local" and "chat_template" in info["tokenizer_changes"]


def test_hub_id_not_cached_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(LfftError, match="not in the Hugging Face cache") as e:
        init(tmp_path / "x", InitConfig(base="someone/no-such-model"))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()


def test_missing_local_path(tmp_path):
    with pytest.raises(LfftError, match="no such model folder"):
        init(tmp_path / "x", InitConfig(base=str(tmp_path / "nope")))
