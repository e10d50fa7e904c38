"""Padding-free packing: a packed batch gives every example the outputs it has in a padded
batch, the packing plan keeps its budgets, and `lfft train --packing on` trains and resumes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lfft.config import TrainConfig
from lfft.errors import ConfigError, LfftError
from lfft.model.batching import (
    collate,
    encode,
    pack,
    pack_rows,
    plan,
    plan_pad_share,
    use_packing,
)
from lfft.model.checkpoint import load
from lfft.model.forward import forward_batch, packing_works
from lfft.model.train import read_rows, train

pytestmark = pytest.mark.usefixtures("model_one_thread")


@pytest.fixture(scope="module")
def model_parts(model_tiny_ckpt):
    return load(model_tiny_ckpt)


@pytest.mark.parametrize("lm_head", ["plain", "full"])
def test_packed_outputs_equal_the_padded_batch(lm_head, model_parts, model_splits, monkeypatch):
    model, tok, head = model_parts
    if lm_head == "full":  # the path of models whose LM head is more than a Linear
        monkeypatch.setattr(model.config, "logit_scale", 2.0, raising=False)
    rows = read_rows(model_splits / "train.parquet")[:10]
    rows[3] = {**rows[3], "prompt": rows[3]["prompt"] * 4}  # very different lengths
    rows[5] = {**rows[5], "response": ""}  # a response of one token (eos)
    exs = encode(tok, rows, 128)
    assert len(exs[5]) - exs[5].prompt_len == 1
    padded = collate(exs, tok.pad_token_id)
    packed = pack(exs, tok.pad_token_id, pack_length=64)
    assert len(packed.pack_ids) < len(exs) and packed.positions < padded.positions
    assert packed.tokens == padded.tokens == sum(len(e) for e in exs)
    with torch.no_grad():
        a = forward_batch(model, head, padded)
        b = forward_batch(model, head, packed)
    assert torch.allclose(a.token_logps, b.token_logps, atol=1e-5)
    assert torch.allclose(a.fb_seq_logits, b.fb_seq_logits, atol=1e-5)
    mask = padded.attention_mask.bool()  # the head's logits on real tokens (pads are unused)
    assert torch.allclose(a.fb_token_logits[mask], b.fb_token_logits[mask], atol=1e-5)
    assert packing_works(model)


def test_packed_dpo_pair_losses_equal_the_padded_batch(model_parts, model_splits):
    from lfft.model.objectives import LossSettings, lm_loss, train_set

    model, tok, head = model_parts
    data = train_set(tok, read_rows(model_splits / "train.parquet"), "dpo", 128, 8)
    exs = data.examples[:8]  # 4 pairs (chosen, rejected)
    settings = LossSettings("dpo", "none", 0.0)
    with torch.no_grad():
        losses = []
        for batch in (collate(exs, tok.pad_token_id), pack(exs, tok.pad_token_id, 96)):
            out = forward_batch(model, None, batch)
            ref = forward_batch(model, None, batch).token_logps * 0.9  # any reference
            losses.append(lm_loss(settings, batch, out, ref))
    assert torch.allclose(losses[0], losses[1], atol=1e-5)


def test_pack_rows_fills_rows_within_capacity():
    lengths = [30, 100, 45, 80, 12, 60, 1, 70, 33]
    rows = pack_rows(lengths, 128)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 128 for r in rows)
    assert len(rows) == 4  # 431 tokens: 4 rows of at most 128
    assert pack_rows([200, 10], 128) == [[0], [1]]  # longer than a row: a row of its own


def test_packed_plan_budgets_pairs_and_seed():
    lengths = [5, 50, 7, 48, 6, 52, 9, 51, 30, 31, 29, 8, 70, 3]
    batches = plan(lengths, 6, 120, shuffle=True, seed=3, packed=True)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 6 and sum(lengths[i] for i in b) <= 120 for b in batches)
    assert batches == plan(lengths, 6, 120, shuffle=True, seed=3, packed=True)
    assert batches != plan(lengths, 6, 120, shuffle=True, seed=4, packed=True)
    for b in plan(lengths, 6, 10_000, shuffle=True, seed=0, group=2, packed=True):
        assert all(b[k] % 2 == 0 and b[k + 1] == b[k] + 1 for k in range(0, len(b), 2))


def test_packing_mode_is_checked_and_auto_packs_only_when_padding_is_large():
    assert use_packing("on", 0.0) and not use_packing("off", 0.9)
    assert use_packing("auto", 0.4) and not use_packing("auto", 0.05)
    with pytest.raises(ConfigError, match="--packing 'yes'"):
        use_packing("yes", 0.0)
    # two batches: [2, 4] pads to 8 positions, [3] needs none -> 2 pads of 11 positions
    assert plan_pad_share([2, 4, 3], [[0, 1], [2]]) == pytest.approx(2 / 11)


def test_train_packed_has_less_padding(model_tiny_ckpt, model_splits, tmp_path):
    from typer.testing import CliRunner

    from lfft.cli import app

    args = ["--max-steps", "3", "--batch-size", "16", "--warmup-steps", "1", "--save-every", "0"]
    common = ["train", "-m", str(model_tiny_ckpt), "-d", str(model_splits), *args, "-q"]
    result = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "on"), "--packing", "on"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "on" / "lfft.json").read_text())
    assert info["packing"] is True and info["config"]["packing"] == "on"
    off = train(
        model_tiny_ckpt,
        model_splits,
        tmp_path / "off",
        TrainConfig(max_steps=3, batch_size=16, warmup_steps=1, save_every=0, packing="off"),
    )
    assert off.extra["packing"].startswith("off (off; padded batches would be ")
    assert info["metrics"]["pad_share"] < off.extra["pad share"]
    assert math.isfinite(info["metrics"]["train_loss"])


def test_packing_on_refuses_a_model_that_leaks(
    model_tiny_ckpt, model_splits, tmp_path, monkeypatch
):
    monkeypatch.setattr("lfft.model.train_setup.packing_works", lambda model: False)
    with pytest.raises(LfftError, match="--packing on: LlamaForCausalLM lets packed examples"):
        train(model_tiny_ckpt, model_splits, tmp_path / "x", TrainConfig(max_steps=1, packing="on"))
