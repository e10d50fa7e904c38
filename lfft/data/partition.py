"""Records in hash partitions by session: in memory while they fit a budget, else serialized.

collect's first pass sorts the records of each block of input lines into ``n`` buckets by a
stable hash of their session (:func:`partition_of`) and hands them to
:meth:`PartitionStore.add`, consecutive records of one session together in a *run* (a list:
logs mostly keep a session's lines together, so the session is hashed and grouped once per run
rather than once per record); the second pass takes one partition at a time
(:meth:`PartitionStore.partitions`), grouped by session, so memory holds one partition of
records, not the whole input.

While the records' estimated size fits ``budget_bytes`` they stay as they are (small inputs
never pay for serializing). Past it, the store serializes the records it holds with ``marshal``
and from then on serializes each bucket as it arrives, while its records are still in the CPU
cache; serialized buckets are appended to one temporary file per partition whenever they exceed
half the budget (a partition loaded back in the second pass then fits in the other half).
Loading a partition back lays its records out together in memory, which makes the join far
cheaper in cache misses than records scattered over the whole input. ``marshal`` is the fastest
serializer of Python tuples and strings; the files are temporary and read back by the same
interpreter version.
"""

from __future__ import annotations

import marshal
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import BinaryIO

DEFAULT_BUDGET = 512 << 20  # bytes of records held in memory (estimated while not serialized)
RECORD_OVERHEAD = 512  # a record's Python objects take about its line's size plus this
MB = 1 << 20


def budget_bytes(megabytes: float) -> int:
    """``CollectConfig.memory_budget`` (MB, > 0) in bytes."""
    return max(1, int(megabytes * MB))


def partition_of(key: str, n: int) -> int:
    """A stable partition number (the same in every process, unlike ``hash``)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % n if n > 1 else 0


class PartitionStore:
    """Records of ``n`` partitions, added bucket by bucket; each partition read back as
    ``{key: [records in add order]}`` (the key of a record is ``record[1]``). A bucket holds
    either records (tuples) or runs (lists of consecutive records of one key).

    Spill files are ``{tmp_dir}/{prefix}-{partition}.marshal``; several stores (one per reader
    process) can share a folder with different prefixes. A store that will be spilled whole
    anyway (a reader process's) should ``serialize`` from the start.
    """

    def __init__(
        self,
        n: int,
        tmp_dir: Path,
        budget_bytes: int = DEFAULT_BUDGET,
        prefix: str = "part",
        serialize: bool = False,
    ):
        self.n = max(1, n)
        self.tmp_dir = Path(tmp_dir)
        self.prefix = prefix
        self.budget = budget_bytes
        self.serialize = serialize  # from the start, or once the records outgrow the budget
        self.live: list[list[list[tuple]]] = [[] for _ in range(self.n)]  # buckets as added
        self.blobs: list[list[bytes]] = [[] for _ in range(self.n)]  # serialized buckets
        self.held = 0  # bytes in memory: estimated (live records), then exact (blobs)
        self.records = [0] * self.n  # serialized records in memory, per partition
        self.paths: list[Path | None] = [None] * self.n
        self._files: list[BinaryIO | None] = [None] * self.n
        self.spilled = 0  # records written to disk

    def add(self, buckets: list[list], size: int, records: int | None = None) -> None:
        """Add records sorted into partitions (``buckets[i]`` holds those of partition ``i``,
        ``records`` of them in all, as records or runs) parsed from ``size`` bytes of input."""
        if not self.serialize:
            for i, items in enumerate(buckets):
                if items:
                    self.live[i].append(items)
            if records is None:
                records = sum(map(_count, buckets))
            self.held += size + RECORD_OVERHEAD * records
            if self.held > self.budget:
                self._serialize_live()
            return
        dumps = marshal.dumps
        for i, items in enumerate(buckets):
            if items:
                blob = dumps(items)
                self.blobs[i].append(blob)
                self.held += len(blob)
                self.records[i] += _count(items)
        if self.held > self.budget // 2:  # serialized, records are about 2.5x smaller
            self.spill()

    def spill(self) -> None:
        """Append the records in memory to their partition files and free the memory."""
        self._serialize_live()
        for i, blobs in enumerate(self.blobs):
            if not blobs:
                continue
            f = self._files[i]
            if f is None:
                path = self.tmp_dir / f"{self.prefix}-{i:05d}.marshal"
                f = self._files[i] = open(path, "wb")  # noqa: SIM115 (closed in close())
                self.paths[i] = path
            for blob in blobs:
                f.write(len(blob).to_bytes(8, "little"))  # marshal.load(file) reads in tiny pieces
                f.write(blob)
            self.spilled += self.records[i]
            self.blobs[i], self.records[i] = [], 0
        self.held = 0

    def finish(self) -> list[Path | None]:
        """Spill everything and close the files; returns each partition's file (or None)."""
        self.spill()
        self.close()
        return list(self.paths)

    def partitions(self) -> Iterator[dict[str, list[tuple]]]:
        """Yield each partition (key -> records in add order), freeing each as it goes."""
        if self.spilled:
            self.spill()  # then memory holds one partition at a time, not the last chunk too
        self.close()
        for i in range(self.n):
            path, blobs, live = self.paths[i], self.blobs[i], self.live[i]
            self.blobs[i], self.live[i] = [], []
            disk = _read_blobs(path) if path is not None else ()
            groups = group(chain(map(marshal.loads, chain(disk, blobs)), live))
            if path is not None:
                path.unlink(missing_ok=True)  # free the disk as early as the memory
            yield groups

    def close(self) -> None:
        for i, f in enumerate(self._files):
            if f is not None:
                f.close()
                self._files[i] = None

    def _serialize_live(self) -> None:
        """Serialize the live records (and serialize every later bucket on arrival)."""
        self.serialize = True
        if not any(self.live):
            return
        self.held = 0
        for i, buckets in enumerate(self.live):
            self.blobs[i] = [marshal.dumps(items) for items in buckets] + self.blobs[i]
            self.held += sum(map(len, self.blobs[i]))
            self.records[i] += sum(map(_count, buckets))
            self.live[i] = []


def read_partition(paths: list[Path]) -> dict[str, list[tuple]]:
    """The records of spill files, in order, grouped by key; each file is deleted once read."""
    groups = group(map(marshal.loads, chain.from_iterable(map(_read_blobs, paths))))
    for path in paths:
        Path(path).unlink(missing_ok=True)
    return groups


def group(buckets: Iterable[list]) -> dict[str, list[tuple]]:
    """Records of buckets (of records or of runs), in order, grouped by their key (``record[1]``,
    the session). Runs become the groups' lists: a bucket is consumed, not copied."""
    groups: dict[str, list[tuple]] = {}
    get = groups.get
    for items in buckets:
        if items and type(items[0]) is list:
            for run in items:
                key = run[0][1]
                have = get(key)
                if have is None:
                    groups[key] = run
                else:
                    have += run
            continue
        for rec in items:
            have = get(rec[1])
            if have is None:
                groups[rec[1]] = [rec]
            else:
                have.append(rec)
    return groups


def _count(items: list) -> int:
    """Records in a bucket (of records or of runs)."""
    return sum(map(len, items)) if items and type(items[0]) is list else len(items)


def _read_blobs(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while header := f.read(8):
            yield f.read(int.from_bytes(header, "little"))
