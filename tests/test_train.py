"""`lfft train`: every objective runs, sft learns, every parameter moves, lambda = 0 leaves the
head alone, early stopping, and what the output folder holds."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from lfft.config import TrainConfig
from lfft.errors import LfftError
from lfft.model.checkpoint import load
from lfft.model.objectives import OBJECTIVES, kto_weights, preference_pairs
from lfft.model.train import train
from lfft.schemas import METRICS

pytestmark = pytest.mark.usefixtures("model_one_thread")


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=4, batch_size=8, lr=3e-3, warmup_steps=1, log_every=1, save_every=0)
    return TrainConfig(**{**base, **kw})


def _params(folder):
    model, _, head = load(folder)
    return dict(model.named_parameters()), dict(head.named_parameters())


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_trains_and_writes_a_loadable_checkpoint(
    objective, model_tiny_ckpt, model_splits, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / objective
    result = train(model_tiny_ckpt, model_splits, out, _cfg(objective=objective, max_steps=3))
    assert result.extra["steps"] == 3 and result.extra["objective"] == objective
    assert 0.0 <= result.extra["pad share"] < 1.0 and result.extra["tokens/s"] > 0
    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    table = pq.read_table(out / "metrics.parquet")
    assert table.schema.equals(METRICS, check_metadata=False)
    assert table.column("split").to_pylist() == ["train"] * 3 + ["val"]
    assert all(x == x for x in table.column("loss").to_pylist())  # no nan
    info = json.loads((out / "lfft.json").read_text())
    assert info["complete"] and info["config"]["objective"] == objective
    assert set(info["inputs"]) == {str(model_tiny_ckpt)} | {
        str(model_splits / f"{s}.parquet") for s in ("train", "val")
    }
    assert info["metrics"]["steps"] == 3 and info["metrics"]["val_loss"] is not None
    if objective == "dpo":
        # 20 prompts with a right and a wrong answer, plus 5 corrections over their response
        assert result.extra["pairs"] == 25 and info["counts"]["train_pairs"] == 25


def test_sft_lowers_the_loss_and_moves_every_parameter(model_tiny_ckpt, model_splits, tmp_path):
    out = tmp_path / "sft"
    train(model_tiny_ckpt, model_splits, out, _cfg(max_steps=30, lr=1e-2, warmup_steps=3))
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    before_m, before_h = _params(model_tiny_ckpt)
    after_m, after_h = _params(out)
    for name, p in {**before_m, **before_h}.items():
        q = after_m.get(name, after_h.get(name))
        assert not torch.equal(p, q), f"{name} did not change"


@pytest.mark.parametrize("how", [{"lambda_": 0.0}, {"feedback_loss": "none"}])
def test_no_feedback_loss_leaves_the_head_untouched(how, model_tiny_ckpt, model_splits, tmp_path):
    out = tmp_path / "nohead"
    result = train(model_tiny_ckpt, model_splits, out, _cfg(weight_decay=0.1, **how))
    _, before = _params(model_tiny_ckpt)
    _, after = _params(out)
    assert all(torch.equal(before[k], after[k]) for k in before)
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert all(r["fb_loss"] is None for r in rows) and result.extra["steps"] == 4


def test_each_feedback_loss_alone_trains_the_head(model_tiny_ckpt, model_splits, tmp_path):
    _, before = _params(model_tiny_ckpt)
    for mode in ("bce", "mse", "token"):
        out = tmp_path / mode
        train(model_tiny_ckpt, model_splits, out, _cfg(feedback_loss=mode, max_steps=2))
        _, after = _params(out)
        assert not torch.equal(before["score.weight"], after["score.weight"]), mode


def test_early_stopping_keeps_the_best(model_tiny_ckpt, model_splits, tmp_path):
    out = tmp_path / "early"
    cfg = _cfg(max_steps=50, lr=1e-9, eval_every=1, patience=2)  # val loss cannot improve
    result = train(model_tiny_ckpt, model_splits, out, cfg)
    assert result.extra["steps"] == 3 and "best val" in result.extra["early stopped"]
    info = json.loads((out / "lfft.json").read_text())
    assert info["metrics"]["best_step"] == 1 and info["metrics"]["early_stopped"]


def test_grad_accumulation_and_single_split_file(model_tiny_ckpt, model_splits, tmp_path):
    out = tmp_path / "accum"
    result = train(
        model_tiny_ckpt, model_splits / "train.parquet", out, _cfg(grad_accum=2, max_steps=2)
    )
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [r["split"] for r in rows] == ["train", "train"]  # no val split given
    assert result.extra["val loss"] is None and rows[0]["tokens"] > 0


def test_user_errors_are_one_line(model_tiny_ckpt, model_splits, tmp_path):
    with pytest.raises(LfftError, match="--objective"):
        train(model_tiny_ckpt, model_splits, tmp_path / "x", _cfg(objective="ppo"))
    with pytest.raises(LfftError, match="new folder"):
        train(model_tiny_ckpt, model_splits, model_tiny_ckpt, _cfg())
    with pytest.raises(LfftError, match="fp16 needs a CUDA GPU"):
        train(model_tiny_ckpt, model_splits, tmp_path / "x", _cfg(precision="fp16", device="cpu"))
    with pytest.raises(LfftError, match="not an lfft checkpoint"):
        train(model_splits, model_splits, tmp_path / "x", _cfg())


def test_lora_without_peft_says_how_to_install(
    model_tiny_ckpt, model_splits, tmp_path, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    with pytest.raises(LfftError, match=r"pip install 'lfft\[lora\]'"):
        train(model_tiny_ckpt, model_splits, tmp_path / "x", _cfg(lora=True))


def test_preference_pairs_within_groups():
    rows = [
        {"group_id": "a", "score": 1.0},
        {"group_id": "a", "score": 0.0},
        {"group_id": "a", "score": 0.5},
        {"group_id": "b", "score": 1.0},  # alone in its group: no pair
        {"group_id": "a", "score": None},  # no score: not used
        {"group_id": "c", "score": 0.5},
        {"group_id": "c", "score": 0.5},  # a tie: no pair
    ]
    assert preference_pairs(rows) == [(0, 1), (0, 2), (2, 1)]
    assert preference_pairs(rows, max_per_group=1) == [(0, 1)]


def test_kto_weights_follow_trls_rule():
    # balanced enough already: both 1
    assert kto_weights(10, 10) == (1.0, 1.0)
    assert kto_weights(12, 10) == (1.0, 1.0)
    # 1 good per 3 bad: desirable weight raised to the rule's lower bound
    w_d, w_u = kto_weights(10, 30)
    assert (w_d, w_u) == (3.0, 1.0) and 1 <= w_d * 10 / (w_u * 30) <= 4 / 3
    # many more good than bad: desirable weight lowered to the upper bound
    w_d, w_u = kto_weights(40, 10)
    assert w_d == pytest.approx(1 / 3) and w_d * 40 / 10 == pytest.approx(4 / 3)
    # a given weight is kept, the other fits around it
    assert kto_weights(10, 30, undesirable=0.5) == (1.5, 0.5)
    assert kto_weights(10, 30, desirable=1.0) == (1.0, 0.3333333333333333)
    assert kto_weights(0, 5) == (1.0, 1.0)


def test_lora_trains_adapters_and_writes_a_merged_model(model_tiny_ckpt, model_splits, tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    cfg = _cfg(lora=True, objective="kto", max_steps=4, save_every=2, lr=1e-2)
    train(model_tiny_ckpt, model_splits, out, cfg)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not [n for n, _ in merged.named_parameters() if "lora" in n]
    before, _ = _params(model_tiny_ckpt)
    after = dict(merged.named_parameters())
    assert not torch.equal(
        before["model.layers.0.self_attn.q_proj.weight"],
        after["model.layers.0.self_attn.q_proj.weight"],
    )
    assert torch.equal(before["model.norm.weight"], after["model.norm.weight"])  # frozen
    assert (out / "checkpoints" / "step-2" / "adapter.safetensors").exists()
