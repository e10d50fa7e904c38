"""``lfft train --compile``: ``torch.compile`` of the decoder layers one by one (regional
compilation, the default) or of the whole backbone.

The layers of a transformers backbone are identical modules, so compiled one by one they share
one compiled graph: dynamo traces one layer, not all of them, and the start-up on the CPU drops
from ~50 s to ~23 s for 8 layers (docs/benchmarks.md) at the same step time. ``nn.Module.compile``
compiles in place, so ``state_dict`` keys stay those of the eager model (no ``_orig_mod.``) and
checkpoints are unchanged.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from lfft.model.forward import unwrap

Scope = Literal["layers", "model"]


def layer_list(backbone: nn.Module) -> nn.ModuleList | None:
    """The backbone's list of repeated blocks (``layers``, ``h``, ``blocks``...): the longest
    ``nn.ModuleList`` whose modules are all of one class; None when there is none."""
    best: nn.ModuleList | None = None
    for module in backbone.modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        if best is None or len(module) > len(best):
            best = module
    return best


def compile_model(lm: nn.Module, scope: Scope) -> str:
    """Compile ``lm`` (a transformers LM, or its peft wrapper) in place with dynamic shapes and
    return what was compiled: ``"layers (N x Class)"``, or ``"model"`` (the backbone) for scope
    ``model`` and for a backbone without a layer list."""
    backbone = unwrap(lm).base_model
    layers = layer_list(backbone) if scope == "layers" else None
    if layers is None:
        backbone.compile(dynamic=True)
        return "model"
    for layer in layers:
        layer.compile(dynamic=True)
    return f"layers ({len(layers)} x {type(layers[0]).__name__})"
