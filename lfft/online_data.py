"""A round's data stages, incrementally: only the sessions that new lines touch are recomputed.

    update(layout, n, cfgs) -> the round's data summary

Sessions are the unit (see :mod:`lfft.online_parts` for why that is exact): the round reads
the lines consumed since the last update, finds their sessions in the session index, takes those
sessions' earlier lines out of the parts that held them, and runs collect's join, clean, normalize
and split (their pure cores) on all lines of the touched sessions, in read order, into new
parts. A part not touched is not read. A large round (the first one, or a backlog) is cut into
parts of about ``part_mb`` of raw lines by a hash of the session, spilled to disk between its
two passes. Many small parts (one per round) are merged from time to time.

The artifacts then hold, row for row, what one batch run of collect, clean, normalize and split
over every consumed line gives (``tests/test_online_incremental.py``), in another row order.
"""

from __future__ import annotations

import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from lfft import stages
from lfft.config import OnlineConfig
from lfft.data import events as ev
from lfft.data.clean import clean_table
from lfft.data.event_passes import join_events
from lfft.data.normalize import normalize_table
from lfft.data.readers import iter_line_blocks, strip_eol
from lfft.data.rejects import records_table, reject_record
from lfft.data.split import split_table
from lfft.io import atomic_path
from lfft.online_parts import INDEX, LINES, Manifest, PartStore
from lfft.online_versions import OnlineLayout, row_digests
from lfft.schemas import INTERACTIONS

MB = 1 << 20
SMALL_SHARE = 4  # a part under part_mb / SMALL_SHARE is small
MAX_SMALL_PARTS = 8  # more small parts than this: merge them


@dataclass
class Context:
    """What every part built in one update shares."""

    layout: OnlineLayout
    names: list[str]  # consumed part of each round: names[round] (events' ``file``)
    cfgs: dict[str, Any]  # stage configs by stage name

    def name(self, rnd: int) -> str:
        return self.names[rnd]


def update(
    layout: OnlineLayout, n: int, cfgs: dict[str, Any], part_mb: float = 16.0
) -> dict[str, Any]:
    """Bring the parts up to round ``n`` (its consumed lines and any earlier ones not yet in
    them); returns the data summary of the round (totals as the batch stages count them, and
    what this update touched). Idempotent: a committed round is not applied twice."""
    store = PartStore(layout)
    if not store.exists():  # first update: clear what full rounds or a killed update left
        store.reset()
    manifest = store.load()
    store.tidy(manifest)
    if manifest.round < n:
        t0 = time.perf_counter()
        ctx = Context(layout, [str(layout.part(r)) for r in range(n + 1)], cfgs)
        stats = _apply(store, manifest, ctx, n, max(1, int(part_mb * MB)))
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        manifest.last = stats
        store.commit(manifest)
    return summary(manifest)


def summary(manifest: Manifest) -> dict[str, Any]:
    """Each stage's rows in, rows out and rejects over all parts, as its batch run counts them
    (normalize rejects nothing), and the last update's own numbers."""
    t = manifest.totals()
    rows, rejects = t["rows"], t["rejects"]
    split_out = sum(rows.get(k, 0) for k in ("train", "val", "test"))

    def stage(rows_in: int, rows_out: int, rejected: dict) -> dict[str, Any]:
        return {"rows_in": rows_in, "rows_out": rows_out, "rejects": rejected}

    return {
        "collect": stage(rows.get("lines", 0), rows.get("interactions", 0), rejects["collect"]),
        "clean": stage(rows.get("interactions", 0), rows.get("clean", 0), rejects["clean"]),
        "normalize": stage(rows.get("clean", 0), rows.get("feedback", 0), {}),
        "split": stage(rows.get("feedback", 0), split_out, rejects["split"]),
        "update": dict(manifest.last),
    }


def incremental(cfg: OnlineConfig, stage_cfgs: dict[str, Any]) -> bool:
    """Whether rounds update the data incrementally: on unless turned off, or unless clean
    merges duplicates across sessions (then a row depends on other sessions' rows)."""
    return cfg.incremental and not stage_cfgs["clean"].merge_across_sessions


def full_rebuild(layout: OnlineLayout, cfgs: dict[str, Any]) -> dict[str, Any]:
    """The four batch stages over everything consumed so far (each round's cost grows with
    the log: what incremental rounds avoid). A work folder that held incremental parts gets
    back the consumed files they compacted away (``keep_consumed = false``), then loses the
    parts."""
    store = PartStore(layout)
    if store.exists():
        restore_consumed(store)
    store.reset()
    w = layout
    results = {
        "collect": stages.collect([w.consumed], w.interactions, cfgs["collect"]),
        "clean": stages.clean(w.interactions, w.clean, cfgs["clean"]),
        "normalize": stages.normalize(w.clean, w.normalized, cfgs["normalize"]),
        "split": stages.split(w.normalized, w.splits, cfgs["split"]),
    }
    return {
        name: {"rows_in": r.rows_in, "rows_out": r.rows_out, "rejects": dict(r.rejects)}
        for name, r in results.items()
    }


def restore_consumed(store: PartStore) -> list[int]:
    """Write back, byte for byte, every ``consumed/rNNNN.jsonl`` the parts hold lines of and
    that is gone (the parts keep each line with its round and line number); returns the
    rounds restored."""
    manifest, layout = store.load(), store.layout
    tables = []
    for part in sorted(manifest.parts):
        rounds = store.read("lines", part, manifest, ["round"]).column("round")
        missing = [r for r in pc.unique(rounds).to_pylist() if not layout.part(r).exists()]
        if missing:
            lines = store.read("lines", part, manifest, ["round", "line", "raw"])
            tables.append(lines.filter(pc.is_in(lines.column("round"), pa.array(missing))))
    if not tables:
        return []
    lines = pa.concat_tables(tables).sort_by([("round", "ascending"), ("line", "ascending")])
    restored = pc.unique(lines.column("round")).to_pylist()
    for rnd in restored:
        raw = lines.filter(pc.equal(lines.column("round"), rnd)).column("raw").to_pylist()
        with atomic_path(layout.part(rnd)) as tmp:
            tmp.write_bytes(b"".join(raw))
    return restored


# --- one update -------------------------------------------------------------------------------


def _apply(store: PartStore, manifest: Manifest, ctx: Context, n: int, part_bytes: int) -> dict:
    rounds = [r for r in range(manifest.round + 1, n + 1) if ctx.layout.part(r).exists()]
    size = sum(ctx.layout.part(r).stat().st_size for r in rounds)
    k = max(1, -(-size // part_bytes))  # new parts: enough to keep each under part_bytes
    store.state.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spill-", dir=store.state) as tmp:
        buckets = Buckets(k, Path(tmp))
        lines_new = 0
        for table in _new_lines(rounds, ctx, buckets):
            buckets.add(table)
            lines_new += table.num_rows
        touched = pa.array(sorted(buckets.sessions), pa.string())
        index = store.read_index(manifest)
        hit = pc.is_in(index.column("session_id"), value_set=touched)
        old = sorted(set(index.column("part").filter(hit).to_pylist()))
        for part in old:  # take the touched sessions out; their lines join the new parts
            changed, moved = take_out(store, manifest, part, touched, ctx)
            buckets.add(moved)
            if changed["lines"].num_rows:
                manifest.parts[part] = store.write(part, n, changed, manifest.parts[part])
            else:
                del manifest.parts[part]
        made = []
        for i, lines in buckets.tables():
            part = f"p{n:06d}-{i:03d}"
            tables = build_part(lines, ctx)
            if i == 0 and buckets.rejects:  # the lines that did not parse are in part 0
                rejects = records_table(buckets.rejects)
                tables["collect_rejects"] = pa.concat_tables([rejects, tables["collect_rejects"]])
            manifest.parts[part] = store.write(part, n, tables)
            made.append((part, lines.column("session_id")))
        buckets.close()
    index = pa.concat_tables(
        [index.filter(pc.invert(hit))] + [_index_rows(sessions, part) for part, sessions in made]
    )
    merged = _merge_small(store, manifest, n, part_bytes)
    if merged:
        index = _repoint(index, merged)
    store.write_index(index, n)
    manifest.index_gen, manifest.round = n, n
    return {
        "rounds": rounds,
        "lines_new": lines_new,
        "sessions_touched": len(touched),
        "parts_rewritten": len(old),
        "parts_new": len(made),
        "parts_merged": sum(len(v) for v in merged.values()),
        "parts": len(manifest.parts),
    }


def _new_lines(rounds: list[int], ctx: Context, buckets: Buckets) -> Iterator[pa.Table]:
    """The lines of the consumed parts of ``rounds`` as ``LINES`` tables, block by block; a
    line that does not parse gets a null session and its reject goes to ``buckets``."""
    parse, event_error = ev.parse_line, ev.EventError
    for rnd in rounds:
        name, line_no = ctx.name(rnd), 0
        for block in iter_line_blocks(ctx.layout.part(rnd)):
            sessions: list[str | None] = []
            for line in block:
                line_no += 1
                try:
                    sessions.append(parse(line, rnd, line_no).session_id)
                except event_error as e:
                    sessions.append(None)
                    where = f"{name}:{line_no}"
                    buckets.rejects.append(
                        reject_record("collect", name, where, e.reason, strip_eol(line), e.detail)
                    )
            first = line_no - len(block) + 1
            yield pa.table(
                [
                    pa.array(sessions, pa.string()),
                    pa.array([rnd] * len(block), pa.int32()),
                    pa.array(range(first, line_no + 1), pa.int64()),
                    pa.array(block, pa.binary()),
                ],
                schema=LINES,
            )


def take_out(
    store: PartStore, manifest: Manifest, part: str, sessions: pa.Array, ctx: Context
) -> tuple[dict[str, pa.Table], pa.Table]:
    """A part without ``sessions``: the kinds that held rows of them, filtered (the others
    are not rewritten), and those sessions' lines. Each kind's key column is read first, the
    whole file only if something goes."""
    lines = store.read("lines", part, manifest)
    moving = pc.fill_null(pc.is_in(lines.column("session_id"), value_set=sessions), False)
    moved = lines.filter(moving)
    names = pa.array(ctx.names, pa.string()).take(moved.column("round"))
    where = pc.binary_join_element_wise(names, pc.cast(moved.column("line"), pa.string()), ":")
    rows = store.read("interactions", part, manifest, ["session_id", "interaction_id"])
    ids = rows.column("interaction_id").filter(pc.is_in(rows.column("session_id"), sessions))
    changed = {"lines": lines.filter(pc.invert(moving))}
    for kind in store.kinds:
        if kind == "lines":
            continue
        key, gone = ("session_id", sessions)
        if kind.endswith("_rejects"):
            key, gone = ("location", where if kind == "collect_rejects" else ids)
        keep = pc.invert(pc.is_in(store.read(kind, part, manifest, [key]).column(key), gone))
        if not pc.all(keep).as_py():
            changed[kind] = store.read(kind, part, manifest).filter(keep)
    return changed, moved


def build_part(lines: pa.Table, ctx: Context) -> dict[str, pa.Table]:
    """Every kind of file of a part, from all the lines of its sessions (``lines`` in read
    order: round, then line): the batch stages' pure cores, one session at a time."""
    cfgs, layout = ctx.cfgs, ctx.layout
    sessions: dict[str, list[ev.Event]] = {}
    columns = (lines.column(c).to_pylist() for c in ("session_id", "round", "line", "raw"))
    for sid, rnd, line_no, raw in zip(*columns, strict=True):
        if sid is not None:
            sessions.setdefault(sid, []).append(ev.parse_line(raw, rnd, line_no))
    rows, rejected = join_events(sessions, ctx.names, cfgs["collect"])
    interactions = rows.cast(INTERACTIONS) if rows is not None else INTERACTIONS.empty_table()
    collect_rejects = records_table([reject_record("collect", *r) for r in rejected])
    clean, clean_rejects = clean_table(interactions, cfgs["clean"], source=str(layout.interactions))
    feedback, _ = normalize_table(clean, cfgs["normalize"])
    splits, split_rejects = split_table(feedback, cfgs["split"], str(layout.normalized))
    train = splits["train"]
    digests = pa.table(
        {"session_id": train.column("session_id"), "digest": pa.array(row_digests(train))}
    )
    return {
        "lines": lines,
        "interactions": interactions,
        "collect_rejects": collect_rejects,
        "clean": clean,
        "clean_rejects": clean_rejects,
        "feedback": feedback,
        **splits,
        "split_rejects": split_rejects,
        "digests": digests,
    }


class Buckets:
    """The lines of the new parts, bucketed by a hash of their session: in memory for one
    part, else in temporary Arrow files (one per part) until the second pass."""

    def __init__(self, k: int, tmp: Path):
        self.k, self.tmp = k, tmp
        self.sessions: set[str] = set()
        self.rejects: list[tuple] = []  # lines that did not parse: into the first part
        self.held: list[list[pa.Table]] = [[] for _ in range(k)]
        self.files = [ipc.new_file(tmp / f"{i}.arrow", LINES) for i in range(k)] if k > 1 else []

    def add(self, table: pa.Table) -> None:
        sessions = table.column("session_id")
        self.sessions.update(pc.unique(sessions).drop_null().to_pylist())
        if self.k == 1:
            self.held[0].append(table)
            return
        which = np.array([_bucket(s, self.k) for s in sessions.to_pylist()], np.int64)
        order = np.argsort(which, kind="stable")  # each part's lines keep their read order
        bounds = np.searchsorted(which[order], np.arange(self.k + 1))
        table = table.take(pa.array(order))
        for i in range(self.k):
            if bounds[i] < bounds[i + 1]:
                self.files[i].write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]))

    def tables(self) -> Iterator[tuple[int, pa.Table]]:
        """Each new part's number and lines in read order (lines that did not parse, if any,
        are in part 0)."""
        for writer in self.files:
            writer.close()
        for i in range(self.k):
            if self.k == 1:
                held = self.held[0]
            else:
                held = [ipc.open_file(self.tmp / f"{i}.arrow").read_all()]
            table = pa.concat_tables(held) if held else LINES.empty_table()
            if table.num_rows:
                yield i, table.sort_by([("round", "ascending"), ("line", "ascending")])

    def close(self) -> None:
        self.held = []


def _bucket(session: str | None, k: int) -> int:
    """The new part of a session (lines no session claims go to part 0)."""
    if session is None:
        return 0
    return zlib.crc32(session.encode("utf-8", "surrogatepass")) % k


def _index_rows(sessions: pa.ChunkedArray, part: str) -> pa.Table:
    unique = pc.unique(sessions).drop_null()
    return pa.table({"session_id": unique, "part": pa.array([part] * len(unique))}, schema=INDEX)


def _merge_small(store: PartStore, manifest: Manifest, n: int, part_bytes: int) -> dict:
    """Merge the small parts (under ``part_bytes / SMALL_SHARE``) into parts of at most
    ``part_bytes`` when there are more than ``MAX_SMALL_PARTS``: returns new part -> old ones."""
    small = sorted(p for p, i in manifest.parts.items() if i["bytes"] < part_bytes // SMALL_SHARE)
    if len(small) <= MAX_SMALL_PARTS:
        return {}
    groups: list[list[str]] = [[]]
    size = 0
    for part in small:
        if groups[-1] and size + manifest.parts[part]["bytes"] > part_bytes:
            groups.append([])
            size = 0
        groups[-1].append(part)
        size += manifest.parts[part]["bytes"]
    merged = {}
    for j, group in enumerate(g for g in groups if len(g) > 1):
        tables = {
            kind: pa.concat_tables([store.read(kind, p, manifest) for p in group]).cast(schema)
            for kind, (_, schema) in store.kinds.items()
        }
        part = f"p{n:06d}-m{j:03d}"
        for old in group:
            del manifest.parts[old]
        manifest.parts[part] = store.write(part, n, tables)
        merged[part] = group
    return merged


def _repoint(index: pa.Table, merged: dict[str, list[str]]) -> pa.Table:
    """The index with the sessions of merged parts pointing at their new part."""
    olds = [old for group in merged.values() for old in group]
    news = [new for new, group in merged.items() for _ in group]
    where = pc.index_in(index.column("part"), value_set=pa.array(olds))
    part = pc.coalesce(pa.array(news).take(where), index.column("part"))
    return index.set_column(1, "part", part)
