"""``lfft split``: ``feedback`` -> ``DIR/train.parquet``, ``val.parquet``, ``test.parquet``.

Each row goes to the split picked by a hash of ``(seed, key value)``: the same key value always
lands in the same split (no key in two splits), the assignment does not depend on row order or
on the other rows, and a new seed reshuffles. Keys: ``session_id`` (default), ``user_id`` (rows
without a user fall back to their session), ``group_id`` (same context and prompt).

Rows without a usable signal (``signal == "none"``) are kept for LM-only training
(``unlabeled="keep"``) or go to ``DIR/rejects.parquet`` as ``no_signal`` (``"drop"``).

Pairs: with ``key="group_id"`` every preference group stays in one split. With a session or user
key a group stays together when its rows share that key, which holds for regenerations (one
session) and for pairs read from datasets (the readers give both sides one session); the report
counts groups of pairwise rows that span splits. Trainers only form pairs within one split.

Usage: ``lfft split feedback.parquet --out splits/ --key session_id --ratios 0.8,0.1,0.1``
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lfft.config import SplitConfig
from lfft.data.rejects import reject_table
from lfft.data.runner import Output, StageRun, check_input
from lfft.errors import ConfigError
from lfft.hashing import stable_hashes
from lfft.io import iter_batches
from lfft.report import StageResult
from lfft.schemas import NORMALIZED, SPLIT, conform

STAGE = "split"
SPLITS = ("train", "val", "test")
KEYS = ("session_id", "user_id", "group_id")
UNLABELED = ("keep", "drop")


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> ``(0.8, 0.1, 0.1)``: three shares >= 0 that sum to 1."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"--ratios {text!r}: give three numbers train,val,test e.g. 0.8,0.1,0.1")
    check_ratios(values)
    return values  # type: ignore[return-value]


def check_ratios(ratios: tuple[float, ...]) -> None:
    if (
        len(ratios) != 3
        or any(not math.isfinite(r) or r < 0 for r in ratios)
        or abs(sum(ratios) - 1.0) > 1e-6
    ):
        raise ConfigError(f"split ratios {list(ratios)} must be three shares >= 0 summing to 1")


def check_config(cfg: SplitConfig) -> None:
    if cfg.key not in KEYS:
        raise ConfigError(f"split: key must be one of {', '.join(KEYS)}, not {cfg.key!r}")
    if cfg.unlabeled not in UNLABELED:
        raise ConfigError(f"split: unlabeled must be keep or drop, not {cfg.unlabeled!r}")
    check_ratios(tuple(cfg.ratios))


def assign(keys: pa.Array | pa.ChunkedArray, seed: int, ratios: tuple[float, ...]) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per key value; each distinct value is hashed once."""
    unique = pc.unique(keys)
    hashes = stable_hashes((f"{seed}\x1f{k}" for k in unique.to_pylist()), len(unique))
    values = hashes.astype(np.float64) / float(2**64)
    bounds = np.cumsum(ratios)[:2]
    split_of_unique = np.searchsorted(bounds, values, side="right")
    return split_of_unique[pc.index_in(keys, value_set=unique).to_numpy(zero_copy_only=False)]


def key_values(table: pa.Table, key: str) -> pa.Array:
    """The key column; a null ``user_id`` falls back to ``session:<session_id>``."""
    values = table.column(key)
    if key == "user_id":
        fallback = pc.binary_join_element_wise("session:", table.column("session_id"), "")
        values = pc.coalesce(values, fallback)
    return values


def split_table(
    table: pa.Table, cfg: SplitConfig, source: str = ""
) -> tuple[dict[str, pa.Table], pa.Table]:
    """Split an in-memory ``feedback`` table: ``({train, val, test}: rows, rejects)``."""
    check_config(cfg)
    table = conform(table, NORMALIZED)
    drop = np.zeros(table.num_rows, dtype=bool)
    if cfg.unlabeled == "drop":
        drop = pc.equal(table.column("signal"), "none").to_numpy(zero_copy_only=False)
    rejects = reject_table(
        STAGE,
        source,
        table.column("interaction_id").filter(pa.array(drop)).to_pylist(),
        ["no_signal"] * int(drop.sum()),
        details=["no usable feedback (unlabeled=drop)"] * int(drop.sum()),
    )
    kept = table.filter(pa.array(~drop))
    which = assign(key_values(kept, cfg.key), cfg.seed, cfg.ratios) if kept.num_rows else []
    parts = {name: kept.filter(pa.array(np.asarray(which) == i)) for i, name in enumerate(SPLITS)}
    return parts, rejects


def split(input: Path, out_dir: Path, cfg: SplitConfig) -> StageResult:
    """Run the split stage on a ``feedback`` artifact (file or folder)."""
    input, out_dir = Path(input), Path(out_dir)
    check_input(input, NORMALIZED, "a feedback artifact")
    check_config(cfg)
    outputs = {
        name: Output(out_dir / f"{name}.parquet", SPLIT, cfg.part_rows, {"split": name})
        for name in SPLITS
    }
    balance = {name: Counter() for name in SPLITS}
    pair_groups: dict[str, int] = {}  # group_id of pairwise rows -> bit mask of its splits
    hint = "; try --unlabeled keep"
    with StageRun(STAGE, cfg, [input], outputs, rejects=out_dir, hint=hint) as run:
        batches = iter_batches(input, batch_rows=cfg.batch_rows, schema=NORMALIZED)
        jobs = ((pa.Table.from_batches([b]), cfg, str(input)) for b in batches)
        for batch in run.map(split_table, jobs):
            for i, (name, part) in enumerate(batch.rows.items()):
                run.write(part, name)
                balance[name].update(_balance(part))
                _track_pairs(part, 1 << i, pair_groups)
        for name in SPLITS:
            run.writer(name).meta["counts"] = {"rows": run.writer(name).rows, **balance[name]}
        run.result.extra = {name: _report(balance[name]) for name in SPLITS}
        run.result.extra["pair_groups_split"] = sum(1 for m in pair_groups.values() if m & (m - 1))
    return run.result


def _balance(table: pa.Table) -> Counter:
    label = table.column("label")
    positive = int(pc.sum(label).as_py() or 0)
    labeled = len(label) - label.null_count
    return Counter(
        {
            "rows": table.num_rows,
            "positive": positive,
            "negative": labeled - positive,
            "unlabeled": label.null_count,
        }
    )


def _report(counts: Counter) -> dict[str, float | int]:
    labeled = counts["positive"] + counts["negative"]
    share = round(counts["positive"] / labeled, 4) if labeled else 0.0
    return {
        "rows": counts["rows"],
        "positive": counts["positive"],
        "negative": counts["negative"],
        "unlabeled": counts["unlabeled"],
        "positive_share": share,
    }


def _track_pairs(table: pa.Table, bit: int, groups: dict[str, int]) -> None:
    pairwise = table.filter(pc.equal(table.column("signal"), "pairwise"))
    for group in pc.unique(pairwise.column("group_id")).to_pylist():
        groups[group] = groups.get(group, 0) | bit
