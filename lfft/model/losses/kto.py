"""Kahneman-Tversky Optimisation for unpaired thumbs-up / thumbs-down feedback.

Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
https://arxiv.org/abs/2402.01306, as implemented in TRL's ``KTOTrainer.kto_loss``. With the
log-ratio ``r = log pi(y|x) - log pi_ref(y|x)`` (sums over response tokens) and the reference
point ``z`` (detached, clamped at 0: the mean log-ratio over mismatched prompt/response pairs as
in the paper and TRL, passed as ``kl``; else the batch mean of ``r``), a desirable row costs
``w_d (1 - sigmoid(beta (r - z)))`` and an undesirable one ``w_u (1 - sigmoid(beta (z - r)))``;
the loss is their mean over the rows with a label.
"""

from __future__ import annotations

import torch

from lfft.model.losses import weighted_mean


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    label: torch.Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    kl: torch.Tensor | float | None = None,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KTO loss over rows (``(B,)`` sequence log-probs); nan labels are excluded.

    ``kl`` overrides the batch estimate of the reference point (e.g. one from mismatched pairs);
    ``weight`` (optional, per row) multiplies each row's term and its share of the mean.
    Returns ``(loss, stats)``: the kl used and the mean reward ``beta * r`` and count of each
    side, as detached 0-d tensors (no host sync inside the step; ``float()`` them to log).
    """
    ratio = policy_logps - ref_logps
    has_label = ~torch.isnan(label)
    if kl is None:
        n = has_label.sum().clamp_min(1)
        kl = (ratio.detach().masked_fill(~has_label, 0.0).sum() / n).clamp(min=0)
    else:
        kl = torch.as_tensor(kl, dtype=ratio.dtype, device=ratio.device).detach().clamp(min=0)
    good = has_label & (label == 1)
    bad = has_label & (label != 1)
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    losses = torch.where(good, desirable, undesirable)
    w = has_label.to(ratio.dtype) if weight is None else weight.to(ratio.dtype) * has_label
    loss = weighted_mean(losses, w)
    rewards = beta * ratio.detach()
    n_good, n_bad = good.sum(), bad.sum()
    stats = {
        "kl": kl,
        "reward_desirable": rewards.masked_fill(~good, 0.0).sum() / n_good,  # nan if none
        "reward_undesirable": rewards.masked_fill(~bad, 0.0).sum() / n_bad,
        "n_desirable": n_good,
        "n_undesirable": n_bad,
    }
    return loss, stats
