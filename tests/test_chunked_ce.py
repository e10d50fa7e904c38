"""The LM head in row chunks (lfft/model/chunked_ce.py): the same log-probs and gradients as the
textbook head + cross-entropy, in fp32 and under bf16 autocast, with no vocabulary-wide tensor kept
for the backward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lfft.model import chunked_ce, forward
from lfft.model.batching import collate, encode
from lfft.model.checkpoint import load
from lfft.model.chunked_ce import chunk_rows, fusable, head_logps
from lfft.model.forward import forward_batch
from lfft.model.train import read_rows

pytestmark = pytest.mark.usefixtures("model_one_thread")


def _grads(fn, h, lin, g, autocast=False):
    h.grad = None
    lin.zero_grad()
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        out = fn()
    (out * g).sum().backward()
    grads = [h.grad] + [p.grad for p in lin.parameters() if p.requires_grad]
    return out.detach(), [x.clone() for x in grads]


def _plain(lin, h, t):
    return lambda: -F.cross_entropy(lin(h).float(), t, reduction="none")


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("budget", [10**9, 7 * 1000, 1000])  # one chunk, 7 rows (not a divisor), 1
def test_logps_and_gradients_equal_the_textbook_head(bias, budget, monkeypatch):
    monkeypatch.setitem(chunked_ce.CHUNK_LOGITS, "cpu", budget)
    torch.manual_seed(0)
    n, width, vocab = 45, 16, 1000
    h = torch.randn(n, width, requires_grad=True)
    lin = torch.nn.Linear(width, vocab, bias=bias)
    t, g = torch.randint(0, vocab, (n,)), torch.randn(n)
    want, want_grads = _grads(_plain(lin, h, t), h, lin, g)
    got, got_grads = _grads(lambda: head_logps(lin, h, t), h, lin, g)
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-5)
    assert len(got_grads) == len(want_grads)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert a.dtype == b.dtype and torch.allclose(a, b, atol=1e-5)


def test_bf16_autocast_is_as_close_to_fp32_as_autocast_itself(monkeypatch):
    monkeypatch.setitem(chunked_ce.CHUNK_LOGITS, "cpu", 9 * 2000)
    torch.manual_seed(1)
    n, width, vocab = 120, 32, 2000
    h = torch.randn(n, width, requires_grad=True)
    lin = torch.nn.Linear(width, vocab)
    t, g = torch.randint(0, vocab, (n,)), torch.randn(n)
    exact, exact_grads = _grads(_plain(lin, h, t), h, lin, g)
    auto, auto_grads = _grads(_plain(lin, h, t), h, lin, g, autocast=True)
    ours, our_grads = _grads(lambda: head_logps(lin, h, t), h, lin, g, autocast=True)

    def err(a, b):
        return ((a - b).norm() / b.norm()).item()

    assert err(ours, exact) <= 1.5 * err(auto, exact) + 1e-6
    for o, a, e in zip(our_grads, auto_grads, exact_grads, strict=True):
        assert o.dtype == e.dtype == torch.float32  # parameters' grads in their own dtype
        assert err(o, e) <= 1.5 * err(a, e)


def test_frozen_head_gets_no_gradient_and_hidden_states_still_do():
    torch.manual_seed(2)
    h = torch.randn(20, 8, requires_grad=True)
    lin = torch.nn.Linear(8, 50).requires_grad_(False)
    t = torch.randint(0, 50, (20,))
    head_logps(lin, h, t).sum().backward()
    assert lin.weight.grad is None and h.grad is not None and h.grad.abs().sum() > 0


def test_no_vocabulary_wide_tensor_is_kept_for_backward(monkeypatch):
    """The point of chunking: what autograd keeps is O(N x H + V x H), never N x V."""
    monkeypatch.setitem(chunked_ce.CHUNK_LOGITS, "cpu", 16 * 500)
    n, width, vocab = 64, 8, 500
    h = torch.randn(n, width, requires_grad=True)
    lin = torch.nn.Linear(width, vocab)
    t = torch.randint(0, vocab, (n,))
    kept: list[int] = []

    def pack_hook(x):
        kept.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda x: x):
        head_logps(lin, h, t).sum().backward()
    assert kept and max(kept) < n * vocab
    kept.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda x: x):
        _plain(lin, h, t)().sum().backward()
    assert max(kept) >= n * vocab  # the textbook path does keep the logits: the test can fail


def test_chunk_rows_stay_in_budget():
    cpu = torch.device("cpu")
    assert chunk_rows(10, 1000, cpu) == 10
    rows = chunk_rows(10**6, 50257, cpu)
    assert rows >= 1 and rows * 50257 <= chunked_ce.CHUNK_LOGITS["cpu"]
    assert chunk_rows(10**6, 10**9, cpu) == 1


def test_only_plain_linear_heads_are_fused():
    assert fusable(torch.nn.Linear(4, 8))

    class Scaled(torch.nn.Linear):
        pass

    assert not fusable(Scaled(4, 8))
    assert not fusable(torch.nn.Sequential(torch.nn.Linear(4, 8)))


def test_forward_batch_equals_the_unchunked_head(model_tiny_ckpt, model_splits, monkeypatch):
    model, tok, head = load(model_tiny_ckpt)
    rows = read_rows(model_splits / "train.parquet")[:6]
    batch = collate(encode(tok, rows, 128), tok.pad_token_id)
    monkeypatch.setitem(chunked_ce.CHUNK_LOGITS, "cpu", 3 * model.config.vocab_size)

    def run():
        model.zero_grad()
        out = forward_batch(model, head, batch)
        out.token_logps.sum().backward()
        return out.token_logps.detach(), model.get_output_embeddings().weight.grad.clone()

    chunked_logps, chunked_grad = run()
    monkeypatch.setattr(forward, "fusable", lambda _: False)
    plain_logps, plain_grad = run()
    assert torch.allclose(chunked_logps, plain_logps, atol=1e-5)
    assert torch.allclose(chunked_grad, plain_grad, atol=1e-5)
