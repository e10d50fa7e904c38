"""Readers for the public feedback formats, and detection of which one a file is in.

>>> fmt = detect(Path("dpo_en_demo.json"))                    # doctest: +SKIP
>>> for item in read_format(Path("dpo_en_demo.json"), fmt, cfg):  # doctest: +SKIP
...     ...  # Parsed(location, rows) or Reject(location, reason, raw, detail)

Each input record yields exactly one ``Parsed`` (its ``interactions`` rows: a pair gives two, an
OpenAssistant tree one per assistant message) or one ``Reject`` (a short reason), so a caller's
record count is always parsed + rejected. Readers are generators over the file's records: memory
does not grow with the file (see :mod:`lfft.data.formats.jsonio` for single-array JSON files).
Formats whose data comes in several files (a feedback export and the chats it rates) are read
by their module's ``read_group`` over all their files at once: see :mod:`.groups`.
Field-by-field mappings: ``docs/formats.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lfft.data.formats import (
    arena,
    finegrained,
    helpsteer,
    hh_rlhf,
    langfuse,
    langsmith,
    lfft_jsonl,
    librechat,
    oasst,
    openai_ft,
    openwebui,
    prm800k,
    prometheus,
    shp,
    sources,
    table,
    trl,
    ultrafeedback,
)
from lfft.data.formats.common import read_records
from lfft.data.formats.groups import GroupRead, is_group
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
        openwebui,
        langfuse,
        langsmith,
        librechat,
        arena,
        openai_ft,  # before trl: both read "messages" records (see openai_ft)
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
GROUPS = tuple(name for name, m in RECORD_READERS.items() if is_group(m))  # several files each
ALIASES = {
    "csv": TABLE,
    "tsv": TABLE,
    "parquet": TABLE,
    "hh": "hh-rlhf",
    "oasst2": "oasst",
    "open-webui": "openwebui",
    "openai-ft": "openai",
    "chatbot-arena": "arena",
}
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
    if suffix in (".csv", ".tsv"):  # tables, unless a group format exports CSV (Langfuse)
        found = {detect_record(rec) for rec in _first_objects(path)}
        return next((name for name in GROUPS if name in found), suffix[1:])
    peeked = _first_objects(path)
    if not peeked and next(iter(sources.records(path)), None) is None:
        return EVENTS  # no record at all (an export window without rows): nothing to read
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


def role(path: Path, fmt: str) -> str | None:
    """The role of ``path`` in a group format (see :mod:`.groups`), from its first record of
    that format; None for a single-file format. A file with no such record takes the format's
    main role (its reader then rejects what it holds)."""
    module = RECORD_READERS.get(canonical(fmt))
    if module is None or not is_group(module):
        return None
    for rec in _first_objects(Path(path)):
        if module.looks_like(rec):
            found = module.role(rec)
            if found not in module.ROLES:
                raise LfftError(
                    f"{path}: {module.NAME} role {found!r} is not one of {module.ROLES}"
                )
            return found
    return module.ROLES[0]


def read_format(path: Path, fmt: str, cfg: Any = None) -> Iterator[Parsed | Reject]:
    """Stream ``path`` through the reader ``fmt``: one Parsed or Reject per input record.

    ``cfg`` is the :class:`lfft.config.CollectConfig` (its ``column_map`` feeds tables).
    Raises :class:`LfftError` up front for an unknown format or a bad column map. A file of a
    group format is read alone as its group (to join it with its other files, see
    :func:`read_group`).
    """
    path = Path(path)
    name = canonical(fmt)
    if name == EVENTS:
        raise LfftError(f"{path}: lfft-events files are read by lfft.data.collect, not here")
    if name == TABLE:
        return table.read(path, getattr(cfg, "column_map", None) or {})
    if name in GROUPS:
        return iter(read_group(name, {role(path, name): [path]}, cfg))
    return read_records(path, RECORD_READERS[name].parse)


def read_group(fmt: str, files: dict[str, list[Path]], cfg: Any = None) -> GroupRead:
    """All files of the group format ``fmt``, by role, read together: iterate it for one Parsed
    or Reject per record of every file; its ``stats`` afterwards (e.g. ``{"joined": n}``)."""
    return GroupRead(RECORD_READERS[canonical(fmt)], files, cfg)


def _first_objects(path: Path) -> list[dict[str, Any]]:
    """The first few decodable JSON objects / rows of a file (bad lines are skipped)."""
    out = []
    for i, rec in enumerate(sources.records(path)):
        if isinstance(rec.value, dict):
            out.append(rec.value)
        if len(out) >= _PEEK or i + 1 >= _PEEK_SCAN:
            break
    return out
