"""Direct Preference Optimisation for pairs (a chosen and a rejected response to one prompt).

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model", https://arxiv.org/abs/2305.18290 (the sigmoid loss, as in torchtune's ``DPOLoss`` and
TRL): ``-log sigmoid(beta ((pi_c - ref_c) - (pi_r - ref_r)))`` over sequence log-probs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lfft.model.losses import weighted_mean


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted mean DPO loss over pairs (all ``(P,)``); 0 when there is no pair.

    Returns ``(loss, stats)``: mean implicit rewards ``beta * (pi - ref)`` of each side, their
    margin, and the share of pairs whose chosen reward is higher ("reward accuracy"), as
    detached 0-d tensors (nan when there is no pair; ``float()`` them to log).
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    if weight is None:
        weight = torch.ones_like(losses)
    loss = weighted_mean(losses, weight)
    c, r = chosen_rewards.detach(), rejected_rewards.detach()
    stats = {
        "reward_chosen": c.mean(),
        "reward_rejected": r.mean(),
        "reward_margin": (c - r).mean(),
        "reward_accuracy": (c > r).to(c.dtype).mean(),
    }
    return loss, stats
