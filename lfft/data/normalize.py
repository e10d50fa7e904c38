"""``lfft normalize``: ``clean`` -> ``feedback``: every feedback kind on one set of columns.

Per row (``docs/feedback.md`` tables every mapping):

- each valid event becomes an observation (:mod:`lfft.data.feedback_map`); invalid or unknown
  events are ignored and counted (``extra["ignored_events"]``, from one note each), the row is
  kept;
- one row's observations become ``score``, ``weight``, ``signal``, ``target``,
  ``token_spans`` and ``critique`` (:mod:`lfft.data.resolve`); ``label`` is
  ``score >= positive_threshold``; a row without a usable signal gets ``signal`` ``none``
  (score and label null, weight 1);
- ``group_id`` is a hash of context and prompt. A preference marks its row chosen (score 1)
  and its ``ref`` sibling rejected (score 0), or every other row of the same session and group
  when ``ref`` is null; both sides get signal ``pairwise``.

Preferences need their siblings: large inputs are hash-partitioned by ``group_id`` into
temporary files and normalized partition by partition (bounded memory). No row is rejected
here (the rejects file is written, empty): rows without signal go on, and ``split`` decides.

Usage: ``lfft normalize clean.parquet --out feedback.parquet``
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lfft.config import NormalizeConfig
from lfft.data.feedback_map import SIGNAL_OF_KIND, FeedbackMap, Observation
from lfft.data.pool import resolve_workers
from lfft.data.rejects import reject_table, value_counts
from lfft.data.resolve import UNLABELED_WEIGHT, RowFeedback, resolve_row
from lfft.data.runner import Batch, Output, StageRun, check_input
from lfft.data.spill import HashPartitions
from lfft.data.text import context_strings, join_columns
from lfft.errors import ConfigError
from lfft.hashing import hex64, stable_hashes
from lfft.io import count_rows, iter_batches, read_table
from lfft.report import StageResult
from lfft.schemas import CLEAN, NORMALIZED, TOKEN_SPAN, conform

STAGE = "normalize"
CONFLICT_POLICIES = ("latest", "mean")
_GROUP_HASH = "_group_hash"
PARALLEL_ROWS = 200_000  # auto workers: smaller inputs are normalized in one process
PAIRWISE = SIGNAL_OF_KIND["preference"]


def group_ids(table: pa.Table) -> list[str]:
    """``group_id`` per row: a hash of context and prompt (16 hex characters)."""
    return hex64(group_hashes(table))


def group_hashes(table: pa.Table) -> np.ndarray:
    """The stable hash of every row's group (its context and prompt), as a uint64."""
    keys = join_columns(context_strings(table.column("context")), table.column("prompt"))
    return stable_hashes(keys.to_pylist(), table.num_rows)


def normalize_table(table: pa.Table, cfg: NormalizeConfig) -> tuple[pa.Table, pa.Table]:
    """``clean`` rows -> ``feedback`` rows; returns the table and a note (a ``REJECTS`` row:
    the row's id and the reason) for every event it ignored. No row is dropped.

    The table must hold every row of each group it touches (siblings for preferences). A
    ``group_id`` column, if present, is used as is.
    """
    check_config(cfg)
    groups = (
        table.column("group_id").to_pylist()
        if "group_id" in table.column_names
        else group_ids(table)
    )
    table = conform(table, CLEAN).combine_chunks()
    n = table.num_rows
    fmap = FeedbackMap(cfg)
    ignored: list[tuple[int, str]] = []  # (row, reason) of every event ignored
    feedback = (
        table.column("feedback").chunk(0) if n else pa.array([], CLEAN.field("feedback").type)
    )
    marks = _preference_marks(table, groups, feedback, fmap, ignored)
    has_events = pc.greater(pc.list_value_length(feedback), 0).to_numpy(zero_copy_only=False)
    active = np.union1d(np.flatnonzero(has_events), np.fromiter(marks, np.int64, len(marks)))
    responses = table.column("response").take(active).to_pylist()
    results = []
    reasons: list[str] = []
    for i, events, response in zip(
        active.tolist(), event_lists(feedback.take(active)), responses, strict=True
    ):
        results.append(resolve_row(events, response, marks.get(i, []), fmap, reasons))
        if reasons:
            ignored += [(i, reason) for reason in reasons]
            reasons.clear()
    return _assemble(table, groups, active, results, cfg), _notes(table, ignored)


def event_dicts(events: pa.StructArray) -> list[dict[str, Any]]:
    """Feedback events as dicts, with ``ts`` as epoch milliseconds (10x faster than datetimes;
    only their order matters here)."""
    names = [f.name for f in events.type]
    columns = [
        (events.field(n).cast(pa.int64()) if n == "ts" else events.field(n)).to_pylist()
        for n in names
    ]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def event_lists(feedback: pa.ListArray) -> list[list[dict[str, Any]]]:
    """Each row's feedback list as dicts (see :func:`event_dicts`)."""
    flat = event_dicts(feedback.flatten())
    offsets = pc.subtract(feedback.offsets, feedback.offsets[0]).to_pylist()
    return [flat[i:j] for i, j in zip(offsets[:-1], offsets[1:], strict=True)]


def check_config(cfg: NormalizeConfig) -> None:
    if cfg.conflict not in CONFLICT_POLICIES:
        raise ConfigError(
            f"normalize: conflict must be one of {', '.join(CONFLICT_POLICIES)}, "
            f"not {cfg.conflict!r}"
        )
    if not 0 <= cfg.positive_threshold <= 1:
        raise ConfigError(
            f"normalize: positive_threshold must be in [0, 1], not {cfg.positive_threshold!r}"
        )
    for name in ("explicit_weight", "implicit_weight", "behavioral_weight"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"normalize: {name} must be > 0, not {getattr(cfg, name)!r}")


def normalize(input: Path, out: Path, cfg: NormalizeConfig) -> StageResult:
    """Run the normalize stage on a ``clean`` artifact (file or folder)."""
    input, out = Path(input), Path(out)
    check_input(input, CLEAN, "a clean/interactions artifact")
    check_config(cfg)
    signals: Counter = Counter()
    labels: Counter = Counter()
    outputs = {"feedback": Output(out, NORMALIZED, cfg.part_rows)}
    with StageRun(STAGE, cfg, [input], outputs, rejects=out) as run:
        tables = ((t, cfg) for t in _group_tables(input, cfg, run.tmp))
        workers = resolve_workers(cfg.workers, count_rows(input), PARALLEL_ROWS)
        for batch in run.map(normalize_batch, tables, workers):
            signals.update(value_counts(batch.rows.column("signal")))
            labels.update(_label_counts(batch.rows.column("label")))
            run.write(batch.rows)
        run.result.extra = {
            "signals": dict(sorted(signals.items())),
            "labels": {k: labels[k] for k in ("positive", "negative", "unlabeled")},
            "ignored_events": dict(sorted(run.notes.items())),
        }
        run.meta["counts"] = {"rows": run.writer().rows, "rows_in": run.result.rows_in}
        run.meta.update(run.result.extra)
    return run.result


def normalize_batch(table: pa.Table, cfg: NormalizeConfig) -> Batch:
    """The core of the stage: :func:`normalize_table` of one table of whole groups."""
    rows, notes = normalize_table(table, cfg)
    return Batch(rows, notes=notes)


# --- helpers ---------------------------------------------------------------------------------


def _group_tables(input: Path, cfg: NormalizeConfig, tmp: Path) -> Iterator[pa.Table]:
    """The input as tables in which every group that holds a preference is whole.

    Small inputs come as one table. Otherwise only preferences need rows of other batches
    (their siblings): a first pass hashes every row's group and notes the groups that hold a
    preference; the second streams the other rows batch by batch and hash-partitions the rows
    of those groups into temporary files, read back one partition at a time (bounded memory).
    """
    if count_rows(input) <= cfg.partition_rows:
        yield read_table(input, schema=CLEAN)
        return
    hashes: list[np.ndarray] = []  # per batch: each row's group hash
    preferred: list[np.ndarray] = []  # hashes of groups holding a preference
    for batch in iter_batches(input, ["context", "prompt", "feedback"], cfg.batch_rows, CLEAN):
        table = pa.Table.from_batches([batch])
        hashes.append(group_hashes(table))
        rows = _preference_rows(table.column("feedback").combine_chunks())
        preferred.append(hashes[-1][rows])
    pref = np.unique(np.concatenate(preferred))
    n = HashPartitions.count_for(
        sum(int(np.isin(h, pref).sum()) for h in hashes), cfg.partition_rows
    )
    schema = pa.schema(
        list(CLEAN) + [pa.field("group_id", pa.string()), pa.field(_GROUP_HASH, pa.uint64())]
    )
    parts = HashPartitions(tmp, schema, n, _GROUP_HASH, "group")
    batches = iter_batches(input, batch_rows=cfg.batch_rows, schema=CLEAN)
    for batch, group in zip(batches, hashes, strict=True):
        table = conform(batch, CLEAN)
        table = table.append_column("group_id", pa.array(hex64(group)))
        together = np.isin(group, pref)
        if together.any():
            keep = table.filter(pa.array(together))
            # partitioned by the group_id read as a hex number (the hash byte-swapped): the
            # partitions, hence the output order, of the code before stable_hash64
            number = group[together].byteswap()
            parts.write(keep.append_column(_GROUP_HASH, pa.array(number)))
            table = table.filter(pa.array(~together))
        if table.num_rows:
            yield table
    yield from parts.tables()


def _preference_rows(feedback: pa.ListArray) -> np.ndarray:
    """Indexes of the rows whose feedback holds a preference event."""
    is_pref = pc.fill_null(pc.equal(feedback.flatten().field("kind"), "preference"), False)
    parents = pc.list_parent_indices(feedback).filter(is_pref)
    return np.unique(parents.to_numpy(zero_copy_only=False))


def _preference_marks(
    table: pa.Table,
    groups: list[str],
    feedback: pa.Array,
    fmap: FeedbackMap,
    ignored: list[tuple[int, str]],
) -> dict[int, list[Observation]]:
    """Observations that preferences give their own row (chosen) and their siblings (rejected)."""
    flat = feedback.flatten()
    is_pref = pc.fill_null(pc.equal(flat.field("kind"), "preference"), False)
    if not pc.any(is_pref).as_py():
        return {}
    rows = pc.list_parent_indices(feedback).filter(is_pref).to_pylist()
    events = event_dicts(flat.filter(is_pref))
    ids = table.column("interaction_id").to_pylist()
    sessions = table.column("session_id").to_pylist()
    refs = {e["ref"] for e in events if e.get("ref") is not None}
    index = {iid: i for i, iid in enumerate(ids) if iid in refs}
    open_groups = {
        (sessions[r], groups[r]) for r, e in zip(rows, events, strict=True) if e["ref"] is None
    }
    siblings: dict[tuple[str, str], list[int]] = defaultdict(list)
    if open_groups:
        for i, key in enumerate(zip(sessions, groups, strict=True)):
            if key in open_groups:
                siblings[key].append(i)
    marks: dict[int, list[Observation]] = defaultdict(list)
    for row, event in zip(rows, events, strict=True):
        tier, ts, ref = fmap.tier(event), event.get("ts"), event.get("ref")
        if ref is None:
            rejected = [j for j in siblings[(sessions[row], groups[row])] if j != row]
            if not rejected:
                ignored.append((row, "preference_no_sibling"))
        elif ref == ids[row]:
            ignored.append((row, "preference_self"))
            continue
        else:
            j = index.get(ref)
            rejected = [j] if j is not None and groups[j] == groups[row] else []
            if not rejected:
                ignored.append((row, "preference_ref_not_found"))
        marks[row].append(Observation(tier, "preference", 1.0, PAIRWISE, ts))
        for j in rejected:
            marks[j].append(Observation(tier, "preference", 0.0, PAIRWISE, ts))
    return marks


def _assemble(
    table: pa.Table,
    groups: list[str],
    active: np.ndarray,
    results: list[RowFeedback],
    cfg: NormalizeConfig,
) -> pa.Table:
    n = table.num_rows
    score = np.full(n, np.nan, dtype=np.float32)
    weight = np.full(n, UNLABELED_WEIGHT, dtype=np.float32)
    signal = np.full(n, "none", dtype=object)
    critique: list[str | None] = [None] * n
    spans: list[list] = [[]] * n
    edited = np.zeros(n, dtype=bool)
    targets = []
    for i, r in zip(active.tolist(), results, strict=True):
        if r.score is not None:
            score[i] = r.score
        weight[i], signal[i], critique[i], spans[i] = r.weight, r.signal, r.critique, r.spans
        if r.target is not None:
            edited[i] = True
            targets.append(r.target)
    unscored = np.isnan(score)
    label = (score >= cfg.positive_threshold).astype(np.int8)
    response = table.column("response").combine_chunks()
    target = (
        pc.replace_with_mask(response, pa.array(edited), pa.array(targets, pa.string()))
        if targets
        else response
    )
    columns = {
        "score": pa.array(score, pa.float32(), mask=unscored),
        "label": pa.array(label, pa.int8(), mask=unscored),
        "weight": pa.array(weight, pa.float32()),
        "signal": pa.array(signal.tolist(), pa.string()),
        "target": target,
        "token_spans": pa.array(spans, pa.list_(TOKEN_SPAN)),
        "critique": pa.array(critique, pa.string()),
        "group_id": pa.array(groups, pa.string()),
    }
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table.cast(NORMALIZED)


def _notes(table: pa.Table, ignored: list[tuple[int, str]]) -> pa.Table:
    """A note for each ignored event: the row's id, the reason."""
    rows = [row for row, _ in ignored]
    ids = table.column("interaction_id").take(pa.array(rows, pa.int64())).to_pylist()
    details = ["feedback event ignored; the row is kept"] * len(rows)
    return reject_table(STAGE, "", ids, [reason for _, reason in ignored], details=details)


def _label_counts(column: pa.ChunkedArray) -> Counter:
    positive = int(pc.sum(column).as_py() or 0)
    labeled = len(column) - column.null_count
    return Counter(
        {"positive": positive, "negative": labeled - positive, "unlabeled": column.null_count}
    )
