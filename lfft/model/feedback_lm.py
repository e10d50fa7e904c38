"""``FeedbackLM``: the causal LM and the feedback head F as one ``nn.Module``, in every mode.

One forward runs the LM's backbone once and returns the response tokens' log-probs and the head's
logits (:func:`lfft.model.forward.forward_batch`). The same module is trained on one device,
wrapped by DDP or sharded by FSDP2 (one forward and one gradient synchronisation cover the LM and
the head), and holds a peft model as its LM with LoRA. The frozen reference model of kto/dpo is a
``FeedbackLM`` without a head.
"""

from __future__ import annotations

import torch
from torch import nn

from lfft.model.batching import Batch
from lfft.model.forward import ForwardOut, forward_batch, unwrap
from lfft.model.head import FeedbackHead


class FeedbackLM(nn.Module):
    """``forward(batch) -> ForwardOut``. ``train_head=False`` (lambda = 0 or no L_F): the head is
    frozen here, so the optimizer never gets it and it stays exactly as it was, and the forward
    skips it."""

    def __init__(self, lm: nn.Module, head: FeedbackHead | None, train_head: bool = True):
        super().__init__()
        self.lm = lm
        self.head = head
        self.train_head = head is not None and train_head
        if head is not None and not self.train_head:
            head.requires_grad_(False)

    def forward(self, batch: Batch) -> ForwardOut:
        return forward_batch(self.lm, self.head if self.train_head else None, batch)


def inner(model: nn.Module) -> FeedbackLM:
    """The :class:`FeedbackLM` inside a DDP wrapper (FSDP2 keeps the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_sharded(model: nn.Module) -> bool:
    """Sharded by FSDP2 (``fully_shard``)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@torch.no_grad()
def reference_logps(model: nn.Module, ref: nn.Module | None, batch: Batch) -> torch.Tensor:
    """The reference model's token log-probs of ``batch`` (kto/dpo)."""
    if ref is not None:
        return ref(batch).token_logps
    lm = inner(model).lm
    with lm.disable_adapter():  # LoRA: the base weights are the reference
        return forward_batch(lm, None, batch).token_logps


def position_limit(model: nn.Module) -> int:
    """The LM's longest sequence (``max_position_embeddings``; unbounded when it has none)."""
    config = unwrap(inner(model).lm).config
    return getattr(config, "max_position_embeddings", None) or 1 << 30
