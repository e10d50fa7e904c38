"""Training defaults follow the base: ``lfft init`` records whether the base is pretrained, and
``lfft train`` picks lr / warmup / lambda from that record and the objective unless given."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from lfft.config import InitConfig, TrainConfig, build
from lfft.io import read_meta
from lfft.model.defaults import AUTO_FIELDS, auto_values, is_pretrained, resolve
from lfft.model.init import init, load_base
from lfft.model.objectives import OBJECTIVES
from lfft.model.train import train

pytestmark = pytest.mark.usefixtures("model_one_thread")

LIKELIHOOD = [o for o in OBJECTIVES if o not in ("kto", "dpo")]


def test_scratch_defaults_are_the_tiny_base_values_for_every_objective():
    for objective in OBJECTIVES:
        for lora in (False, True):
            got = auto_values(objective, pretrained=False, lora=lora)
            pref_sft = 1.0 if objective in ("kto", "dpo") else 0.0
            assert got == {"lr": 1e-3, "warmup_steps": 10, "lambda_": 0.5, "pref_sft": pref_sft}


def test_kto_and_dpo_get_an_sft_term_on_desirable_rows_unless_given():
    for pretrained in (False, True):
        assert resolve(TrainConfig(objective="kto"), {"pretrained": pretrained})[0].pref_sft == 1
        assert resolve(TrainConfig(objective="dpo"), {"pretrained": pretrained})[0].pref_sft == 1
    cfg, chosen = resolve(TrainConfig(objective="kto", pref_sft=0.0), {})
    assert cfg.pref_sft == 0.0 and chosen.summary()["pref sft"] == "0 (given)"
    assert "pref sft" not in resolve(TrainConfig(objective="sft"), {})[1].summary()


def test_pretrained_lr_is_smaller_and_smallest_against_a_reference():
    full = {o: auto_values(o, pretrained=True)["lr"] for o in OBJECTIVES}
    lora = {o: auto_values(o, pretrained=True, lora=True)["lr"] for o in OBJECTIVES}
    assert all(1e-6 <= lr <= 2e-5 for lr in full.values())  # the anchors' range (training.md)
    assert {full[o] for o in LIKELIHOOD} == {2e-5}
    assert full["kto"] == full["dpo"] < full["sft"]
    assert all(lora[o] > full[o] for o in OBJECTIVES)  # adapters: larger steps


def test_unset_fields_are_resolved_and_given_ones_win():
    cfg, chosen = resolve(TrainConfig(objective="kto"), {"pretrained": True})
    assert (cfg.lr, cfg.warmup_steps, cfg.lambda_) == (5e-6, 10, 0.5) and chosen.given == ()
    assert chosen.summary()["lr"] == "5e-06 (auto: pretrained base, kto)"
    cfg, chosen = resolve(TrainConfig(objective="kto", lr=1e-3, lambda_=0.0), {"pretrained": True})
    assert (cfg.lr, cfg.lambda_, cfg.warmup_steps) == (1e-3, 0.0, 10)
    assert chosen.summary()["lr"] == "0.001 (given)" and chosen.source("warmup_steps") != "given"
    toml = build(TrainConfig, {"lr": 3e-4}, lr=None)  # a TOML value counts as given
    assert resolve(toml, {"pretrained": True})[0].lr == 3e-4
    assert all(getattr(TrainConfig(), f) is None for f in AUTO_FIELDS)


@pytest.mark.parametrize(
    ("info", "pretrained"),
    [
        ({"pretrained": True, "base_kind": "tiny"}, True),  # the record wins
        ({"pretrained": False, "base_kind": "gguf"}, False),
        ({"stage": "init", "base": "tiny", "base_kind": "tiny"}, False),  # before the record
        ({"stage": "init", "base": "m.gguf", "base_kind": "gguf"}, True),
        ({"stage": "train", "base": "tiny"}, False),  # a train checkpoint names init's base
        ({"stage": "train", "base": "HuggingFaceTB/SmolLM2-135M"}, True),
        ({}, False),  # nothing recorded: the old defaults
    ],
)
def test_checkpoints_without_the_record_are_judged_by_their_base(info, pretrained):
    assert is_pretrained(info)[0] is pretrained


def _local_base(tmp_path):
    """A plain transformers folder (no lfft.json): a small Llama with lfft's byte tokenizer."""
    model, tokenizer, _ = load_base(InitConfig(layers=1, hidden=32, heads=2))
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_init_records_whether_the_base_is_pretrained(tmp_path):
    tiny = tmp_path / "tiny"
    result = init(tiny, InitConfig(layers=1, hidden=32, heads=2))
    assert json.loads((tiny / "lfft.json").read_text())["pretrained"] is False
    assert result.extra["base"] == "tiny (tiny, from scratch)"
    local = tmp_path / "local"
    result = init(local, InitConfig(base=str(_local_base(tmp_path))))
    info = json.loads((local / "lfft.json").read_text())
    assert info["base_kind"] == "local" and info["pretrained"] is True
    assert result.extra["base"].endswith("(local, pretrained)")
    again = tmp_path / "again"  # an lfft checkpoint of the tiny base keeps its flag
    init(again, InitConfig(base=str(tiny)))
    assert json.loads((again / "lfft.json").read_text())["pretrained"] is False


def _train(start, splits, out, **kw):
    cfg = TrainConfig(max_steps=2, batch_size=8, log_every=1, save_every=0, eval_every=0, **kw)
    return train(start, splits, out, cfg)


def test_train_uses_shows_and_records_the_chosen_values(model_tiny_ckpt, model_splits, tmp_path):
    result = _train(model_tiny_ckpt, model_splits, tmp_path / "scratch")
    assert result.extra["lr"] == "0.001 (auto: base trained from scratch, sft)"
    assert result.extra["lambda"] == "0.5 (auto: base trained from scratch)"
    assert result.extra["base"].startswith("from scratch")

    start = tmp_path / "pretrained"  # the same weights, recorded as a pretrained base
    shutil.copytree(model_tiny_ckpt, start)
    info = json.loads((start / "lfft.json").read_text())
    (start / "lfft.json").write_text(json.dumps({**info, "pretrained": True}))
    out = tmp_path / "kto"
    result = _train(start, model_splits, out, objective="kto", warmup_steps=1)
    assert result.extra["lr"] == "5e-06 (auto: pretrained base, kto)"
    assert result.extra["warmup steps"] == "1 (given)"
    lrs = pq.read_table(out / "metrics.parquet").column("lr").to_pylist()
    assert 0 < max(lrs) <= 5e-6  # the optimizer ran with it
    meta = read_meta(out / "metrics.parquet")
    assert meta["config"]["lr"] == 5e-6 and meta["config"]["warmup_steps"] == 1
    done = json.loads((out / "lfft.json").read_text())
    assert done["pretrained"] is True and done["config"]["lambda"] == 0.5
    assert done["defaults"]["lr"] == {"value": 5e-6, "from": "auto: pretrained base, kto"}
    # a run that starts from this output inherits the flag (online rounds chain like this)
    result = _train(out, model_splits, tmp_path / "next", objective="sft")
    assert result.extra["lr"] == "2e-05 (auto: pretrained base, sft)"
