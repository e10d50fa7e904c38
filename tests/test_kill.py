"""Kill safety with real kills: `lfft train` and `lfft online` run as subprocesses, get SIGKILL
(to their whole process group) once their run folder shows progress, and are run again; the
result must equal an uninterrupted run's: the same weights bit for bit (CPU), every log line
consumed once, the same versions, history and artifacts.

The uninterrupted runs are in this process (through the same CLI), one torch thread on both
sides so that the arithmetic is the same.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_online import TINY, event_lines, thumbs, write
from typer.testing import CliRunner

from lfft import online
from lfft.cli import app
from lfft.io import read_table
from lfft.model.checkpoint import step_dirs
from lfft.online_state import load_state

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("model_one_thread")]


# --- running and killing ----------------------------------------------------------------------


class Lfft:
    """An ``lfft`` subprocess in its own process group, its output in a log file."""

    def __init__(self, args: list[str], log: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lfft", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a new process group: killpg reaches every child
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_when(self, ready: Callable[[], bool], what: str, timeout: float = 600) -> None:
        """SIGKILL the process group as soon as ``ready()`` (polled every 5 ms) holds."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"ended (rc {self.proc.returncode}) before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                self._kill()
                pytest.fail(f"no {what} after {timeout} s:\n{self.output()}")
            time.sleep(0.005)
        self._kill()
        assert self.proc.returncode == -signal.SIGKILL, self.output()

    def _kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    assert {p.name for p in files} >= {"model.safetensors", "feedback_head.safetensors"}
    return {f"{p.name}:{k}": v for p in files for k, v in load_file(p).items()}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{a} and {b} differ in {name}"


# --- lfft train ---------------------------------------------------------------------------------

STEPS = 16
STEP_LINE = re.compile(r"^step\s+(\d+)/\d+", re.M)


def _latest_step(out: Path) -> int:
    done = step_dirs(out)
    return int(done[-1].name.split("-")[1]) if done else 0


def test_lfft_train_killed_mid_run_resumes_to_the_same_weights(
    model_tiny_ckpt, model_splits, tmp_path
):
    """Killed once a step checkpoint exists, then rerun with --resume: the resumed process
    starts at the step after the newest checkpoint, and the final weights (model and head) and
    per-step losses equal an uninterrupted run's."""
    args = ["train", "--model", str(model_tiny_ckpt), "--data", str(model_splits)]
    args += ["--objective", "kto", "--max-steps", str(STEPS), "--lr", "3e-3", "--seed", "3"]
    args += ["--batch-size", "8", "--warmup-steps", "2", "--device", "cpu"]
    args += ["--save-every", "1", "--keep-last", "2", "--eval-every", "5", "--log-every", "1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _invoke([*args, "--out", str(straight)])

    first = Lfft([*args, "--out", str(killed)], tmp_path / "first.log")
    first.kill_when(lambda: _latest_step(killed) >= 1, "a step checkpoint")
    last = _latest_step(killed)
    assert not (killed / "lfft.json").exists() and last < STEPS
    second = Lfft([*args, "--out", str(killed), "--resume"], tmp_path / "second.log")
    assert second.proc.wait(timeout=600) == 0, second.output()

    logged = [int(s) for s in STEP_LINE.findall(second.output())]
    assert logged == list(range(last + 1, STEPS + 1))  # resumed, not started over
    _assert_same_weights(straight, killed)
    keys = ["step", "split", "loss", "lm_loss", "fb_loss", "lr", "tokens"]
    rows = [read_table(d / "metrics.parquet").select(keys).to_pylist() for d in (straight, killed)]
    assert rows[0] == rows[1]


# --- lfft online --------------------------------------------------------------------------------

ONLINE_STEPS = 12
ONLINE = TINY.replace("max_steps = 2", f"max_steps = {ONLINE_STEPS}")  # a step checkpoint each


def _state(work: Path) -> dict:
    """Everything a round leaves behind, except timestamps and timings."""
    state = load_state(work / "state.json")
    history = [{k: v for k, v in h.items() if k != "ts"} for h in online.read_history(work)]
    for h in history:
        h.get("update", {}).pop("seconds", None)
    L = online.OnlineLayout(work)
    artifacts = [L.interactions, L.clean, L.normalized, L.train, L.val, L.test, L.gate]
    return {
        "files": {k: (f.offset, f.lines) for k, f in state.files.items()},
        "rounds": (state.round, state.completed),
        "consumed": {p.name: p.read_bytes() for p in sorted(L.consumed.iterdir())},
        "history": history,
        "artifacts": {p.name: read_table(p).to_pylist() for p in artifacts},
        "versions": sorted(p.name for p in L.versions.iterdir()),
        "current": os.readlink(L.current),
    }


def test_lfft_online_killed_in_two_rounds_ends_as_an_uninterrupted_run(tmp_path):
    """`lfft online --once` is killed in round 1 after its data stages (while it makes the
    initial model or trains), and in round 2 mid-training (after a step checkpoint) and after
    training (while the gate evaluates); each rerun finishes the round. Every log line is
    consumed once, and the versions (bit for bit), history, offsets and artifacts equal those
    of uninterrupted rounds."""
    logs, config = tmp_path / "logs", tmp_path / "lfft.toml"
    config.write_text(ONLINE)
    ref, work = tmp_path / "ref", tmp_path / "killed"

    def args(folder: Path) -> list[str]:
        return ["online", "--logs", str(logs), "--work", str(folder), "--config", str(config)]

    def kill(when: Callable[[], bool], what: str) -> Lfft:
        proc = Lfft([*args(work), "--once"], tmp_path / f"{what}.log")
        proc.kill_when(when, what)
        state = load_state(work / "state.json")
        assert state.round == state.completed + 1, what  # the round is committed, unfinished
        return proc

    write(logs / "a.jsonl", event_lines(range(0, 40)))
    _invoke([*args(ref), "--once"])
    r1 = work / "rounds" / "r0001"
    kill(lambda: (r1 / "steps" / "data.json").exists(), "round 1 data")
    _invoke([*args(work), "--once"])

    write(logs / "a.jsonl", event_lines(range(40, 50)))
    write(logs / "b.jsonl", event_lines(range(50, 60)) + [thumbs("s3", 99, "up")])
    _invoke([*args(ref), "--once"])
    r2 = work / "rounds" / "r0002"
    kill(lambda: any((r2 / "candidate" / "checkpoints").glob("step-*")), "round 2 checkpoint")
    assert not (r2 / "steps" / "train.json").exists()  # killed while training
    last = _latest_step(r2 / "candidate")
    resumed = kill(lambda: (r2 / "steps" / "train.json").exists(), "round 2 train")
    assert [int(s) for s in STEP_LINE.findall(resumed.output())] == list(
        range(last + 1, ONLINE_STEPS + 1)
    )
    _invoke([*args(work), "--once"])
    assert "nothing new" in _invoke([*args(work), "--once"])

    got, want = _state(work), _state(ref)
    assert got == want
    consumed = b"".join(got["consumed"].values()).splitlines()
    lines = b"".join(p.read_bytes() for p in sorted(logs.iterdir())).splitlines()
    assert sorted(consumed) == sorted(lines) and len(set(lines)) == len(lines)
    assert [h["trained"] for h in got["history"]] == [True, True]
    assert got["versions"] == ["v0000", "v0001", "v0002"]
    for version in got["versions"]:
        _assert_same_weights(ref / "versions" / version, work / "versions" / version)


def test_lfft_online_killed_inside_its_data_update_loses_nothing(tmp_path):
    """`lfft online --once` is killed while its data update writes parts (before it commits
    its manifest), then rerun: the artifacts, history and consumed log equal an uninterrupted
    run's, and no file of the killed update is left."""
    from lfft.config import SynthConfig
    from lfft.data.synth import synth

    logs, config = tmp_path / "logs", tmp_path / "lfft.toml"
    synth(logs, SynthConfig(sessions=1500, seed=4, files=2))
    config.write_text(TINY + "part_mb = 0.02\nmin_new_rows = 1000000\n")  # many parts, no train
    ref, work = tmp_path / "ref", tmp_path / "killed"

    def args(folder: Path) -> list[str]:
        return ["online", "--logs", str(logs), "--work", str(folder), "--config", str(config)]

    _invoke([*args(ref), "--once"])
    proc = Lfft([*args(work), "--once"], tmp_path / "update.log")
    lines = work / "state" / "lines"
    proc.kill_when(lambda: lines.is_dir() and len(list(lines.iterdir())) >= 3, "part files")
    assert not (work / "state" / "manifest.json").exists()  # killed before its commit
    _invoke([*args(work), "--once"])
    assert _state(work) == _state(ref)
    folders = [p for p in work.rglob("*") if p.is_dir() and p.name.startswith(".spill")]
    assert not folders and not list(work.rglob(".*.tmp"))
