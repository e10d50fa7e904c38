"""``lfft collect``: raw logs (files and folders, any format) -> ``interactions`` + ``rejects``.

    lfft collect logs/ more.jsonl.gz --out interactions.parquet

lfft-events files are joined in two passes with bounded memory: pass 1 parses every line and
appends its record to a hash partition of its session (:mod:`lfft.data.partition`), pass 2
joins one partition at a time (:func:`lfft.data.events.join_session`) and streams rows to the
output. Files in other formats stream through their reader (:mod:`lfft.data.formats`).

Accounting: every input line (lfft-events) or record (other formats) is read once and ends up
either *used* (in an output row, or a feedback event attached to one) or *rejected* with a reason
and its ``file:line`` (a repeated delivery is rejected as ``duplicate_event``), so
``rows_in == lines used + rejected``; ``rows_out`` counts interactions written.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.abc
import os
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate, chain
from pathlib import Path

import pyarrow as pa

from lfft.config import CollectConfig, as_dict
from lfft.data import events as ev
from lfft.data.implicit import load_rules
from lfft.data.partition import DEFAULT_BUDGET, PartitionStore, read_partition
from lfft.data.parts import Writer, open_output
from lfft.data.pool import ordered, process_pool, resolve_workers
from lfft.data.readers import compression, expand_inputs, iter_line_blocks, strip_eol
from lfft.data.records import Parsed, RowBuffer
from lfft.data.rejects import RejectSink
from lfft.errors import LfftError
from lfft.io import fingerprints, rejects_path
from lfft.report import StageResult
from lfft.schemas import FEEDBACK_EVENT, INTERACTIONS, MESSAGE, TS, make_metadata

STAGE = "collect"
EVENTS = "events"
_PARTITION_BYTES = 64 << 20  # aim for at most this much input per partition
# rows become Arrow columns in chunks this small, while their strings are still in the CPU cache
# from the join (with 16k-row chunks that conversion took half as long again)
_ARROW_ROWS = 1024
# auto workers: inputs whose records fit the in-memory budget run in one process (workers would
# add the serializing that one process then avoids); larger ones get one worker per core
_PARALLEL_BYTES = DEFAULT_BUDGET


@dataclass
class _Counts:
    lines: int = 0  # input lines (events) and records (other formats) read
    used: int = 0
    sessions: int = 0
    feedback: int = 0  # feedback events attached (explicit, behavioral, implicit)
    implicit: int = 0
    spilled: int = 0  # records that went through temporary partition files
    formats: Counter = field(default_factory=Counter)  # files per format


def parse_column_map(text: str) -> dict[str, str]:
    """``"prompt=question,response=answer"`` -> ``{"prompt": "question", "response": "answer"}``."""
    mapping: dict[str, str] = {}
    for item in text.split(","):
        key, sep, column = (s.strip() for s in item.partition("="))
        if not sep or not key or not column:
            raise LfftError(
                f"bad column map item {item.strip()!r}: write lfft_name=column, comma-separated, "
                "e.g. prompt=question,response=answer"
            )
        if key in mapping:
            raise LfftError(f"column map names {key!r} twice")
        mapping[key] = column
    return mapping


def collect(inputs: list[Path], out: Path, cfg: CollectConfig) -> StageResult:
    """Read every input and write ``out`` (interactions) and its rejects file."""
    t0 = time.perf_counter()
    out = Path(out)
    files = expand_inputs(inputs)
    formats = _formats(files, cfg)
    config = as_dict(cfg)
    meta = make_metadata(STAGE, config, fingerprints(list(inputs)))
    counts = _Counts(formats=Counter(formats))
    with (
        RejectSink(out, STAGE, config) as sink,
        open_output(out, INTERACTIONS, meta, cfg.part_rows) as writer,
    ):
        event_files = [f for f, fmt in zip(files, formats, strict=True) if fmt == EVENTS]
        if event_files:
            _collect_events(event_files, out, cfg, writer, sink, counts)
        for path, fmt in zip(files, formats, strict=True):
            if fmt != EVENTS:
                _collect_format(path, fmt, cfg, writer, sink, counts)
        writer.meta["counts"] = {
            "rows": writer.rows,
            "lines_read": counts.lines,
            "lines_used": counts.used,
            "rejected": sink.total,
            "sessions": counts.sessions,
        }
    rejected = sink.total
    return StageResult(
        stage=STAGE,
        rows_in=counts.lines,
        rows_out=writer.rows,
        rejects=Counter(sink.counts),
        seconds=time.perf_counter() - t0,
        outputs={"interactions": out, "rejects": rejects_path(out)},
        extra={
            "lines read": f"{counts.lines:,} = {counts.used:,} used + {rejected:,} rejected",
            "lines used": counts.used,
            "sessions": counts.sessions,
            "feedback events": counts.feedback,
            "implicit signals": counts.implicit,
            "formats": dict(counts.formats),  # files read per format
            **({"spilled to disk": counts.spilled} if counts.spilled else {}),
        },
    )


class _NoPandas(importlib.abc.MetaPathFinder):
    """An import finder under which ``import pandas`` fails."""

    def find_spec(self, name: str, path=None, target=None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not needed here")


def skip_pandas_probe() -> None:
    """Spare a ``lfft collect`` process pyarrow's import of pandas (0.2 s of CPU, about 4% of
    collect at 100k sessions, more on small inputs).

    pyarrow imports pandas on its first conversion of Python objects, only to ask whether they
    are pandas objects; collect never hands it any. Made while pandas cannot be imported, that
    first probe leaves pyarrow taking pandas objects as plain sequences in this process (NaN
    stays NaN in ``pa.array(series)``) until it needs pandas for real (``to_pandas``,
    ``Table.from_pandas``), when it imports pandas after all. Hence for the command line only,
    not the library function; nothing to do once pandas is imported.
    """
    if "pandas" in sys.modules:
        return
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([], pa.int8())
    finally:
        sys.meta_path.remove(finder)


def _formats(files: list[Path], cfg: CollectConfig) -> list[str]:
    """The reader of each file: ``cfg.format``, or detected per file with ``auto``."""
    if cfg.format == EVENTS:
        return [EVENTS] * len(files)
    formats_mod = _formats_module()
    if cfg.format != "auto":
        if formats_mod is None:
            raise LfftError(f"format {cfg.format!r} is not available; use --format events")
        fmt = getattr(formats_mod, "canonical", str)(cfg.format)
        return [fmt] * len(files)
    if formats_mod is None:
        return [EVENTS] * len(files)
    return [formats_mod.detect(f) for f in files]


def _formats_module():
    """``lfft.data.formats`` if it provides ``detect`` and ``read_format``, else None."""
    try:
        from lfft.data import formats
    except ImportError:
        return None
    if not (hasattr(formats, "detect") and hasattr(formats, "read_format")):
        return None
    return formats


# --- lfft-events: two passes -------------------------------------------------------------------


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


@dataclass
class _Joined:
    """One partition joined: tables of rows, rejects (source, location, reason, raw, detail)."""

    tables: list[pa.Table]
    rejects: list[tuple]
    sessions: int = 0
    used: int = 0
    feedback: int = 0
    implicit: int = 0


def _collect_events(
    files: list[Path],
    out: Path,
    cfg: CollectConfig,
    writer: Writer,
    sink: RejectSink,
    counts: _Counts,
) -> None:
    workers = _workers(cfg.workers, files)
    with (
        tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent) as tmp,
        _gc_paused(),
    ):
        plan = _Plan(
            names=[str(f) for f in files],
            n_parts=_n_partitions(files, cfg.partitions),
            tmp=tmp,
            implicit=cfg.implicit,
            implicit_rules=cfg.implicit_rules,
            batch_rows=cfg.batch_rows,
            workers=workers,
        )
        out_buf = _TableBuffer(writer, cfg.batch_rows)
        progress = _Progress(sum(f.stat().st_size for f in files), plan.n_parts)
        if workers <= 1:
            passes = _inline(plan, sink, counts, progress)
        else:
            passes = _parallel(plan, workers, sink, counts, progress)
        # closing: stop worker processes before the temporary folder goes, also on errors
        with progress, contextlib.closing(passes) as joined:
            for part in joined:
                progress.advance("join", 1)
                counts.sessions += part.sessions
                counts.used += part.used
                counts.feedback += part.feedback
                counts.implicit += part.implicit
                for rej in part.rejects:
                    sink.add(*rej)
                for table in part.tables:
                    out_buf.add(table)
        out_buf.flush()


def _inline(
    plan: _Plan, sink: RejectSink, counts: _Counts, progress: _Progress
) -> Iterator[_Joined]:
    """Both passes in this process; records stay in memory unless they outgrow the budget.

    An input larger than the budget is sure to outgrow it: its records are serialized as they
    are read rather than once they fill the budget.
    """
    big = _input_bytes([Path(name) for name in plan.names]) > DEFAULT_BUDGET
    store = PartitionStore(plan.n_parts, Path(plan.tmp), DEFAULT_BUDGET, serialize=big)
    try:
        for fi, name in enumerate(plan.names):
            counts.lines += _read_file(fi, plan, store, sink.add)
            progress.advance("read", Path(name).stat().st_size)
        counts.spilled = store.spilled
        implicit = _implicit(plan)
        for recs in store.partitions():
            yield _join_partition(recs, plan, implicit)
    finally:
        store.close()


def _parallel(
    plan: _Plan, workers: int, sink: RejectSink, counts: _Counts, progress: _Progress
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
    budget = DEFAULT_BUDGET // plan.workers
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

    The hot loop of collect: lines are read in blocks, and each block's records are sorted into
    partition buckets (``partition_of`` written out) and handed to the store together. Records
    of one session on consecutive lines go in one run: its session is hashed once.
    """
    name = plan.names[fi]
    parse, event_error, crc32, n_parts = ev.parse_line, ev.EventError, zlib.crc32, store.n
    SID = ev.SID  # noqa: N806 (a local: read for every line)
    n = 0
    for block in iter_line_blocks(Path(name)):
        buckets: list[list[list[tuple]]] = [[] for _ in range(n_parts)]
        sid = run = None  # the session of the current run, and the run
        bad = 0
        for line in block:
            n += 1
            try:
                rec = parse(line, fi, n)
            except event_error as e:
                reject(name, f"{name}:{n}", e.reason, strip_eol(line), e.detail)
                bad += 1
                continue
            if rec[SID] == sid:
                run.append(rec)
            else:
                sid, run = rec[SID], [rec]
                buckets[crc32(sid.encode("utf-8", "surrogatepass")) % n_parts].append(run)
        store.add(buckets, sum(map(len, block)), len(block) - bad)
    return n


def _join_partition(
    sessions: dict[str, list[tuple]], plan: _Plan, implicit: ev.Implicit | None
) -> _Joined:
    """Pass 2 over one partition: join each session (in id order), build Arrow tables."""
    names = plan.names
    part = _Joined(tables=[], rejects=[])
    builder = _Columns()
    chunk = min(plan.batch_rows, _ARROW_ROWS)
    for sid in sorted(sessions):
        session = sessions.pop(sid)  # free each session's records once joined
        part.sessions += 1
        rows, rejected, used = ev.join_session(sid, session, implicit)
        part.used += used
        for rec, reason, detail in rejected:
            name = names[rec[ev.FILE]]
            part.rejects.append((name, f"{name}:{rec[ev.LINE]}", reason, ev.render(rec), detail))
        builder.add(rows)
        if len(builder) >= chunk:
            part.tables.append(builder.table())
    if len(builder):
        part.tables.append(builder.table())
    part.feedback, part.implicit = builder.feedback, builder.implicit
    return part


def _implicit(plan: _Plan) -> ev.Implicit | None:
    if not plan.implicit:
        return None
    path = plan.implicit_rules
    stamp = os.stat(path).st_mtime_ns if path and os.path.exists(path) else None
    return _rules(path, stamp)


@functools.lru_cache(maxsize=4)
def _rules(path: str | None, stamp: int | None) -> ev.Implicit:
    """The implicit rules, compiled once per process and version of the rules file."""
    return load_rules(path)


def _n_partitions(files: list[Path], minimum: int) -> int:
    """Enough partitions that one holds about ``_PARTITION_BYTES`` of (uncompressed) input."""
    return max(1, minimum, _input_bytes(files) // _PARTITION_BYTES + 1)


def _input_bytes(files: list[Path]) -> int:
    """Input size, compressed files counted at a typical 6x ratio."""
    return sum(f.stat().st_size * (6 if compression(f) else 1) for f in files)


def _workers(requested: int, files: list[Path]) -> int:
    """``requested`` processes, or with 0 (auto) one per core for inputs above the budget."""
    return resolve_workers(requested, _input_bytes(files), _PARALLEL_BYTES)


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
    """Millions of live record tuples make every cyclic-GC pass crawl; records hold no cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Progress:
    """A transient progress bar on stderr (reading: bytes; joining: partitions); nothing when
    stderr is not a terminal."""

    def __init__(self, total_bytes: int, n_parts: int):
        self.bar = None
        if not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("collect: {task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.tasks = {
            "read": self.bar.add_task("read", total=total_bytes),
            "join": self.bar.add_task("join", total=n_parts),
        }
        self.bar.start()

    def advance(self, task: str, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.tasks[task], n)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


class _TableBuffer:
    """Gather small tables into row groups of about ``rows`` rows before writing."""

    def __init__(self, writer: Writer, rows: int):
        self.writer, self.rows = writer, rows
        self.tables: list[pa.Table] = []
        self.n = 0

    def add(self, table: pa.Table) -> None:
        self.tables.append(table)
        self.n += table.num_rows
        if self.n >= self.rows:
            self.flush()

    def flush(self) -> None:
        if self.tables:
            self.writer.write(pa.concat_tables(self.tables))
            self.tables, self.n = [], 0


class _Columns:
    """Event rows -> an ``INTERACTIONS`` table, built column by column with C-level transposes
    (several times faster than ``Table.from_pylist`` on nested rows)."""

    def __init__(self) -> None:
        self.rows: list[list] = []
        self.feedback = self.implicit = 0  # counts over every table built

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: list[list]) -> None:
        self.rows += rows

    def table(self) -> pa.Table:
        iid, sid, user, ts, roles, contents, prompt, response, model, feedback = zip(
            *self.rows, strict=True
        )
        self.rows = []
        string = pa.string()
        context_array = pa.ListArray.from_arrays(
            pa.array(list(accumulate(map(len, roles), initial=0)), pa.int32()),
            pa.StructArray.from_arrays(
                [
                    pa.array(list(chain.from_iterable(roles)), string),
                    pa.array(list(chain.from_iterable(contents)), string),
                ],
                fields=list(MESSAGE),
            ),
        )
        events = list(chain.from_iterable(feedback))
        kind, origin, value, text, fts, ref, scale = (
            zip(*events, strict=True) if events else ((),) * 7
        )
        self.feedback += len(events)
        self.implicit += origin.count("implicit")
        m = len(events)
        fb_values = pa.StructArray.from_arrays(
            [
                pa.array(kind, string),
                pa.array(origin, string),
                pa.array(value, pa.float64()),
                pa.array(text, string),
                _timestamps(fts),
                pa.array(ref, string),
                pa.array(scale, pa.float64()),
                pa.nulls(m, pa.int32()),
                pa.nulls(m, pa.int32()),
            ],
            fields=list(FEEDBACK_EVENT),
        )
        feedback_array = pa.ListArray.from_arrays(
            pa.array(list(accumulate(map(len, feedback), initial=0)), pa.int32()), fb_values
        )
        n = len(iid)
        return pa.Table.from_arrays(
            [
                pa.array(iid, string),
                pa.array(sid, string),
                pa.array(user, string),
                pa.repeat(pa.scalar(EVENTS, string), n),
                _timestamps(ts),
                context_array,
                pa.array(prompt, string),
                pa.array(response, string),
                pa.array(model, string),
                feedback_array,
            ],
            schema=INTERACTIONS,
        )


def _timestamps(ms: tuple) -> pa.Array:
    """Epoch milliseconds (or None) -> a ``TS`` array (10x faster than ``pa.array(ms, TS)``;
    a view, not a cast: the same bits, without importing ``pyarrow.compute``)."""
    return pa.array(ms, pa.int64()).view(TS)


# --- other formats -----------------------------------------------------------------------------


def _collect_format(path: Path, fmt: str, cfg, writer, sink: RejectSink, counts: _Counts) -> None:
    """Stream one file of another format through its reader into the same writer and sink."""
    formats = _formats_module()
    name = str(path)
    buffer = RowBuffer(INTERACTIONS, cfg.batch_rows)
    add: Callable = buffer.add
    for item in formats.read_format(path, fmt, cfg):
        counts.lines += 1
        if isinstance(item, Parsed):
            counts.used += 1
            for row in item.rows:
                counts.feedback += len(row["feedback"])
                table = add(row)
                if table is not None:
                    writer.write(table)
        else:
            sink.add(name, item.location, item.reason, item.raw, item.detail)
    table = buffer.drain()
    if table is not None:
        writer.write(table)
