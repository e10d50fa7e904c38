"""Generation throughput of ``lfft evaluate --generate``: the tokens counted are the tokens
generated, tokens/s is tokens over seconds, and ``--precision`` picks the weights' dtype."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lfft import cli
from lfft.config import EvaluateConfig
from lfft.errors import LfftError
from lfft.io import read_table
from lfft.model.batching import prompt_ids
from lfft.model.checkpoint import load
from lfft.model.evaluate import evaluate
from lfft.model.generate import generate_ids
from lfft.model.throughput import Throughput

pytestmark = pytest.mark.usefixtures("model_one_thread")
MAX_NEW = 8


def test_the_count_is_the_tokens_generated_up_to_each_eos(model_tiny_ckpt, model_splits):
    """A frequent token of free generation is made the eos, so that sequences stop at different
    steps: each counts its tokens up to and including its eos, not the padding after it."""
    model, tok, _ = load(model_tiny_ckpt)
    prompts = prompt_ids(tok, read_table(model_splits / "test.parquet").to_pylist())
    kw = {"pad_id": tok.pad_token_id, "max_new_tokens": MAX_NEW, "batch_size": 4}
    free = generate_ids(model, prompts, eos_id=tok.eos_token_id, **kw)
    eos = Counter(t for cs in free for c in cs for t in c).most_common(1)[0][0]
    stats = Throughput()
    out = generate_ids(model, prompts, eos_id=eos, stats=stats, **kw)  # greedy: free's tokens
    lengths = [len(c) for cs in out for c in cs]
    assert stats.sequences == len(lengths) == len(prompts)
    assert stats.tokens == sum(min(n + 1, MAX_NEW) for n in lengths)  # + its eos, when it ended
    assert stats.tokens < len(lengths) * MAX_NEW  # some stopped early: padding was not counted
    assert stats.seconds > 0 and stats.tokens_per_s == pytest.approx(stats.tokens / stats.seconds)


@pytest.mark.parametrize("precision,dtype", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_evaluate_records_throughput_for_the_model_and_the_baseline(
    precision, dtype, tmp_path, model_tiny_ckpt, model_splits
):
    cfg = EvaluateConfig(
        device="cpu", generate=True, max_new_tokens=MAX_NEW, batch_size=4, precision=precision
    )
    result = evaluate(
        model_tiny_ckpt, model_splits / "test.parquet", tmp_path, cfg, model_tiny_ckpt
    )
    gen = json.loads((tmp_path / "metrics.json").read_text())["generation"]
    for key in ("throughput", "baseline_throughput"):
        speed = gen[key]
        assert speed["device"] == "cpu" and speed["dtype"] == dtype and speed["batch_size"] == 4
        assert speed["sequences"] == gen["prompts"]
        assert 0 < speed["tokens"] <= gen["prompts"] * MAX_NEW
        assert speed["tokens_per_s"] == pytest.approx(speed["tokens"] / speed["seconds"])
    assert f"{dtype}, batch 4" in result.extra["generation speed"]
    assert "tok/s" in result.extra["baseline speed"]


def test_precision_is_an_evaluate_option_and_bad_values_are_one_line(
    capsys, tmp_path, model_tiny_ckpt, model_splits
):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "--precision" in capsys.readouterr().out
    args = ["evaluate", "-m", str(model_tiny_ckpt), "-d", str(model_splits / "test.parquet")]
    args += ["-o", str(tmp_path / "e"), "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--precision", "fp8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) <= 2 and "fp8" in err[0], err
    with pytest.raises(SystemExit) as e:  # fp16 needs a GPU: a user error, before any work
        cli.main([*args, "--precision", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and err == [
        "error: --precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU"
    ]
    cfg = EvaluateConfig(device="cpu", precision="fp16")
    with pytest.raises(LfftError, match="needs a CUDA GPU"):
        evaluate(model_tiny_ckpt, model_splits / "test.parquet", tmp_path / "p", cfg)
