"""Temporary Parquet spill files: a sequential spill, and hash partitions for group-wise work.

``clean`` (duplicates) and ``normalize`` (preference siblings) need every row of a group
together. Rows are spread over ``n`` partition files by a uint64 hash of the group key, so each
partition fits in memory and is processed on its own: memory is bounded by the partition size,
not by the input. Files are uncompressed (they live for one stage) and are removed with their
temporary folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lfft.hashing import stable_hashes


class Spill:
    """One temporary Parquet file written batch by batch and read back batch by batch."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="none")
        self._writer.write_table(table.select(self.schema.names).cast(self.schema))
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        self.close()
        if self.rows:
            # pre_buffer=False: pyarrow would otherwise buffer the whole (uncompressed) file
            spill = pq.ParquetFile(self.path, pre_buffer=False)
            yield from spill.iter_batches(batch_size=batch_rows)

    def read(self) -> pa.Table:
        self.close()
        return pq.read_table(self.path) if self.rows else self.schema.empty_table()


class HashPartitions:
    """``n`` spill files; a row goes to partition ``hash % n`` (``hash`` a uint64 column)."""

    def __init__(self, folder: Path, schema: pa.Schema, n: int, hash_column: str, name: str):
        self.n = max(1, n)
        self.hash_column = hash_column
        self.parts = [Spill(folder / f"{name}-{i:04d}.parquet", schema) for i in range(self.n)]

    @staticmethod
    def count_for(rows: int, rows_per_partition: int) -> int:
        return max(1, math.ceil(rows / max(1, rows_per_partition)))

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.n == 1:
            self.parts[0].write(table)
            return
        part = table.column(self.hash_column).to_numpy() % np.uint64(self.n)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.n + 1))
        for i in range(self.n):
            if bounds[i] < bounds[i + 1]:
                self.parts[i].write(table.take(pa.array(order[bounds[i] : bounds[i + 1]])))

    def tables(self) -> Iterator[pa.Table]:
        """Each non-empty partition as one in-memory table, in partition order."""
        for part in self.parts:
            if part.rows:
                yield part.read()
                part.path.unlink(missing_ok=True)


def hash64(values: list[str | None]) -> np.ndarray:
    """:func:`lfft.hashing.stable_hash64` of each string (None as ``""``), as uint64s: the
    partition keys of group-wise work."""
    return stable_hashes((v or "" for v in values), len(values))
