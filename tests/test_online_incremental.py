"""Incremental rounds: after any sequence of rounds, the data artifacts equal one batch run.

`lfft synth` logs (multi-turn sessions, regenerations and preferences, every feedback kind,
feedback before its message and in later files, duplicate deliveries, faulty lines, personal
data) are fed to `lfft online` in rounds cut at random lines, with late lines held back, a log
rotation, and one round killed inside its data update; then interactions, clean, feedback, the
three splits and the rejects of collect, clean and split are compared row for row with one
batch run of collect, clean, normalize and split over every consumed line.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pyarrow as pa
import pytest
from rich.console import Console
from test_online import _msg, event_lines, fake_models, run_once, thumbs, write  # noqa: F401

from lfft import online, online_data, online_rows, stages
from lfft.config import (
    CleanConfig,
    CollectConfig,
    NormalizeConfig,
    OnlineConfig,
    SplitConfig,
    SynthConfig,
)
from lfft.data.synth import synth
from lfft.io import read_table, rejects_path
from lfft.online_parts import PartStore
from lfft.online_versions import OnlineLayout

CFG = OnlineConfig(max_steps=1, keep_versions=0, part_mb=0.004)  # ~4 KB parts: many of them


class Killed(Exception):
    """A simulated kill inside the data update."""


def synth_lines(tmp: Path, seed: int, sessions: int = 120) -> list[bytes]:
    out = tmp / f"synth{seed}"
    synth(out, SynthConfig(sessions=sessions, seed=seed, files=3, fault_rate=0.05))
    return [line for p in sorted(out.glob("*.jsonl")) for line in p.read_bytes().splitlines()]


def regenerated_twice(n: int) -> list[bytes]:
    """Sessions whose answer was regenerated with the same text (clean merges the copies:
    ``duplicate_merged``), each copy rated."""
    out = []
    for s in range(n):
        sid, ts = f"dup{s}", 1_800_000_000 + s
        out += [
            _msg(sid, ts, "m1", None, "user", f"Name a prime above {s}."),
            _msg(sid, ts + 1, "m2", "m1", "assistant", "Seven."),
            _msg(sid, ts + 2, "m3", "m1", "assistant", "Seven."),
            thumbs(sid, ts + 3, "up", "m2"),
            thumbs(sid, ts + 4, "down", "m3"),
        ]
    return [line.encode() for line in out]


def batch_run(work: Path, out: Path) -> OnlineLayout:
    """collect, clean, normalize and split over the work folder's consumed log."""
    b = OnlineLayout(out)
    stages.collect([OnlineLayout(work).consumed], b.interactions, CollectConfig(format="events"))
    stages.clean(b.interactions, b.clean, CleanConfig())
    stages.normalize(b.clean, b.normalized, NormalizeConfig())
    stages.split(b.normalized, b.splits, SplitConfig())
    return b


def artifacts(layout: OnlineLayout) -> dict[str, list[dict]]:
    """Every artifact's rows in a canonical order; a reject's ``source`` names the artifact
    it came from (its folder is the work folder or the batch's)."""
    rows = {"interactions": layout.interactions, "clean": layout.clean}
    rows.update(feedback=layout.normalized, train=layout.train, val=layout.val, test=layout.test)
    out = {}
    for name, path in rows.items():
        out[name] = read_table(path).sort_by("interaction_id").to_pylist()
    for name, path in {
        "collect_rejects": rejects_path(layout.interactions),
        "clean_rejects": rejects_path(layout.clean),
        "split_rejects": rejects_path(layout.splits),
    }.items():
        table = read_table(path)
        keys = [("location", "ascending"), ("reason", "ascending"), ("detail", "ascending")]
        out[name] = [
            {**r, "source": r["source"].replace(str(layout.root), "ROOT")}
            if name != "collect_rejects"  # collect's name the consumed files, in both cases
            else r
            for r in table.sort_by(keys).to_pylist()
        ]
    return out


def _arm_kill(monkeypatch, where: str, after: int) -> None:
    """Make the data update fail once, after ``after`` calls of ``where``: a part write, the
    index write, or the commit (after the manifest is replaced, before stale files go)."""
    calls = {"n": 0}
    target = {"write": "write", "index": "write_index", "commit": "commit"}[where]
    original, tidy = getattr(PartStore, target), PartStore.tidy

    def no_tidy(self, manifest):
        raise Killed("commit")

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= after:
            return original(self, *args, **kwargs)
        monkeypatch.setattr(PartStore, target, original)
        if where != "commit":
            raise Killed(where)
        monkeypatch.setattr(PartStore, "tidy", no_tidy)
        try:
            original(self, *args, **kwargs)  # the manifest is written, then tidy fails
        finally:
            monkeypatch.setattr(PartStore, "tidy", tidy)

    monkeypatch.setattr(PartStore, target, failing)


@pytest.mark.parametrize(
    ("seed", "kill"),
    [(0, ("write", 3)), (1, ("index", 0)), (2, ("write", 0)), (3, ("commit", 0))],
)
def test_random_rounds_equal_one_batch_run(tmp_path, fake_models, monkeypatch, seed, kill):  # noqa: F811
    rng = random.Random(seed)
    monkeypatch.setattr(online_data, "SMALL_SHARE", 1)  # merge parts often
    monkeypatch.setattr(online_data, "MAX_SMALL_PARTS", 3)
    lines = synth_lines(tmp_path, seed) + regenerated_twice(10)
    rng.shuffle(lines)  # sessions interleave; a message may come after its feedback or child
    late = set(rng.sample(range(len(lines)), len(lines) // 20))  # held back a few rounds
    stream = [line for i, line in enumerate(lines) if i not in late]
    for i in sorted(late):
        stream.insert(min(len(stream), i + rng.randrange(50, 400)), lines[i])
    cuts = sorted(rng.sample(range(1, len(stream)), 6)) + [len(stream)]
    logs, work = tmp_path / "logs", tmp_path / "work"
    start, stats = 0, []
    for r, end in enumerate(cuts, start=1):
        if r == 4:  # rotation: the file moves aside, a new one starts
            (logs / "app.jsonl").rename(logs / "app.jsonl.1")
        logs.mkdir(exist_ok=True)
        with open(logs / "app.jsonl", "ab") as f:
            f.write(b"".join(line + b"\n" for line in stream[start:end]))
        start = end
        if r == 3:
            _arm_kill(monkeypatch, *kill)
            with pytest.raises(Killed):
                run_once(logs, work, CFG)
        record = run_once(logs, work, CFG)
        assert record is not None and record["round"] == r
        stats.append(record["update"])
    assert sum(s["parts_rewritten"] for s in stats) > 0  # late lines reached old parts
    assert sum(s["parts_merged"] for s in stats) > 0  # small parts were merged
    assert sum(s["parts_new"] for s in stats) > len(cuts)  # rounds were cut into parts

    batch = batch_run(work, tmp_path / "batch")
    got, want = artifacts(OnlineLayout(work)), artifacts(batch)
    for name in want:
        assert got[name] == want[name], name
    assert len(want["collect_rejects"]) > 0 and len(want["clean_rejects"]) > 0
    # every consumed line is in the parts once
    store = PartStore(OnlineLayout(work))
    raws = store.read_all("lines", store.load()).column("raw").to_pylist()
    consumed = b"".join(p.read_bytes() for p in sorted((work / "consumed").iterdir()))
    assert sorted(raws) == sorted(consumed.splitlines(keepends=True))


def test_late_feedback_touches_only_its_session(tmp_path, fake_models):  # noqa: F811
    """A round whose one new line is late feedback recomputes one session and rewrites the
    one part that held it; the feedback reaches the row, the split and the round record."""
    logs, work = tmp_path / "logs", tmp_path / "work"
    cfg = OnlineConfig(max_steps=1, keep_versions=0, part_mb=0.002)
    write(logs / "a.jsonl", event_lines(range(0, 60), feedback=False))
    first = run_once(logs, work, cfg)
    parts = first["update"]["parts"]
    assert first["update"]["parts_new"] > 1 and parts > 1
    write(logs / "a.jsonl", [thumbs("s7", 99, "up")])
    console = Console(file=io.StringIO(), width=200)
    [second] = online.run_online(logs, work, cfg, once=True, console=console)
    u = second["update"]
    shown = console.file.getvalue()
    assert f"1 sessions recomputed, 1 of {parts + 1} parts rewritten" in shown
    assert (u["lines_new"], u["sessions_touched"], u["parts_rewritten"]) == (1, 1, 1)
    assert u["parts"] == parts + 1  # the session moved to a part of its own
    rows = read_table(OnlineLayout(work).normalized).to_pylist()
    [row] = [r for r in rows if r["interaction_id"] == "s7:m2"]
    assert row["label"] == 1 and row["signal"] == "binary"
    assert second["new_rows"] <= 1  # at most the one changed row is new to the model


def test_without_the_consumed_copy_the_parts_hold_every_line(tmp_path, fake_models):  # noqa: F811
    """keep_consumed = false: consumed/ is emptied once its lines are in the parts, and the
    artifacts are those of a run that kept it."""
    logs = tmp_path / "logs"
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    lean = OnlineConfig(max_steps=1, keep_versions=0, part_mb=0.004, keep_consumed=False)
    for r in range(3):
        write(logs / "a.jsonl", event_lines(range(20 * r, 20 * r + 20)) + [thumbs("s1", r, "up")])
        run_once(logs, kept, CFG)
        run_once(logs, dropped, lean)
        assert not list((dropped / "consumed").glob("*.jsonl"))
    assert artifacts(OnlineLayout(dropped)) == artifacts(OnlineLayout(kept))


def test_full_rounds_after_compaction_get_the_consumed_log_back(tmp_path, fake_models):  # noqa: F811
    """Rounds that dropped consumed/ (keep_consumed = false), then full rounds: the consumed
    files come back byte for byte from the parts before the parts go, and no line is lost."""
    logs, work = tmp_path / "logs", tmp_path / "work"
    lean = OnlineConfig(max_steps=1, keep_versions=0, part_mb=0.004, keep_consumed=False)
    full = OnlineConfig(max_steps=1, keep_versions=0, incremental=False)
    write(logs / "a.jsonl", event_lines(range(0, 20)) + ["not json"])
    run_once(logs, work, lean)
    write(logs / "a.jsonl", event_lines(range(20, 30)) + [thumbs("s2", 5, "up")])
    run_once(logs, work, lean)
    assert not list((work / "consumed").glob("*.jsonl"))
    write(logs / "a.jsonl", [thumbs("s3", 6, "up")])
    run_once(logs, work, full)
    consumed = b"".join(p.read_bytes() for p in sorted((work / "consumed").glob("*.jsonl")))
    assert consumed == (logs / "a.jsonl").read_bytes()
    assert artifacts(OnlineLayout(work)) == artifacts(batch_run(work, tmp_path / "batch"))


def test_full_rounds_and_incremental_rounds_switch_cleanly(tmp_path, fake_models):  # noqa: F811
    """Turning incremental off (or on) in an existing work folder rebuilds the artifacts in
    the other layout, with the same rows."""
    logs, work = tmp_path / "logs", tmp_path / "work"
    full = OnlineConfig(max_steps=1, keep_versions=0, incremental=False)
    write(logs / "a.jsonl", event_lines(range(0, 20)))
    run_once(logs, work, CFG)
    write(logs / "a.jsonl", event_lines(range(20, 30)) + [thumbs("s2", 5, "up")])
    run_once(logs, work, full)
    assert (work / "interactions.parquet").is_file() and not (work / "state").exists()
    once = artifacts(OnlineLayout(work))
    write(logs / "a.jsonl", [thumbs("s3", 6, "up")])
    run_once(logs, work, CFG)
    assert (work / "interactions.parquet").is_dir()
    again = artifacts(OnlineLayout(work))
    assert again["interactions"] != once["interactions"]  # s3's feedback arrived
    batch = batch_run(work, tmp_path / "batch")
    assert again == artifacts(batch)


def test_the_round_record_counts_what_the_files_hold(tmp_path, fake_models):  # noqa: F811
    """The record's totals come from the manifest: they must be the part files' rows."""
    logs, work = tmp_path / "logs", tmp_path / "work"
    write(logs / "a.jsonl", event_lines(range(0, 40)) + ["not json"])
    run_once(logs, work, CFG)
    write(logs / "a.jsonl", event_lines(range(40, 50)) + [thumbs("s1", 5, "up"), "{}"])
    record = run_once(logs, work, CFG)
    layout = OnlineLayout(work)
    assert record["interactions"] == read_table(layout.interactions).num_rows == 50
    assert record["rejects"]["collect"] == {"malformed_json": 1, "missing_field": 1}
    store = PartStore(layout)
    totals = store.load().totals()
    for kind, (folder, _) in store.kinds.items():
        if not kind.endswith("_rejects"):
            assert totals["rows"][kind] == read_table(folder).num_rows, kind
    assert totals["rows"]["lines"] == 3 * 50 + 3


def test_validation_is_capped_to_a_stable_sample():
    """A round validates on at most val_max_rows rows, the same ones whatever the row order."""
    ids = [f"s{i}:m2" for i in range(50)]
    table = pa.table({"interaction_id": ids, "x": list(range(50))})
    some = online_rows.capped(table, 7)
    again = online_rows.capped(table.take(pa.array(range(49, -1, -1))), 7)
    assert some.num_rows == 7 and set(some["x"].to_pylist()) <= set(range(50))
    assert sorted(some["interaction_id"].to_pylist()) == sorted(again["interaction_id"].to_pylist())
    assert online_rows.capped(table, None).num_rows == online_rows.capped(table, 50).num_rows == 50
