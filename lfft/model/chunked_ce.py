"""Token log-probs through the LM head in row chunks, without the full logits tensor.

``log p(target | h) = (h W^T + b)[target] - logsumexp(h W^T + b)`` for the rows that predict a
response token. Done in one piece, this makes an (N, V) logits tensor, its fp32 copy for the loss
and the same again for the gradient: at a 32k-50k vocabulary that is most of a step's memory
traffic (on the CPU, page faults and system time; on a GPU, memory bandwidth and peak memory).
Here each chunk of rows makes its logits, keeps only the target's logit and the log-sum-exp, and
lets them go; the backward pass makes each chunk's logits again (one more matmul per chunk) and
turns them into the chunk's gradients at once. No tensor of size N x V outlives its chunk.

Under autocast the hidden states and the weight are cast to the autocast dtype once (not once per
chunk), matmuls run in that dtype and the softmax statistics in fp32, as autocast would do.
"""

from __future__ import annotations

import torch
from torch import nn

# Logits per chunk (rows x vocabulary): small enough to stay in cache-friendly, reused buffers on
# the CPU, big enough that each matmul keeps a GPU busy.
CHUNK_LOGITS = {"cpu": 4 * 2**20, "cuda": 64 * 2**20}


def chunk_rows(n: int, vocab: int, device: torch.device) -> int:
    """Rows per chunk for ``n`` rows over ``vocab`` logits on ``device``."""
    budget = CHUNK_LOGITS.get(device.type, CHUNK_LOGITS["cuda"])
    return max(1, min(n, budget // max(1, vocab)))


def fusable(head: nn.Module) -> bool:
    """Whether ``head`` is a plain Linear over plain tensors (not sharded, not adapted), so that
    its weight can be used directly."""
    if type(head) is not nn.Linear:
        return False
    return all(type(p) in (torch.Tensor, nn.Parameter) for p in head.parameters())


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


class _HeadLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, rows):
        dtype = _compute_dtype(hidden.device, weight.dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            logps = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
            lse = torch.empty_like(logps)
            for s in range(0, h.shape[0], rows):
                logits = _logits(h[s : s + rows], w, b)
                lse[s : s + rows] = torch.logsumexp(logits, dim=-1)
                picked = logits.gather(1, targets[s : s + rows, None]).squeeze(1)
                logps[s : s + rows] = picked - lse[s : s + rows]
        ctx.save_for_backward(h, w, b, targets, lse)
        ctx.rows = rows
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return logps

    @staticmethod
    def backward(ctx, grad_logps):
        h, w, b, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
        grad_b = torch.zeros(w.shape[0], dtype=torch.float32, device=w.device) if need_b else None
        with torch.autocast(h.device.type, enabled=False):
            for s in range(0, h.shape[0], ctx.rows):
                hs, g = h[s : s + ctx.rows], grad_logps[s : s + ctx.rows].float()
                # d logp / d logits = onehot(target) - softmax; times the incoming gradient
                d = torch.exp(_logits(hs, w, b).sub_(lse[s : s + ctx.rows, None]))
                d.mul_(-g[:, None])
                d.scatter_add_(1, targets[s : s + ctx.rows, None], g[:, None])
                d = d.to(h.dtype)
                if need_h:
                    grad_h[s : s + ctx.rows] = d @ w
                if need_w:
                    grad_w.add_(d.t() @ hs)
                if need_b:
                    grad_b.add_(d.float().sum(0))
        dh, dw, db = ctx.dtypes
        return (
            None if grad_h is None else grad_h.to(dh),
            None if grad_w is None else grad_w.to(dw),
            None if grad_b is None else grad_b.to(db),
            None,
            None,
        )


def _logits(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    out = h @ w.t() if b is None else torch.addmm(b, h, w.t())
    return out.float()


def head_logps(head: nn.Linear, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log p(targets[i] | hidden[i])`` in fp32 for the rows of ``hidden`` (N, H) through the
    Linear ``head``, chunked over rows (see the module's docstring)."""
    rows = chunk_rows(hidden.shape[0], head.out_features, hidden.device)
    return _HeadLogProbs.apply(hidden, head.weight, head.bias, targets, rows)
