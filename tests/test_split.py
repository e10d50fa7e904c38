"""``lfft split``: deterministic, leakage-free, unlabeled rows handled, balance reported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lfft.config import SplitConfig
from lfft.data.records import interaction, to_table
from lfft.data.split import SPLITS, parse_ratios, split, split_table
from lfft.errors import ConfigError, NoUsableRows
from lfft.io import read_meta, read_table, rejects_path, write_table
from lfft.schemas import NORMALIZED, REJECTS, SPLIT, make_metadata


def rows(n: int = 300, sessions: int = 60, users: int = 20, unlabeled_every: int = 5):
    out = []
    for i in range(n):
        r = interaction(
            interaction_id=f"r{i}",
            session_id=f"s{i % sessions}",
            user_id=None if i % 7 == 0 else f"u{i % users}",
            prompt=f"Q{i % 40}?",
            response=f"A{i}.",
            source="t",
        )
        labeled = i % unlabeled_every != 0
        r.update(
            score=float(i % 2) if labeled else None,
            label=i % 2 if labeled else None,
            weight=1.0,
            signal="binary" if labeled else "none",
            target=r["response"],
            token_spans=[],
            critique=None,
            group_id=f"g{i % 40}",
        )
        out.append(r)
    return out


def write_feedback(path: Path, data) -> Path:
    write_table(path, to_table(data, NORMALIZED), NORMALIZED, make_metadata("normalize"))
    return path


def which_split(parts) -> dict[str, str]:
    return {
        iid: name for name, t in parts.items() for iid in t.column("interaction_id").to_pylist()
    }


def test_parse_ratios():
    assert parse_ratios("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_ratios("1,0,0") == (1.0, 0.0, 0.0)
    for bad in ("0.8,0.1", "0.5,0.5,0.5", "a,b,c", "1.2,-0.1,-0.1"):
        with pytest.raises(ConfigError):
            parse_ratios(bad)


@pytest.mark.parametrize("key", ["session_id", "user_id", "group_id"])
def test_no_key_value_in_two_splits(key):
    data = rows()
    parts, _ = split_table(to_table(data, NORMALIZED), SplitConfig(key=key))
    where = which_split(parts)
    by_key: dict[str, set[str]] = {}
    for r in data:
        value = r[key] if r[key] is not None else "session:" + r["session_id"]
        by_key.setdefault(value, set()).add(where[r["interaction_id"]])
    assert all(len(s) == 1 for s in by_key.values())
    assert len(where) == len(data)


def test_deterministic_independent_of_order_and_seed_reshuffles():
    data = rows()
    table = to_table(data, NORMALIZED)
    first = which_split(split_table(table, SplitConfig())[0])
    reordered = which_split(split_table(to_table(data[::-1], NORMALIZED), SplitConfig())[0])
    halves = {
        **which_split(split_table(table.slice(0, 150), SplitConfig())[0]),
        **which_split(split_table(table.slice(150), SplitConfig())[0]),
    }
    assert first == reordered == halves
    assert which_split(split_table(table, SplitConfig(seed=1))[0]) != first


def test_ratios_are_followed_on_many_keys():
    data = rows(n=4000, sessions=4000)
    parts, _ = split_table(to_table(data, NORMALIZED), SplitConfig(ratios=(0.6, 0.2, 0.2)))
    shares = [parts[name].num_rows / 4000 for name in SPLITS]
    assert shares == pytest.approx([0.6, 0.2, 0.2], abs=0.03)


def test_unlabeled_drop_sends_rows_to_rejects_keep_keeps_them():
    table = to_table(rows(), NORMALIZED)
    parts, rejects = split_table(table, SplitConfig(unlabeled="drop"))
    assert set(rejects.column("reason").to_pylist()) == {"no_signal"}
    assert rejects.num_rows == 60
    assert sum(p.num_rows for p in parts.values()) == 240
    parts, rejects = split_table(table, SplitConfig(unlabeled="keep"))
    assert rejects.num_rows == 0 and sum(p.num_rows for p in parts.values()) == 300


def test_runner_writes_three_splits_rejects_and_balance(tmp_path):
    src = write_feedback(tmp_path / "feedback.parquet", rows())
    out = tmp_path / "splits"
    result = split(src, out, SplitConfig(unlabeled="drop", batch_rows=64))
    assert result.rows_in == 300 == result.rows_out + sum(result.rejects.values())
    assert result.rejects == Counter(no_signal=60)
    total = Counter()
    for name in SPLITS:
        table = read_table(out / f"{name}.parquet", schema=SPLIT)
        counts = read_meta(out / f"{name}.parquet")["counts"]
        report = result.extra[name]
        assert counts["rows"] == report["rows"] == table.num_rows
        positive = sum(table.column("label").to_pylist())
        assert counts["positive"] == report["positive"] == positive
        assert counts["negative"] == report["negative"] == table.num_rows - positive
        total[name] = table.num_rows
    assert sum(total.values()) == 240 and total["train"] > total["val"]
    assert read_table(rejects_path(out), schema=REJECTS).num_rows == 60
    assert sorted(p.name for p in out.iterdir()) == [
        "rejects.parquet",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]


def test_nothing_left_is_an_error_with_rejects_written(tmp_path):
    data = rows(n=10, unlabeled_every=1)
    src = write_feedback(tmp_path / "feedback.parquet", data)
    out = tmp_path / "splits"
    with pytest.raises(NoUsableRows, match="unlabeled keep"):
        split(src, out, SplitConfig(unlabeled="drop"))
    assert not (out / "train.parquet").exists()
    assert read_table(rejects_path(out)).num_rows == 10


def test_bad_options_are_errors(tmp_path):
    src = write_feedback(tmp_path / "feedback.parquet", rows(n=5))
    with pytest.raises(ConfigError, match="key"):
        split(src, tmp_path / "s", SplitConfig(key="prompt"))
    with pytest.raises(ConfigError, match="unlabeled"):
        split(src, tmp_path / "s", SplitConfig(unlabeled="maybe"))
