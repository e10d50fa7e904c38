"""L_F: the feedback head's losses, one per kind of signal.

- binary feedback (and pairs' labels): binary cross-entropy on the sequence logit;
- scalar scores in [0, 1]: squared error between ``sigmoid(logit)`` and the score;
- token-level keep/modify labels (from user edits): binary cross-entropy per token, as in
  token-level error detection / fine-grained feedback (Wu et al. 2023, "Fine-Grained Human
  Feedback Gives Better Rewards for Language Model Training", https://arxiv.org/abs/2306.01693).
Each row's ``weight`` (its confidence) applies; rows whose target is nan are excluded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lfft.model.losses import weighted_mean, weighted_token_mean


def _row_weights(target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    present = ~torch.isnan(target)
    w = present.to(target.dtype) if weight is None else weight.to(target.dtype) * present
    return w


def bce_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted mean BCE of ``(B,)`` logits against 0/1 (or soft) targets; nan targets excluded."""
    target = target.to(logits.dtype)
    per_row = F.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(target, nan=0.0), reduction="none"
    )
    return weighted_mean(per_row, _row_weights(target, weight))


def mse_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted mean of ``(sigmoid(logit) - score)^2`` for scores in [0, 1]; nan excluded."""
    target = target.to(logits.dtype)
    per_row = (torch.sigmoid(logits) - torch.nan_to_num(target, nan=0.0)) ** 2
    return weighted_mean(per_row, _row_weights(target, weight))


def token_loss(
    token_logits: torch.Tensor, token_labels: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE over tokens labelled 1 keep / 0 modify (``-1`` ignored), token mean weighted by row."""
    labels = token_labels.to(token_logits.dtype)
    mask = labels >= 0
    per_token = F.binary_cross_entropy_with_logits(
        token_logits, labels.clamp(min=0.0), reduction="none"
    )
    if weight is None:
        weight = torch.ones(token_logits.shape[0], device=token_logits.device)
    return weighted_token_mean(per_token, mask, weight)
