"""L_M and L_F losses: tensors in, a differentiable scalar out (see ``docs/objectives.md``).

Each objective lives in its own module with its paper cited. Conventions shared by all of them:
masks are bool ``(B, T)``, per-row tensors ``(B,)``; ``token_logps`` holds
``log p(x_t | x_<t)`` per position; a "mean" runs over the rows/tokens that take part, and when
none take part the loss is ``token_logps.sum() * 0`` (zero, still in the graph, never nan).
"""

from __future__ import annotations

import torch

TINY = 1e-12  # denominator floor: a sum of zero weights gives a zero loss, not nan

__all__ = ["sequence_logps", "weighted_mean", "weighted_token_mean", "zero_like_graph"]


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row sum of ``token_logps`` over ``mask``: ``(B, T) -> (B,)``, i.e. log p(y | x)."""
    return token_logps.masked_fill(~mask, 0.0).sum(-1)


def zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    """A zero scalar that stays attached to ``t``'s graph (for "nothing takes part")."""
    return t.sum() * 0


def weighted_token_mean(
    token_losses: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``sum_i w_i sum_t l_it / sum_i w_i n_i`` over masked tokens; 0 when nothing takes part.

    Masked-out positions may hold anything (even inf): they are filled away, not multiplied.
    No host sync (no ``.item()``), so it is cheap inside a CUDA training step.
    """
    w = weights.to(token_losses.dtype)[:, None] * mask
    num = (token_losses.masked_fill(w == 0, 0.0) * w).sum()
    return num / w.sum().clamp_min(TINY)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i v_i / sum_i w_i`` over rows with ``w_i != 0``; 0 when no row has weight.

    Rows with weight 0 may hold nan/inf values: they are filled away, not multiplied.
    """
    w = weights.to(values.dtype)
    return (values.masked_fill(w == 0, 0.0) * w).sum() / w.sum().clamp_min(TINY)
