"""One forward pass of the LM and the feedback head over a :class:`~lfft.model.batching.Batch`.

The backbone runs once (``use_cache=False``); the LM head runs only on the hidden states that
predict response tokens (the prompt's logits are never needed), and the feedback head on all.
Batches are right-padded, so with a causal mask no real token can see a pad: the padding mask
is left out and attention keeps its fast causal path. Row outputs do not depend on other rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lfft.model.batching import Batch

# Config attributes of models whose LM head is more than a Linear (soft-capping, scaling).
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


@dataclass
class ForwardOut:
    token_logps: torch.Tensor  # (B,T) float32: log p(ids[t] | ids[<t]) at response tokens, 0 else
    response_mask: torch.Tensor  # (B,T) bool
    fb_token_logits: torch.Tensor | None  # (B,T) float32; None without a head
    fb_seq_logits: torch.Tensor | None  # (B,) float32, at each row's last response token


def unwrap(model):
    """The transformers model under a peft wrapper (LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _plain_lm_head(model) -> bool:
    cfg = model.config
    return not any(getattr(cfg, a, None) not in (None, 1, 1.0) for a in _LOGIT_TRANSFORMS)


def forward_batch(model, head, batch: Batch) -> ForwardOut:
    """Token log-probs of the response tokens and the feedback head's logits."""
    lm = unwrap(model)
    ids = batch.input_ids
    bsz, t = ids.shape
    idx = batch.response_index
    targets = ids.reshape(-1).index_select(0, idx)
    if _plain_lm_head(lm):
        hidden = lm.base_model(
            input_ids=ids, position_ids=batch.position_ids, use_cache=False
        ).last_hidden_state
        flat = hidden.reshape(bsz * t, -1).index_select(0, idx - 1)
        logits = lm.get_output_embeddings()(flat)
    else:
        out = lm(
            input_ids=ids,
            position_ids=batch.position_ids,
            use_cache=False,
            output_hidden_states=True,
        )
        hidden = out.hidden_states[-1]
        logits = out.logits.reshape(bsz * t, -1).index_select(0, idx - 1)
    nll = F.cross_entropy(logits.float(), targets, reduction="none")
    token_logps = (
        torch.zeros(bsz * t, dtype=torch.float32, device=ids.device)
        .index_copy(0, idx, -nll)
        .view(bsz, t)
    )
    fb_token = fb_seq = None
    if head is not None:
        fb_token = head(hidden).float()
        fb_seq = fb_token.gather(1, batch.last_index[:, None]).squeeze(1)
    return ForwardOut(token_logps, batch.response_mask, fb_token, fb_seq)
