"""Batching: chat-template prompts, response masks, token labels, length grouping, row
independence of the forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from lfft.model.batching import collate, encode, plan, render_prompt
from lfft.model.checkpoint import load
from lfft.model.forward import forward_batch

pytestmark = pytest.mark.usefixtures("model_one_thread")


@pytest.fixture(scope="module")
def model_parts(model_tiny_ckpt):
    return load(model_tiny_ckpt)


def _row(prompt="What is 2 + 2?", response="The answer is 4.", **kw):
    row = {
        "context": [],
        "prompt": prompt,
        "response": response,
        "target": response,
        "score": 1.0,
        "label": 1,
        "weight": 1.0,
        "signal": "binary",
        "token_spans": [],
        "group_id": "g",
    }
    return {**row, **kw}


def test_prompt_is_the_chat_template_and_response_ends_with_eos(model_parts):
    _, tok, _ = model_parts
    row = _row(context=[{"role": "system", "content": "Be brief."}])
    (ex,) = encode(tok, [row], max_length=128)
    prompt = tok.decode(ex.ids[: ex.prompt_len])
    assert prompt == render_prompt(tok, row)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tok.decode(ex.ids[ex.prompt_len :]) == "The answer is 4.<|im_end|>"


def test_use_target_learns_the_correction(model_parts):
    _, tok, _ = model_parts
    row = _row(response="The answer is 5.", target="The answer is 4.", label=0)
    (resp,) = encode(tok, [row], 128)
    (tgt,) = encode(tok, [row], 128, use_target=True)
    assert tok.decode(tgt.ids[tgt.prompt_len :]) == "The answer is 4.<|im_end|>"
    assert tgt.is_target and tgt.edited and resp.edited and not resp.is_target


def test_too_long_cuts_the_prompt_start_then_the_response_end(model_parts):
    _, tok, _ = model_parts
    long_prompt = "What is 1 + 1? " * 40
    (ex,) = encode(tok, [_row(prompt=long_prompt)], max_length=32)
    assert len(ex) == 32
    assert tok.decode(ex.ids[ex.prompt_len :]) == "The answer is 4.<|im_end|>"
    assert tok.decode(ex.ids[: ex.prompt_len]).endswith("<|im_start|>assistant\n")
    row = _row(response="The answer is 4. " * 30)
    (ex,) = encode(tok, [row], max_length=32)
    full_prompt = len(tok(render_prompt(tok, row), add_special_tokens=False)["input_ids"])
    assert len(ex) == 32 and ex.prompt_len == min(16, full_prompt)
    assert ex.ids[-1] != tok.eos_token_id  # the response was cut


def test_token_spans_become_token_labels(model_parts):
    _, tok, _ = model_parts
    response = "The answer is 5."
    cut = len("The answer is ")
    spans = [{"start": 0, "end": cut, "label": 1}, {"start": cut, "end": len(response), "label": 0}]
    (ex,) = encode(tok, [_row(response=response, token_spans=spans, signal="token")], 128)
    offsets = tok(response, add_special_tokens=False, return_offsets_mapping=True)
    expected = [0.0 if end > cut else 1.0 for _, end in offsets["offset_mapping"]] + [-1.0]
    assert ex.token_labels == expected and 0.0 in expected and 1.0 in expected
    (plain,) = encode(tok, [_row()], 128)
    assert plain.token_labels is None


def test_collate_pads_right_and_marks_responses(model_parts):
    _, tok, _ = model_parts
    rows = [_row(), _row(prompt="What is 12 + 30?", response="It is 42.", label=None, score=None)]
    exs = encode(tok, rows, 128)
    b = collate(exs, tok.pad_token_id)
    t = max(len(e) for e in exs)
    assert b.input_ids.shape == (2, t) and b.tokens == sum(len(e) for e in exs)
    for i, e in enumerate(exs):
        n = len(e)
        assert b.input_ids[i, :n].tolist() == e.ids
        assert (b.input_ids[i, n:] == tok.pad_token_id).all()
        assert b.attention_mask[i].sum() == n and b.last_index[i] == n - 1
        assert b.response_mask[i].nonzero().squeeze(1).tolist() == list(range(e.prompt_len, n))
    assert b.label[0] == 1 and math.isnan(b.label[1]) and math.isnan(b.score[1])


def test_plan_covers_every_example_within_budgets():
    lengths = [5, 50, 7, 48, 6, 52, 9, 51, 30, 31, 29, 8]
    batches = plan(lengths, batch_size=4, batch_tokens=120, shuffle=True, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 4 and max(lengths[i] for i in b) * len(b) <= 120
    assert batches == plan(lengths, 4, 120, shuffle=True, seed=3)  # deterministic
    assert batches != plan(lengths, 4, 120, shuffle=True, seed=4)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert 1 - sum(lengths) / padded < 0.25  # similar lengths share a batch


def test_plan_keeps_pairs_together():
    lengths = [10, 40, 12, 13, 50, 9, 20, 21]
    for b in plan(lengths, batch_size=4, batch_tokens=10_000, shuffle=True, seed=0, group=2):
        assert len(b) % 2 == 0
        assert all(b[k] % 2 == 0 and b[k + 1] == b[k] + 1 for k in range(0, len(b), 2))


def test_rows_are_independent_in_a_batch(model_parts, model_splits):
    from lfft.model.train import read_rows

    model, tok, head = model_parts
    rows = read_rows(model_splits / "train.parquet")[:12]
    rows[3] = {**rows[3], "prompt": rows[3]["prompt"] * 4}  # very different lengths
    exs = encode(tok, rows, 128)
    with torch.no_grad():
        together = forward_batch(model, head, collate(exs, tok.pad_token_id))
        for i, e in enumerate(exs):
            alone = forward_batch(model, head, collate([e], tok.pad_token_id))
            n = len(e)
            assert torch.allclose(alone.token_logps[0], together.token_logps[i, :n], atol=1e-5)
            assert torch.allclose(alone.fb_seq_logits[0], together.fb_seq_logits[i], atol=1e-5)


def test_token_logps_match_transformers_loss(model_parts):
    model, tok, head = model_parts
    (ex,) = encode(tok, [_row()], 128)
    ids = torch.tensor([ex.ids])
    labels = ids.clone()
    labels[0, : ex.prompt_len] = -100
    with torch.no_grad():
        hf = model(ids, labels=labels).loss
        out = forward_batch(model, head, collate([ex], tok.pad_token_id))
    ours = -out.token_logps.sum() / out.response_mask.sum()
    assert torch.allclose(hf, ours, atol=1e-5)
    assert (out.token_logps[~out.response_mask] == 0).all()
