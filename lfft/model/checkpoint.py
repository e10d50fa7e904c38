"""Checkpoint folders: their layout, save, load, training state, and keeping the last K.

A checkpoint is a folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load as they are (safetensors only), plus
``feedback_head.safetensors`` and ``lfft.json`` (what produced it). A training output adds
``metrics.parquet`` and ``checkpoints/``: step checkpoints ``step-N/`` (and ``best/`` with early
stopping), each a checkpoint plus the training state: ``trainer_state.pt`` (optimizer, scheduler
and RNG states: tensors and plain containers only, read back with ``weights_only=True``) and
``trainer_state.json`` (step, data-order position, early-stopping state, metrics so far).
Every folder is written under a temporary name and renamed (:func:`lfft.io.atomic_path`), so a
kill never leaves half of one.

The layout names below are imported wherever a checkpoint folder is read (the pipeline, online
learning, evaluation); this module imports torch only inside the functions that need it.
Under DDP/FSDP every rank calls the saving functions (FSDP gathers the full state from all ranks)
and only the writing rank (rank 0) gets something to write.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lfft.errors import LfftError
from lfft.io import atomic_path, write_json_atomic

if TYPE_CHECKING:
    import torch

    from lfft.model.head import FeedbackHead

INFO_FILE = "lfft.json"  # what produced the folder; a training output says "complete" at the end
HEAD_FILE = "feedback_head.safetensors"
METRICS_FILE = "metrics.parquet"  # training outputs: one row per logged step and validation
CHECKPOINTS = "checkpoints"  # training outputs: step-N/ (resume) and best/ (early stopping)
BEST = "best"
STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
ADAPTER_FILE = "adapter.safetensors"  # LoRA step checkpoints: adapter weights (resume only)
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


def write_info(path: str | Path, info: dict[str, Any]) -> None:
    write_json_atomic(Path(path) / INFO_FILE, info)


# --- writing ---------------------------------------------------------------------------------


def write_model(folder: Path, model, tokenizer, head: FeedbackHead, info: dict[str, Any]) -> None:
    """Write model (safetensors), tokenizer, head and ``lfft.json`` into an existing folder."""
    quiet_transformers()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_head(folder, head)
    write_info(folder, {**info, "head": head_config(head)})


def save_head(folder: str | Path, head: FeedbackHead) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(Path(folder) / HEAD_FILE), metadata={"format": "pt"})


def head_config(head: FeedbackHead) -> dict[str, Any]:
    return {**head.config, "file": HEAD_FILE}


def save_folder(
    path: Path,
    model,
    tokenizer,
    head: FeedbackHead,
    info: dict[str, Any],
    extra_files: Callable[[Path], None] | None = None,
    adapter_only: bool = False,
) -> None:
    """Write a whole checkpoint folder atomically; ``extra_files(tmp)`` adds more files first.

    ``adapter_only`` (LoRA step checkpoints, for resuming only): ``model`` is a peft model and
    only its adapter weights are written, not a loadable model.
    """
    with atomic_path(path) as tmp:
        tmp.mkdir()
        if adapter_only:
            from peft import get_peft_model_state_dict
            from safetensors.torch import save_file

            state = get_peft_model_state_dict(model)
            save_file({k: v.contiguous() for k, v in state.items()}, tmp / ADAPTER_FILE)
            tokenizer.save_pretrained(tmp)
            save_head(tmp, head)
            write_info(tmp, {**info, "head": head_config(head), "lora": True})
        else:
            write_model(tmp, model, tokenizer, head, info)
        if extra_files is not None:
            extra_files(tmp)


def save_final(
    out: Path, model, tokenizer, head, info: dict[str, Any], extra_files: Callable[[Path], None]
) -> None:
    """A finished run's folder ``out``: the model and ``extra_files(tmp)`` (the metrics) are
    written under a temporary name, what ``out`` already holds (``checkpoints/``) is moved in,
    and the folder takes the place of ``out`` (:func:`~lfft.io.atomic_path`); until then ``out``
    has no ``lfft.json`` and stays resumable."""
    with atomic_path(out) as tmp:
        tmp.mkdir()
        write_model(tmp, model, tokenizer, head, info)
        extra_files(tmp)
        for entry in sorted(out.iterdir()) if out.is_dir() else ():
            if not (tmp / entry.name).exists():
                entry.rename(tmp / entry.name)


# --- loading ---------------------------------------------------------------------------------


def load_model(path: str | Path, device="cpu", dtype: torch.dtype | None = None):
    """The causal LM of a checkpoint (any transformers-loadable folder)."""
    import torch
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
    from lfft.model.head import FeedbackHead

    head = FeedbackHead.from_config(read_info(path)["head"])
    head.load_state_dict(head_state(path, device))
    return head.to(device)


def head_state(path: str | Path, device="cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / HEAD_FILE), device=str(device))


def load(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Load a checkpoint: ``(model, tokenizer, feedback_head)``, model and head in eval mode.

    >>> model, tok, head = lfft.load("ckpt/final")  # doctest: +SKIP
    """
    model = load_model(path, device, dtype).eval()
    head = load_head(path, device).eval()
    return model, load_tokenizer(path), head


# --- a training model's state: gathered under FSDP ---------------------------------------------


def trained_parts(model, writes: bool = True):
    """``(lm, head)`` of a training :class:`~lfft.model.feedback_lm.FeedbackLM` (plain, DDP or
    FSDP2) to write; None on a rank that writes nothing. Under FSDP every rank takes part in
    gathering the full state (onto the CPU) and the writing rank rebuilds full modules."""
    from lfft.model.feedback_lm import inner, is_sharded

    flm = inner(model)
    if not is_sharded(model):
        return (flm.lm, flm.head) if writes else None
    import torch
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from lfft.model.head import FeedbackHead

    state = get_model_state_dict(model, options=_full(cpu_offload=True))
    if not writes:
        return None
    with torch.device("meta"):  # no memory and no random init: the weights are assigned
        lm = type(flm.lm)(flm.lm.config)
        head = FeedbackHead.from_config(flm.head.config)
    lm.load_state_dict(_part(state, "lm."), assign=True)
    lm.tie_weights()
    head.load_state_dict(_part(state, "head."), assign=True)
    return lm, head


def load_weights(model, folder: Path, device, lora: bool) -> None:
    """Put the weights of the checkpoint ``folder`` (e.g. ``best/``) into a training model."""
    from lfft.model.feedback_lm import inner, is_sharded

    flm = inner(model)
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        state = {"lm." + k: v for k, v in load_model(folder).state_dict().items()}
        state.update({"head." + k: v for k, v in head_state(folder).items()})
        set_model_state_dict(model, state, options=_full())
        return
    from safetensors.torch import load_file

    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(flm.lm, load_file(folder / ADAPTER_FILE))
    else:
        flm.lm.load_state_dict(load_model(folder, device).state_dict())
    flm.head.load_state_dict(head_state(folder, device))


def optimizer_state(model, optimizer, writes: bool = True) -> dict[str, Any]:
    """The optimizer's state in torch's ``Optimizer.state_dict()`` layout, also under FSDP
    (gathered from every rank), so that a checkpoint resumes in any mode."""
    from lfft.model.feedback_lm import is_sharded

    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    full = get_optimizer_state_dict(model, optimizer, options=_full(True))
    if not writes:
        return {}
    index = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    return {
        "state": {index[n]: s for n, s in full["state"].items() if n in index},
        "param_groups": optimizer.state_dict()["param_groups"],
    }


def load_optimizer_state(model, optimizer, state: dict[str, Any]) -> None:
    from lfft.model.feedback_lm import is_sharded

    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = _param_names(model, optimizer)
    full = {
        "state": {names[i]: s for i, s in state["state"].items()},
        "param_groups": [
            {**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]
        ],
    }
    set_optimizer_state_dict(model, optimizer, full, options=_full())


def _param_names(model, optimizer) -> list[str]:
    """Names (in ``model``) of the optimizer's parameters, in the optimizer's order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def _full(cpu_offload: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def _part(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


# --- training state --------------------------------------------------------------------------


def rng_state() -> dict[str, torch.Tensor]:
    """Python, numpy, torch (and CUDA) RNG states, as tensors."""
    import random

    import numpy as np
    import torch

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
    import random

    import numpy as np
    import torch

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


def write_state(folder: Path, tensors: dict[str, Any], train_state: dict[str, Any]) -> None:
    """The training state of a step checkpoint: tensors (optimizer, scheduler, RNG) and the
    ``TrainState`` as JSON."""
    import torch

    torch.save(tensors, folder / STATE_PT)
    (folder / STATE_JSON).write_text(json.dumps(train_state, indent=1, default=str) + "\n")


def read_state(folder: Path, device="cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors = torch.load(folder / STATE_PT, map_location=device, weights_only=True)
    train_state = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    return tensors, train_state


def step_dirs(out: str | Path, complete: bool = True) -> list[Path]:
    """Step checkpoints under ``out/checkpoints``, oldest first (``complete``: with their
    training state)."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found) if not complete or (p / STATE_JSON).exists()]


def step_dir(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step-{step}"


def best_dir(out: str | Path) -> Path:
    return Path(out) / CHECKPOINTS / BEST


def prune(out: str | Path, keep: int) -> None:
    """Delete all but the last ``keep`` step checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for old in step_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
