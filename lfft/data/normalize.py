"""``lfft normalize``: ``clean`` -> ``feedback``: every feedback kind on one set of columns.

Per row (``docs/feedback.md`` tables every mapping):

- each valid event becomes an observation (:mod:`lfft.data.feedback_map`); invalid or unknown
  events are ignored and counted (``extra["ignored_events"]``), the row is kept;
- ``score`` comes from the strongest tier present (explicit > implicit > behavioral); within it,
  judgements (thumbs, rating, label, emoji, preference, rank) beat the score derived from an edit
  or error spans (0 if they change or mark anything, else 1); among judgements,
  ``conflict="latest"`` takes the newest event (events at the same time, or without times, are
  averaged) and ``conflict="mean"`` averages them all;
- ``label`` is ``score >= positive_threshold``; ``weight`` is the tier's weight;
- ``signal`` is the strongest kind in that tier: token > pairwise > scalar > binary; ``none``
  (score and label null, weight 1) when nothing usable remains;
- ``target`` is the newest edit, else the response; ``token_spans`` cover the response
  (word diff against the edit, plus ``span`` events as modify); ``critique`` joins comments;
- ``group_id`` is a hash of context and prompt. A preference marks its row chosen (score 1)
  and its ``ref`` sibling rejected (score 0), or every other row of the same session and group
  when ``ref`` is null; both sides get signal ``pairwise``.

Preferences need their siblings: large inputs are hash-partitioned by ``group_id`` into
temporary files and normalized partition by partition (bounded memory). No row is rejected
here (the rejects file is written, empty): rows without signal go on, and ``split`` decides.

Usage: ``lfft normalize clean.parquet --out feedback.parquet``
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lfft.config import NormalizeConfig, as_dict
from lfft.data.diff import MODIFY, diff_spans, spans_from_modified
from lfft.data.feedback_map import (
    SIGNAL_OF_KIND,
    SIGNAL_STRENGTH,
    TIER_RANK,
    TOKEN_KINDS,
    FeedbackMap,
    Observation,
)
from lfft.data.parts import open_output
from lfft.data.pool import ordered_map, resolve_workers
from lfft.data.rejects import RejectSink
from lfft.data.spill import HashPartitions
from lfft.data.text import context_strings, join_columns
from lfft.errors import ConfigError, NoUsableRows
from lfft.io import (
    count_rows,
    fingerprints,
    iter_batches,
    read_schema,
    read_table,
    rejects_path,
)
from lfft.report import StageResult
from lfft.schemas import CLEAN, FEEDBACK, TOKEN_SPAN, conform, make_metadata, validate

STAGE = "normalize"
CONFLICT_POLICIES = ("latest", "mean")
UNLABELED_WEIGHT = 1.0  # rows without signal only take part in LM-only objectives
_GROUP_HASH = "_group_hash"
PARALLEL_ROWS = 200_000  # auto workers: smaller inputs are normalized in one process
PAIRWISE = SIGNAL_OF_KIND["preference"]
_ROW_KINDS = frozenset(("preference", "emoji", "edit", "span", "comment"))  # need the whole row


@dataclass
class RowFeedback:
    """The unified feedback of one row (before it becomes columns)."""

    score: float | None = None
    weight: float = UNLABELED_WEIGHT
    signal: str = "none"
    target: str | None = None  # None: the response
    spans: list[dict[str, int]] = field(default_factory=list)
    critique: str | None = None


def group_ids(table: pa.Table) -> list[str]:
    """``group_id`` per row: a hash of context and prompt (16 hex characters)."""
    return [f"{h:016x}" for h in group_hashes(table).tolist()]


def group_hashes(table: pa.Table) -> np.ndarray:
    """The ``group_id`` of every row as a uint64 (the 8-byte blake2b digest, big-endian)."""
    keys = join_columns(context_strings(table.column("context")), table.column("prompt"))
    return np.fromiter(
        (
            int.from_bytes(blake2b(k.encode("utf-8"), digest_size=8).digest(), "big")
            for k in keys.to_pylist()
        ),
        dtype=np.uint64,
        count=table.num_rows,
    )


def normalize_table(table: pa.Table, cfg: NormalizeConfig) -> tuple[pa.Table, Counter]:
    """``clean`` rows -> ``feedback`` rows; returns the table and ignored-event counts.

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
    ignored: Counter = Counter()
    feedback = (
        table.column("feedback").chunk(0) if n else pa.array([], CLEAN.field("feedback").type)
    )
    marks = _preference_marks(table, groups, feedback, fmap, ignored)
    has_events = pc.greater(pc.list_value_length(feedback), 0).to_numpy(zero_copy_only=False)
    active = np.union1d(np.flatnonzero(has_events), np.fromiter(marks, np.int64, len(marks)))
    responses = table.column("response").take(active).to_pylist()
    results = [
        resolve_row(events, response, marks.get(int(i), []), fmap, ignored)
        for i, events, response in zip(
            active, event_lists(feedback.take(active)), responses, strict=True
        )
    ]
    return _assemble(table, groups, active, results, cfg), ignored


def resolve_row(
    events: list[dict[str, Any]],
    response: str,
    extra: list[Observation],
    fmap: FeedbackMap,
    ignored: Counter,
) -> RowFeedback:
    """One row's events (plus cross-row preference observations) -> its unified feedback."""
    observations = list(extra)
    emoji, edits, span_ranges, comments = [], [], [], []
    span_tier = None
    for order, event in enumerate(events):
        kind = event["kind"]
        if kind not in _ROW_KINDS:
            obs = fmap.observe(event)
            if obs.__class__ is str:
                ignored[obs] += 1
            elif obs is not None:
                observations.append(obs)
        elif kind == "emoji":
            emoji.append(event)
        elif kind == "edit":
            if event.get("text"):
                when = _when(event.get("ts"), order)
                edits.append((when, event["text"], fmap.tier(event), event.get("ts")))
            else:
                ignored["empty_edit"] += 1
        elif kind == "span":
            start, end = event.get("start"), event.get("end")
            if start is None or end is None or not 0 <= start < end <= len(response):
                ignored["span_out_of_range"] += 1
            else:
                span_ranges.append((start, end))
                span_tier = span_tier or fmap.tier(event)
        elif kind == "comment" and event.get("text"):
            comments.append((_when(event.get("ts"), order), event["text"]))
        # preference: resolved across rows in _preference_marks; empty comments: nothing
    if emoji:
        obs, bad = fmap.emoji(emoji)
        ignored.update(bad)
        if obs is not None:
            observations.append(obs)

    row = RowFeedback(critique="\n\n".join(t for _, t in sorted(comments)) or None)
    if edits or span_ranges:
        observations.append(_token_observation(row, response, edits, span_ranges, span_tier))
    if len(observations) == 1:
        o = observations[0]
        row.score, row.weight, row.signal = o.score, fmap.weights[o.tier], o.signal
    elif observations:
        top = min(TIER_RANK[o.tier] for o in observations)
        in_tier = [o for o in observations if TIER_RANK[o.tier] == top]
        judged = [o for o in in_tier if o.kind not in TOKEN_KINDS] or in_tier
        score = judged[0].score if len(judged) == 1 else _pick(judged, fmap.cfg.conflict)
        row.score = min(1.0, max(0.0, score))
        row.weight = fmap.weights[in_tier[0].tier]
        row.signal = max((o.signal for o in in_tier), key=SIGNAL_STRENGTH.__getitem__)
    return row


def records(events: pa.StructArray) -> list[dict[str, Any]]:
    """Feedback events as dicts, with ``ts`` as epoch milliseconds (10x faster than datetimes;
    only their order matters here)."""
    names = [f.name for f in events.type]
    columns = [
        (events.field(n).cast(pa.int64()) if n == "ts" else events.field(n)).to_pylist()
        for n in names
    ]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def event_lists(feedback: pa.ListArray) -> list[list[dict[str, Any]]]:
    """Each row's feedback list as dicts (see :func:`records`)."""
    flat = records(feedback.flatten())
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
    start = time.perf_counter()
    input, out = Path(input), Path(out)
    validate(read_schema(input), CLEAN, f"{input} is not a clean/interactions artifact")
    check_config(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = as_dict(cfg)
    result = StageResult(STAGE, outputs={"feedback": out, "rejects": rejects_path(out)})
    ignored: Counter = Counter()
    signals: Counter = Counter()
    labels: Counter = Counter()
    with (
        tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp,
        RejectSink(out, STAGE, config),
    ):
        meta = make_metadata(STAGE, config, fingerprints([input]))
        writer = open_output(out, FEEDBACK, meta, cfg.part_rows)
        try:
            tables = ((t, cfg) for t in _group_tables(input, cfg, Path(tmp)))
            workers = resolve_workers(cfg.workers, count_rows(input), PARALLEL_ROWS)
            for rows, found in ordered_map(_normalize, tables, workers):
                result.rows_in += rows.num_rows
                ignored.update(found)
                signals.update(_value_counts(rows.column("signal")))
                labels.update(_label_counts(rows.column("label")))
                writer.write(rows)
        except BaseException as e:
            writer.abort(e)
            raise
        result.rows_out = writer.rows
        result.extra = {
            "signals": dict(sorted(signals.items())),
            "labels": {k: labels[k] for k in ("positive", "negative", "unlabeled")},
            "ignored_events": dict(sorted(ignored.items())),
        }
        if result.rows_out == 0:
            writer.abort()
        else:
            writer.meta["counts"] = {"rows": result.rows_out, "rows_in": result.rows_in}
            writer.meta.update(result.extra)
            writer.close()
    if result.rows_out == 0:
        raise NoUsableRows(f"{input}: no rows to normalize")
    result.seconds = time.perf_counter() - start
    return result


# --- helpers ---------------------------------------------------------------------------------


def _normalize(args: tuple[pa.Table, NormalizeConfig]) -> tuple[pa.Table, Counter]:
    """Worker: :func:`normalize_table` of one table of whole groups."""
    return normalize_table(*args)


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
        table = table.append_column("group_id", pa.array([f"{h:016x}" for h in group.tolist()]))
        together = np.isin(group, pref)
        if together.any():
            keep = table.filter(pa.array(together))
            parts.write(keep.append_column(_GROUP_HASH, pa.array(group[together])))
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
    ignored: Counter,
) -> dict[int, list[Observation]]:
    """Observations that preferences give their own row (chosen) and their siblings (rejected)."""
    flat = feedback.flatten()
    is_pref = pc.fill_null(pc.equal(flat.field("kind"), "preference"), False)
    if not pc.any(is_pref).as_py():
        return {}
    rows = pc.list_parent_indices(feedback).filter(is_pref).to_pylist()
    events = records(flat.filter(is_pref))
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
                ignored["preference_no_sibling"] += 1
        elif ref == ids[row]:
            ignored["preference_self"] += 1
            continue
        else:
            j = index.get(ref)
            rejected = [j] if j is not None and groups[j] == groups[row] else []
            if not rejected:
                ignored["preference_ref_not_found"] += 1
        marks[row].append(Observation(tier, "preference", 1.0, PAIRWISE, ts))
        for j in rejected:
            marks[j].append(Observation(tier, "preference", 0.0, PAIRWISE, ts))
    return marks


def _token_observation(
    row: RowFeedback,
    response: str,
    edits: list[tuple],
    span_ranges: list[tuple[int, int]],
    span_tier: str | None,
) -> Observation:
    """Set the row's target and token spans from its newest edit and its error spans.

    The derived score is 0 when anything was changed or marked (the response as written was
    not acceptable; ``target`` holds the fix), 1 when an edit left it as it was.
    """
    modified = list(span_ranges)
    tier, ts = span_tier or "explicit", None
    if edits:
        _, text, tier, ts = max(edits, key=lambda e: e[0])
        row.target = text
        spans = diff_spans(response, text)
        modified += [(s["start"], s["end"]) for s in spans if s["label"] == MODIFY]
    row.spans = spans_from_modified(len(response), modified)
    changed = bool(span_ranges) or row.target != response
    kind = "edit" if edits else "span"
    return Observation(tier, kind, 0.0 if changed else 1.0, SIGNAL_OF_KIND[kind], ts)


def _pick(observations: list[Observation], policy: str) -> float:
    """The newest observations (``latest``) or all (``mean``), averaged per kind, then across
    kinds: thirteen OASST labels do not outvote one rank."""
    if policy == "latest":
        times = [o.ts for o in observations if o.ts is not None]
        if times:
            newest = max(times)
            observations = [o for o in observations if o.ts == newest]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for o in observations:
        by_kind[o.kind].append(o.score)
    return sum(sum(v) / len(v) for v in by_kind.values()) / len(by_kind)


def _when(ts: int | None, order: int) -> tuple:
    """Sort key: events without a time count as older than timed ones, then list order."""
    return (ts is not None, ts or 0, order)


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
    return table.cast(FEEDBACK)


def _value_counts(column: pa.ChunkedArray) -> Counter:
    vc = column.value_counts()
    return Counter(
        dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
    )


def _label_counts(column: pa.ChunkedArray) -> Counter:
    positive = int(pc.sum(column).as_py() or 0)
    labeled = len(column) - column.null_count
    return Counter(
        {"positive": positive, "negative": labeled - positive, "unlabeled": column.null_count}
    )
