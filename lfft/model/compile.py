"""``lfft train --compile``: torch.compile, by default one decoder layer at a time.

A transformer backbone is a stack of identical decoder layers. Compiling the whole backbone
traces every layer into one graph, so compile time grows with depth (50-52 s for 8 layers on a
CPU, ~200 s for the 125m preset on an H200 in v0.1). Compiling each layer on its own
("regional compilation") makes one graph that every layer reuses: torch.compile treats a
module's parameters as inputs, so layer 2 hits layer 1's cache, and compile time no longer
depends on depth. ``nn.Module.compile`` compiles in place, so state-dict keys, checkpoints and
gradient checkpointing are unchanged. What lies between the layers (embeddings, final norm, the
chunked LM head) stays eager: a few element-wise ops per step.
"""

from __future__ import annotations

from torch import nn

from lfft.errors import ConfigError
from lfft.model.forward import unwrap

SCOPES = ("layers", "model")


def decoder_layers(backbone: nn.Module) -> nn.ModuleList | None:
    """The backbone's stack of repeated blocks: the longest ModuleList whose entries are all of
    one class (``model.layers`` in Llama, ``transformer.h`` in GPT-2); None if there is none."""
    best = None
    for module in backbone.modules():
        repeated = isinstance(module, nn.ModuleList) and len({type(m) for m in module}) == 1
        if repeated and (best is None or len(module) > len(best)):
            best = module
    return best


def compile_model(lm: nn.Module, scope: str = "layers") -> str:
    """Compile the backbone of the causal LM ``lm`` (peft-wrapped or not) in place with dynamic
    shapes and say what was compiled: ``layers (N x Class)``, or ``model`` for the whole
    backbone (asked for, or the fallback when no layer stack is found)."""
    if scope not in SCOPES:
        raise ConfigError(f"--compile-scope {scope!r}: expected one of {', '.join(SCOPES)}")
    backbone = unwrap(lm).base_model
    layers = decoder_layers(backbone) if scope == "layers" else None
    if layers is None:
        backbone.compile(dynamic=True)
        return "model"
    for layer in layers:
        layer.compile(dynamic=True)
    return f"layers ({len(layers)} x {type(layers[0]).__name__})"
