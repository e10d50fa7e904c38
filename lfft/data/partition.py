"""Records grouped by session, in memory up to a budget, then spilled to disk in hash partitions.

collect's first pass appends every parsed record to the list of its session in
:attr:`PartitionStore.groups` (one dict for all partitions: the session's partition is computed
once per session when it is spilled or read back, not once per record); the second pass takes
one partition at a time, so memory holds one partition, not the whole input. Records are plain
tuples spilled with ``marshal`` (the fastest serializer of Python tuples and strings; the files
are temporary and read back by the same interpreter version). Inputs that fit in
``budget_bytes`` never touch the disk.
"""

from __future__ import annotations

import marshal
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

DEFAULT_BUDGET = 512 << 20  # estimated bytes of records held in memory before spilling
RECORD_OVERHEAD = 512  # a record's Python objects take about its line's size plus this


def partition_of(key: str, n: int) -> int:
    """A stable partition number (the same in every process, unlike ``hash``)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % n if n > 1 else 0


class PartitionStore:
    """Records of ``n`` hash partitions, grouped by key; read each partition back as
    ``{key: [records in append order]}``.

    Writers append to ``groups[key]`` themselves (the hot loop of collect), count the input
    bytes behind them and call :meth:`spill` when that passes ``budget``; :meth:`add` does all
    three for one record. Spill files are ``{tmp_dir}/{prefix}-{partition}.marshal``; several
    stores (one per reader process) can share a folder with different prefixes.
    """

    def __init__(
        self, n: int, tmp_dir: Path, budget_bytes: int = DEFAULT_BUDGET, prefix: str = "part"
    ):
        self.n = max(1, n)
        self.tmp_dir = Path(tmp_dir)
        self.prefix = prefix
        self.budget = budget_bytes
        self.groups: dict[str, list[tuple]] = {}  # key -> records held in memory
        self.held = 0  # estimated bytes in memory (kept by :meth:`add`)
        self.paths: list[Path | None] = [None] * self.n
        self._files: list[BinaryIO | None] = [None] * self.n
        self.spilled = 0  # records written to disk

    def add(self, rec: tuple, key: str, size: int) -> None:
        """Append ``rec`` (parsed from ``size`` bytes of input) to the list of ``key``."""
        group = self.groups.get(key)
        if group is None:
            self.groups[key] = [rec]
        else:
            group.append(rec)
        self.held += size + RECORD_OVERHEAD
        if self.held > self.budget:
            self.spill()

    def spill(self) -> None:
        """Write the records in memory to their partition files and free the memory."""
        for i, part in enumerate(self._split()):
            if not part:
                continue
            f = self._files[i]
            if f is None:
                path = self.tmp_dir / f"{self.prefix}-{i:05d}.marshal"
                f = self._files[i] = open(path, "wb")  # noqa: SIM115 (closed in close())
                self.paths[i] = path
            data = marshal.dumps(part)
            f.write(len(data).to_bytes(8, "little"))  # marshal.load(file) reads in tiny pieces
            f.write(data)
            self.spilled += sum(map(len, part.values()))
        self.held = 0

    def finish(self) -> list[Path | None]:
        """Spill everything and close the files; returns each partition's file (or None)."""
        self.spill()
        self.close()
        return list(self.paths)

    def partitions(self) -> Iterator[dict[str, list[tuple]]]:
        """Yield each partition (key -> records in append order), freeing each as it goes."""
        self.close()
        memory = self._split()
        for i in range(self.n):
            path = self.paths[i]
            groups = read_partition([path]) if path is not None else {}
            _merge(groups, memory[i])
            memory[i] = {}
            yield groups

    def close(self) -> None:
        for i, f in enumerate(self._files):
            if f is not None:
                f.close()
                self._files[i] = None

    def _split(self) -> list[dict[str, list[tuple]]]:
        """Move the groups in memory into one dict per partition (``groups`` is left empty)."""
        n = self.n
        if n == 1:
            parts = [dict(self.groups)]
        else:
            parts = [{} for _ in range(n)]
            crc32 = zlib.crc32
            for key, recs in self.groups.items():
                parts[crc32(key.encode("utf-8", "surrogatepass")) % n][key] = recs
        self.groups.clear()  # in place: writers hold a reference to it
        return parts


def read_partition(paths: list[Path]) -> dict[str, list[tuple]]:
    """The records of spill files, in order, grouped by key; each file is deleted once read."""
    groups: dict[str, list[tuple]] = {}
    for path in paths:
        with open(path, "rb") as f:
            while header := f.read(8):
                _merge(groups, marshal.loads(f.read(int.from_bytes(header, "little"))))
        Path(path).unlink(missing_ok=True)
    return groups


def _merge(into: dict[str, list[tuple]], more: dict[str, list[tuple]]) -> None:
    """Append ``more``'s records after ``into``'s, key by key."""
    if not into:
        into.update(more)
        return
    for key, recs in more.items():
        have = into.get(key)
        if have is None:
            into[key] = recs
        else:
            have.extend(recs)
