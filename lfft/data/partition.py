"""Events in hash partitions by session: in memory while they fit a budget, else serialized.

collect's first pass sorts the events of each block of input lines into ``n`` buckets by a
stable hash of their session (:func:`partition_of`) and hands them to
:meth:`PartitionStore.add`, consecutive events of one session together in a *run* (a list: logs
mostly keep a session's lines together, so the session is hashed and grouped once per run rather
than once per event); the second pass takes one partition at a time
(:meth:`PartitionStore.partitions`), grouped by session, so memory holds one partition of
events, not the whole input.

While the events' estimated size fits ``budget_bytes`` they stay as they are (small inputs
never pay for serializing). Past it, the store serializes the events it holds and from then on
serializes each bucket as it arrives, while its events are still in the CPU cache; serialized
buckets are appended to one temporary file per partition whenever they exceed half the budget (a
partition loaded back in the second pass then fits in the other half). Loading a partition back
lays its events out together in memory, which makes the join far cheaper in cache misses than
events scattered over the whole input. Events are msgspec structs encoded as msgpack arrays
(``array_like``), a round trip cheaper than ``marshal`` of the tuples events used to be and
four times cheaper than Arrow tables (``bench/data_alternatives.py``, numbers in
``docs/benchmarks.md``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import msgspec

from lfft.data.events import Event

DEFAULT_BUDGET = 512 << 20  # bytes of events held in memory (estimated while not serialized)
EVENT_OVERHEAD = 512  # an event's Python objects take about its line's size plus this
MB = 1 << 20
Run = list[Event]  # consecutive events of one session
_encoder = msgspec.msgpack.Encoder()
_buffer = bytearray()  # reused by every encoding in this process
_decode = msgspec.msgpack.Decoder(list[Run]).decode


def budget_bytes(megabytes: float) -> int:
    """``CollectConfig.memory_budget`` (MB, > 0) in bytes."""
    return max(1, int(megabytes * MB))


def partition_of(key: str, n: int) -> int:
    """A stable partition number (the same in every process, unlike ``hash``)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % n if n > 1 else 0


class PartitionStore:
    """Events of ``n`` partitions, added bucket by bucket; each partition read back as
    ``{session_id: [events in add order]}``. A bucket is a list of runs (lists of consecutive
    events of one session).

    Spill files are ``{tmp_dir}/{prefix}-{partition}.msgpack``; several stores (one per reader
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
        self.serialize = serialize  # from the start, or once the events outgrow the budget
        self.live: list[list[list[Run]]] = [[] for _ in range(self.n)]  # buckets as added
        self.blobs: list[list[bytes]] = [[] for _ in range(self.n)]  # serialized buckets
        self.held = 0  # bytes in memory: estimated (live events), then exact (blobs)
        self.events = [0] * self.n  # serialized events in memory, per partition
        self.paths: list[Path | None] = [None] * self.n
        self._files: list[BinaryIO | None] = [None] * self.n
        self.spilled = 0  # events written to disk

    def add(self, buckets: list[list[Run]], size: int, events: int | None = None) -> None:
        """Add events sorted into partitions (``buckets[i]`` holds the runs of partition ``i``,
        ``events`` events in all) parsed from ``size`` bytes of input."""
        if not self.serialize:
            for i, runs in enumerate(buckets):
                if runs:
                    self.live[i].append(runs)
            if events is None:
                events = sum(map(_count, buckets))
            self.held += size + EVENT_OVERHEAD * events
            if self.held > self.budget:
                self._serialize_live()
            return
        for i, runs in enumerate(buckets):
            if runs:
                blob = _encode(runs)
                self.blobs[i].append(blob)
                self.held += len(blob)
                self.events[i] += _count(runs)
        if self.held > self.budget // 2:  # serialized, events are about 3x smaller
            self.spill()

    def spill(self) -> None:
        """Append the events in memory to their partition files and free the memory."""
        self._serialize_live()
        for i, blobs in enumerate(self.blobs):
            if not blobs:
                continue
            f = self._files[i]
            if f is None:
                path = self.tmp_dir / f"{self.prefix}-{i:05d}.msgpack"
                f = self._files[i] = open(path, "wb")  # noqa: SIM115 (closed in close())
                self.paths[i] = path
            for blob in blobs:
                f.write(len(blob).to_bytes(8, "little"))
                f.write(blob)
            self.spilled += self.events[i]
            self.blobs[i], self.events[i] = [], 0
        self.held = 0

    def finish(self) -> list[Path | None]:
        """Spill everything and close the files; returns each partition's file (or None)."""
        self.spill()
        self.close()
        return list(self.paths)

    def partitions(self) -> Iterator[dict[str, list[Event]]]:
        """Yield each partition (session -> events in add order), freeing each as it goes."""
        if self.spilled:
            self.spill()  # then memory holds one partition at a time, not the last chunk too
        self.close()
        for i in range(self.n):
            path, blobs, live = self.paths[i], self.blobs[i], self.live[i]
            self.blobs[i], self.live[i] = [], []
            disk = _read_blobs(path) if path is not None else ()
            groups = group(chain(map(_decode, chain(disk, blobs)), live))
            if path is not None:
                path.unlink(missing_ok=True)  # free the disk as early as the memory
            yield groups

    def close(self) -> None:
        for i, f in enumerate(self._files):
            if f is not None:
                f.close()
                self._files[i] = None

    def _serialize_live(self) -> None:
        """Serialize the live events (and serialize every later bucket on arrival)."""
        self.serialize = True
        if not any(self.live):
            return
        self.held = 0
        for i, buckets in enumerate(self.live):
            self.blobs[i] = [_encode(runs) for runs in buckets] + self.blobs[i]
            self.held += sum(map(len, self.blobs[i]))
            self.events[i] += sum(map(_count, buckets))
            self.live[i] = []


def read_partition(paths: list[Path]) -> dict[str, list[Event]]:
    """The events of spill files, in order, grouped by session; each file is deleted once
    read."""
    groups = group(map(_decode, chain.from_iterable(map(_read_blobs, paths))))
    for path in paths:
        Path(path).unlink(missing_ok=True)
    return groups


def group(buckets: Iterable[list[Run]]) -> dict[str, list[Event]]:
    """The events of buckets of runs, in order, grouped by session. Runs become the groups'
    lists: a bucket is consumed, not copied."""
    groups: dict[str, list[Event]] = {}
    get = groups.get
    for runs in buckets:
        for run in runs:
            key = run[0].session_id
            have = get(key)
            if have is None:
                groups[key] = run
            else:
                have += run
    return groups


def _encode(runs: list[Run]) -> bytes:
    """A bucket as msgpack, in a bytes object of just its size: ``Encoder.encode`` leaves about
    a fifth more memory allocated than the length it returns, which the budget would miss."""
    _encoder.encode_into(runs, _buffer)
    return bytes(_buffer)


def _count(runs: list[Run]) -> int:
    """Events in a bucket."""
    return sum(map(len, runs))


def _read_blobs(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while header := f.read(8):
            yield f.read(int.from_bytes(header, "little"))
