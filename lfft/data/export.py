"""``lfft export``: a feedback/split artifact -> JSON Lines that TRL's trainers load unchanged.

>>> export(Path("splits/train.parquet"), "trl-kto", Path("kto.jsonl"))  # doctest: +SKIP

Formats (TRL's "conversational" dataset types; ``datasets.load_dataset("json", data_files=...)``
reads them as they are):

- ``trl-sft``: ``{"messages": [...context, user prompt, assistant target]}`` for every row that
  is not labelled bad (label 1 or no label), plus bad rows a user corrected: the target is the
  user's edit when there is one, else the response. For ``SFTTrainer``.
- ``trl-kto``: ``{"prompt": [...context, user prompt], "completion": [assistant response],
  "label": bool}`` for every row with a label. For ``KTOTrainer``.
- ``trl-dpo``: ``{"prompt": [...], "chosen": [assistant], "rejected": [assistant]}``. Within a
  ``group_id`` (same context and prompt) the best-scored row is paired with each row scored
  strictly lower (ties give no pair); a row whose target is a user edit also gives the pair
  (edit > response). For ``DPOTrainer``.
- ``jsonl``: every column of the artifact as JSON (timestamps as ISO-8601); ``lfft collect``
  reads it back unchanged (format ``lfft``).

Rows that a format cannot use are counted by reason (``negative``, ``no_label``, ``no_score``,
``no_pair``), as reject rows that are not written: export has no rejects file. The output is
written atomically (:mod:`lfft.data.runner`).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lfft.data.rejects import reject_table
from lfft.data.runner import Batch, Output, StageRun, check_input
from lfft.errors import LfftError
from lfft.io import count_rows, iter_batches, read_table
from lfft.report import StageResult
from lfft.schemas import NORMALIZED

STAGE = "export"
FORMATS = ("trl-sft", "trl-kto", "trl-dpo", "jsonl")
PART_ROWS = 200_000  # trl-dpo groups rows in hash partitions of about this many rows
_PROMPT_COLS = ["interaction_id", "context", "prompt"]
_NEEDS = {
    "trl-sft": [*_PROMPT_COLS, "response", "target", "label"],
    "trl-kto": [*_PROMPT_COLS, "response", "label"],
    "trl-dpo": ["group_id", *_PROMPT_COLS, "response", "target", "score"],
}


def export(artifact: Path, fmt: str, out: Path) -> StageResult:
    """Write ``artifact`` (NORMALIZED or SPLIT schema; any artifact for ``jsonl``) as ``fmt``."""
    if fmt not in FORMATS:
        raise LfftError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    artifact, out = Path(artifact), Path(out)
    columns = _NEEDS.get(fmt)
    if columns is not None:
        needed = pa.schema([NORMALIZED.field(name) for name in columns])
        check_input(artifact, needed, f"a feedback file (export {fmt} needs one)")
    outputs = {"out": Output(out)}  # JSON Lines; rows a format cannot use are counted only
    with StageRun(STAGE, None, [artifact], outputs, rejects=None, required=False) as run:
        if fmt == "trl-dpo":
            tables = _grouped(artifact, columns, run.tmp)
        else:
            tables = (pa.Table.from_batches([b]) for b in iter_batches(artifact, columns))
        for batch in run.map(_CORES[fmt], ((table, str(artifact)) for table in tables)):
            run.write(batch.rows)
        run.result.extra = {"format": fmt}
        if fmt == "trl-dpo":
            run.result.extra["rows paired"] = run.result.rows_in - run.sink.total
    return run.result


def prompt_messages(context: list[dict[str, str]] | None, prompt: str) -> list[dict[str, str]]:
    """The conversation up to and including the user's prompt, as TRL chat messages."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in context or []]
    return [*msgs, {"role": "user", "content": prompt}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def sft_batch(table: pa.Table, source: str = "") -> Batch:
    """The core of ``trl-sft``: a ``messages`` record per row not labelled bad (or corrected)."""
    lines, skipped = [], []
    for row in table.to_pylist():
        if row["label"] == 0 and row["target"] == row["response"]:
            skipped.append(row["interaction_id"])
            continue
        msgs = prompt_messages(row["context"], row["prompt"]) + assistant(row["target"])
        lines.append(_json({"messages": msgs}))
    return Batch(lines, _skipped(source, skipped, "negative", "labelled bad, no correction"))


def kto_batch(table: pa.Table, source: str = "") -> Batch:
    """The core of ``trl-kto``: a prompt/completion/label record per labelled row."""
    lines, skipped = [], []
    for row in table.to_pylist():
        if row["label"] is None:
            skipped.append(row["interaction_id"])
            continue
        record = {
            "prompt": prompt_messages(row["context"], row["prompt"]),
            "completion": assistant(row["response"]),
            "label": bool(row["label"]),
        }
        lines.append(_json(record))
    return Batch(lines, _skipped(source, skipped, "no_label", "no usable feedback"))


def jsonl_batch(table: pa.Table, source: str = "") -> Batch:
    """The core of ``jsonl``: every row, every column."""
    return Batch([_json(row) for row in table.to_pylist()])


def dpo_batch(table: pa.Table, source: str = "") -> Batch:
    """The core of ``trl-dpo`` (``table`` holds whole groups): within each group, the
    best-scored row against every lower-scored one, and every edit against its response."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        groups.setdefault(row["group_id"], []).append(row)
    lines, unscored, unpaired = [], [], []
    for rows in groups.values():
        lines += map(_json, _group_pairs(rows, unscored, unpaired))
    rejects = pa.concat_tables(
        [
            _skipped(source, unscored, "no_score", "no usable feedback"),
            _skipped(source, unpaired, "no_pair", "no row of its group scored differently"),
        ]
    )
    return Batch(lines, rejects)


def _group_pairs(
    rows: list[dict[str, Any]], unscored: list[str], unpaired: list[str]
) -> Iterator[dict[str, Any]]:
    scored = [r for r in rows if r["score"] is not None]
    unscored += [r["interaction_id"] for r in rows if r["score"] is None]
    scored.sort(key=lambda r: (-r["score"], r["interaction_id"]))
    used: set[str] = set()
    if scored:
        best = scored[0]
        for other in scored[1:]:
            if other["score"] < best["score"]:
                used.update((best["interaction_id"], other["interaction_id"]))
                yield _pair(best, best["response"], other["response"])
    for row in rows:
        if row["target"] != row["response"]:
            used.add(row["interaction_id"])
            yield _pair(row, row["target"], row["response"])
    unpaired += [r["interaction_id"] for r in scored if r["interaction_id"] not in used]


def _pair(row: dict[str, Any], chosen: str, rejected: str) -> dict[str, Any]:
    return {
        "prompt": prompt_messages(row["context"], row["prompt"]),
        "chosen": assistant(chosen),
        "rejected": assistant(rejected),
    }


_CORES = {"trl-sft": sft_batch, "trl-kto": kto_batch, "trl-dpo": dpo_batch, "jsonl": jsonl_batch}


def _skipped(source: str, ids: list[str], reason: str, detail: str) -> pa.Table:
    return reject_table(STAGE, source, ids, [reason] * len(ids), details=[detail] * len(ids))


def _json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=_json_default)


def _grouped(artifact: Path, columns: list[str], workdir: Path) -> Iterator[pa.Table]:
    """Tables that each hold whole groups: the artifact itself if small, else hash partitions
    by ``group_id`` written to a temporary folder (bounded memory)."""
    parts = max(1, math.ceil(count_rows(artifact) / PART_ROWS))
    if parts == 1:
        yield read_table(artifact, columns=columns)
        return
    paths = [workdir / f"part-{i}.parquet" for i in range(parts)]
    writers: dict[int, pq.ParquetWriter] = {}
    for batch in iter_batches(artifact, columns=columns):
        keys = batch.column("group_id").to_pylist()
        which = pa.array([zlib.crc32(k.encode()) % parts for k in keys])
        for i in range(parts):
            chunk = batch.filter(pc.equal(which, i))
            if chunk.num_rows:
                if i not in writers:
                    writers[i] = pq.ParquetWriter(paths[i], batch.schema)
                writers[i].write_batch(chunk)
    for w in writers.values():
        w.close()
    for i in sorted(writers):
        yield pq.read_table(paths[i])
        paths[i].unlink()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
