"""Data stage outputs as one Parquet file or as a folder of part files.

    lfft collect logs/ --out interactions/        # interactions/part-00000.parquet, ...
    lfft clean interactions/ --out clean.parquet  # every reader takes a file or a folder

An output is a folder when its path does not end in ``.parquet`` or when the stage's
``part_rows`` is set (then ``clean.parquet/`` is a folder, as Spark writes them). Parts hold at
most ``part_rows`` rows each (:data:`DEFAULT_PART_ROWS` when only the path asks for a folder)
and are named ``part-00000.parquet``, ... in write order. Every part carries the ``lfft``
metadata block (stage, config, inputs) with its own row count, so the counts of the parts add
up; the first part also carries the stage's totals and ``parts``, so ``lfft.io.read_meta`` of
a folder (its first part) says what produced the whole artifact. The folder is written under a
temporary name and swapped in when the stage succeeds (``lfft.io.atomic_path``): a killed stage
leaves the previous output, never half of a new one. Rejects go to ``lfft.io.rejects_path``
(``interactions/rejects.parquet``, which readers of the folder skip).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from lfft.io import ArtifactWriter, ClosingWriter

DEFAULT_PART_ROWS = 1_000_000  # rows per part when only the path asks for a folder
PART_SUFFIX = ".parquet"


def is_folder_output(out: str | os.PathLike, part_rows: int = 0) -> bool:
    """Whether a stage writes ``out`` as a folder of parts (see the module docstring)."""
    return part_rows > 0 or Path(out).suffix != PART_SUFFIX


def open_output(
    out: str | os.PathLike, schema: pa.Schema, meta: dict[str, Any], part_rows: int = 0
) -> ArtifactWriter | PartWriter:
    """The writer of a data stage's output: one file, or a folder of parts."""
    if is_folder_output(out, part_rows):
        return PartWriter(out, schema, meta, part_rows or DEFAULT_PART_ROWS)
    return ArtifactWriter(out, schema, meta)


class PartWriter(ClosingWriter):
    """:class:`lfft.io.ArtifactWriter` for a folder: the same ``write`` / ``meta`` / ``rows`` /
    ``close`` / ``abort``, parts of at most ``part_rows`` rows, the folder swapped in atomically.
    """

    def __init__(
        self, path: str | os.PathLike, schema: pa.Schema, meta: dict[str, Any], part_rows: int
    ):
        self.schema = schema
        self.part_rows = max(1, part_rows)
        self.parts = 0
        self._begin(path, meta).mkdir()
        # the first part stays open until the end, to carry the artifact's totals
        self._first = self._current = self._open_part()

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        offset, n = 0, data.num_rows
        while offset < n:
            if self._current.rows >= self.part_rows:
                self._next_part()
            take = min(n - offset, self.part_rows - self._current.rows)
            self._current.write(data.slice(offset, take))
            offset += take
            self.rows += take

    def close(self) -> None:
        if self._current is not self._first:
            self._finish_part(self._current)
        counts = {**self.meta.get("counts", {}), "rows": self._first.rows}
        self._first.meta = {**self.meta, "counts": counts, "part": 0, "parts": self.parts}
        self._first.meta["total_rows"] = self.rows
        self._first.close()
        if self.path.is_file() or self.path.is_symlink():
            self.path.unlink()  # a file output of an earlier run: a folder cannot replace it
        self._cm.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        for writer in {id(w): w for w in (self._first, self._current)}.values():
            writer.abort(exc)
        self._discard(exc)

    def _open_part(self) -> ArtifactWriter:
        name = f"part-{self.parts:05d}{PART_SUFFIX}"
        self.parts += 1
        return ArtifactWriter(self._tmp / name, self.schema, self.meta)

    def _next_part(self) -> None:
        if self._current is not self._first:
            self._finish_part(self._current)
        self._current = self._open_part()

    def _finish_part(self, writer: ArtifactWriter) -> None:
        """Close a part other than the first: the stage's metadata as it is now, its own rows."""
        index = int(writer.path.stem.rsplit("-", 1)[1])
        base = {k: v for k, v in self.meta.items() if k != "counts"}
        writer.meta = {**base, "counts": {"rows": writer.rows}, "part": index}
        writer.close()


Writer = ArtifactWriter | PartWriter  # what :func:`open_output` returns
