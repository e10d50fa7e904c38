"""The attention kernel of training (``lfft train --attention``).

Packed rows (``--packing``) hold several examples end to end, told apart by positions that
restart at 0. transformers 5 finds them from those positions (``masking_utils.
find_packed_sequence_indices``) and builds the document mask for the model's attention kernel:

- ``sdpa``: a materialized boolean mask of shape (rows, 1, T, T); with a mask, PyTorch's SDPA
  cannot use its flash kernel and computes every block, including the ones between examples.
- ``eager``: the same mask as an additive float (rows, 1, T, T) tensor and a plain matmul-softmax.
- ``flex_attention``: a ``BlockMask`` (the mask per 128x128 block, compressed); blocks that lie
  wholly between two examples are skipped, so a packed row costs about what its examples cost
  alone. It runs through ``torch.compile`` (a one-off compilation per shape) and, in torch 2.13,
  has no backward on the CPU ("FlexAttention does not support backward on CPU"): GPU only here.

``auto`` picks flex_attention for packed rows on a CUDA GPU when it keeps the examples apart
there (checked once), and sdpa otherwise (padded batches need no mask at all, so sdpa keeps its
fast causal path).
"""

from __future__ import annotations

import torch

from lfft.errors import ConfigError, LfftError
from lfft.model.forward import packing_works, unwrap

BACKENDS = ("auto", "sdpa", "eager", "flex_attention")


def set_attention(lm, name: str, packed: bool, device: torch.device) -> str:
    """Switch the transformers model ``lm`` (peft-wrapped or not) to the kernel ``name``
    (``auto`` resolved for ``packed`` batches on ``device``) and return the kernel it now uses."""
    if name not in BACKENDS:
        raise ConfigError(f"--attention {name!r}: expected one of {', '.join(BACKENDS)}")
    model = unwrap(lm)
    if name == "flex_attention" and device.type != "cuda":
        raise LfftError(
            "--attention flex_attention needs a CUDA GPU (torch has no flex_attention backward on"
            " the CPU); use --attention sdpa or auto"
        )
    if name == "auto":
        if packed and device.type == "cuda" and _flex_works(model):
            return "flex_attention"
        name = "sdpa"
    if not _switch(model, name):
        raise LfftError(
            f"--attention {name}: {type(model).__name__} cannot use it; use --attention sdpa"
        )
    return name


def current(lm) -> str:
    """The kernel ``lm`` uses now (transformers' ``config._attn_implementation``)."""
    return unwrap(lm).config._attn_implementation


def _switch(model, name: str) -> bool:
    """transformers 5's ``set_attn_implementation``; False when the model refuses ``name`` (it
    raises) or cannot switch at all (it only warns, so the config is read back)."""
    try:
        model.set_attn_implementation(name)
    except (ValueError, ImportError):
        return False
    return current(model) == name


def _flex_works(model) -> bool:
    """flex_attention set and keeping packed examples apart; else the previous kernel back."""
    before = current(model)
    try:
        if _switch(model, "flex_attention") and packing_works(model):
            return True
    except Exception:  # noqa: BLE001 - any compile or kernel failure means "does not work here"
        pass
    _switch(model, before)
    return False
