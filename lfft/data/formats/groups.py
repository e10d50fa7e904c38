"""Formats whose data comes in several files that must be joined (feedback + chats, runs +
feedback, observations + scores): the *group* mechanism of ``lfft collect``.

A format module is a group format when it defines, besides ``NAME`` and ``looks_like``::

    ROLES = ("feedback", "chat")      # the kinds of file it joins, the main one first
    def role(rec: dict) -> str        # the ROLE of a (detected) record, hence of its file
    def read_group(files: dict[str, list[Path]], cfg) -> Iterator[Parsed | Reject]

collect detects each file's format (:func:`lfft.data.formats.detect`) and, for a group format,
its role from its first record (:func:`lfft.data.formats.role`); it then hands *all* files of
that format given to one call to ``read_group`` at once, by role. ``read_group`` yields one
Parsed or Reject per input record of every file, so counts add up across the files, each
located ``file:line`` / ``file[i]`` in the file it came from (:func:`source_of` finds the file
again for the rejects file). It may ``return`` a dict of counts (a generator's return value),
e.g. ``{"joined": n}`` = records whose rows or feedback came from another file of the group:
collect's summary shows it as ``joined``.

Joins hold their lookup tables in a :class:`Stash` (SQLite in a temporary folder), not in
Python dicts, so memory stays bounded whatever the number of records.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from lfft.data.records import Parsed, Reject
from lfft.errors import LfftError

_FLUSH = 4_096  # pending writes before they go to the database


def is_group(module: ModuleType) -> bool:
    """Whether a format module reads several files together (has ``read_group``)."""
    return callable(getattr(module, "read_group", None))


def gather(
    files: list[Path], formats: list[str], roles: list[str | None]
) -> dict[str, dict[str, list[Path]]]:
    """The files of each group format (those with a role), by role, in input order:
    ``{fmt: {role: [paths]}}``."""
    out: dict[str, dict[str, list[Path]]] = {}
    for path, fmt, role in zip(files, formats, roles, strict=True):
        if role is not None:
            out.setdefault(fmt, {}).setdefault(role, []).append(path)
    return out


class GroupRead:
    """Iterate a group format's ``read_group``; afterwards ``stats`` holds what it returned."""

    def __init__(self, module: ModuleType, files: dict[str, list[Path]], cfg: Any):
        unknown = set(files) - set(module.ROLES)
        if unknown:
            raise LfftError(f"{module.NAME}: unknown file roles {sorted(unknown)}")
        self.module, self.files, self.cfg = module, files, cfg
        self.stats: dict[str, int] = {}

    def __iter__(self) -> Iterator[Parsed | Reject]:
        stats = yield from self.module.read_group(self.files, self.cfg)
        self.stats = dict(stats or {})


def source_of(files: Iterable[Path]) -> Any:
    """A function ``location -> the file it is in`` (as a string) for locations ``file:line``
    or ``file[i]`` of ``files``; the longest matching file name wins."""
    names = sorted((str(p) for p in files), key=len, reverse=True)

    def find(location: str) -> str:
        for name in names:
            if location.startswith(name) and location[len(name) : len(name) + 1] in (":", "["):
                return name
        return location

    return find


class Stash:
    """A multimap ``key -> [values]`` on disk (SQLite): the lookup table of a join, bounded in
    memory whatever the number of records. Values are JSON; ``add`` keeps insertion order.

    >>> with Stash() as chats:                              # doctest: +SKIP
    ...     chats.add("chat-1", {"title": "..."})
    ...     chats.get("chat-1")
    [{'title': '...'}]
    """

    def __init__(self, folder: Path | None = None):
        self._dir = tempfile.TemporaryDirectory(prefix="lfft-stash.", dir=folder)
        self._db = sqlite3.connect(Path(self._dir.name) / "stash.db")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-16000")  # at most ~16 MB of pages in memory
        self._db.execute("CREATE TABLE kv (k TEXT NOT NULL, v TEXT NOT NULL)")
        self._db.execute("CREATE INDEX kv_k ON kv (k)")
        self._pending: list[tuple[str, str]] = []

    def add(self, key: str, value: Any) -> None:
        """Append ``value`` (JSON-serialisable) to ``key``'s values."""
        self._pending.append((key, json.dumps(value, ensure_ascii=False, default=str)))
        if len(self._pending) >= _FLUSH:
            self._flush()

    def get(self, key: str) -> list[Any]:
        """``key``'s values in the order added ([] when none)."""
        self._flush()
        cur = self._db.execute("SELECT v FROM kv WHERE k = ? ORDER BY rowid", (key,))
        return [json.loads(v) for (v,) in cur]

    def __contains__(self, key: str) -> bool:
        self._flush()
        return (
            self._db.execute("SELECT 1 FROM kv WHERE k = ? LIMIT 1", (key,)).fetchone() is not None
        )

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT INTO kv VALUES (?, ?)", self._pending)
            self._pending = []

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> Stash:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
