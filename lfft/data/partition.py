"""Hash partitions of records by session, in memory up to a budget, then spilled to disk.

collect's first pass appends every parsed record to the partition of its session (grouped by
session there and then, while the record is still in the CPU cache); the second pass takes one
partition at a time, so memory holds one partition, not the whole input. Records are plain
tuples spilled with ``marshal`` (the fastest serializer of Python tuples and strings;
the files are temporary and read back by the same interpreter version). Inputs that fit in
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
    """Append records to ``n`` partitions, grouped by key; read each partition back as
    ``{key: [records in append order]}``.

    Spill files are ``{tmp_dir}/{prefix}-{partition}.marshal``; several stores (one per reader
    process) can share a folder with different prefixes.
    """

    def __init__(
        self, n: int, tmp_dir: Path, budget_bytes: int = DEFAULT_BUDGET, prefix: str = "part"
    ):
        self.n = max(1, n)
        self.tmp_dir = Path(tmp_dir)
        self.prefix = prefix
        self.budget = budget_bytes
        self.buffers: list[dict[str, list[tuple]]] = [{} for _ in range(self.n)]
        self.paths: list[Path | None] = [None] * self.n
        self._files: list[BinaryIO | None] = [None] * self.n
        self.held = 0  # estimated bytes in memory
        self.spilled = 0  # records written to disk

    def add(self, rec: tuple, key: str, size: int) -> None:
        """Append ``rec`` (parsed from ``size`` bytes of input) to the partition of ``key``."""
        n = self.n
        groups = self.buffers[zlib.crc32(key.encode("utf-8", "surrogatepass")) % n if n > 1 else 0]
        group = groups.get(key)
        if group is None:
            groups[key] = [rec]
        else:
            group.append(rec)
        self.held += size + RECORD_OVERHEAD
        if self.held > self.budget:
            self.spill()

    def spill(self) -> None:
        """Write every in-memory buffer to its partition file and free the memory."""
        for i, buf in enumerate(self.buffers):
            if not buf:
                continue
            f = self._files[i]
            if f is None:
                path = self.tmp_dir / f"{self.prefix}-{i:05d}.marshal"
                f = self._files[i] = open(path, "wb")  # noqa: SIM115 (closed in close())
                self.paths[i] = path
            data = marshal.dumps(buf)
            f.write(len(data).to_bytes(8, "little"))  # marshal.load(file) reads in tiny pieces
            f.write(data)
            self.spilled += sum(map(len, buf.values()))
            self.buffers[i] = {}
        self.held = 0

    def finish(self) -> list[Path | None]:
        """Spill everything and close the files; returns each partition's file (or None)."""
        self.spill()
        self.close()
        return list(self.paths)

    def partitions(self) -> Iterator[dict[str, list[tuple]]]:
        """Yield each partition (key -> records in append order), freeing each as it goes."""
        self.close()
        for i in range(self.n):
            path = self.paths[i]
            groups = read_partition([path]) if path is not None else {}
            _merge(groups, self.buffers[i])
            self.buffers[i] = {}
            yield groups

    def close(self) -> None:
        for i, f in enumerate(self._files):
            if f is not None:
                f.close()
                self._files[i] = None


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
