"""One runner for the batch data stages: reader -> pure core -> writer, metadata, timing, summary.

A batch stage is a pure *core*, a function of Arrow tables that returns a :class:`Batch` (the
rows it keeps, and a reject row for each input it does not keep), plus one :class:`StageRun`
that does what every stage shares:

- the outputs (a Parquet file, a folder of part files, or JSON Lines) and the rejects file
  beside them, each with the ``lfft`` metadata block (stage, version, config, the inputs'
  fingerprints); every write is atomic: on any error or Ctrl-C the outputs, the rejects file
  and the temporary folder (:attr:`StageRun.tmp`) are removed and earlier outputs stay;
- the core mapped over the input tables (:meth:`StageRun.map`), in worker processes when asked
  and taken back in input order, with the input rows counted, reject rows sent to the rejects
  file and per-batch counts summed;
- a stage that keeps no row writes its rejects file (which says why) but no output, and stops
  with :class:`lfft.errors.NoUsableRows`;
- its timing and its :class:`lfft.report.StageResult`, whose ``rejects`` are the reject rows
  counted by reason (:func:`lfft.data.rejects.count_reasons`), the same in every stage.

Reasons have one shape: a reject row (``schemas.REJECTS``). What a stage notes about an input
it keeps (normalize's ignored feedback events, collect's OpenAssistant messages deleted by
moderators) is a reject row too, a *note*: counted by reason (:attr:`StageRun.notes`), not
written, since ``rows_in == rows_out + rejected`` counts inputs.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa

from lfft.config import as_dict
from lfft.data.parts import open_output
from lfft.data.pool import ordered_map
from lfft.data.rejects import RejectCounter, RejectSink, count_reasons
from lfft.errors import NoUsableRows
from lfft.io import ClosingWriter, JsonLinesWriter, fingerprints, read_schema, rejects_path
from lfft.report import StageResult
from lfft.schemas import make_metadata, validate


class Batch(NamedTuple):
    """What a core returns for one input table."""

    rows: Any  # a table (or, for several outputs, {output name: table}; JSON lines for export)
    rejects: pa.Table | None = None  # REJECTS rows: the inputs not kept (written and counted)
    notes: pa.Table | None = None  # REJECTS rows about kept inputs (counted, not written)
    tallies: Counter | None = None  # other counts, summed over the batches (clean: PII found)


@dataclass
class Output:
    """One output: Parquet of ``schema`` (a file, or a folder of parts, see
    :mod:`lfft.data.parts`), or JSON Lines when ``schema`` is None."""

    path: Path
    schema: pa.Schema | None = None
    part_rows: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # added to the stage's metadata block

    def open(self, meta: dict[str, Any]) -> ClosingWriter:
        meta = {**meta, **self.meta}
        if self.schema is None:
            return JsonLinesWriter(self.path, meta)
        return open_output(self.path, self.schema, meta, self.part_rows)


def check_input(path: Path, schema: pa.Schema, what: str) -> None:
    """Stop with one line naming every missing column when ``path`` is not ``what``."""
    validate(read_schema(path), schema, f"{path} is not {what}")


class StageRun:
    """One run of a batch stage (a context manager; see the module docstring).

    ``outputs`` name the artifacts (the first one is :meth:`write`'s default); ``rejects`` is
    the output the rejects file goes beside (None: count rejects, write none); ``required``:
    a run that writes no row stops with ``NoUsableRows`` (``hint`` is added to that message).
    """

    def __init__(
        self,
        stage: str,
        cfg: Any,
        inputs: list[Path],
        outputs: dict[str, Output],
        rejects: Path | None,
        required: bool = True,
        hint: str = "",
    ):
        self.stage = stage
        self.config = as_dict(cfg) if cfg is not None else {}
        self.inputs = [Path(p) for p in inputs]
        self.outputs = outputs
        self.rejects_at = rejects
        self.required = required
        self.hint = hint
        paths = {name: o.path for name, o in outputs.items()}
        if rejects is not None:
            paths["rejects"] = rejects_path(rejects)
        self.result = StageResult(stage, outputs=paths)
        self.writers: dict[str, ClosingWriter] = {}
        self.sink: RejectCounter = RejectCounter()
        self.notes: Counter = Counter()  # notes (reject rows about kept inputs) by reason
        self.tallies: Counter = Counter()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._start = 0.0

    # --- the block ----------------------------------------------------------------------------

    def __enter__(self) -> StageRun:
        self._start = time.perf_counter()
        parquet = any(o.schema is not None for o in self.outputs.values())
        writes_meta = parquet or self.rejects_at is not None
        inputs = fingerprints(self.inputs) if writes_meta else {}  # JSON Lines have no metadata
        meta = make_metadata(self.stage, self.config, inputs)
        for output in self.outputs.values():
            output.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.rejects_at is not None:
                self.sink = RejectSink(self.rejects_at, self.stage, self.config)
            for name, output in self.outputs.items():
                self.writers[name] = output.open(meta)
        except BaseException as e:
            self._abort(e)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._abort(exc)
            return
        self.result.rows_out = sum(w.rows for w in self.writers.values())
        empty = self.required and self.result.rows_out == 0
        try:
            for writer in self.writers.values():
                if empty:
                    writer.abort()  # the rejects file still says why
                else:
                    writer.close()
            self.sink.__exit__(None, None, None)  # after the outputs: a folder is swapped in
        except BaseException as e:
            self._abort(e)
            raise
        self._cleanup()
        self.result.rejects = Counter(self.sink.counts)
        self.result.seconds = time.perf_counter() - self._start
        if empty:
            raise NoUsableRows(self._empty_message())

    def _abort(self, exc: BaseException) -> None:
        for writer in self.writers.values():
            writer.abort(exc)
        self.sink.__exit__(type(exc), exc, exc.__traceback__)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _empty_message(self) -> str:
        source = ", ".join(map(str, self.inputs))
        if self.result.rows_in == 0:
            return f"{source}: no rows to {self.stage} (the artifact is empty)"
        reasons = reason_text(self.result.rejects)
        rejects = self.result.outputs.get("rejects")
        where = f"; see {rejects}" if rejects is not None else ""
        return (
            f"{source}: no usable rows: all {self.result.rows_in:,} rejected "
            f"({reasons}){where}{self.hint}"
        )

    # --- inside the block ---------------------------------------------------------------------

    @property
    def tmp(self) -> Path:
        """A temporary folder beside the first output, removed when the run ends."""
        if self._tmp is None:
            first = next(iter(self.outputs.values())).path
            self._tmp = tempfile.TemporaryDirectory(
                prefix=f".{first.name}.", suffix=".tmp", dir=first.parent
            )
        return Path(self._tmp.name)

    @property
    def meta(self) -> dict[str, Any]:
        """The metadata block of the first output (a stage adds its counts before the end)."""
        return self.writer().meta

    def writer(self, name: str | None = None) -> ClosingWriter:
        return self.writers[name or next(iter(self.writers))]

    def write(self, rows: Any, name: str | None = None) -> None:
        self.writer(name).write(rows)

    def map(
        self, core: Callable[..., Batch], jobs: Iterable[tuple], workers: int = 1
    ) -> Iterator[Batch]:
        """``core(*job)`` for every job (a tuple whose first item is the input table), in
        ``workers`` processes (the core and the jobs must pickle), results in input order.

        Counts the input rows, writes the rejects, counts the notes and sums the tallies of
        each batch, then yields it for the stage to route its rows. A core may return a plain
        ``(rows, rejects)`` pair.
        """
        for result in ordered_map(_call, ((core, job) for job in self._counted(jobs)), workers):
            batch = result if type(result) is Batch else Batch(*result)
            self.take(batch)
            yield batch

    def take(self, batch: Batch) -> None:
        """Account for a batch's rejects, notes and tallies (done by :meth:`map`)."""
        if batch.rejects is not None:
            self.sink.add_table(batch.rejects)
        if batch.notes is not None:
            self.notes.update(count_reasons(batch.notes))
        if batch.tallies:
            self.tallies.update(batch.tallies)

    def _counted(self, jobs: Iterable[tuple]) -> Iterator[tuple]:
        for job in jobs:
            self.result.rows_in += job[0].num_rows
            yield job


def _call(job: tuple[Callable[..., Batch], tuple]) -> Batch:
    """Worker: one core applied to one job."""
    core, args = job
    return core(*args)


def reason_text(counts: Counter) -> str:
    """``reason: n, ...`` most common first (for messages)."""
    return ", ".join(f"{reason}: {n:,}" for reason, n in counts.most_common()) or "none"
