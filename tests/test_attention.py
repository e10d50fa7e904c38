"""``lfft train --attention``: every kernel keeps packed examples apart (a packed batch gives each
example the outputs of the padded batch), ``auto`` resolves by device and packing, and the choice
is recorded in ``lfft.json``."""

from __future__ import annotations

import json

import pytest
import torch

from lfft import cli
from lfft.config import TrainConfig
from lfft.errors import ConfigError, LfftError
from lfft.model.attention import current, set_attention
from lfft.model.batching import collate, encode, pack
from lfft.model.checkpoint import load
from lfft.model.forward import forward_batch
from lfft.model.train import read_rows, train

pytestmark = pytest.mark.usefixtures("model_one_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_parts(model_tiny_ckpt):
    return load(model_tiny_ckpt)


def _packed_vs_padded(model, head, tok, rows) -> tuple[float, float]:
    """The largest differences of the response log-probs and of the head's sequence logits
    between a packed batch and the padded batch of the same rows."""
    exs = encode(tok, rows, 128)
    with torch.no_grad():
        padded = forward_batch(model, head, collate(exs, tok.pad_token_id))
        packed = forward_batch(model, head, pack(exs, tok.pad_token_id, pack_length=80))
    logps = (padded.token_logps - packed.token_logps).abs().max().item()
    seq = (padded.fb_seq_logits - packed.fb_seq_logits).abs().max().item()
    return logps, seq


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_packed_rows_equal_the_padded_batch_with_each_cpu_kernel(
    backend, model_parts, model_splits
):
    model, tok, head = model_parts
    rows = read_rows(model_splits / "train.parquet")[:8]
    rows[2] = {**rows[2], "prompt": rows[2]["prompt"] * 3}  # lengths far apart
    try:
        assert set_attention(model, backend, packed=True, device=CPU) == backend
        assert current(model) == backend
        logps, seq = _packed_vs_padded(model, head, tok, rows)
    finally:
        set_attention(model, "sdpa", packed=False, device=CPU)
    assert logps < 1e-5 and seq < 1e-5, (logps, seq)


def test_auto_is_sdpa_on_the_cpu_and_for_padded_batches(model_parts):
    model = model_parts[0]
    set_attention(model, "eager", packed=False, device=CPU)
    assert set_attention(model, "auto", packed=True, device=CPU) == "sdpa"
    assert current(model) == "sdpa"
    assert set_attention(model, "auto", packed=False, device=CPU) == "sdpa"


def test_an_unknown_kernel_is_a_config_error(model_parts):
    with pytest.raises(ConfigError, match="--attention 'flash': expected one of auto, sdpa"):
        set_attention(model_parts[0], "flash", packed=True, device=CPU)


def test_flex_attention_on_the_cpu_is_refused_before_training(model_parts):
    """torch has no flex_attention backward on the CPU: asked for, it fails at once, not at the
    first backward."""
    with pytest.raises(LfftError, match="flex_attention needs a CUDA GPU"):
        set_attention(model_parts[0], "flex_attention", packed=True, device=CPU)
    assert current(model_parts[0]) != "flex_attention"


def test_attention_is_an_option_and_a_bad_value_one_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "--attention" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "-m", "m", "-d", "d", "-o", "o", "--attention", "flash"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) <= 2, err
    assert err[0].startswith("error: ") and "--attention" in err[0] and "flash" in err[0]


def test_train_records_the_kernel_it_used(model_tiny_ckpt, model_splits, tmp_path):
    cfg = TrainConfig(
        max_steps=2, device="cpu", packing="on", attention="eager", save_every=0, eval_every=0
    )
    result = train(model_tiny_ckpt, model_splits, tmp_path / "out", cfg)
    info = json.loads((tmp_path / "out" / "lfft.json").read_text())
    assert info["attention"] == "eager" and info["config"]["attention"] == "eager"
    assert info["packing"] is True and result.extra["attention"] == "eager"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_picks_flex_attention_for_packed_rows_on_a_gpu(model_tiny_ckpt, model_splits):
    cuda = torch.device("cuda")
    model, tok, head = load(model_tiny_ckpt, device=cuda)
    assert set_attention(model, "auto", packed=True, device=cuda) == "flex_attention"
    logps, seq = _packed_vs_padded(model, head, tok, read_rows(model_splits / "train.parquet")[:8])
    assert logps < 1e-4 and seq < 1e-4, (logps, seq)
    assert set_attention(model, "auto", packed=False, device=cuda) == "sdpa"
