"""Unlikelihood training: likelihood on good responses, unlikelihood on bad ones.

Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training",
https://arxiv.org/abs/1908.04319 (sequence-level unlikelihood, as applied to negative feedback in
Li et al. 2020, "Don't Say That! Making Inconsistent Dialogue Unlikely with Unlikelihood Training",
https://arxiv.org/abs/1911.03860). Per response token of a row labelled 1 the loss is
``-log p``; of a row labelled 0 it is ``-alpha * log(1 - p)``, with ``1 - p`` (computed as
``-expm1(log p)``, exact near p = 1) clamped to at least ``1e-6``.
"""

from __future__ import annotations

import torch

from lfft.model.losses import weighted_token_mean

MIN_1_MINUS_P = 1e-6


def unlikelihood_loss(
    token_logps: torch.Tensor,
    mask: torch.Tensor,
    label: torch.Tensor,
    weight: torch.Tensor,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Token mean (weighted by ``weight``) of likelihood (label 1) / unlikelihood (label 0) terms.

    Rows with a nan label are excluded.
    """
    label = label.to(token_logps.dtype)
    one_minus_p = (-torch.expm1(token_logps)).clamp(min=MIN_1_MINUS_P)
    unlikely = -alpha * torch.log(one_minus_p)
    pos = (label == 1)[:, None]
    per_token = torch.where(pos, -token_logps, unlikely)
    w = torch.where(torch.isnan(label), torch.zeros_like(label), weight.to(token_logps.dtype))
    return weighted_token_mean(per_token, mask, w)
