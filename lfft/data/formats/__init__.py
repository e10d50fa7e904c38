"""Readers for the public feedback formats, and detection of which one a file is in.

>>> fmt = detect(Path("dpo_en_demo.json"))                    # doctest: +SKIP
>>> for item in read_format(Path("dpo_en_demo.json"), fmt, cfg):  # doctest: +SKIP
...     ...  # Parsed(location, rows) or Reject(location, reason, raw, detail)

Each input record yields exactly one ``Parsed`` (its ``interactions`` rows: a pair gives two, an
OpenAssistant tree one per assistant message) or one ``Reject`` (a short reason), so a caller's
record count is always parsed + rejected. Readers are generators over the file's records: memory
does not grow with the file (see :mod:`lfft.data.formats.jsonio` for single-array JSON files).
Field-by-field mappings: ``docs/formats.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lfft.data.formats import (
    finegrained,
    helpsteer,
    hh_rlhf,
    lfft_jsonl,
    oasst,
    prm800k,
    prometheus,
    shp,
    sources,
    table,
    trl,
    ultrafeedback,
)
from lfft.data.formats.common import read_records
from lfft.data.formats.jsonio import inner_suffix
from lfft.data.records import Parsed, Reject
from lfft.errors import LfftError

EVENTS = "events"
TABLE = table.NAME  # CSV, TSV, Parquet or JSON records through a column map

# Record readers in detection order: the first whose ``looks_like`` accepts a record wins, so
# specific layouts come before the generic TRL one.
RECORD_READERS = {
    m.NAME: m
    for m in (
        lfft_jsonl,
        oasst,
        prm800k,
        finegrained,
        prometheus,
        shp,
        ultrafeedback,
        helpsteer,
        hh_rlhf,
        trl,
    )
}
ALIASES = {"csv": TABLE, "tsv": TABLE, "parquet": TABLE, "hh": "hh-rlhf", "oasst2": "oasst"}
FORMATS = (EVENTS, *RECORD_READERS, TABLE, *ALIASES)  # every name read_format accepts
SHOWN = (EVENTS, *RECORD_READERS, "csv", "tsv", "parquet")  # the names error messages list
_EVENT_KINDS = ("message", "feedback", "action")
_PEEK = 5  # records looked at by detect
_PEEK_SCAN = 100  # records read at most to find them (skipping undecodable ones)


def canonical(fmt: str) -> str:
    """A format name as given on the command line -> its reader's name (LfftError if unknown)."""
    name = fmt.strip().lower()
    name = ALIASES.get(name, name)
    if name != EVENTS and name != TABLE and name not in RECORD_READERS:
        raise LfftError(f"unknown format {fmt!r}; known: auto, {', '.join(SHOWN)}")
    return name


def detect(path: Path) -> str:
    """The format of ``path`` from its first records (inside .gz/.zst too).

    CSV/TSV files are tables (``csv`` / ``tsv``); Parquet files are read as records when their
    rows match a known layout (as Hugging Face datasets do), else as a table (``parquet``). JSON
    records with ``prompt`` + ``response`` columns are a table too (``table``).
    """
    path = Path(path)
    suffix = inner_suffix(path)
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    peeked = _first_objects(path)
    for rec in peeked:
        name = detect_record(rec)
        if name is not None:
            return "parquet" if name == TABLE and suffix == ".parquet" else name
    if suffix == ".parquet":
        return "parquet"
    keys = sorted(peeked[0])[:12] if peeked else []
    seen = f" (first record's keys: {', '.join(keys)})" if keys else " (no JSON records read)"
    raise LfftError(
        f"cannot tell the format of {path}{seen}; pass --format ({', '.join(SHOWN)}), "
        "with --map for tables"
    )


def detect_record(rec: dict[str, Any]) -> str | None:
    """The format one decoded record belongs to, or None."""
    if rec.get("event") in _EVENT_KINDS:
        return EVENTS
    for name, module in RECORD_READERS.items():
        if module.looks_like(rec):
            return name
    return TABLE if table.looks_like(rec) else None


def read_format(path: Path, fmt: str, cfg: Any = None) -> Iterator[Parsed | Reject]:
    """Stream ``path`` through the reader ``fmt``: one Parsed or Reject per input record.

    ``cfg`` is the :class:`lfft.config.CollectConfig` (its ``column_map`` feeds tables).
    Raises :class:`LfftError` up front for an unknown format or a bad column map.
    """
    path = Path(path)
    name = canonical(fmt)
    if name == EVENTS:
        raise LfftError(f"{path}: lfft-events files are read by lfft.data.collect, not here")
    if name == TABLE:
        return table.read(path, getattr(cfg, "column_map", None) or {})
    return read_records(path, RECORD_READERS[name].parse)


def _first_objects(path: Path) -> list[dict[str, Any]]:
    """The first few decodable JSON objects / rows of a file (bad lines are skipped)."""
    out = []
    for i, rec in enumerate(sources.records(path)):
        if isinstance(rec.value, dict):
            out.append(rec.value)
        if len(out) >= _PEEK or i + 1 >= _PEEK_SCAN:
            break
    return out
