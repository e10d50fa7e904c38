"""Reasons, in one shape: a reject row, and the sink every data stage writes them to.

A reason is always a row of ``schemas.REJECTS``: the stage, the source (input file or
artifact), where (``file:line`` or an ``interaction_id``), a snake_case ``reason`` code, a
human ``detail`` and the offending input (``raw``, cut to :data:`RAW_LIMIT` characters). Pure
batch functions build them in bulk (:func:`reject_table`), readers one at a time
(:class:`lfft.data.records.Reject`); either way they are counted by reason with
:func:`count_reasons`, so every summary counts them the same way.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from lfft.io import ArtifactWriter, rejects_path
from lfft.schemas import REJECTS, make_metadata

RAW_LIMIT = 2_000
_FLUSH_ROWS = 8_192


def count_reasons(table: pa.Table | None) -> Counter[str]:
    """Reject rows counted by reason (the one way every summary counts them)."""
    if table is None or table.num_rows == 0:
        return Counter()
    return value_counts(table.column("reason"))


def value_counts(column: pa.Array | pa.ChunkedArray) -> Counter:
    """How often each value occurs in an Arrow column."""
    vc = column.value_counts()
    return Counter(
        dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
    )


def reject_table(stage: str, source: str, locations, reasons, raws=None, details=None) -> pa.Table:
    """Build a ``REJECTS`` table from parallel lists (for pure batch functions)."""
    n = len(locations)
    return pa.table(
        {
            "stage": [stage] * n,
            "source": [source] * n,
            "location": list(locations),
            "reason": list(reasons),
            "detail": list(details) if details is not None else [None] * n,
            "raw": list(raws) if raws is not None else [None] * n,
        },
        schema=REJECTS,
    )


def reject_record(
    stage: str, source: str, location: str, reason: str, raw: Any, detail: Any
) -> tuple:
    """One ``REJECTS`` row as a tuple in column order, ``raw`` decoded and cut to
    :data:`RAW_LIMIT` characters."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if raw is not None and len(raw) > RAW_LIMIT:
        raw = raw[:RAW_LIMIT]
    return (stage, source, location, reason, detail, raw)


def records_table(rows: list[tuple]) -> pa.Table:
    """``REJECTS`` rows from :func:`reject_record` tuples."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(REJECTS)
    return pa.table(
        {name: list(col) for name, col in zip(REJECTS.names, columns, strict=True)},
        schema=REJECTS,
    )


class RejectCounter:
    """Count reject rows by reason without writing them (a stage with no rejects file)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(
        self,
        source: str,
        location: str,
        reason: str,
        raw: str | bytes | None = None,
        detail: str | None = None,
    ) -> None:
        """One reject row (``raw``: the offending input, cut to :data:`RAW_LIMIT`)."""
        self.counts[reason] += 1
        self._keep(source, location, reason, raw, detail)

    def add_table(self, table: pa.Table) -> None:
        """Reject rows already shaped as ``REJECTS`` (from a pure batch function)."""
        if table.num_rows:
            self.counts.update(count_reasons(table))
            self._keep_table(table)

    def _keep(self, *row: Any) -> None:
        """Store a reject row (a counter keeps none)."""

    def _keep_table(self, table: pa.Table) -> None:
        """Store a table of reject rows (a counter keeps none)."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> RejectCounter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        pass


class RejectSink(RejectCounter):
    """Count rejects by reason and stream them to ``lfft.io.rejects_path(out)``
    (``clean.parquet`` -> ``clean.rejects.parquet``, a folder ``clean/`` ->
    ``clean/rejects.parquet``).

    Use as a context manager; the file is written atomically when the block ends, also when
    nothing was rejected (an empty rejects file says "nothing was dropped"). The rejects of a
    folder output are written beside the folder and moved into it at the end: close the
    output's writer first (it swaps in the new folder), then the sink.
    """

    def __init__(self, out: str | os.PathLike, stage: str, config: dict[str, Any] | None = None):
        super().__init__()
        self.stage = stage
        self.path = rejects_path(out)
        self._rows: dict[str, list] = {name: [] for name in REJECTS.names}
        out = Path(out)
        inside = self.path.parent == out  # a folder output, swapped in whole by its writer
        self._staged = out.with_name(f".{out.name}.rejects.parquet") if inside else None
        target = self._staged or self.path
        self._writer = ArtifactWriter(target, REJECTS, make_metadata(stage, config))

    def _keep(self, source: str, location: str, reason: str, raw: Any, detail: Any) -> None:
        row = reject_record(self.stage, source, location, reason, raw, detail)
        for name, value in zip(REJECTS.names, row, strict=True):
            self._rows[name].append(value)
        if len(self._rows["stage"]) >= _FLUSH_ROWS:
            self.flush()

    def _keep_table(self, table: pa.Table) -> None:
        self.flush()
        self._writer.write(table)

    def flush(self) -> None:
        if self._rows["stage"]:
            self._writer.write(pa.table(self._rows, schema=REJECTS))
            self._rows = {name: [] for name in REJECTS.names}

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()
            self._writer.meta["counts"] = {"rows": self.total, **self.counts}
            self._writer.close()
            if self._staged is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._staged, self.path)
        else:
            self._writer.abort(exc)
