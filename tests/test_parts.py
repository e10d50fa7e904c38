"""Data stage outputs as folders of part files, and worker processes for clean and normalize."""

from __future__ import annotations

from pathlib import Path

import pytest

from lfft.config import CleanConfig, CollectConfig, NormalizeConfig, SplitConfig, SynthConfig
from lfft.data import parts as parts_mod
from lfft.data.clean import clean
from lfft.data.collect import collect
from lfft.data.normalize import normalize
from lfft.data.split import split
from lfft.data.synth import synth
from lfft.io import (
    ArtifactWriter,
    artifact_files,
    count_rows,
    fingerprint,
    read_meta,
    read_table,
    rejects_path,
)
from lfft.schemas import INTERACTIONS, REJECTS

EVENTS = CollectConfig(format="events")


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("logs")
    synth(root, SynthConfig(sessions=40, seed=2, files=2, fault_rate=0.05))
    return root


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_an_out_path_without_parquet_suffix_is_a_folder_of_parts(tmp_path, logs):
    one = collect([logs], tmp_path / "one.parquet", EVENTS)
    out = tmp_path / "interactions"
    result = collect([logs], out, CollectConfig(format="events", part_rows=25))
    assert result.rows_out == one.rows_out > 50
    n = -(-result.rows_out // 25)
    assert names(out) == [f"part-{i:05d}.parquet" for i in range(n)] + ["rejects.parquet"]
    assert rejects_path(out) == out / "rejects.parquet"  # not read as a part
    assert [p.name for p in artifact_files(out)] == names(out)[:-1]
    assert read_table(out, schema=INTERACTIONS).equals(read_table(tmp_path / "one.parquet"))
    assert read_table(rejects_path(out), schema=REJECTS).num_rows == sum(result.rejects.values())
    assert names(tmp_path) == ["interactions", "one.parquet", "one.rejects.parquet"]


def test_every_part_carries_metadata_and_the_first_the_totals(tmp_path, logs):
    out = tmp_path / "interactions"
    result = collect([logs], out, CollectConfig(format="events", part_rows=25))
    metas = [read_meta(p) for p in artifact_files(out)]
    assert {m["stage"] for m in metas} == {"collect"}
    assert all(m["inputs"] == metas[0]["inputs"] and m["config"]["part_rows"] == 25 for m in metas)
    assert [m["counts"]["rows"] for m in metas[:-1]] == [25] * (len(metas) - 1)
    assert sum(m["counts"]["rows"] for m in metas) == count_rows(out) == result.rows_out
    first = read_meta(out)  # a folder's metadata is its first part's
    assert first["parts"] == len(metas) and first["total_rows"] == result.rows_out
    assert first["counts"]["lines_read"] == result.rows_in
    # what the pipeline compares to skip a stage: the same inputs and config, the same print
    again = tmp_path / "again"
    collect([logs], again, CollectConfig(format="events", part_rows=25))
    assert fingerprint(again) == fingerprint(out)
    other = tmp_path / "other"
    collect([logs], other, CollectConfig(format="events", part_rows=30))
    assert fingerprint(other) != fingerprint(out)


def test_part_rows_makes_a_parquet_name_a_folder_with_rejects_beside(tmp_path, logs):
    out = tmp_path / "interactions.parquet"
    collect([logs], out, EVENTS)  # first a file ...
    collect([logs], out, CollectConfig(format="events", part_rows=40))  # ... replaced by a folder
    assert out.is_dir() and names(out)[0] == "part-00000.parquet"
    assert rejects_path(out) == tmp_path / "interactions.rejects.parquet"
    assert names(tmp_path) == ["interactions.parquet", "interactions.rejects.parquet"]
    collect([logs], out, EVENTS)  # and back to a file
    assert out.is_file()
    assert names(tmp_path) == ["interactions.parquet", "interactions.rejects.parquet"]


def test_a_new_folder_replaces_the_old_one_whole(tmp_path, logs):
    out = tmp_path / "interactions"
    collect([logs], out, CollectConfig(format="events", part_rows=10))
    collect([logs], out, EVENTS)  # one part now: no stale parts of the first run remain
    assert names(out) == ["part-00000.parquet", "rejects.parquet"]
    assert names(tmp_path) == ["interactions"]


def test_a_stage_killed_mid_write_leaves_the_previous_folder(tmp_path, logs, monkeypatch):
    out = tmp_path / "interactions"
    collect([logs], out, CollectConfig(format="events", part_rows=10))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    original = ArtifactWriter.write

    def failing_write(self, data):
        if self.path.name == "part-00002.parquet":
            raise RuntimeError("killed")
        return original(self, data)

    monkeypatch.setattr(ArtifactWriter, "write", failing_write)
    with pytest.raises(RuntimeError, match="killed"):
        collect([logs], out, CollectConfig(format="events", part_rows=10, batch_rows=7))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert names(tmp_path) == ["interactions"]


def test_every_stage_reads_and_writes_folders(tmp_path, logs):
    files, folders = tmp_path / "files", tmp_path / "folders"
    cfg = {"part_rows": 20}
    for root, kw in ((files, {}), (folders, cfg)):
        collect([logs], root / "interactions.parquet", CollectConfig(format="events", **kw))
        clean(root / "interactions.parquet", root / "clean.parquet", CleanConfig(**kw))
        normalize(root / "clean.parquet", root / "feedback.parquet", NormalizeConfig(**kw))
        split(root / "feedback.parquet", root / "splits", SplitConfig(**kw))
    for name in ("clean.parquet", "feedback.parquet", "splits/train.parquet"):
        assert (folders / name).is_dir()
        assert read_table(folders / name).equals(read_table(files / name)), name
    assert names(folders / "splits") == ["rejects.parquet", *names(files / "splits")[1:]]


def test_default_part_size_for_a_folder_out(tmp_path, logs, monkeypatch):
    monkeypatch.setattr(parts_mod, "DEFAULT_PART_ROWS", 30)
    out = tmp_path / "interactions"
    result = collect([logs], out, EVENTS)
    assert len(artifact_files(out)) == -(-result.rows_out // 30)


def test_clean_and_normalize_workers_give_the_same_output(tmp_path, logs):
    collect([logs], tmp_path / "i.parquet", EVENTS)
    for workers in (1, 2):
        small = {"batch_rows": 16, "workers": workers}
        clean(tmp_path / "i.parquet", tmp_path / f"c{workers}.parquet", CleanConfig(**small))
        ncfg = NormalizeConfig(partition_rows=20, **small)
        normalize(tmp_path / "c1.parquet", tmp_path / f"f{workers}.parquet", ncfg)
    for name in ("c", "f"):
        one, two = tmp_path / f"{name}1.parquet", tmp_path / f"{name}2.parquet"
        assert read_table(two).equals(read_table(one))
        assert read_table(rejects_path(two)).equals(read_table(rejects_path(one)))


@pytest.mark.parametrize(
    ("budget", "serialize"),
    [(1 << 30, False), (3_000, False), (3_000, True), (1, True)],
    ids=["in-memory", "serialized-when-full", "serialized-from-the-start", "spilled-each-time"],
)
def test_partition_store_gives_each_session_its_records_in_order(tmp_path, budget, serialize):
    from lfft.data.events import Message
    from lfft.data.partition import PartitionStore, partition_of

    records = [
        Message(f"s{i % 7}", 0, i, None, f"m{i}", None, "user", "hi", None, None, None)
        for i in range(300)
    ]
    store = PartitionStore(4, tmp_path, budget, serialize=serialize)
    for start in range(0, 300, 25):  # blocks of input, sorted into partition buckets of runs
        buckets: list[list[list[Message]]] = [[] for _ in range(4)]
        for rec in records[start : start + 25]:
            buckets[partition_of(rec.session_id, 4)].append([rec])
        store.add(buckets, 25 * 100)
    parts = list(store.partitions())
    assert [sorted(p) for p in parts] == [
        sorted({f"s{i}" for i in range(7) if partition_of(f"s{i}", 4) == k}) for k in range(4)
    ]
    got = {sid: recs for p in parts for sid, recs in p.items()}
    assert got == {f"s{i}": records[i::7] for i in range(7)}
    assert (store.spilled > 0) == (budget < 1 << 30)
    assert list(tmp_path.iterdir()) == []  # spill files removed once read


@pytest.mark.parametrize("killed_after", ["new ready", "old set aside", "new in"])
def test_a_folder_swap_killed_between_its_renames_is_finished(tmp_path, killed_after):
    """A kill at any point of a folder swap leaves a state from which the next write (or
    ``recover_swap``) gets the complete new folder in place, and nothing set aside."""
    from lfft.io import atomic_path, recover_swap

    final = tmp_path / "best"
    new, old = tmp_path / ".best.new", tmp_path / ".best.old"
    for folder, text in ((final, "v1"), (new, "v2")):
        folder.mkdir()
        (folder / "w.txt").write_text(text)
    if killed_after in ("old set aside", "new in"):
        final.rename(old)
    if killed_after == "new in":
        new.rename(final)
    recover_swap(final)
    assert (final / "w.txt").read_text() == "v2"
    assert not new.exists() and not old.exists()
    with atomic_path(final) as tmp:  # and the next swap works from there
        tmp.mkdir()
        (tmp / "w.txt").write_text("v3")
    assert (final / "w.txt").read_text() == "v3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
