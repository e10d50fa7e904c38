"""The feedback model F: a linear head on the LM's final hidden states.

It gives one logit per token. A row's sequence-level score is the logit at its last response
token (``sigmoid`` -> predicted probability that the feedback is positive, or the predicted score);
token-level feedback trains the logits of every response token. The head stays in fp32. Its file
in a checkpoint folder is written and read by :mod:`lfft.model.checkpoint`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FeedbackHead(nn.Module):
    """``forward(hidden (B,T,H)) -> (B,T)`` logits."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.score = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.score(hidden.to(self.score.weight.dtype)).squeeze(-1)

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds the head (:meth:`from_config`); ``lfft.json`` keeps it under ``head``."""
        return {"type": "linear", "hidden_size": self.hidden_size}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeedbackHead:
        return cls(int(config["hidden_size"]))
