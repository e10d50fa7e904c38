"""Formats whose records join across files by trace (Langfuse observations + scores, LangSmith
runs + feedback): two passes with bounded memory.

Pass 1 reads every record of every file of the group (any container :mod:`sources` reads),
lets the format trim it to the fields it uses and name its join key (the trace id), rejects what
it cannot use, and writes the rest to hash partitions of the key on disk
(:class:`lfft.data.spill.HashPartitions`, one Parquet file per partition, written a chunk of
records at a time). The format also sees every score then, to decide per score name what its
numbers mean (:mod:`score_kinds`). Pass 2 reads one partition at a time, groups it by key and
hands each trace's records to the format's ``join``, which returns one Parsed or Reject per
record. Memory holds one chunk in pass 1 and one partition in pass 2, whatever the input size;
the number of partitions grows with the input (an eighth of ``memory_budget`` of input each).

A format plugs in with a *joiner*::

    role(rec) -> str | None                       # which kind of record (None: not ours)
    ingest(role, rec) -> (key, version, data)     # BadRecord to reject it, Skip to pass it over
    join(key, entries) -> list[Parsed | Reject]   # entries: (role, key, loc, version, data)
    finish() -> Iterator[Parsed | Reject]          # anything held back until every trace is done
    stats() -> dict[str, Any]                      # what read_group returns: joined, scores

``version`` orders copies of one record (the export's ``updated_at``): :func:`latest` keeps the
newest, ties going to the one read last.
"""

from __future__ import annotations

import marshal
import math
import tempfile
from collections.abc import Callable, Generator, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from lfft.data.formats.common import SHAPE_ERRORS, BadRecord, Rows, dumps, timestamp
from lfft.data.formats.score_kinds import ScoreKinds
from lfft.data.formats.sources import records
from lfft.data.partition import budget_bytes
from lfft.data.readers import compression
from lfft.data.records import Parsed, Reject
from lfft.data.remote import file_size
from lfft.data.spill import HashPartitions, hash64

Entry = tuple  # (role, key, location, version, data): one record, as stored between the passes
ROLE, KEY, LOC, VERSION, DATA = range(5)

_SCHEMA = pa.schema(
    [
        ("h", pa.uint64()),
        ("role", pa.string()),
        ("key", pa.string()),
        ("loc", pa.string()),
        ("version", pa.float64()),
        ("data", pa.binary()),
    ]
)
_CHUNK = 8_192  # records per write to the partitions
_MAX_PARTITIONS = 512
_DEFAULT_BUDGET_MB = 512.0


class Skip(Exception):
    """A record the format reads and uses for nothing, on purpose (an export manifest):
    collect counts it as used, with a note ``reason``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Joiner:
    """What a format's joiner shares: the per-name score decisions (:mod:`score_kinds`, from
    ``--map``), the count of feedback records joined, nothing held back; subclasses define
    ``NAME``, ``role``, ``ingest`` and ``join`` (see the module docstring)."""

    NAME = ""

    def __init__(self, cfg: Any = None):
        self.kinds = ScoreKinds(getattr(cfg, "column_map", None))
        self.joined = 0

    def role(self, rec: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def ingest(self, role: str, rec: dict[str, Any]) -> tuple[str, float, dict[str, Any]]:
        raise NotImplementedError

    def join(self, key: str, entries: list[Entry]) -> list[Parsed | Reject]:
        raise NotImplementedError

    def finish(self) -> Iterator[Parsed | Reject]:
        return iter(())

    def stats(self) -> dict[str, Any]:
        return {"joined": self.joined, "scores": self.kinds.report()}


def parse_alone(joiner: Joiner, rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One record read without the rest of its export (a reader's ``parse``, which the
    record-level checks call): its rows, or BadRecord; feedback alone is ``orphan_feedback``."""
    role = joiner.role(rec)
    if role is None:
        raise BadRecord("unknown_record", f"not a {joiner.NAME} record")
    try:
        key, version, data = joiner.ingest(role, rec)
    except Skip as e:
        return Rows([], [(e.reason, e.detail)])
    item = joiner.join(key, [(role, key, "", version, data)])[0]
    if isinstance(item, Reject):
        raise BadRecord(item.reason, item.detail)
    return Rows(item.rows, [(note.reason, note.detail) for note in item.skipped])


def group_reader(make: Callable[[Any], Joiner]) -> Callable[..., Iterator[Parsed | Reject]]:
    """A format module's ``read_group`` over the joiner that ``make(cfg)`` builds."""

    def read_group(files: dict[str, list[Path]], cfg: Any = None) -> Iterator[Parsed | Reject]:
        """Every file of the format given to one collect, by role: one Parsed or Reject per
        record; returns the joiner's stats (``joined``, ``scores``)."""
        return (yield from read_joined(files, make(cfg), cfg))

    return read_group


def read_joined(
    files: dict[str, list[Path]], joiner: Joiner, cfg: Any = None
) -> Generator[Parsed | Reject, None, dict[str, Any]]:
    """Both passes over a group's ``files`` (by role): one Parsed or Reject per record."""
    paths = [p for group in files.values() for p in group]
    budget = budget_bytes(getattr(cfg, "memory_budget", _DEFAULT_BUDGET_MB))
    per_part = max(1 << 20, budget // 8)
    n_parts = min(_MAX_PARTITIONS, 1 + sum(map(_input_bytes, paths)) // per_part)
    with tempfile.TemporaryDirectory(prefix="lfft-join.") as tmp:
        parts = HashPartitions(Path(tmp), _SCHEMA, n_parts, "h", "trace")
        chunk: list[tuple] = []
        for path in paths:
            for rec in records(path):
                item = _ingest(joiner, rec)
                if type(item) is tuple:  # an entry (Parsed and Reject are tuples too)
                    chunk.append(item)
                    if len(chunk) >= _CHUNK:
                        parts.write(_table(chunk))
                        chunk = []
                else:
                    yield item
        parts.write(_table(chunk))
        del chunk
        for part in parts.parts:
            if part.rows:
                yield from _join_partition(joiner, part.batches(_CHUNK))
                part.path.unlink()
        yield from joiner.finish()
    return joiner.stats()


def _ingest(joiner: Joiner, rec: Any) -> tuple | Parsed | Reject:
    """One decoded record -> an entry to store, or its Parsed (skipped) / Reject right away."""
    loc = rec.location
    if rec.error is not None:
        return Reject(loc, rec.error, rec.raw, rec.detail)
    value = rec.value if rec.raw is not None else plain(rec.value)  # table rows: Arrow types
    if not isinstance(value, dict):
        return Reject(loc, "not_an_object", clip(value, rec.raw), f"a {type(value).__name__}")
    try:
        role = joiner.role(value)
        if role is None:
            raise BadRecord("unknown_record", f"not a {joiner.NAME} record (keys {_keys(value)})")
        key, version, data = joiner.ingest(role, value)
    except Skip as e:
        return Parsed(loc, [], (Reject(loc, e.reason, None, e.detail),))
    except BadRecord as e:
        return Reject(loc, e.reason, clip(value, rec.raw), e.detail)
    except SHAPE_ERRORS as e:
        return Reject(loc, "bad_record", clip(value, rec.raw), f"{type(e).__name__}: {e}")
    return (role, key, loc, version, marshal.dumps(data))


def _table(chunk: list[tuple]) -> pa.Table:
    roles, keys, locs, versions, datas = zip(*chunk, strict=True) if chunk else ([],) * 5
    return pa.table([hash64(list(keys)), roles, keys, locs, versions, datas], schema=_SCHEMA)


def _join_partition(joiner: Joiner, batches: Iterator[pa.RecordBatch]) -> Iterator[Parsed | Reject]:
    """Group one partition's entries by key (first-seen order), decoding them a batch at a
    time (memory: the decoded partition plus one batch), and join each group."""
    groups: dict[str, list[Entry]] = {}
    names = ("role", "key", "loc", "version", "data")
    for batch in batches:
        cols = [batch.column(name).to_pylist() for name in names]
        for role, key, loc, version, data in zip(*cols, strict=True):
            entry = (role, key, loc, version, marshal.loads(data))
            have = groups.get(key)
            if have is None:
                groups[key] = [entry]
            else:
                have.append(entry)
    for key in list(groups):
        yield from joiner.join(key, groups.pop(key))


def _input_bytes(path: Path) -> int:
    return file_size(path) * (6 if compression(Path(path)) else 1)


# --- helpers for joiners -----------------------------------------------------------------------


def version_of(*values: Any) -> float:
    """The first readable timestamp of ``values`` as epoch seconds (-inf when none): the
    version that decides which copy of a record wins."""
    for value in values:
        if value is None or value == "":
            continue
        try:
            ts = timestamp(value)
        except BadRecord:
            continue
        if ts is not None:
            return ts.timestamp()
    return -math.inf


def latest(entries: list[Entry]) -> tuple[dict[str, Entry], list[tuple[Entry, Entry]]]:
    """Entries by ``data["id"]``, the newest version of each kept (ties: the one read last);
    also every older copy with the copy that beat it."""
    kept: dict[str, Entry] = {}
    older: list[tuple[Entry, Entry]] = []
    for entry in entries:
        rid = entry[DATA]["id"]
        have = kept.get(rid)
        if have is None:
            kept[rid] = entry
        elif entry[VERSION] >= have[VERSION]:
            older.append((have, entry))
            kept[rid] = entry
        else:
            older.append((entry, have))
    return kept, older


def superseded(old: Entry, new: Entry, what: str) -> Reject:
    """The reject of an older copy of a record (export windows overlap; updates re-export)."""
    detail = f"an older copy of {what} {old[DATA]['id']}; the newest, at {new[LOC]}, is used"
    return reject(old, "duplicate_event", detail)


def reject(entry: Entry, reason: str, detail: str | None = None) -> Reject:
    return Reject(entry[LOC], reason, clip(entry[DATA]), detail)


ERRORS = (BadRecord, *SHAPE_ERRORS)  # what a joiner turns into a reject with failure()


def failure(entry: Entry, error: Exception) -> Reject:
    """The reject of an entry whose join raised one of :data:`ERRORS`."""
    if isinstance(error, BadRecord):
        return reject(entry, error.reason, error.detail)
    return reject(entry, "bad_record", f"{type(error).__name__}: {error}")


def last_beneath(
    target: str, candidates: list[str], parent_of: dict[str, str | None]
) -> str | None:
    """The last of ``candidates`` (ids in time order) that is ``target`` or lies beneath it
    (following ``parent_of`` up); None if none does."""
    for cand in reversed(candidates):
        node: str | None = cand
        for _ in range(len(parent_of) + 1):  # a cycle in bad data cannot loop forever
            if node is None:
                break
            if node == target:
                return cand
            node = parent_of.get(node)
    return None


def feedback_target(
    target: Any,
    nodes: dict[str, Entry],
    rows: dict[str, Any],
    by_time: list[str],
    out: dict[str, Parsed | Reject],
    leaf: Callable[[dict[str, Any]], bool],
    names: tuple[str, str],
) -> str:
    """The node with rows that feedback on node ``target`` belongs to: the node itself, or the
    last node with rows (``by_time``) at or beneath it; BadRecord (``orphan_feedback``,
    ``target_rejected``) if none. ``leaf`` tells a node that should have had rows (a generation,
    an llm run); ``names`` are what a node and a leaf are called in the details."""
    node_name, leaf_name = names
    if target not in nodes:
        raise BadRecord("orphan_feedback", f"{node_name} {target} is not in the export")
    if target in rows:
        return target
    node = nodes[target]
    if leaf(node[DATA]):
        why = out[node[LOC]]
        raise BadRecord("target_rejected", f"{leaf_name} {target} was rejected ({why.reason})")
    parents = {nid: entry[DATA].get("parent") for nid, entry in nodes.items()}
    below = last_beneath(target, by_time, parents)
    if below is None:
        detail = f"no usable {leaf_name} at or beneath {node_name} {target}"
        raise BadRecord("orphan_feedback", detail)
    return below


def clip(value: Any, raw: str | None = None) -> str:
    """A reject's raw text: the record's own text when known, else its fields as JSON."""
    return (raw if raw is not None else dumps(value))[:2_000]


def plain(value: Any) -> Any:
    """A table row's value with Arrow's Python types made JSON-like (so it can be stored):
    timestamps to ISO strings, decimals to floats, bytes to text, tuples (map entries) to
    lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _keys(value: dict[str, Any]) -> str:
    return ", ".join(sorted(map(str, value))[:8])
