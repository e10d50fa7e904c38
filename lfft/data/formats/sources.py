"""Records of any input container, streamed: JSON/JSONL (via :mod:`jsonio`), CSV/TSV, Parquet.

Every reader works on dict records, so a dataset downloaded as Parquet (how the Hugging Face hub
ships them) or as JSON Lines is read by the same format reader. CSV cells are strings (empty
cell -> ``None``); Parquet rows keep their types (lists, structs, timestamps).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lfft.data import remote
from lfft.data.formats.jsonio import JsonRecord, inner_suffix, iter_records
from lfft.data.readers import open_binary
from lfft.errors import LfftError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_BATCH_ROWS = 4_096


def records(path: Path) -> Iterator[JsonRecord]:
    """Every record of ``path``, whatever its container (``raw`` is None for table rows)."""
    suffix = inner_suffix(path)
    if suffix == ".parquet":
        return parquet_records(path)
    if suffix in (".csv", ".tsv"):
        return csv_records(path)
    return iter_records(path)


def columns(path: Path) -> list[str] | None:
    """The column names of a CSV/TSV/Parquet file (None for JSON inputs)."""
    suffix = inner_suffix(path)
    if suffix == ".parquet":
        return list(_parquet(path).schema_arrow.names)
    if suffix in (".csv", ".tsv"):
        with _csv_text(path) as text:
            return next(csv.reader(text, delimiter=_delimiter(path)), [])
    return None


def parquet_records(path: Path) -> Iterator[JsonRecord]:
    n = 0
    for batch in _parquet(path).iter_batches(batch_size=_BATCH_ROWS):
        for row in batch.to_pylist():
            n += 1
            yield JsonRecord(f"{path}:{n}", row, None)


def csv_records(path: Path) -> Iterator[JsonRecord]:
    """CSV rows as dicts; location ``file:line`` of the line the row starts on."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with _csv_text(path) as text:
        reader = csv.reader(text, delimiter=_delimiter(path))
        header = next(reader, None)
        if header is None:
            return
        start = reader.line_num + 1
        try:
            for cells in reader:
                loc = f"{path}:{start}"
                start = reader.line_num + 1
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    why = f"{len(cells)} cells for {len(header)} columns"
                    yield JsonRecord(loc, None, ",".join(cells), "bad_csv_row", why)
                    continue
                row = {k: (v if v != "" else None) for k, v in zip(header, cells, strict=True)}
                yield JsonRecord(loc, row, None)
        except (csv.Error, UnicodeDecodeError) as e:
            yield JsonRecord(f"{path}:{start}", None, None, "malformed_csv", f"{e}; stopped")


def _delimiter(path: Path) -> str:
    return "\t" if inner_suffix(path) == ".tsv" else ","


def _csv_text(path: Path) -> io.TextIOWrapper:
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", newline="")


def _parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(remote.open_random(path) if remote.is_url(path) else path)
    except (pa.ArrowInvalid, OSError) as e:
        raise LfftError(f"{path}: not a readable Parquet file ({e})") from None
