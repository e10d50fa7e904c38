"""lfft: language feedback fine-tuning.

The data stages (``lfft.data``) import only pyarrow; the model stages (``lfft.model``) import
torch and transformers lazily, so ``lfft --help`` and the data stages start fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path, device: str = "cpu"):
    """Load a checkpoint folder: returns ``(model, tokenizer, feedback_head)``."""
    from lfft.model.checkpoint import load as _load

    return _load(path, device=device)
