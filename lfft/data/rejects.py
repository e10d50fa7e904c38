"""The rejects sink every data stage writes: one row per input that was not kept, with a reason."""

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


class RejectSink:
    """Collect rejects, count them by reason and stream them to ``lfft.io.rejects_path(out)``
    (``clean.parquet`` -> ``clean.rejects.parquet``, a folder ``clean/`` ->
    ``clean/rejects.parquet``).

    Use as a context manager; the file is written atomically when the block ends, also when
    nothing was rejected (an empty rejects file says "nothing was dropped"). The rejects of a
    folder output are written beside the folder and moved into it at the end: close the
    output's writer first (it swaps in the new folder), then the sink.
    """

    def __init__(self, out: str | os.PathLike, stage: str, config: dict[str, Any] | None = None):
        self.stage = stage
        self.path = rejects_path(out)
        self.counts: Counter[str] = Counter()
        self._rows: dict[str, list] = {name: [] for name in REJECTS.names}
        out = Path(out)
        inside = self.path.parent == out  # a folder output, swapped in whole by its writer
        self._staged = out.with_name(f".{out.name}.rejects.parquet") if inside else None
        target = self._staged or self.path
        self._writer = ArtifactWriter(target, REJECTS, make_metadata(stage, config))

    def add(
        self,
        source: str,
        location: str,
        reason: str,
        raw: str | bytes | None = None,
        detail: str | None = None,
    ) -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        if raw is not None and len(raw) > RAW_LIMIT:
            raw = raw[:RAW_LIMIT]
        row = (self.stage, source, location, reason, detail, raw)
        for name, value in zip(REJECTS.names, row, strict=True):
            self._rows[name].append(value)
        self.counts[reason] += 1
        if len(self._rows["stage"]) >= _FLUSH_ROWS:
            self.flush()

    def add_table(self, table: pa.Table) -> None:
        """Add rejects already shaped as ``REJECTS`` (from a pure batch function)."""
        if table.num_rows:
            self.flush()
            self._writer.write(table)
            for reason, n in zip(*_value_counts(table.column("reason")), strict=True):
                self.counts[reason] += n

    def flush(self) -> None:
        if self._rows["stage"]:
            self._writer.write(pa.table(self._rows, schema=REJECTS))
            self._rows = {name: [] for name in REJECTS.names}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> RejectSink:
        return self

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


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    vc = column.value_counts()
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


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
