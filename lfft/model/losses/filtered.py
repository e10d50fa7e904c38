"""Filtered behaviour cloning: cross-entropy on the responses users approved of (or corrected).

Known as rejection-sampling / filtered fine-tuning, "best-of-n then SFT" (e.g. Dong et al. 2023,
"RAFT: Reward rAnked FineTuning", https://arxiv.org/abs/2304.06767; Gulcehre et al. 2023, "ReST",
https://arxiv.org/abs/2308.08998). The trainer decides ``keep``: label 1, or the row carries a
user edit (its ``target`` differs from the logged response, and the target is what is learned).
"""

from __future__ import annotations

import torch

from lfft.model.losses.sft import sft_loss


def filtered_loss(
    token_logps: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """SFT over the rows with ``keep`` True; 0 when no row is kept."""
    return sft_loss(token_logps, mask, keep.to(token_logps.dtype))
