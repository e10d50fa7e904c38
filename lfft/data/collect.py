"""``lfft collect``: raw logs (files and folders, any format) -> ``interactions`` + ``rejects``.

    lfft collect logs/ more.jsonl.gz --out interactions.parquet

lfft-events files are joined in two passes with bounded memory (:mod:`lfft.data.event_passes`):
pass 1 parses every line and appends its record to a hash partition of its session, pass 2
joins one partition at a time (:func:`lfft.data.join.join_session`) and streams rows to the
output. Files in other formats stream through their reader (:mod:`lfft.data.formats`); the files
of a format made of several files (feedback + chats) are read together by its group reader
(:mod:`lfft.data.formats.groups`). The output, the rejects file, the metadata and the summary
go through :mod:`lfft.data.runner`.

Accounting: every input line (lfft-events) or record (other formats) is read once and ends up
either *used* (in an output row, or a feedback event attached to one) or *rejected* with a reason
and its ``file:line`` (a repeated delivery is rejected as ``duplicate_event``), so
``rows_in == lines used + rejected``; ``rows_out`` counts interactions written.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa

from lfft.config import CollectConfig
from lfft.data import remote
from lfft.data.event_passes import Counts, collect_events
from lfft.data.event_table import SOURCE as EVENTS
from lfft.data.formats.groups import gather, source_of
from lfft.data.readers import expand_inputs
from lfft.data.records import Parsed, Reject, RowBuffer
from lfft.data.runner import Output, StageRun
from lfft.errors import ConfigError, LfftError
from lfft.report import StageResult
from lfft.schemas import INTERACTIONS

STAGE = "collect"


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
    out = Path(out)
    if not cfg.memory_budget > 0:
        raise ConfigError(f"collect: memory_budget must be > 0 MB, not {cfg.memory_budget!r}")
    files = expand_inputs(inputs)
    formats = _formats(files, cfg)
    roles = _roles(files, formats)
    readers = [f"{fmt}/{role}" if role else fmt for fmt, role in zip(formats, roles, strict=True)]
    counts = Counts(formats=Counter(readers))
    joined: dict[str, int] = {}  # per group format: records joined across its files
    outputs = {"interactions": Output(out, INTERACTIONS, cfg.part_rows)}
    with StageRun(STAGE, cfg, list(inputs), outputs, rejects=out, required=False) as run:
        event_files = [f for f, fmt in zip(files, formats, strict=True) if fmt == EVENTS]
        if event_files:
            with remote.local_copies(event_files, run) as (local, run_view):  # s3:// gs:// az://
                collect_events(local, cfg, run_view, counts)
        for path, fmt, role in zip(files, formats, roles, strict=True):
            if fmt != EVENTS and role is None:
                items = _formats_module().read_format(path, fmt, cfg)
                _collect_items(items, lambda _, name=str(path): name, cfg, run, counts)
        if any(roles):
            joined = _collect_groups(gather(files, formats, roles), cfg, run, counts)
        run.meta["files"] = dict(zip(map(str, files), readers, strict=True))
        run.meta["counts"] = {
            "rows": run.writer().rows,
            "lines_read": counts.lines,
            "lines_used": counts.used,
            "rejected": run.sink.total,
            "sessions": counts.sessions,
        }
        if run.notes:
            run.meta["counts"]["skipped"] = dict(sorted(run.notes.items()))
        rejected = run.sink.total
        run.result.rows_in = counts.lines
        run.result.extra = {
            "lines read": f"{counts.lines:,} = {counts.used:,} used + {rejected:,} rejected",
            "lines used": counts.used,
            "sessions": counts.sessions,
            "feedback events": counts.feedback,
            "implicit signals": counts.implicit,
            "formats": dict(counts.formats),  # files read per format (and role in a group)
            **({"joined": joined} if joined else {}),
            **({"scores read as": run.meta["scores"]} if "scores" in run.meta else {}),
            **({"spilled to disk": counts.spilled} if counts.spilled else {}),
            **({"left out of used records": dict(sorted(run.notes.items()))} if run.notes else {}),
        }
    return run.result


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


def _roles(files: list[Path], formats: list[str]) -> list[str | None]:
    """Each file's role in its group format (see :mod:`lfft.data.formats.groups`), else None."""
    formats_mod = _formats_module()
    groups = getattr(formats_mod, "GROUPS", ())
    return [
        formats_mod.role(f, fmt) if fmt in groups else None
        for f, fmt in zip(files, formats, strict=True)
    ]


def _formats_module():
    """``lfft.data.formats`` if it provides ``detect`` and ``read_format``, else None."""
    try:
        from lfft.data import formats
    except ImportError:
        return None
    if not (hasattr(formats, "detect") and hasattr(formats, "read_format")):
        return None
    return formats


# --- other formats -----------------------------------------------------------------------------


def _collect_groups(
    groups: dict[str, dict[str, list[Path]]], cfg, run: StageRun, counts: Counts
) -> dict[str, int]:
    """Read each group format's files together; returns the records joined per format."""
    joined = {}
    for fmt, by_role in groups.items():
        group = _formats_module().read_group(fmt, by_role, cfg)
        where = source_of(p for paths in by_role.values() for p in paths)
        _collect_items(group, where, cfg, run, counts)
        joined[fmt] = group.stats.get("joined", 0)
        for name, how in group.stats.get("scores", {}).items():  # numeric scores: what they became
            run.meta.setdefault("scores", {})[f"{fmt} {name}"] = how
    return joined


def _collect_items(
    items: Iterable[Parsed | Reject],
    source: Callable[[str], str],
    cfg,
    run: StageRun,
    counts: Counts,
) -> None:
    """Stream a reader's items into the run's output and sink (``source``: location -> file)."""
    buffer = RowBuffer(INTERACTIONS, cfg.batch_rows)
    add: Callable = buffer.add
    for item in items:
        counts.lines += 1
        if isinstance(item, Parsed):
            counts.used += 1
            run.notes.update(note.reason for note in item.skipped)
            for row in item.rows:
                counts.feedback += len(row["feedback"])
                table = add(row)
                if table is not None:
                    run.write(table)
        else:
            run.sink.add(source(item.location), item.location, item.reason, item.raw, item.detail)
    table = buffer.drain()
    if table is not None:
        run.write(table)
