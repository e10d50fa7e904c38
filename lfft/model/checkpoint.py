"""Checkpoint folders: save, load, training state, and keeping the last K.

A checkpoint is a folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load as they are (safetensors only), plus
``feedback_head.safetensors`` and ``lfft.json`` (what produced it). A step checkpoint under
``out/checkpoints/step-N/`` adds the training state: ``trainer_state.pt`` (optimizer, scheduler
and RNG states: tensors and plain containers only, read back with ``weights_only=True``) and
``trainer_state.json`` (step, data-order position, early-stopping state, metrics so far).
Every folder is written under a temporary name and renamed, so a kill never leaves half of one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lfft.errors import LfftError
from lfft.io import atomic_path, write_json_atomic
from lfft.model.head import HEAD_FILE, FeedbackHead

INFO_FILE = "lfft.json"
STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
ADAPTER_FILE = "adapter.safetensors"  # LoRA step checkpoints: adapter weights (resume only)
CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")


def quiet_transformers() -> None:
    """No per-shard progress bars from transformers (lfft shows its own progress)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def read_info(path: str | Path) -> dict[str, Any]:
    """A checkpoint's ``lfft.json``; a clear error when the folder is not an lfft checkpoint."""
    path = Path(path)
    if not path.is_dir():
        raise LfftError(f"{path}: no such checkpoint folder (make one with `lfft init --out ...`)")
    info = path / INFO_FILE
    if not info.exists() or not (path / HEAD_FILE).exists():
        raise LfftError(
            f"{path}: not an lfft checkpoint (no {INFO_FILE} / {HEAD_FILE}); "
            f"make one with `lfft init --base {path} --out CKPT`"
        )
    return json.loads(info.read_text(encoding="utf-8"))


def write_model(folder: Path, model, tokenizer, head: FeedbackHead, info: dict[str, Any]) -> None:
    """Write model (safetensors), tokenizer, head and ``lfft.json`` into an existing folder."""
    quiet_transformers()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    head.save(folder)
    info = {**info, "head": head.config}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")


def save_folder(path: Path, model, tokenizer, head, info, extra_files=None) -> None:
    """Write a whole checkpoint folder atomically; ``extra_files(tmp)`` adds more files first."""
    with atomic_path(path) as tmp:
        tmp.mkdir()
        write_model(tmp, model, tokenizer, head, info)
        if extra_files is not None:
            extra_files(tmp)


def load_model(path: str | Path, device="cpu", dtype: torch.dtype | None = None):
    """The causal LM of a checkpoint (any transformers-loadable folder)."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    info = read_info(path)
    model = AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=dtype or torch.float32,
        trust_remote_code=bool(info.get("trust_remote_code", False)),
    )
    return model.to(device)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    info = read_info(path)
    return AutoTokenizer.from_pretrained(
        str(path), trust_remote_code=bool(info.get("trust_remote_code", False))
    )


def load_head(path: str | Path, device="cpu") -> FeedbackHead:
    info = read_info(path)
    return FeedbackHead.from_config(info["head"]).load(path, device).to(device)


def load(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Load a checkpoint: ``(model, tokenizer, feedback_head)``, model and head in eval mode.

    >>> model, tok, head = lfft.load("ckpt/final")  # doctest: +SKIP
    """
    model = load_model(path, device, dtype).eval()
    head = load_head(path, device).eval()
    return model, load_tokenizer(path), head


# --- training state --------------------------------------------------------------------------


def rng_state() -> dict[str, torch.Tensor]:
    """Python, numpy, torch (and CUDA) RNG states, as tensors."""
    version, py_state, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python_version": torch.tensor(version),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": torch.tensor(float("nan") if gauss is None else gauss, dtype=torch.float64),
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": torch.tensor(np_pos),
        "numpy_gauss": torch.tensor([np_has_gauss, np_gauss], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda_{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    gauss = float(state["python_gauss"])
    random.setstate(
        (
            int(state["python_version"]),
            tuple(int(x) for x in state["python"].tolist()),
            None if gauss != gauss else gauss,
        )
    )
    has_gauss, cached = state["numpy_gauss"].tolist()
    np.random.set_state(
        (
            "MT19937",
            state["numpy"].numpy().astype(np.uint32),
            int(state["numpy_pos"]),
            int(has_gauss),
            cached,
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def write_state(folder: Path, tensors: dict[str, Any], progress: dict[str, Any]) -> None:
    torch.save(tensors, folder / STATE_PT)
    (folder / STATE_JSON).write_text(json.dumps(progress, indent=1, default=str) + "\n")


def read_state(folder: Path, device="cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    tensors = torch.load(folder / STATE_PT, map_location=device, weights_only=True)
    progress = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    return tensors, progress


def step_dirs(out: str | Path) -> list[Path]:
    """Complete step checkpoints under ``out/checkpoints``, oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found) if (p / STATE_JSON).exists()]


def step_dir(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step-{step}"


def prune(out: str | Path, keep: int) -> None:
    """Delete all but the last ``keep`` step checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for old in step_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def write_info(path: str | Path, info: dict[str, Any]) -> None:
    write_json_atomic(Path(path) / INFO_FILE, info)
