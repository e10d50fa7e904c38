"""Supervised fine-tuning: token-level cross-entropy on the response tokens.

The literal baseline of learning from logs: every logged response is imitated, good or bad
(e.g. Ouyang et al. 2022, "Training language models to follow instructions with human feedback",
https://arxiv.org/abs/2203.02155, stage 1).
"""

from __future__ import annotations

import torch

from lfft.model.losses import weighted_token_mean


def sft_loss(
    token_logps: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``sum_i w_i sum_t -logp_it / sum_i w_i n_i`` (token mean; ``weights`` default 1 per row)."""
    if weights is None:
        weights = torch.ones(token_logps.shape[0], device=token_logps.device)
    return weighted_token_mean(-token_logps, mask, weights)
