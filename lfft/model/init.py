"""``lfft init``: a starting checkpoint = a causal LM + a fresh feedback head + ``lfft.json``.

The base is ``tiny`` (a Llama-style model built from a config, with a byte-level BPE trained on
the train split: fully offline), a local folder, a ``.gguf`` file (de-quantized by transformers;
needs the optional ``gguf`` package) or a Hugging Face Hub id (the local cache first; the network
only when ``HF_HUB_OFFLINE`` is not set).

    lfft init --out ckpt/init --data splits/train.parquet
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from lfft import __version__
from lfft.config import InitConfig, as_dict
from lfft.errors import LfftError
from lfft.io import _hash_json, count_rows, fingerprints
from lfft.model import checkpoint
from lfft.model.defaults import is_pretrained
from lfft.model.head import FeedbackHead
from lfft.model.tiny import llama_config
from lfft.model.tokenizer import make_chat_ready, split_texts, train_tokenizer
from lfft.report import StageResult


def init(out: str | Path, cfg: InitConfig) -> StageResult:
    """Write the checkpoint folder ``out`` (atomically) and return the stage summary."""
    start = time.perf_counter()
    out = Path(out)
    checkpoint.quiet_transformers()
    torch.manual_seed(cfg.seed)
    model, tokenizer, kind = load_base(cfg)
    pretrained = is_pretrained_base(cfg.base, kind)
    changed = make_chat_ready(tokenizer)
    hidden = model.get_output_embeddings().in_features
    torch.manual_seed(cfg.seed + 1)
    head = FeedbackHead(hidden)
    inputs = fingerprints([cfg.data]) if cfg.data else {}
    config = as_dict(cfg)
    params = sum(p.numel() for p in model.parameters())
    info = {
        "stage": "init",
        "version": __version__,
        "base": cfg.base,
        "base_kind": kind,
        "pretrained": pretrained,  # sets train's defaults (lfft/model/defaults.py)
        "config": config,
        "inputs": inputs,
        "trust_remote_code": cfg.trust_remote_code,
        "tokenizer_changes": changed,
        "model": {"type": model.config.model_type, "parameters": params},
        "fingerprint": _hash_json({"stage": "init", "config": config, "inputs": inputs}),
    }
    checkpoint.save_folder(out, model, tokenizer, head, info)
    rows = count_rows(cfg.data) if cfg.data else 0
    return StageResult(
        stage="init",
        rows_in=rows,
        rows_out=rows,
        seconds=time.perf_counter() - start,
        outputs={"checkpoint": out},
        extra={
            "base": f"{cfg.base} ({kind}, {'pretrained' if pretrained else 'from scratch'})",
            "model": model.config.model_type,
            "parameters": params,
            "vocab": len(tokenizer),
            "hidden": hidden,
        },
    )


def load_base(cfg: InitConfig):
    """``(model, tokenizer, kind)`` for ``cfg.base``."""
    base = cfg.base
    if base == "tiny":
        return (*_tiny(cfg), "tiny")
    path = Path(base).expanduser()
    if base.endswith(".gguf") or cfg.gguf_file:
        return (*_gguf(path, cfg), "gguf")
    if path.is_dir():
        return (*_pretrained(str(path), cfg, local_files_only=True), "local")
    if path.exists() or base.startswith((".", "/", "~")) or os.sep * 2 in base:
        raise LfftError(f"--base {base}: no such model folder")
    return (*_hub(base, cfg), "hub")


def is_pretrained_base(base: str, kind: str) -> bool:
    """Whether the weights of a base of this ``kind`` were trained before: the tiny base's are
    random; a folder that is itself an lfft checkpoint keeps the flag its ``lfft.json`` holds."""
    if kind == "tiny":
        return False
    info = Path(base).expanduser() / checkpoint.INFO_FILE
    if kind == "local" and info.is_file():
        return is_pretrained(json.loads(info.read_text(encoding="utf-8")))[0]
    return True


def _tiny(cfg: InitConfig):
    from transformers import LlamaForCausalLM

    texts = split_texts(cfg.data) if cfg.data else ()
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    config = llama_config(
        cfg.preset,
        vocab_size=len(tokenizer),
        max_length=cfg.max_length,
        layers=cfg.layers,
        hidden=cfg.hidden,
        heads=cfg.heads,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _pretrained(name: str, cfg: InitConfig, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust = cfg.trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            name, trust_remote_code=trust, dtype="auto", **kwargs
        )
    except ValueError as e:
        if "trust_remote_code" in str(e) and not trust:
            raise LfftError(f"--base {name}: runs its own code; pass --trust-remote-code") from None
        raise LfftError(f"--base {name}: not a causal LM transformers can load ({_line(e)})") from e
    return model, tokenizer


def _hub(name: str, cfg: InitConfig):
    """The local Hugging Face cache first; then the Hub unless offline mode is on."""
    try:
        return _pretrained(name, cfg, local_files_only=True)
    except OSError:
        pass
    if _offline():
        raise LfftError(
            f"--base {name}: not a local folder and not in the Hugging Face cache, and "
            "HF_HUB_OFFLINE is set; download it first or pass a local folder"
        )
    try:
        return _pretrained(name, cfg)
    except OSError as e:
        msg = f"--base {name}: could not load it from the Hugging Face Hub ({_line(e)})"
        raise LfftError(msg) from None


GGUF_NEEDS = ("gguf", "accelerate")  # transformers loads a .gguf only with both (the gguf extra)


def _gguf(path: Path, cfg: InitConfig):
    missing = [name for name in GGUF_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        needs = " and ".join(missing)
        raise LfftError(f"a .gguf base needs {needs}: pip install 'lfft[gguf]'")
    if cfg.gguf_file:  # --base FOLDER_OR_HUB_ID with gguf_file = name inside it
        folder, name = cfg.base, cfg.gguf_file
    elif not path.is_file():
        raise LfftError(f"--base {path}: no such .gguf file")
    else:
        folder, name = str(path.parent), path.name
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # dequantize: a plain dense model, trainable and saved as ordinary safetensors
    quant = GgufConfig(gguf_file=name, dequantize=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, quantization_config=quant
        )
    except ImportError as e:  # a package transformers needs for this file
        raise LfftError(f"--base {path}: {_line(e)} (pip install 'lfft[gguf]')") from None
    if Path(folder, "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(folder)  # exported tokenizer files beside it
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    return model, tokenizer


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return value.upper() in ("1", "ON", "YES", "TRUE")


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
