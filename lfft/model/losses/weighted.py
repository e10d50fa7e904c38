"""Reward-weighted regression: cross-entropy weighted by the feedback score.

Each response is imitated in proportion to how good it was judged (Peters & Schaal 2007,
"Reinforcement learning by reward-weighted regression", ICML; for LMs e.g. "Reward-weighted
regression" baselines in Dong et al. 2023, https://arxiv.org/abs/2304.06767). Rows with no score
(nan) take part with weight 0.
"""

from __future__ import annotations

import torch

from lfft.model.losses.sft import sft_loss


def weighted_loss(
    token_logps: torch.Tensor, mask: torch.Tensor, score: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """SFT with row weights ``score * weight`` (nan score -> 0)."""
    w = torch.nan_to_num(score.to(token_logps.dtype), nan=0.0) * weight.to(token_logps.dtype)
    return sft_loss(token_logps, mask, w)
