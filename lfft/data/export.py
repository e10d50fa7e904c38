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
``no_pair``); nothing else is written. The output is written atomically.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lfft.errors import LfftError
from lfft.io import atomic_path, count_rows, iter_batches, read_schema, read_table
from lfft.report import StageResult
from lfft.schemas import FEEDBACK, validate

FORMATS = ("trl-sft", "trl-kto", "trl-dpo", "jsonl")
PART_ROWS = 200_000  # trl-dpo groups rows in hash partitions of about this many rows
_PROMPT_COLS = ["context", "prompt"]
_NEEDS = {
    "trl-sft": [*_PROMPT_COLS, "response", "target", "label"],
    "trl-kto": [*_PROMPT_COLS, "response", "label"],
    "trl-dpo": ["group_id", "interaction_id", *_PROMPT_COLS, "response", "target", "score"],
}


def export(artifact: Path, fmt: str, out: Path) -> StageResult:
    """Write ``artifact`` (FEEDBACK or SPLIT schema; any lfft artifact for ``jsonl``) as ``fmt``."""
    if fmt not in FORMATS:
        raise LfftError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    start = time.perf_counter()
    artifact, out = Path(artifact), Path(out)
    if fmt != "jsonl":
        needed = pa.schema([FEEDBACK.field(name) for name in _NEEDS[fmt]])
        validate(read_schema(artifact), needed, f"{artifact} (export {fmt} needs a feedback file)")
    skipped: Counter[str] = Counter()
    rows_in = count_rows(artifact)
    written = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        if fmt == "trl-dpo":
            records = dpo_records(artifact, out.parent, skipped)
        else:
            records = _ROW_WRITERS[fmt](artifact, skipped)
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
            written += 1
    extra = {"format": fmt}
    if fmt == "trl-dpo":
        extra["rows paired"] = rows_in - sum(skipped.values())
    return StageResult(
        stage="export",
        rows_in=rows_in,
        rows_out=written,
        rejects=skipped,
        seconds=time.perf_counter() - start,
        outputs={"out": out},
        extra=extra,
    )


def prompt_messages(context: list[dict[str, str]] | None, prompt: str) -> list[dict[str, str]]:
    """The conversation up to and including the user's prompt, as TRL chat messages."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in context or []]
    return [*msgs, {"role": "user", "content": prompt}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def sft_records(artifact: Path, skipped: Counter) -> Iterator[dict[str, Any]]:
    for row in _rows(artifact, _NEEDS["trl-sft"]):
        if row["label"] == 0 and row["target"] == row["response"]:
            skipped["negative"] += 1
            continue
        msgs = prompt_messages(row["context"], row["prompt"]) + assistant(row["target"])
        yield {"messages": msgs}


def kto_records(artifact: Path, skipped: Counter) -> Iterator[dict[str, Any]]:
    for row in _rows(artifact, _NEEDS["trl-kto"]):
        if row["label"] is None:
            skipped["no_label"] += 1
            continue
        yield {
            "prompt": prompt_messages(row["context"], row["prompt"]),
            "completion": assistant(row["response"]),
            "label": bool(row["label"]),
        }


def jsonl_records(artifact: Path, skipped: Counter) -> Iterator[dict[str, Any]]:
    yield from _rows(artifact, None)


def dpo_records(artifact: Path, workdir: Path, skipped: Counter) -> Iterator[dict[str, Any]]:
    """Pairs within each group: the best-scored row against every lower-scored one."""
    for table in _grouped(artifact, _NEEDS["trl-dpo"], workdir):
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in table.to_pylist():
            groups.setdefault(row["group_id"], []).append(row)
        for rows in groups.values():
            yield from _group_pairs(rows, skipped)


def _group_pairs(rows: list[dict[str, Any]], skipped: Counter) -> Iterator[dict[str, Any]]:
    scored = [r for r in rows if r["score"] is not None]
    skipped["no_score"] += len(rows) - len(scored)
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
    skipped["no_pair"] += sum(1 for r in scored if r["interaction_id"] not in used)


def _pair(row: dict[str, Any], chosen: str, rejected: str) -> dict[str, Any]:
    return {
        "prompt": prompt_messages(row["context"], row["prompt"]),
        "chosen": assistant(chosen),
        "rejected": assistant(rejected),
    }


_ROW_WRITERS = {"trl-sft": sft_records, "trl-kto": kto_records, "jsonl": jsonl_records}


def _rows(artifact: Path, columns: list[str] | None) -> Iterator[dict[str, Any]]:
    for batch in iter_batches(artifact, columns=columns):
        yield from batch.to_pylist()


def _grouped(artifact: Path, columns: list[str], workdir: Path) -> Iterator[pa.Table]:
    """Tables that each hold whole groups: the artifact itself if small, else hash partitions
    by ``group_id`` written to a temporary folder (bounded memory)."""
    parts = max(1, math.ceil(count_rows(artifact) / PART_ROWS))
    if parts == 1:
        yield read_table(artifact, columns=columns)
        return
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lfft-export-", dir=workdir) as tmp:
        paths = [Path(tmp) / f"part-{i}.parquet" for i in range(parts)]
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


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
