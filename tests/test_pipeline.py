"""`lfft pipeline`: skip when up to date, resume after a kill, --from/--until (fake stages), and
one end-to-end run on data/samples with the real stages."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from lfft.config import PipelineConfig
from lfft.errors import LfftError
from lfft.io import write_table
from lfft.pipeline import key_numbers, run_pipeline, select_stages
from lfft.report import StageResult
from lfft.schemas import INTERACTIONS, make_metadata
from lfft.stages import STAGE_NAMES, Layout, Stage

REPO = Path(__file__).resolve().parents[1]


class Boom(Exception):
    """A simulated crash (not a user error)."""


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def fake_stages(calls: list, fail: set[str] | None = None) -> list[Stage]:
    """a (raw -> a.txt, [collect] table) -> b (a.txt -> b.txt, [split]) -> c (b.txt -> c/, a
    resumable 'training' stage with step checkpoints, [evaluate])."""
    fail = fail if fail is not None else set()

    def text_stage(name: str, table: str, src, dst) -> Stage:
        def run(L: Layout, raw, cfg, resume):
            calls.append(name)
            if name in fail:
                raise Boom(name)
            text = "".join(p.read_text() for p in src(L, raw)) + f"|{name}:{_cfg_key(cfg)}"
            dst(L).write_text(text)
            return StageResult(name, rows_in=1, rows_out=1, extra={"loss": 0.5})

        return Stage(name, inputs=src, outputs=lambda L: [dst(L)], run=run, config=table)

    def run_c(L: Layout, raw, cfg, resume):
        calls.append(("c", resume))
        out = L.root / "c"
        step = out / "checkpoints"
        if not resume:
            assert not out.exists(), "a fresh run starts from an empty output"
            (step / "step-1").mkdir(parents=True)
        if "c" in fail:
            raise Boom("c")
        (out / "model.txt").write_text((L.root / "b.txt").read_text() + "|c")
        return StageResult("c", extra={"steps": 2, "train_loss": 1.25})

    return [
        text_stage("a", "collect", lambda L, raw: list(raw), lambda L: L.root / "a.txt"),
        text_stage("b", "split", lambda L, raw: [L.root / "a.txt"], lambda L: L.root / "b.txt"),
        Stage(
            "c",
            inputs=lambda L, raw: [L.root / "b.txt"],
            outputs=lambda L: [L.root / "c"],
            run=run_c,
            resumable=True,
            config="evaluate",
        ),
    ]


def _cfg_key(cfg) -> str:
    return str(getattr(cfg, "seed", getattr(cfg, "format", "")))


@pytest.fixture
def setup(tmp_path: Path):
    raw = tmp_path / "logs.jsonl"
    raw.write_text("line 1\n")
    return raw, tmp_path / "work"


def _run(raw, work, calls, config=None, fail=None, **kw):
    return run_pipeline(
        [raw],
        work,
        PipelineConfig(**kw),
        config,
        stages=fake_stages(calls, fail),
        console=_quiet(),
    )


def test_rerun_with_nothing_changed_skips_every_stage(setup):
    raw, work = setup
    calls: list = []
    first = _run(raw, work, calls)
    assert calls == ["a", "b", ("c", False)]
    assert not any(r.skipped for r in first)
    calls.clear()
    second = _run(raw, work, calls)
    assert calls == []
    assert [r.skipped for r in second] == [True, True, True]
    # a skipped stage still reports its last numbers in the summary
    assert second[2].extra["train_loss"] == 1.25


def test_changed_config_reruns_that_stage_and_what_depends_on_it(setup, tmp_path):
    raw, work = setup
    calls: list = []
    _run(raw, work, calls)
    config = tmp_path / "lfft.toml"
    config.write_text("[split]\nseed = 7\n")
    calls.clear()
    results = _run(raw, work, calls, config=config)
    assert calls == ["b", ("c", False)]
    assert [r.skipped for r in results] == [True, False, False]


def test_changed_input_reruns_everything(setup):
    raw, work = setup
    calls: list = []
    _run(raw, work, calls)
    raw.write_text("line 1\nline 2\n")
    calls.clear()
    _run(raw, work, calls)
    assert calls == ["a", "b", ("c", False)]


def test_edited_or_deleted_output_is_rebuilt(setup):
    raw, work = setup
    calls: list = []
    _run(raw, work, calls)
    (work / "b.txt").write_text("tampered")
    calls.clear()
    _run(raw, work, calls)
    assert calls == ["b"]  # rebuilt to the same content as before, so c stays up to date
    (work / "a.txt").unlink()
    calls.clear()
    _run(raw, work, calls)
    assert calls == ["a"]  # a rebuilt to the same content: b and c stay up to date


def test_force_reruns_every_stage(setup):
    raw, work = setup
    calls: list = []
    _run(raw, work, calls)
    calls.clear()
    _run(raw, work, calls, force=True)
    assert calls == ["a", "b", ("c", False)]


def test_crash_then_rerun_resumes_from_the_failed_stage(setup):
    raw, work = setup
    calls: list = []
    with pytest.raises(Boom):
        _run(raw, work, calls, fail={"b"})
    assert calls == ["a", "b"]
    calls.clear()
    results = _run(raw, work, calls)
    assert calls == ["b", ("c", False)]
    assert results[0].skipped


def test_killed_training_resumes_from_its_checkpoint(setup):
    raw, work = setup
    calls: list = []
    with pytest.raises(Boom):
        _run(raw, work, calls, fail={"c"})
    assert (work / "c" / "checkpoints" / "step-1").is_dir()
    calls.clear()
    results = _run(raw, work, calls)
    assert calls == [("c", True)]
    assert results[2].extra["resumed"] is True


def test_interrupted_training_with_a_new_config_starts_over(setup, tmp_path):
    raw, work = setup
    calls: list = []
    with pytest.raises(Boom):
        _run(raw, work, calls, fail={"c"})
    config = tmp_path / "lfft.toml"
    config.write_text("[evaluate]\nseed = 3\n")
    calls.clear()
    _run(raw, work, calls, config=config)
    assert calls == [("c", False)]  # the stale partial output was removed first


def test_from_and_until_run_part_of_the_pipeline(setup):
    raw, work = setup
    calls: list = []
    results = _run(raw, work, calls, until_stage="b")
    assert calls == ["a", "b"] and [r.stage for r in results] == ["a", "b"]
    calls.clear()
    results = _run(raw, work, calls, from_stage="c")
    assert calls == [("c", False)] and [r.stage for r in results] == ["c"]


def test_from_a_stage_whose_inputs_are_missing_is_a_user_error(setup):
    raw, work = setup
    with pytest.raises(LfftError, match="run the stages before it first"):
        _run(raw, work, [], from_stage="b")


def test_unknown_stage_names_are_user_errors(setup):
    raw, work = setup
    with pytest.raises(LfftError, match="unknown stage"):
        _run(raw, work, [], from_stage="trian")
    with pytest.raises(LfftError, match="comes after"):
        select_stages(fake_stages([]), "c", "a")


def test_missing_input_is_a_user_error(tmp_path):
    with pytest.raises(LfftError, match="no such file"):
        _run(tmp_path / "nope", tmp_path / "work", [])


def test_a_stage_run_by_hand_is_recognised_from_its_artifact_metadata(tmp_path):
    """No completion record, but the artifact's lfft metadata names the same config and input
    fingerprints: the stage is up to date (e.g. after `make collect`)."""
    from lfft.config import CollectConfig, as_dict
    from lfft.io import fingerprints
    from lfft.stages import STAGES

    raw = tmp_path / "logs.jsonl"
    raw.write_text("{}\n")
    layout = Layout(tmp_path / "work")
    meta = make_metadata("collect", as_dict(CollectConfig()), fingerprints([raw]))
    write_table(layout.interactions, INTERACTIONS.empty_table(), INTERACTIONS, meta)
    write_table(
        layout.root / "interactions.rejects.parquet", INTERACTIONS.empty_table(), INTERACTIONS, meta
    )
    results = run_pipeline(
        [raw],
        layout.root,
        PipelineConfig(until_stage="collect"),
        stages=STAGES[:1],
        console=_quiet(),
    )
    assert results[0].skipped
    record = layout.completion_records / "collect.json"
    assert json.loads(record.read_text())["stage"] == "collect"


def test_a_checkpoint_made_by_hand_is_recognised_from_its_lfft_json(setup):
    """A checkpoint folder's lfft.json (config + input fingerprints) stands for its record,
    but only once it says it is complete."""
    from lfft.config import InitConfig, as_dict
    from lfft.io import fingerprints

    raw, work = setup
    calls: list = []

    def run(L, raw, cfg, resume):
        calls.append("ckpt")
        return StageResult("ckpt")

    stage = Stage(
        "ckpt",
        inputs=lambda L, raw: list(raw),
        outputs=lambda L: [L.root / "ckpt"],
        run=run,
        config="init",
    )
    info = {"config": as_dict(InitConfig()), "inputs": fingerprints([raw]), "complete": False}
    (work / "ckpt").mkdir(parents=True)
    (work / "ckpt" / "lfft.json").write_text(json.dumps(info))
    run_pipeline([raw], work, stages=[stage], console=_quiet())
    assert calls == ["ckpt"]  # incomplete: run
    (work / ".lfft" / "ckpt.json").unlink()
    (work / "ckpt" / "lfft.json").write_text(json.dumps({**info, "complete": True}))
    assert run_pipeline([raw], work, stages=[stage], console=_quiet())[0].skipped


def test_summary_table_names_every_stage_and_its_numbers(setup):
    raw, work = setup
    console = _quiet()
    run_pipeline([raw], work, PipelineConfig(), stages=fake_stages([]), console=console)
    text = console.file.getvalue()
    for needle in ("lfft pipeline", "a", "b", "c", "train_loss 1.25", "steps 2", "total"):
        assert needle in text


def test_key_numbers_pick_losses_metrics_and_counts():
    extra = {
        "train_loss": 1.5,
        "pii": {"email": 3},
        "metrics": {"auc": 0.75},
        "steps": 40,
        "path": "x",
        "resumed": True,
    }
    assert key_numbers(extra) == {"train_loss": 1.5, "metrics.auc": 0.75, "steps": 40}


def test_stage_table_is_the_documented_order():
    assert STAGE_NAMES == ("collect", "clean", "normalize", "split", "init", "train", "evaluate")


# --- end to end ---------------------------------------------------------------------------

TINY = """
[collect]
format = "events"
[init]
preset = "tiny"
layers = 1
hidden = 32
heads = 2
vocab_size = 400
max_length = 128
[train]
objective = "filtered"
max_steps = 10
lr = 1e-2
batch_size = 8
max_length = 128
warmup_steps = 1
eval_every = 5
save_every = 5
log_every = 1
[evaluate]
generate = true
max_new_tokens = 4
max_rows = 8
"""


def _raw_lines(folder: Path) -> int:
    import gzip

    files = sorted(folder.iterdir())
    data = [gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes() for p in files]
    return sum(len(d.splitlines()) for d in data)


def _record(work: Path, stage: str) -> dict:
    return json.loads((work / ".lfft" / f"{stage}.json").read_text())["result"]


@pytest.mark.slow
def test_pipeline_end_to_end_on_the_samples(tmp_path):
    """`lfft pipeline data/samples/events`: row counts add up from the raw lines to the splits,
    training lowers the loss, the checkpoint loads with transformers and predicts the good
    test answers better than the initial model; a rerun skips every stage, a changed
    [evaluate] table reruns evaluate only."""
    import math
    import time

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from lfft.cli import app
    from lfft.config import EvaluateConfig
    from lfft.io import count_rows, fingerprint, read_table
    from lfft.model.evaluate import evaluate

    samples = REPO / "data" / "samples" / "events"
    config = tmp_path / "lfft.toml"
    config.write_text(TINY)
    work = tmp_path / "work"
    args = ["pipeline", str(samples), "--work", str(work), "--config", str(config)]
    runner = CliRunner()
    first = runner.invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "lfft pipeline" in first.output and "total" in first.output
    L = Layout(work)

    # every raw line is read; every row of a stage is passed on or rejected with a reason
    collect = _record(work, "collect")
    assert collect["rows_in"] == _raw_lines(samples) > 1000
    assert count_rows(work / "interactions.rejects.parquet") == sum(collect["rejects"].values())
    assert collect["rows_out"] == count_rows(L.interactions) > 100
    rows = collect["rows_out"]
    for stage, out in (("clean", L.clean), ("normalize", L.normalized)):
        result = _record(work, stage)
        rejected = count_rows(out.with_suffix(".rejects.parquet"))
        assert result["rows_in"] == rows == result["rows_out"] + rejected, stage
        assert rejected == sum(result["rejects"].values()), stage
        rows = result["rows_out"]
        assert count_rows(out) == rows, stage
    split = _record(work, "split")
    sizes = {name: count_rows(L.splits / f"{name}.parquet") for name in ("train", "val", "test")}
    rejected = count_rows(L.splits / "rejects.parquet")
    assert split["rows_in"] == rows == sum(sizes.values()) + rejected
    assert min(sizes.values()) > 0 and sizes["train"] > sizes["val"] + sizes["test"]
    assert _record(work, "train")["rows_in"] == sizes["train"]

    # training: the loss fell, and the checkpoint is a transformers model
    metrics = read_table(L.ckpt_final / "metrics.parquet").to_pylist()
    losses = [r["loss"] for r in metrics if r["split"] == "train"]
    assert len(losses) == 10 and sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3
    val = [r["loss"] for r in metrics if r["split"] == "val"]
    assert len(val) == 2 and val[1] < val[0]
    model = AutoModelForCausalLM.from_pretrained(L.ckpt_final)
    tokenizer = AutoTokenizer.from_pretrained(L.ckpt_final)
    assert model.config.num_hidden_layers == 1 and tokenizer.pad_token is not None

    # evaluation: in range, and better than the initial model on good answers (what the
    # `filtered` objective trains: the likelihood of positively rated responses)
    final = json.loads((L.eval / "metrics.json").read_text())
    evaluate(L.ckpt_init, L.test, tmp_path / "eval_init", EvaluateConfig(max_rows=8))
    init = json.loads((tmp_path / "eval_init" / "metrics.json").read_text())
    assert final["rows"] == init["rows"] == 8 and final["lm"]["rows_positive"] > 0
    vocab = model.config.vocab_size
    assert 1 < final["lm"]["perplexity_positive"] < init["lm"]["perplexity_positive"] < 2 * vocab
    assert final["lm"]["perplexity_positive"] < 0.7 * init["lm"]["perplexity_positive"]
    binary = final["feedback"]["binary"]
    assert 0 <= binary["brier"] <= 1 and binary["rows"] > 0
    assert binary["auc"] is None or 0 <= binary["auc"] <= 1
    preds = read_table(L.eval / "predictions.parquet").to_pandas()
    assert preds["nll"].notna().all() and preds["generation"].notna().all()
    gen = final["generation"]
    assert gen["prompts"] == preds["prompt"].nunique() and 0 <= gen["win_rate"] <= 1
    assert math.isfinite(gen["mean_score"]) and math.isfinite(gen["baseline_mean_score"])

    # a rerun with nothing changed skips every stage and changes nothing
    before = {p: fingerprint(p) for p in (L.interactions, L.splits, L.ckpt_final, L.eval)}
    t0 = time.perf_counter()
    second = runner.invoke(app, args, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert second.output.count("skipped (up to date)") == len(STAGE_NAMES)
    assert time.perf_counter() - t0 < 10
    assert {p: fingerprint(p) for p in before} == before

    # a changed [evaluate] table reruns evaluate, and nothing before it
    config.write_text(TINY.replace("generate = true", "generate = false"))
    third = runner.invoke(app, args, catch_exceptions=False)
    assert third.exit_code == 0, third.output
    assert third.output.count("skipped (up to date)") == len(STAGE_NAMES) - 1
    assert fingerprint(L.ckpt_final) == before[L.ckpt_final]
    assert read_table(L.eval / "predictions.parquet").column("generation").null_count == 8


def test_the_demo_config_loads_and_names_its_command():
    from lfft.config import STAGE_CONFIGS, load_toml, stage_config

    path = REPO / "data" / "samples" / "lfft.toml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# make demo") and "lfft pipeline data/samples/events" in first
    for table in load_toml(path):
        assert isinstance(stage_config(table, path), STAGE_CONFIGS[table])


def test_cli_reports_a_missing_input_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "lfft", "pipeline", str(tmp_path / "nope"), "--work", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope'}: no such file or folder"
    ]
