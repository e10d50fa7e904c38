"""The built-in base: a Llama-style causal LM made from a config (no download, no weights).

Presets set layers / hidden size / heads; any of them can be overridden (``--layers`` ...).
Parameter counts below are for a 2,048-token vocabulary with tied embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

from lfft.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    layers: int
    hidden: int
    heads: int
    kv_heads: int | None = None  # None: same as heads (no grouped-query attention)
    ffn_mult: float = 8 / 3  # SwiGLU intermediate size = hidden * ffn_mult (rounded to 32)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(layers=4, hidden=128, heads=4),  # ~1.1M: trains in seconds on a CPU
    "small": Preset(layers=8, hidden=384, heads=6, kv_heads=2),  # ~13M
    "125m": Preset(layers=12, hidden=768, heads=12, ffn_mult=4.0),  # ~115M (GPT-2 small size)
}


def llama_config(
    preset: str,
    vocab_size: int,
    max_length: int,
    *,
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
):
    """A ``LlamaConfig`` for a preset, with explicit overrides."""
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    layers = layers or p.layers
    hidden = hidden or p.hidden
    heads = heads or (p.heads if hidden == p.hidden else max(1, hidden // 32))
    kv_heads = p.kv_heads if (p.kv_heads and heads == p.heads) else heads
    if hidden % heads:
        raise ConfigError(f"--hidden {hidden} is not divisible by --heads {heads}")
    intermediate = max(32, round(hidden * p.ffn_mult / 32) * 32)
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_length,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        # 1/sqrt(width): keeps each layer's output variance at its input's. transformers' 0.02
        # (GPT-2's, tuned for width 768) is 6x too small at width 64, where a copy circuit then
        # forms late and by chance (docs/learning-proof.md)
        initializer_range=hidden**-0.5,
    )
