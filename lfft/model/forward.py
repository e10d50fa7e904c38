"""One forward pass of the LM and the feedback head over a :class:`~lfft.model.batching.Batch`.

The backbone runs once (``use_cache=False``); the LM head runs only on the hidden states that
predict response tokens (the prompt's logits are never needed), in row chunks that never hold the
whole logits tensor (:mod:`lfft.model.chunked_ce`), and the feedback head on all.
Padded batches are right-padded, so with a causal mask no real token can see a pad: the padding
mask is left out and attention keeps its fast causal path. Packed batches keep attention within
each example. Either way an example's outputs do not depend on the others in its batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from lfft.model.batching import Batch
from lfft.model.chunked_ce import fusable, head_logps

# Config attributes of models whose LM head is more than a Linear (soft-capping, scaling).
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class ForwardOut(NamedTuple):
    """A tuple, so that DDP and FSDP2 find its tensors (FSDP hooks the backward through them)."""

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
    """Token log-probs of the response tokens and the feedback head's logits.

    A packed batch (``batch.gather`` set) runs the model on its packed rows without an attention
    mask: transformers finds the examples from the restarting positions and keeps attention within
    each one. The outputs come back in the logical (B,T) layout, as for a padded batch.
    """
    lm = unwrap(model)
    ids = batch.input_ids
    bsz, t = ids.shape
    idx = batch.response_index
    targets = ids.reshape(-1).index_select(0, idx)
    packed = batch.gather is not None
    run_ids = batch.pack_ids if packed else ids
    run_pos = batch.pack_pos if packed else batch.position_ids
    predict = batch.gather.index_select(0, idx - 1) if packed else idx - 1  # rows of the flat run
    logits = None  # set where the LM head cannot run in chunks
    if _plain_lm_head(lm):
        hidden = lm.base_model(
            input_ids=run_ids, position_ids=run_pos, use_cache=False
        ).last_hidden_state
        picked = hidden.flatten(0, 1).index_select(0, predict)
        lm_head = lm.get_output_embeddings()
        if fusable(lm_head):
            logps = head_logps(lm_head, picked, targets)
        else:
            logits = lm_head(picked)
    else:
        out = lm(
            input_ids=run_ids, position_ids=run_pos, use_cache=False, output_hidden_states=True
        )
        hidden = out.hidden_states[-1]
        logits = out.logits.flatten(0, 1).index_select(0, predict)
    if logits is not None:
        logps = -F.cross_entropy(logits.float(), targets, reduction="none")
    token_logps = (
        torch.zeros(bsz * t, dtype=torch.float32, device=ids.device)
        .index_copy(0, idx, logps)
        .view(bsz, t)
    )
    fb_token = fb_seq = None
    if head is not None:
        if packed:
            hidden = hidden.flatten(0, 1).index_select(0, batch.gather).view(bsz, t, -1)
        fb_token = head(hidden).float()
        fb_seq = fb_token.gather(1, batch.last_index[:, None]).squeeze(1)
    return ForwardOut(token_logps, batch.response_mask, fb_token, fb_seq)


@torch.no_grad()
def packing_works(model) -> bool:
    """Whether ``model`` keeps attention within each example of a packed row: transformers finds
    the examples from positions that restart at 0, but a model with its own masking code may not
    (then packed examples would see each other). Checked on two short sequences."""
    lm = unwrap(model)
    vocab = lm.get_input_embeddings().num_embeddings
    device = lm.get_input_embeddings().weight.device
    a, b = torch.arange(3, 8) % vocab, torch.arange(11, 14) % vocab
    ids = torch.cat([a, b])[None].to(device)
    pos = torch.cat([torch.arange(len(a)), torch.arange(len(b))])[None].to(device)
    training = lm.training
    lm.eval()
    try:
        packed = lm.base_model(input_ids=ids, position_ids=pos, use_cache=False)
        alone = lm.base_model(
            input_ids=ids[:, len(a) :], position_ids=pos[:, len(a) :], use_cache=False
        )
    finally:
        lm.train(training)
    got, want = packed.last_hidden_state[0, len(a) :], alone.last_hidden_state[0]
    return torch.allclose(got.float(), want.float(), atol=1e-3, rtol=1e-3)
