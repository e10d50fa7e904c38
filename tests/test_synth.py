"""``lfft synth``: deterministic, realistic logs with every event kind and every fault collect
rejects; and the committed sample in data/samples/events."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from lfft.config import CollectConfig, SynthConfig
from lfft.data.collect import collect
from lfft.data.readers import iter_lines
from lfft.data.synth import synth
from lfft.errors import ConfigError
from lfft.io import read_table, rejects_path

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "events"
FAULT_REASONS = {
    "malformed_json", "invalid_utf8", "unknown_event", "unknown_kind", "bad_value",
    "orphan_feedback", "missing_field", "unknown_role", "wrong_type", "missing_parent",
    "bad_timestamp", "not_an_object", "duplicate_event",
}  # fmt: skip


def logs(folder: Path) -> dict[str, bytes]:
    return {p.name: b"\n".join(line for _, line in iter_lines(p)) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """300 synthetic sessions with a 5% fault rate, collected."""
    root = tmp_path_factory.mktemp("synth")
    result = synth(root / "logs", SynthConfig(sessions=300, seed=1, files=3, fault_rate=0.05))
    out = root / "i.parquet"
    collected = collect([root / "logs"], out, CollectConfig(format="events"))
    rows = read_table(out).to_pylist()
    rejects = read_table(rejects_path(out)).to_pylist()
    return result, collected, rows, rejects, root / "logs"


def test_deterministic_by_seed(tmp_path):
    synth(tmp_path / "a", SynthConfig(sessions=40, seed=3))
    synth(tmp_path / "b", SynthConfig(sessions=40, seed=3))
    synth(tmp_path / "c", SynthConfig(sessions=40, seed=4))
    assert logs(tmp_path / "a") == logs(tmp_path / "b") != logs(tmp_path / "c")


def test_compressed_output_holds_the_same_lines(tmp_path):
    synth(tmp_path / "plain", SynthConfig(sessions=30, files=2))
    for compress, suffix in (("gzip", ".jsonl.gz"), ("zstd", ".jsonl.zst")):
        synth(tmp_path / compress, SynthConfig(sessions=30, files=2, compress=compress))
        got = logs(tmp_path / compress)
        assert all(name.endswith(suffix) for name in got)
        assert list(got.values()) == list(logs(tmp_path / "plain").values())


def test_rerun_with_fewer_files_leaves_no_stale_logs(tmp_path):
    synth(tmp_path, SynthConfig(sessions=20, files=4))
    synth(tmp_path, SynthConfig(sessions=20, files=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events-000.jsonl", "events-001.jsonl"]


@pytest.mark.parametrize(
    "cfg",
    [
        SynthConfig(files=0),
        SynthConfig(sessions=-1),
        SynthConfig(fault_rate=0.9),
        SynthConfig(compress="bz2"),
    ],
)
def test_bad_config(tmp_path, cfg):
    with pytest.raises(ConfigError):
        synth(tmp_path, cfg)


def test_every_fault_kind_is_rejected_and_counts_add_up(collected):
    result, res, rows, rejects, _ = collected
    assert set(res.rejects) >= FAULT_REASONS
    assert res.rows_in == result.rows_out  # every line written is read
    assert res.rows_in == res.extra["lines used"] + sum(res.rejects.values())
    faults = sum(n for reason, n in res.rejects.items() if reason != "duplicate_event")
    assert faults == result.extra["faulty"]
    assert res.rejects["duplicate_event"] == result.extra["duplicates"]


def test_every_event_kind_appears(collected):
    _, _, rows, _, _ = collected
    seen = Counter((f["kind"], f["origin"]) for r in rows for f in r["feedback"])
    explicit = {"thumbs", "rating", "label", "comment", "edit", "preference"}
    behavioral = {"copy", "click", "share", "stop", "regenerate", "dwell_ms"}
    implicit = {"thanks", "complaint", "rephrase"}
    assert {k for k, o in seen if o == "explicit"} == explicit
    assert {k for k, o in seen if o == "behavioral"} == behavioral
    assert {k for k, o in seen if o == "implicit"} == implicit
    scales = {f["scale"] for r in rows for f in r["feedback"] if f["kind"] == "rating"}
    assert scales == {5.0, 10.0}
    prefs = [f for r in rows for f in r["feedback"] if f["kind"] == "preference"]
    assert any(f["ref"] for f in prefs) and any(f["ref"] is None for f in prefs)


def test_conversations_are_realistic(collected):
    _, res, rows, _, _ = collected
    assert any(r["context"] and r["context"][0]["role"] == "system" for r in rows)
    assert max(len(r["context"]) for r in rows) >= 6  # multi-turn
    assert len({r["user_id"] for r in rows}) > 20 and len({r["model"] for r in rows}) > 1
    by_prompt = Counter((r["session_id"], r["prompt"], len(r["context"])) for r in rows)
    assert max(by_prompt.values()) >= 2  # regenerated siblings
    text = " ".join(r["prompt"] for r in rows)
    assert re.search(r"[\w.]+@example\.com", text) and re.search(r"\d{3}-\d{4}", text)
    assert res.extra["sessions"] == 300


def events(path: Path) -> list[dict]:
    out = []
    for _, line in iter_lines(path):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("session_id"), str):
            out.append(event)
    return out


def test_late_feedback_lands_in_a_later_file(collected):
    result, _, _, _, folder = collected
    assert result.extra["late_feedback"] > 0 and result.extra["early_feedback"] > 0
    first = {e["session_id"] for e in events(folder / "events-000.jsonl")}
    second = events(folder / "events-001.jsonl")
    assert any(e["event"] == "feedback" and e["session_id"] in first for e in second)


def test_committed_sample():
    if not SAMPLES.exists():
        pytest.skip("data/samples/events is absent")
    files = sorted(SAMPLES.iterdir())
    assert len(files) == 4 and sum(p.stat().st_size for p in files) < 1_000_000
    assert any(p.name.endswith(".jsonl.gz") for p in files)
    with gzip.open(next(p for p in files if p.name.endswith(".gz"))) as f:
        assert f.readline().startswith(b"{")
