"""``lfft clean``: ``interactions`` -> ``clean`` (+ ``clean.rejects.parquet``).

Per row, in order: fix the text (NFC, line ends, control characters; :mod:`lfft.data.text`),
drop rows that cannot be trained on (reasons below), then scrub personal data
(:mod:`lfft.data.pii`). Duplicates (same session, context, prompt and response after the text
fix; any session with ``merge_across_sessions``) become one row holding the union of their
feedback; each merged-away row is a ``duplicate_merged`` reject, so
``rows_in == rows_out + rejects``.

Reject reasons: ``empty_response``, ``empty_prompt``, ``too_many_turns``, ``too_long``,
``duplicate_merged``.

Streaming: pass 1 cleans batch by batch into a temporary file and keeps only a 64-bit hash of
each row's duplicate key (8 bytes a row). Rows whose hash occurs twice are hash-partitioned into
temporary files and merged partition by partition; every other row is copied straight through.

Usage: ``lfft clean interactions.parquet --out clean.parquet``
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lfft.config import CleanConfig
from lfft.data.pii import check_kinds, scrub_array
from lfft.data.pool import resolve_workers
from lfft.data.rejects import RAW_LIMIT, reject_table
from lfft.data.runner import Batch, Output, StageRun, check_input
from lfft.data.spill import HashPartitions, Spill, hash64
from lfft.data.text import context_strings, fix_array, join_columns, map_list_field, remap_span
from lfft.io import count_rows, iter_batches
from lfft.report import StageResult
from lfft.schemas import CLEAN, INTERACTIONS

STAGE = "clean"
KEY = "_key"  # uint64 hash of the duplicate key (computed before PII scrubbing)
ROW = "_row"  # input row number: keeps merges and output order deterministic
WORK = pa.schema(list(CLEAN) + [pa.field(KEY, pa.uint64()), pa.field(ROW, pa.int64())])
REASONS = ("empty_response", "empty_prompt", "too_many_turns", "too_long", "duplicate_merged")
DUPLICATE_ROWS_PER_PARTITION = 50_000
PARALLEL_ROWS = 200_000  # auto workers: smaller inputs are cleaned in one process
PII = "pii_"  # tallies of personal data found, by kind: pii_email, ...


def clean_table(
    table: pa.Table, cfg: CleanConfig, counts: Counter | None = None, source: str = ""
) -> tuple[pa.Table, pa.Table]:
    """Clean an in-memory ``interactions`` table: returns ``(clean rows, rejects)``.

    The whole stage on one table (the stage does the same in bounded memory). PII counts
    (``pii_<kind>``) and the number of fixed texts are added to ``counts`` when given;
    ``source`` names the input in the rejects.
    """
    prep = prepare_table(table, cfg, source)
    dup = duplicated_keys([prep.rows.column(KEY).to_numpy()])
    is_dup = np.isin(prep.rows.column(KEY).to_numpy(), dup)
    merged, pairs = merge_duplicates(prep.rows.filter(pa.array(is_dup)), cfg)
    survivors = Survivors(pairs)
    kept = pa.concat_tables([prep.rows.filter(pa.array(~is_dup)), merged]).sort_by(ROW)
    rejects = pa.concat_tables([prep.rejects, _merge_rejects(pairs, source)])
    if counts is not None:
        counts.update(prep.tallies)
    return survivors.finish(kept).cast(CLEAN), rejects


def prepare_table(
    table: pa.Table | pa.RecordBatch, cfg: CleanConfig, source: str = "", first_row: int = 0
) -> Batch:
    """The core of pass 1: fix text, filter, key and scrub one batch (duplicates stay).

    Returns the kept rows (``WORK`` schema), the rejects and, as tallies, the personal data
    found by kind (``pii_<kind>``) and the number of texts fixed (``texts_fixed``).
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    table = table.select(CLEAN.names).cast(CLEAN).combine_chunks()
    n = table.num_rows
    table = table.append_column(ROW, pa.array(np.arange(first_row, first_row + n), pa.int64()))
    original = table
    table = _fix_text(table)
    texts_fixed = _count_changed(original, table)

    reasons, details = _reasons(table, cfg)
    bad = np.flatnonzero(reasons != "")
    rejects = reject_table(
        STAGE,
        source,
        table.column("interaction_id").take(bad).to_pylist(),
        reasons[bad].tolist(),
        raws=[_raw(table, i) for i in bad],
        details=details[bad].tolist(),
    )
    keep = pa.array(reasons == "")
    table, original = table.filter(keep), original.filter(keep)

    table = table.append_column(KEY, pa.array(hash64(_dup_key(table, cfg).to_pylist())))
    tallies: Counter = Counter()
    if cfg.scrub_pii:
        table, pii = _scrub(table, check_kinds(cfg.pii_kinds))
        tallies.update({f"{PII}{kind}": n for kind, n in pii.items()})
    tallies["texts_fixed"] += texts_fixed
    table = _remap_spans(original, table)
    return Batch(table.select(WORK.names), rejects, tallies=tallies)


def duplicated_keys(keys: list[np.ndarray]) -> np.ndarray:
    """The key hashes that occur more than once (sorted)."""
    if not keys:
        return np.empty(0, np.uint64)
    values, counts = np.unique(np.concatenate(keys), return_counts=True)
    return values[counts > 1]


def merge_duplicates(table: pa.Table, cfg: CleanConfig) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Merge rows with the same duplicate key into one row each.

    The survivor is the earliest row (by ``ts``, then input order); it keeps its id and gets the
    union of every copy's feedback (exact repeats once), the first non-null ``user_id`` and
    ``model``. Returns the survivors and ``(merged-away id, survivor id)`` pairs.
    """
    if table.num_rows == 0:
        return table, []
    exact = _dup_key(table, cfg).to_pylist()
    groups: dict[tuple[int, str], list[int]] = {}
    for i, (h, key) in enumerate(zip(table.column(KEY).to_pylist(), exact, strict=True)):
        groups.setdefault((h, key), []).append(i)
    rows = table.to_pylist()
    merged, pairs = [], []
    for members in groups.values():
        group = sorted((rows[i] for i in members), key=_age)
        survivor = dict(group[0])
        seen: set = set()
        feedback = []
        for row in group:
            for event in row["feedback"]:
                ident = tuple(event.items())
                if ident not in seen:
                    seen.add(ident)
                    feedback.append(event)
        survivor["feedback"] = feedback
        for name in ("user_id", "model"):
            survivor[name] = next((r[name] for r in group if r[name] is not None), None)
        merged.append(survivor)
        pairs.extend((r["interaction_id"], survivor["interaction_id"]) for r in group[1:])
    return pa.Table.from_pylist(merged, schema=table.schema), pairs


def clean(input: Path, out: Path, cfg: CleanConfig) -> StageResult:
    """Run the clean stage on an ``interactions`` artifact (file or folder)."""
    input, out = Path(input), Path(out)
    check_input(input, INTERACTIONS, "an interactions artifact")
    check_kinds(cfg.pii_kinds)
    outputs = {"clean": Output(out, CLEAN, cfg.part_rows)}
    with StageRun(STAGE, cfg, [input], outputs, rejects=out) as run:
        stage1 = Spill(run.tmp / "stage1.parquet", WORK)
        keys = []
        workers = resolve_workers(cfg.workers, count_rows(input), PARALLEL_ROWS)
        for batch in run.map(prepare_table, _numbered_batches(input, cfg), workers):
            stage1.write(batch.rows)
            keys.append(batch.rows.column(KEY).to_numpy())
        dup = duplicated_keys(keys)
        dup_rows = int(sum(np.isin(k, dup).sum() for k in keys)) if dup.size else 0
        del keys

        survivors, merged = _merge_spilled(stage1, dup, dup_rows, run, cfg, str(input))
        for batch in stage1.batches(cfg.batch_rows):
            table = pa.Table.from_batches([batch])
            if dup.size:
                table = table.filter(pa.array(~np.isin(batch.column(KEY).to_numpy(), dup)))
            run.write(survivors.finish(table))
        for batch in merged.batches(cfg.batch_rows) if merged else ():
            run.write(survivors.finish(pa.Table.from_batches([batch])))
        pii = {k[len(PII) :]: n for k, n in run.tallies.items() if k.startswith(PII)}
        fixed = run.tallies["texts_fixed"]
        counts = {"rows": run.writer().rows, "rows_in": run.result.rows_in}
        run.meta.update(counts={**counts, "rejects": dict(run.sink.counts)}, pii=pii)
        run.meta["texts_fixed"] = fixed
        run.result.extra = {"pii": dict(sorted(pii.items())), "texts_fixed": fixed}
    return run.result


# --- helpers ---------------------------------------------------------------------------------


def _numbered_batches(input: Path, cfg: CleanConfig) -> Iterator[tuple]:
    """``prepare_table`` arguments for each input batch (with its first row's number)."""
    first = 0
    for batch in iter_batches(input, batch_rows=cfg.batch_rows, schema=INTERACTIONS):
        yield batch, cfg, str(input), first
        first += batch.num_rows


def _merge_spilled(
    stage1: Spill,
    dup: np.ndarray,
    dup_rows: int,
    run: StageRun,
    cfg: CleanConfig,
    source: str,
) -> tuple[Survivors, Spill | None]:
    """Merge the duplicated rows of ``stage1``, partition by partition (bounded memory)."""
    if dup.size == 0:
        return Survivors(), None
    n = HashPartitions.count_for(dup_rows, DUPLICATE_ROWS_PER_PARTITION)
    parts = HashPartitions(run.tmp, WORK, n, KEY, "dup")
    for batch in stage1.batches(cfg.batch_rows):
        is_dup = np.isin(batch.column(KEY).to_numpy(), dup)
        if is_dup.any():
            parts.write(pa.Table.from_batches([batch]).filter(pa.array(is_dup)))
    merged = Spill(run.tmp / "merged.parquet", WORK)
    pairs = []
    for table in parts.tables():
        rows, merged_pairs = merge_duplicates(table, cfg)
        merged.write(rows)
        run.take(Batch(rows, _merge_rejects(merged_pairs, source)))
        pairs.extend(merged_pairs)
    return Survivors(pairs), merged


def _merge_rejects(pairs: list[tuple[str, str]], source: str) -> pa.Table:
    return reject_table(
        STAGE,
        source,
        [dropped for dropped, _ in pairs],
        ["duplicate_merged"] * len(pairs),
        details=[f"merged into {kept}" for _, kept in pairs],
    )


class Survivors:
    """Merged-away id -> surviving id: points preference ``ref``s at the survivor."""

    def __init__(self, pairs: list[tuple[str, str]] = ()):
        self.merged = pa.array([dropped for dropped, _ in pairs], pa.string())
        self.kept = pa.array([kept for _, kept in pairs], pa.string())

    def finish(self, table: pa.Table) -> pa.Table:
        """Remap refs and drop the work columns."""
        if len(self.merged) and table.num_rows:
            fb = map_list_field(table.column("feedback"), "ref", self._remap)
            table = table.set_column(table.schema.get_field_index("feedback"), "feedback", fb)
        return table.select(CLEAN.names)

    def _remap(self, refs: pa.Array) -> pa.Array:
        return pc.coalesce(self.kept.take(pc.index_in(refs, value_set=self.merged)), refs)


def _age(row: dict[str, Any]) -> tuple:
    ts = row["ts"]
    return (ts is None, ts.timestamp() if ts is not None else 0.0, row[ROW])


def _fix_text(table: pa.Table) -> pa.Table:
    for name in ("prompt", "response"):
        table = _set(table, name, fix_array(table.column(name)))
    table = _set(table, "context", map_list_field(table.column("context"), "content", fix_array))
    return _set(table, "feedback", map_list_field(table.column("feedback"), "text", fix_array))


def _count_changed(before: pa.Table, after: pa.Table) -> int:
    """How many strings the text fix changed (prompts, responses, turns, feedback texts)."""
    pairs = [(before[name], after[name]) for name in ("prompt", "response")]
    for name, sub in (("context", "content"), ("feedback", "text")):
        flat = [t.column(name).combine_chunks().flatten().field(sub) for t in (before, after)]
        pairs.append((flat[0], flat[1]))
    return sum(
        int(pc.sum(pc.invert(pc.fill_null(pc.equal(b, a), True))).as_py() or 0) for b, a in pairs
    )


def _scrub(table: pa.Table, kinds: tuple[str, ...]) -> tuple[pa.Table, Counter]:
    counts: Counter = Counter()

    def scrub(arr: pa.Array) -> pa.Array:
        new, found = scrub_array(arr, kinds)
        counts.update(found)
        return new

    for name in ("prompt", "response"):
        table = _set(table, name, scrub(table.column(name)))
    table = _set(table, "context", map_list_field(table.column("context"), "content", scrub))
    table = _set(table, "feedback", map_list_field(table.column("feedback"), "text", scrub))
    return table, counts


def _remap_spans(original: pa.Table, table: pa.Table) -> pa.Table:
    """Move ``span`` feedback offsets onto the fixed/scrubbed response."""
    changed = pc.invert(pc.equal(original.column("response"), table.column("response")))
    has_span = pc.greater(pc.list_value_length(table.column("feedback")), 0)
    rows = np.flatnonzero(pc.and_(changed, has_span).to_numpy(zero_copy_only=False))
    if rows.size == 0:
        return table
    feedback = table.column("feedback").combine_chunks()
    old = original.column("response").take(rows).to_pylist()
    new = table.column("response").take(rows).to_pylist()
    replaced = []
    for events, before, after in zip(feedback.take(rows).to_pylist(), old, new, strict=True):
        for event in events:
            if event["start"] is not None and event["end"] is not None:
                event["start"], event["end"] = remap_span(
                    before, after, event["start"], event["end"]
                )
        replaced.append(events)
    index = np.arange(len(feedback))
    index[rows] = len(feedback) + np.arange(rows.size)
    combined = pa.concat_arrays([feedback, pa.array(replaced, feedback.type)])
    return _set(table, "feedback", combined.take(pa.array(index)))


def _reasons(table: pa.Table, cfg: CleanConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the first reason to drop it ("" to keep) and a detail."""
    n = table.num_rows
    response = _np(pc.utf8_length(pc.utf8_trim_whitespace(table.column("response"))))
    prompt = _np(pc.utf8_length(pc.utf8_trim_whitespace(table.column("prompt"))))
    turns = _np(pc.list_value_length(table.column("context")))
    chars = (
        _context_chars(table.column("context"))
        + _np(pc.utf8_length(table.column("prompt")))
        + _np(pc.utf8_length(table.column("response")))
    )
    checks = [
        ("empty_response", response < cfg.min_response_chars, None),
        ("empty_prompt", prompt == 0, None),
        ("too_many_turns", turns > cfg.max_turns, (turns, "turns", cfg.max_turns, "max_turns")),
        ("too_long", chars > cfg.max_chars, (chars, "chars", cfg.max_chars, "max_chars")),
    ]
    reasons = np.full(n, "", dtype=object)
    details = np.full(n, None, dtype=object)
    for reason, mask, why in reversed(checks):
        reasons[mask] = reason
        if why is None:
            details[mask] = None
            continue
        values, unit, limit, option = why
        for i in np.flatnonzero(mask):
            details[i] = f"{values[i]:,} {unit} > {option} {limit:,}"
    return reasons, details


def _context_chars(context: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(context, pa.ChunkedArray):
        context = context.combine_chunks()
    lengths = _np(pc.utf8_length(context.flatten().field("content")))
    cum = np.concatenate([[0], np.cumsum(lengths)])
    offsets = context.offsets.to_numpy() - context.offsets[0].as_py()
    return cum[offsets[1:]] - cum[offsets[:-1]]


def _dup_key(table: pa.Table, cfg: CleanConfig) -> pa.Array:
    parts = [context_strings(table.column("context")), table["prompt"], table["response"]]
    if not cfg.merge_across_sessions:
        parts.insert(0, table["session_id"])
    return join_columns(*parts)


def _raw(table: pa.Table, i: int) -> str:
    row = {name: table.column(name)[int(i)].as_py() for name in ("prompt", "response")}
    return json.dumps(row, ensure_ascii=False)[:RAW_LIMIT]


def _set(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False))
