"""collect's two passes over lfft-events files, with bounded memory.

Pass 1 parses every line (:func:`lfft.data.events.parse_line`) and appends its event to a hash
partition of its session (:mod:`lfft.data.partition`), in memory while the events fit the
memory budget (``CollectConfig.memory_budget``), else serialized to temporary files; pass 2
joins one partition at a time (:func:`lfft.data.join.join_session`) and builds Arrow tables
(:mod:`lfft.data.event_table`). With ``workers`` > 1 both passes run in worker processes, the
results taken back in order: the output is the same.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from lfft.config import CollectConfig
from lfft.data import events as ev
from lfft.data.event_table import EventColumns, TableBuffer
from lfft.data.implicit import load_rules
from lfft.data.join import Implicit, join_session
from lfft.data.partition import PartitionStore, budget_bytes, read_partition
from lfft.data.pool import ordered, process_pool, resolve_workers
from lfft.data.readers import compression, iter_line_blocks, strip_eol
from lfft.data.rejects import RejectCounter
from lfft.data.runner import StageRun
from lfft.report import ProgressBar

_PARTITION_BYTES = 64 << 20  # aim for at most this much input per partition
_MAX_PARTITIONS = 512  # each has a spill file open in pass 1
# rows become Arrow columns in chunks this small, while their strings are still in the CPU cache
# from the join (with 16k-row chunks that conversion took half as long again)
_ARROW_ROWS = 1024


@dataclass
class Counts:
    """What collect counts (its summary and metadata)."""

    lines: int = 0  # input lines (events) and records (other formats) read
    used: int = 0
    sessions: int = 0
    feedback: int = 0  # feedback events attached (explicit, behavioral, implicit)
    implicit: int = 0
    spilled: int = 0  # events that went through temporary partition files
    formats: Counter = field(default_factory=Counter)  # files per format


@dataclass(frozen=True)
class _Plan:
    """What every pass needs (picklable, for worker processes)."""

    names: list[str]  # input files, by file index
    n_parts: int
    tmp: str  # spill folder
    implicit: bool
    implicit_rules: str | None
    batch_rows: int
    workers: int
    budget: int  # bytes of events held in memory (all workers together)


@dataclass
class _Joined:
    """One partition joined: tables of rows, rejects (source, location, reason, raw, detail)."""

    tables: list[pa.Table]
    rejects: list[tuple]
    sessions: int = 0
    used: int = 0
    feedback: int = 0
    implicit: int = 0


def collect_events(files: list[Path], cfg: CollectConfig, run: StageRun, counts: Counts) -> None:
    """Both passes over lfft-events ``files``: rows to ``run``'s output, rejects to its sink."""
    budget = budget_bytes(cfg.memory_budget)
    workers = resolve_workers(cfg.workers, input_bytes(files), budget)
    with _gc_paused():
        plan = _Plan(
            names=[str(f) for f in files],
            n_parts=_n_partitions(files, cfg.partitions, budget),
            tmp=str(run.tmp),
            implicit=cfg.implicit,
            implicit_rules=cfg.implicit_rules,
            batch_rows=cfg.batch_rows,
            workers=workers,
            budget=budget,
        )
        out_buf = TableBuffer(run.writer(), cfg.batch_rows)
        size = sum(f.stat().st_size for f in files)
        progress = ProgressBar("collect", read=size, join=plan.n_parts)
        if workers <= 1:
            passes = _inline(plan, run.sink, counts, progress)
        else:
            passes = _parallel(plan, workers, run.sink, counts, progress)
        # closing: stop worker processes before the temporary folder goes, also on errors
        with progress, contextlib.closing(passes) as joined:
            for part in joined:
                progress.advance("join", 1)
                counts.sessions += part.sessions
                counts.used += part.used
                counts.feedback += part.feedback
                counts.implicit += part.implicit
                for rej in part.rejects:
                    run.sink.add(*rej)
                for table in part.tables:
                    out_buf.add(table)
        out_buf.flush()


def _inline(
    plan: _Plan, sink: RejectCounter, counts: Counts, progress: ProgressBar
) -> Iterator[_Joined]:
    """Both passes in this process; events stay in memory unless they outgrow the budget.

    An input larger than the budget is sure to outgrow it: its events are serialized as they
    are read rather than once they fill the budget.
    """
    big = input_bytes([Path(name) for name in plan.names]) > plan.budget
    store = PartitionStore(plan.n_parts, Path(plan.tmp), plan.budget, serialize=big)
    try:
        for fi, name in enumerate(plan.names):
            counts.lines += _read_file(fi, plan, store, sink.add)
            progress.advance("read", Path(name).stat().st_size)
        counts.spilled = store.spilled
        implicit = _implicit(plan)
        for sessions in store.partitions():
            yield _join_partition(sessions, plan, implicit)
    finally:
        store.close()


def _parallel(
    plan: _Plan, workers: int, sink: RejectCounter, counts: Counts, progress: ProgressBar
) -> Iterator[_Joined]:
    """Pass 1 over groups of files, then pass 2 over partitions, in ``workers`` processes.

    Groups are contiguous in file order and partitions come back in order, so the output is
    the same as in one process.
    """
    pool = process_pool(workers, initializer=gc.disable)
    try:
        groups = _file_groups(plan.names, workers * 3)
        spills: list[list[str]] = [[] for _ in range(plan.n_parts)]
        results = pool.map(_pass1, [plan] * len(groups), groups)
        for group, (lines, rejects, paths, spilled) in zip(groups, results, strict=True):
            progress.advance("read", sum(Path(plan.names[i]).stat().st_size for i in group))
            counts.lines += lines
            counts.spilled += spilled
            for rej in rejects:
                sink.add(*rej)
            for k, path in enumerate(paths):
                if path is not None:
                    spills[k].append(path)
        yield from ordered(pool, _pass2, [(plan, paths) for paths in spills], workers + 1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pass1(plan: _Plan, group: list[int]) -> tuple[int, list[tuple], list[str | None], int]:
    """Worker: parse a group of files into a spilled store of its own."""
    rejects: list[tuple] = []
    budget = plan.budget // plan.workers
    store = PartitionStore(plan.n_parts, Path(plan.tmp), budget, f"g{group[0]}", serialize=True)
    lines = sum(_read_file(fi, plan, store, lambda *r: rejects.append(r)) for fi in group)
    paths = [None if p is None else str(p) for p in store.finish()]
    return lines, rejects, paths, store.spilled


def _pass2(args: tuple[_Plan, list[str]]) -> _Joined:
    """Worker: join one partition from the spill files of every group."""
    plan, paths = args
    return _join_partition(read_partition([Path(p) for p in paths]), plan, _implicit(plan))


def _read_file(fi: int, plan: _Plan, store: PartitionStore, reject: Callable) -> int:
    """Pass 1 over one file: parse each line into the store, or reject it. Returns lines read.

    The hot loop of collect: lines are read in blocks, and each block's events are sorted into
    partition buckets (``partition_of`` written out) and handed to the store together. Events
    of one session on consecutive lines go in one run: its session is hashed once.
    """
    name = plan.names[fi]
    parse, event_error, crc32, n_parts = ev.parse_line, ev.EventError, zlib.crc32, store.n
    n = 0
    for block in iter_line_blocks(Path(name)):
        buckets: list[list[list[ev.Event]]] = [[] for _ in range(n_parts)]
        sid = run = None  # the session of the current run, and the run
        bad = 0
        for line in block:
            n += 1
            try:
                event = parse(line, fi, n)
            except event_error as e:
                reject(name, f"{name}:{n}", e.reason, strip_eol(line), e.detail)
                bad += 1
                continue
            if event.session_id == sid:
                run.append(event)
            else:
                sid, run = event.session_id, [event]
                buckets[crc32(sid.encode("utf-8", "surrogatepass")) % n_parts].append(run)
        store.add(buckets, sum(map(len, block)), len(block) - bad)
    return n


def _join_partition(
    sessions: dict[str, list[ev.Event]], plan: _Plan, implicit: Implicit | None
) -> _Joined:
    """Pass 2 over one partition: join each session (in id order), build Arrow tables."""
    names = plan.names
    part = _Joined(tables=[], rejects=[])
    builder = EventColumns()
    chunk = min(plan.batch_rows, _ARROW_ROWS)
    for sid in sorted(sessions):
        session = sessions.pop(sid)  # free each session's events once joined
        part.sessions += 1
        rows, rejected, used = join_session(sid, session, implicit)
        part.used += used
        for event, reason, detail in rejected:
            name = names[event.file]
            part.rejects.append((name, f"{name}:{event.line}", reason, ev.render(event), detail))
        builder.add(rows)
        if len(builder) >= chunk:
            part.tables.append(builder.table())
    if len(builder):
        part.tables.append(builder.table())
    part.feedback, part.implicit = builder.feedback, builder.implicit
    return part


def join_events(
    sessions: dict[str, list[ev.Event]], names: list[str], cfg: CollectConfig
) -> tuple[pa.Table | None, list[tuple]]:
    """Pass 2 on sessions already in memory (``lfft online``'s parts): the rows (None if
    none) and the rejects (source, location, reason, raw, detail) collect gives them;
    ``names[event.file]`` is the file an event was read from."""
    plan = _Plan(names, 1, "", cfg.implicit, cfg.implicit_rules, cfg.batch_rows, 1, 0)
    joined = _join_partition(sessions, plan, _implicit(plan))
    return (pa.concat_tables(joined.tables) if joined.tables else None), joined.rejects


def _implicit(plan: _Plan) -> Implicit | None:
    if not plan.implicit:
        return None
    path = plan.implicit_rules
    stamp = os.stat(path).st_mtime_ns if path and os.path.exists(path) else None
    return _rules(path, stamp)


@functools.lru_cache(maxsize=4)
def _rules(path: str | None, stamp: int | None) -> Implicit:
    """The implicit rules, compiled once per process and version of the rules file."""
    return load_rules(path)


def _n_partitions(files: list[Path], minimum: int, budget: int) -> int:
    """Enough partitions that one holds at most an eighth of the budget of (uncompressed)
    input, and at most ``_PARTITION_BYTES`` (the eighth of the default budget): a partition's
    events take about three times its input, and they are loaded while up to half the budget
    of serialized events waits. At most ``_MAX_PARTITIONS`` (unless ``minimum`` asks more)."""
    per = max(1, min(_PARTITION_BYTES, budget // 8))
    return max(1, minimum, min(_MAX_PARTITIONS, input_bytes(files) // per + 1))


def input_bytes(files: list[Path]) -> int:
    """Input size, compressed files counted at a typical 6x ratio."""
    return sum(f.stat().st_size * (6 if compression(f) else 1) for f in files)


def _file_groups(names: list[str], n_groups: int) -> list[list[int]]:
    """Contiguous groups of file indexes of about equal size (at least one file each)."""
    sizes = [max(1, Path(n).stat().st_size) for n in names]
    target = sum(sizes) / max(1, n_groups)
    groups: list[list[int]] = [[]]
    acc = 0
    for i, size in enumerate(sizes):
        if groups[-1] and acc + size / 2 > target:
            groups.append([])
            acc = 0
        groups[-1].append(i)
        acc += size
    return groups


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of live objects make every cyclic-GC pass crawl; events hold no cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
