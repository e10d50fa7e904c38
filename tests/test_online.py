"""`lfft online`: exactly-once consumption, merging rounds, the gate, and kill safety.

The data stages are the real ones; the model stages (init, train, evaluate) are small fakes
that write a text "model", except in the one test that trains for real.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from lfft import online, stages
from lfft.config import CollectConfig, OnlineConfig
from lfft.errors import LfftError
from lfft.io import read_table, write_table
from lfft.online_state import FileState, consume, load_state, save_state
from lfft.report import StageResult
from lfft.schemas import PREDICTIONS, make_metadata

# --- helpers --------------------------------------------------------------------------------


def event_lines(sessions: range, feedback: bool = True) -> list[str]:
    """Three lines per session: a user message, the answer, and (optionally) a thumbs rating."""
    lines = []
    for s in sessions:
        sid, ts = f"s{s}", 1_700_000_000 + 10 * s
        lines.append(_msg(sid, ts, "m1", None, "user", f"What is {s} + {s}?"))
        lines.append(_msg(sid, ts + 1, "m2", "m1", "assistant", f"It is {s + s + s % 3}."))
        if feedback:
            lines.append(thumbs(sid, ts + 2, "up" if s % 3 == 0 else "down"))
    return lines


def _msg(sid, ts, mid, parent, role, content) -> str:
    event = {"event": "message", "session_id": sid, "ts": ts, "message_id": mid}
    event.update(parent_id=parent, role=role, content=content)
    return json.dumps(event)


def thumbs(sid: str, ts: int, value: str, mid: str = "m2") -> str:
    event = {"event": "feedback", "session_id": sid, "ts": ts, "message_id": mid}
    return json.dumps({**event, "kind": "thumbs", "value": value})


def write(path: Path, lines: list[str], mode: str = "a", end: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode, encoding="utf-8") as f:
        f.write("\n".join(lines) + end)


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=160)


def fake_init(out: Path, cfg) -> StageResult:
    out.mkdir(parents=True)
    (out / "model.txt").write_text("init")
    return StageResult("init")


def fake_train(model: Path, data: Path, out: Path, cfg, resume: bool = False) -> StageResult:
    """The 'model' is its lineage: parent model + the ids it was trained on."""
    ids = sorted(read_table(data / "train.parquet").column("interaction_id").to_pylist())
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.txt").write_text((model / "model.txt").read_text() + f" +{len(ids)}:{ids[0]}")
    return StageResult("train", extra={"train_loss": 1.0 / len(ids), "steps": cfg.max_steps})


def fake_evaluate(model: Path, data: Path, out: Path, cfg, baseline=None, nll=None) -> StageResult:
    """NLL falls with each round of training (so candidates pass the gate by default)."""
    gate = read_table(data)
    rounds = (model / "model.txt").read_text().count("+")
    value = nll(model) if nll else 2.0 / (1 + rounds)
    n = gate.num_rows
    table = {
        "interaction_id": gate.column("interaction_id"),
        "prompt": gate.column("prompt"),
        "response": gate.column("response"),
        "nll": [value] * n,
        "feedback_pred": [0.5] * n,
        "label": gate.column("label"),
    }
    import pyarrow as pa

    for name in PREDICTIONS.names:
        table.setdefault(name, pa.nulls(n, PREDICTIONS.field(name).type))
    write_table(out / "predictions.parquet", pa.table(table), PREDICTIONS, make_metadata("eval"))
    return StageResult("evaluate")


@pytest.fixture
def fake_models(monkeypatch):
    monkeypatch.setattr(stages, "init", fake_init)
    monkeypatch.setattr(stages, "train", fake_train)
    monkeypatch.setattr(stages, "evaluate", fake_evaluate)


CFG = OnlineConfig(max_steps=2, replay_ratio=1.0, keep_versions=0)


def run_once(logs: Path, work: Path, cfg: OnlineConfig = CFG) -> dict | None:
    records = online.run_online(logs, work, cfg, once=True, console=_quiet())
    return records[0] if records else None


def interactions(work: Path) -> list[tuple]:
    t = read_table(work / "interactions.parquet").sort_by("interaction_id")
    ids = t.column("interaction_id").to_pylist()
    fb = [
        sorted(json.dumps(e, sort_keys=True, default=str) for e in f)
        for f in t["feedback"].to_pylist()
    ]
    return list(zip(ids, fb, strict=True))


# --- consuming files exactly once ---------------------------------------------------------


def _consume(logs: Path, files: dict, tmp: Path) -> tuple[dict, bytes]:
    part = tmp / "part.jsonl"
    found = consume(logs, files, part)
    return found.files, part.read_bytes()


def test_only_complete_lines_are_consumed_and_the_rest_waits(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "a.jsonl", ["one", "two", '{"partial'], end="")
    files, got = _consume(logs, {}, tmp_path)
    assert got == b"one\ntwo\n"
    write(logs / "a.jsonl", [' line"}', "three"])
    files, got = _consume(logs, files, tmp_path)
    assert got == b'{"partial line"}\nthree\n'
    files, got = _consume(logs, files, tmp_path)
    assert got == b""
    assert files["a.jsonl"].lines == 4


def test_new_files_in_subfolders_are_found_and_temporary_names_skipped(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "day1" / "a.jsonl", ["a"])
    write(logs / "b.ndjson", ["b"])
    write(logs / ".b.jsonl.swp", ["hidden"])
    write(logs / "_writing.jsonl", ["in progress"])
    write(logs / "notes.txt", ["not a log"])
    files, got = _consume(logs, {}, tmp_path)
    assert sorted(files) == ["b.ndjson", "day1/a.jsonl"]
    assert sorted(got.splitlines()) == [b"a", b"b"]


def test_a_truncated_or_rewritten_file_is_read_again_from_the_start(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "a.jsonl", ["first", "second"])
    files, _ = _consume(logs, {}, tmp_path)
    write(logs / "a.jsonl", ["new"], mode="w")  # shorter than the offset: truncated
    files, got = _consume(logs, files, tmp_path)
    assert got == b"new\n"
    write(logs / "a.jsonl", ["NEW", "longer than before"], mode="w")  # same size, other head
    files, got = _consume(logs, files, tmp_path)
    assert got == b"NEW\nlonger than before\n"


def test_a_renamed_file_continues_at_its_offset(tmp_path):
    """Log rotation by rename: app.jsonl -> app.jsonl.1, then a fresh app.jsonl."""
    logs = tmp_path / "logs"
    write(logs / "app.jsonl", ["e1", "e2"])
    files, _ = _consume(logs, {}, tmp_path)
    write(logs / "app.jsonl", ["e3"])  # appended after the last round, before rotation
    os.rename(logs / "app.jsonl", logs / "app.jsonl.1")
    write(logs / "app.jsonl", ["e4"])
    files, got = _consume(logs, files, tmp_path)
    assert sorted(got.splitlines()) == [b"e3", b"e4"]
    assert files["app.jsonl.1"].lines == 3 and files["app.jsonl"].lines == 1


def test_a_file_replaced_with_the_same_head_continues(tmp_path):
    """Copy tools (rsync) replace a growing file with a new inode: same head, same offset."""
    logs = tmp_path / "logs"
    write(logs / "a.jsonl", ["e1"])
    files, _ = _consume(logs, {}, tmp_path)
    write(tmp_path / "copy.jsonl", ["e1", "e2"], mode="w")
    os.replace(tmp_path / "copy.jsonl", logs / "a.jsonl")
    files, got = _consume(logs, files, tmp_path)
    assert got == b"e2\n"


def test_compressed_files_are_consumed_whole_once_complete(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    data = gzip.compress(b"g1\ng2")
    (logs / "old.jsonl.gz").write_bytes(data[:-6])  # still being written
    files, got = _consume(logs, {}, tmp_path)
    assert got == b"" and "old.jsonl.gz" not in files
    (logs / "old.jsonl.gz").write_bytes(data)
    files, got = _consume(logs, files, tmp_path)
    assert got == b"g1\ng2\n"
    files, got = _consume(logs, files, tmp_path)
    assert got == b""


def test_a_rotated_and_compressed_file_is_not_consumed_twice(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "app.jsonl", ["e1", "e2"])
    files, _ = _consume(logs, {}, tmp_path)
    write(logs / "app.jsonl", ["e3"])
    (logs / "app.jsonl.1.gz").write_bytes(gzip.compress((logs / "app.jsonl").read_bytes()))
    (logs / "app.jsonl").unlink()
    files, got = _consume(logs, files, tmp_path)
    assert got == b"e3\n"


def test_state_round_trips_and_a_corrupt_state_is_a_user_error(tmp_path):
    path = tmp_path / "state.json"
    assert load_state(path).round == 0
    state = load_state(path)
    state.round, state.completed = 3, 2
    state.files["a.jsonl"] = FileState(dev=1, inode=2, offset=10, head="x", head_len=10, lines=2)
    save_state(path, state)
    assert load_state(path) == state
    path.write_text("{not json")
    with pytest.raises(LfftError, match="unreadable online state"):
        load_state(path)


def test_missing_logs_folder_is_a_user_error(tmp_path):
    with pytest.raises(LfftError, match="no such folder"):
        online.run_online(tmp_path / "nope", tmp_path / "work", CFG, once=True, console=_quiet())


# --- rounds ---------------------------------------------------------------------------------


def test_two_rounds_give_the_same_interactions_as_one_batch_collect(tmp_path, fake_models):
    """Lines appended to a seen file, a partial line, a new file, feedback arriving before
    its message (held) and after it (late): the merged artifact equals one batch collect."""
    logs, work = tmp_path / "logs", tmp_path / "work"
    first = event_lines(range(0, 30))
    write(logs / "a.jsonl", first)
    write(logs / "a.jsonl", [thumbs("s40", 9, "up")])  # its message arrives in round 2
    write(logs / "a.jsonl", [event_lines(range(30, 31))[0]], end="")  # partial last line
    r1 = run_once(logs, work)
    ids = {i for i, _ in interactions(work)}
    assert "s40:m2" not in ids and r1["round"] == 1
    write(logs / "a.jsonl", [""] + event_lines(range(31, 35)))  # completes the partial line
    write(logs / "b.jsonl", event_lines(range(35, 45)))
    write(logs / "b.jsonl", [thumbs("s1", 99, "up")])  # late feedback on a round-1 interaction
    r2 = run_once(logs, work)
    assert r2["round"] == 2

    from lfft.data.collect import collect

    batch = tmp_path / "batch"
    collect([logs], batch / "interactions.parquet", CollectConfig(format="events"))
    assert interactions(work) == interactions(batch)
    merged = dict(interactions(work))
    values = {k: sorted(json.loads(e)["value"] for e in v) for k, v in merged.items()}
    assert values["s40:m2"] == [0.0, 1.0]  # the held "up" attached once its message arrived
    assert values["s1:m2"] == [0.0, 1.0]  # late feedback updated a round-1 interaction
    lines = sum(len(p.read_text().splitlines()) for p in (work / "consumed").glob("*.jsonl"))
    assert lines == sum(len(p.read_text().splitlines()) for p in logs.glob("*.jsonl"))


def test_a_round_trains_promotes_and_records_history(tmp_path, fake_models):
    logs, work = tmp_path / "logs", tmp_path / "work"
    write(logs / "a.jsonl", event_lines(range(0, 40)))
    r1 = run_once(logs, work)
    assert r1["base"] == "v0000" and r1["version"] == "v0001" and r1["promoted"]
    assert os.readlink(work / "current") == "versions/v0001"
    assert r1["replay_rows"] == 0 and r1["new_rows"] > 0
    assert (work / "gate.parquet").exists() and r1["gate_rows"] > 0
    assert run_once(logs, work) is None  # nothing new: no round

    write(logs / "a.jsonl", event_lines(range(40, 50)))
    r2 = run_once(logs, work)
    assert r2["base"] == "v0001" and r2["version"] == "v0002" and r2["promoted"]
    assert r2["replay_rows"] == min(r2["new_rows"], r1["new_rows"])  # replay_ratio 1
    # the candidate was trained from current (v0001) on exactly the new + replayed rows
    lineage = (work / "versions" / "v0001" / "model.txt").read_text()
    trained = (work / "versions" / "v0002" / "model.txt").read_text()
    assert trained.startswith(lineage + " +")
    assert int(trained.rsplit("+", 1)[1].split(":")[0]) == r2["new_rows"] + r2["replay_rows"]
    # the recorded gate scores are those of the evaluations, and the decision follows them
    for who in ("candidate", "base"):
        predictions = work / "rounds" / "r0002" / f"eval_{who}" / "predictions.parquet"
        assert r2["gate"][who] == online.gate_metrics(predictions), who
    assert r2["gate"]["failed"] == online.gate_failures(
        r2["gate"]["candidate"], r2["gate"]["base"], CFG
    )
    history = online.read_history(work)
    assert [h["round"] for h in history] == [1, 2]
    assert history[1]["consumed"]["lines"] == 30
    assert sorted(p.name for p in (work / "versions").iterdir()) == ["v0000", "v0001", "v0002"]
    assert not list((work / "rounds").glob("*/data"))  # scratch data removed


def test_a_worse_candidate_is_kept_but_not_promoted(tmp_path, fake_models, monkeypatch):
    logs, work = tmp_path / "logs", tmp_path / "work"
    write(logs / "a.jsonl", event_lines(range(0, 40)))
    run_once(logs, work)

    def worse(model, data, out, cfg, baseline=None):  # training makes the model worse
        return fake_evaluate(
            model, data, out, cfg, nll=lambda m: 1.0 + (m / "model.txt").read_text().count("+")
        )

    monkeypatch.setattr(stages, "evaluate", worse)
    write(logs / "a.jsonl", event_lines(range(40, 50)))
    r2 = run_once(logs, work)
    assert not r2["promoted"] and r2["gate"]["failed"] == ["nll_pos"]
    assert r2["current"] == "v0001" and (work / "versions" / "v0002").is_dir()
    # the rejected round's rows are still new to current: the next round trains on them too
    monkeypatch.setattr(stages, "evaluate", fake_evaluate)
    write(logs / "a.jsonl", event_lines(range(50, 60)))
    r3 = run_once(logs, work)
    assert r3["base"] == "v0001" and r3["new_rows"] > r2["new_rows"]


def test_gate_tolerance_allows_a_small_regression():
    cfg = OnlineConfig(gate_tolerance=0.05, gate_metrics=["nll_pos", "brier"])
    assert (
        online.gate_failures({"nll_pos": 1.04, "brier": None}, {"nll_pos": 1.0, "brier": 0.2}, cfg)
        == []
    )
    assert online.gate_failures(
        {"nll_pos": 1.06, "brier": 0.3}, {"nll_pos": 1.0, "brier": 0.2}, cfg
    ) == [
        "nll_pos",
        "brier",
    ]
    with pytest.raises(LfftError, match="unknown"):
        online.gate_failures({"nll": 1.0}, {"nll": 1.0}, OnlineConfig(gate_metrics=["acc"]))


def test_too_few_new_rows_skip_training(tmp_path, fake_models):
    logs, work = tmp_path / "logs", tmp_path / "work"
    write(logs / "a.jsonl", event_lines(range(0, 40)))
    record = run_once(logs, work, OnlineConfig(min_new_rows=1000))
    assert not record["trained"] and record["reason"].endswith("new rows")
    assert record["current"] == "v0000"
    assert load_state(work / "state.json").completed == 1


def test_rollback_switches_current_and_is_recorded(tmp_path, fake_models):
    logs, work = tmp_path / "logs", tmp_path / "work"
    write(logs / "a.jsonl", event_lines(range(0, 40)))
    run_once(logs, work)
    online.rollback(work, "v0000")
    assert os.readlink(work / "current") == "versions/v0000"
    assert online.read_history(work)[-1]["event"] == "rollback"
    with pytest.raises(LfftError, match="no such version"):
        online.rollback(work, "v0042")


def test_old_versions_are_pruned_but_current_is_kept(tmp_path):
    layout = online.OnlineLayout(tmp_path)
    for n in range(5):
        (layout.versions / f"v{n:04d}").mkdir(parents=True)
    online.set_current(layout, "v0001")
    assert online.prune_versions(layout, keep=2) == ["v0000", "v0002"]
    assert sorted(p.name for p in layout.versions.iterdir()) == ["v0001", "v0003", "v0004"]


def test_one_online_process_per_work_folder(tmp_path):
    layout = online.OnlineLayout(tmp_path / "work")
    with online.lock(layout.root), pytest.raises(LfftError, match="another lfft online"):
        online.run_online(tmp_path, layout.root, CFG, once=True, console=_quiet())


# --- kill safety ------------------------------------------------------------------------------


class Killed(Exception):
    """A simulated kill (not a user error)."""


def _final_state(work: Path) -> dict:
    state = load_state(work / "state.json")
    history = [{k: v for k, v in h.items() if k != "ts"} for h in online.read_history(work)]
    for h in history:  # timings are not state
        h.get("update", {}).pop("seconds", None)
    return {
        "interactions": interactions(work),
        "offsets": {k: (f.offset, f.lines) for k, f in state.files.items()},
        "rounds": (state.round, state.completed),
        "consumed": {p.name: p.read_bytes() for p in sorted((work / "consumed").iterdir())},
        "versions": {
            p.name: (p / "model.txt").read_text() for p in sorted((work / "versions").iterdir())
        },
        "current": os.readlink(work / "current"),
        "history": history,
    }


def _two_rounds(tmp_path: Path, name: str, kill=None) -> dict:
    """Round 1, then round 2 with new lines; ``kill(round)`` arms a failure for that round."""
    logs, work = tmp_path / name / "logs", tmp_path / name / "work"
    write(logs / "a.jsonl", event_lines(range(0, 30)))
    run_once(logs, work)
    write(logs / "a.jsonl", event_lines(range(30, 40)))
    write(logs / "b.jsonl", event_lines(range(40, 45)) + [thumbs("s2", 77, "up")])
    if kill is not None:
        with kill(), pytest.raises(Killed):
            run_once(logs, work)
    run_once(logs, work)
    assert run_once(logs, work) is None
    return _final_state(work)


STEP_NAMES = [name for name, _ in online.STEPS]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(stages, "init", fake_init)
    mp.setattr(stages, "train", fake_train)
    mp.setattr(stages, "evaluate", fake_evaluate)
    try:
        return _two_rounds(tmp_path_factory.mktemp("ref"), "ref")
    finally:
        mp.undo()  # now, not at the end of the module: later tests use the real stages


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", STEP_NAMES)
def test_a_kill_at_any_step_then_a_rerun_gives_the_same_state(
    tmp_path, fake_models, monkeypatch, reference, step, when
):
    """Each step of round 2 fails once, before its work or after it (before its marker)."""

    def kill():
        index = STEP_NAMES.index(step)
        original = online.STEPS[index][1]

        def failing(rd):
            if rd.n == 2:
                if when == "after":
                    original(rd)
                raise Killed(step)
            return original(rd)

        steps = list(online.STEPS)
        steps[index] = (step, failing)
        return _patched(monkeypatch, online, "STEPS", steps)

    assert _two_rounds(tmp_path, "killed", kill) == reference


def test_a_kill_before_the_offsets_are_committed_consumes_nothing_twice(
    tmp_path, fake_models, monkeypatch, reference
):
    def kill():
        original = online.save_state

        def failing(path, state):
            if state.round == 2 and state.completed == 1:
                raise Killed("commit")
            return original(path, state)

        return _patched(monkeypatch, online, "save_state", failing)

    assert _two_rounds(tmp_path, "killed", kill) == reference


class _patched:
    """Patch an attribute for the duration of a ``with`` block."""

    def __init__(self, mp: pytest.MonkeyPatch, obj, name: str, value):
        self.mp, self.obj, self.name, self.value = mp, obj, name, value

    def __enter__(self):
        self.old = getattr(self.obj, self.name)
        setattr(self.obj, self.name, self.value)

    def __exit__(self, *exc):
        setattr(self.obj, self.name, self.old)


# --- with the real model stages -------------------------------------------------------------

TINY = """
[init]
preset = "tiny"
layers = 1
hidden = 32
heads = 2
vocab_size = 300
max_length = 96
[train]
batch_size = 8
max_length = 96
lr = 1e-2
warmup_steps = 1
save_every = 1
log_every = 1
[online]
max_steps = 2
gate_max_rows = 16
"""


def _gate_scores(version: Path, gate: Path, out: Path) -> dict:
    """The gate metrics of a version, evaluated here (as the round does)."""
    from lfft.config import EvaluateConfig
    from lfft.model.evaluate import evaluate

    evaluate(version, gate, out, EvaluateConfig(generate=False, max_rows=16))
    return online.gate_metrics(out / "predictions.parquet")


@pytest.mark.slow
def test_real_rounds_promote_an_improvement_and_reject_a_regression(tmp_path):
    """Round 1 trains the random initial model (its NLL of good answers must fall: promoted);
    round 2 trains with lr 1.0, which wrecks the weights (its NLL must rise: rejected, and
    `current` stays at round 1's model). The recorded gate scores are the versions' own."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from lfft.cli import app

    logs, work = tmp_path / "logs", tmp_path / "work"
    config = tmp_path / "lfft.toml"
    only_nll = TINY.replace("[online]\n", '[online]\ngate_metrics = ["nll_pos"]\n')
    config.write_text(only_nll.replace("max_steps = 2", "max_steps = 6"))
    args = ["online", "--logs", str(logs), "--work", str(work), "--config", str(config), "--once"]
    write(logs / "a.jsonl", event_lines(range(0, 40)))
    runner = CliRunner()
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    r1 = online.read_history(work)[0]
    assert r1["base"] == "v0000" and r1["trained"] and r1["gate_rows"] > 0
    assert r1["gate"]["candidate"]["nll_pos"] < 0.9 * r1["gate"]["base"]["nll_pos"]
    assert r1["promoted"] and r1["current"] == "v0001"
    assert os.readlink(work / "current") == "versions/v0001"

    config.write_text(config.read_text().replace("lr = 1e-2", "lr = 1.0"))
    write(logs / "a.jsonl", event_lines(range(40, 60)))
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    r2 = online.read_history(work)[1]
    assert r2["base"] == "v0001" and r2["trained"] and r2["version"] == "v0002"
    assert r2["gate"]["candidate"]["nll_pos"] > 1.5 * r2["gate"]["base"]["nll_pos"]
    assert not r2["promoted"] and r2["gate"]["failed"] == ["nll_pos"]
    assert r2["current"] == "v0001" and os.readlink(work / "current") == "versions/v0001"
    assert not (work / "versions" / "v0002" / "checkpoints").exists()

    v1 = _gate_scores(work / "versions" / "v0001", work / "gate.parquet", tmp_path / "e1")
    assert v1["nll_pos"] == pytest.approx(r1["gate"]["candidate"]["nll_pos"], rel=1e-6)
    assert v1["nll_pos"] == pytest.approx(r2["gate"]["base"]["nll_pos"], rel=1e-6)
    v2 = _gate_scores(work / "versions" / "v0002", work / "gate.parquet", tmp_path / "e2")
    assert v2["nll_pos"] == pytest.approx(r2["gate"]["candidate"]["nll_pos"], rel=1e-6)
    AutoModelForCausalLM.from_pretrained(work / "current")
    AutoTokenizer.from_pretrained(work / "current")


@pytest.mark.slow
def test_a_kill_while_the_candidate_is_moved_keeps_its_training(tmp_path, monkeypatch):
    """Killed after training finished, while its step checkpoints are deleted and before the
    candidate becomes versions/vNNNN: the rerun neither trains again (which resumed as a
    finished run and recorded no training numbers) nor loses what training reported."""
    import types

    logs, work = tmp_path / "logs", tmp_path / "work"
    config = tmp_path / "lfft.toml"
    config.write_text(TINY)
    write(logs / "a.jsonl", event_lines(range(0, 40)))
    calls = []
    real_train = stages.train

    def counted(*args, **kw):
        calls.append(kw.get("resume"))
        return real_train(*args, **kw)

    def dying_rmtree(path, *a, **kw):
        if Path(path).name == "checkpoints":
            raise Killed("rmtree")
        return shutil.rmtree(path, *a, **kw)

    monkeypatch.setattr(stages, "train", counted)
    monkeypatch.setattr(online, "shutil", types.SimpleNamespace(rmtree=dying_rmtree))
    cfg = OnlineConfig(max_steps=2, gate_max_rows=16)
    run = functools.partial(
        online.run_online, logs, work, cfg, once=True, config_path=config, console=_quiet()
    )
    with pytest.raises(Killed):
        run()
    assert (work / "rounds" / "r0001" / "candidate" / "checkpoints").is_dir()
    monkeypatch.setattr(online, "shutil", shutil)
    record = run()[0]
    assert calls == [False]  # trained once
    assert record["train"]["steps"] == 2 and record["train"]["train loss"] > 0
    assert record["current"] == "v0001" and (work / "versions" / "v0001" / "lfft.json").exists()


def test_cli_needs_logs_unless_rolling_back(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "lfft", "online", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --logs is required")


@pytest.mark.parametrize("refresh", [0, 1])
def test_the_gate_is_frozen_or_refreshed_from_the_newest_test_rows(tmp_path, fake_models, refresh):
    """gate_refresh 0 keeps the first gate set; 1 refreezes it each round from the newest test
    rows (at most gate_max_rows), and the record says which round's gate judged it."""
    logs, work = tmp_path / "logs", tmp_path / "work"
    cfg = OnlineConfig(max_steps=1, keep_versions=0, gate_refresh=refresh, gate_max_rows=3)
    write(logs / "a.jsonl", event_lines(range(0, 40)))
    first = run_once(logs, work, cfg)
    frozen = read_table(work / "gate.parquet").column("interaction_id").to_pylist()
    write(logs / "a.jsonl", event_lines(range(1000, 1040)))  # newer sessions (later ts)
    second = run_once(logs, work, cfg)
    gate = read_table(work / "gate.parquet")
    assert first["gate_round"] == 1
    if not refresh:
        assert gate.column("interaction_id").to_pylist() == frozen
        assert second["gate_round"] == 1
        return
    test = read_table(work / "splits" / "test.parquet").sort_by([("ts", "descending")])
    newest = test.column("interaction_id").to_pylist()[:3]
    assert sorted(gate.column("interaction_id").to_pylist()) == sorted(newest)
    assert all(i.startswith("s10") for i in newest)  # rows of the new sessions
    assert second["gate_round"] == 2 and second["gate_rows"] == 3
