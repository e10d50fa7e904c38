"""``lfft inspect ARTIFACT``: schema, ``lfft`` metadata, counts, distributions and a few rows.

Works on every artifact (file or folder of parts) and on any other Parquet file; the
distributions shown depend on the columns present (signals, labels, scores, feedback kinds,
reject reasons, sources, splits). Columns are streamed, so large artifacts are fine.

Usage: ``lfft inspect splits/train.parquet --rows 5``
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lfft.io import artifact_files, count_rows, iter_batches, read_meta, read_schema
from lfft.schemas import ARTIFACTS, NORMALIZED, schema_problems

CELL_CHARS = 60
COUNTED = ("signal", "source", "reason", "stage", "split", "origin")  # value counts if present
ROW_COLUMNS = {
    "interactions": ["interaction_id", "session_id", "prompt", "response", "feedback"],
    "feedback": ["interaction_id", "prompt", "response", "score", "label", "signal", "weight"],
    "rejects": ["stage", "location", "reason", "detail", "raw"],
    "predictions": ["interaction_id", "prompt", "nll", "feedback_pred", "score", "generation"],
}
ROW_COLUMNS["clean"] = ROW_COLUMNS["interactions"]
ROW_COLUMNS["split"] = ROW_COLUMNS["feedback"]


def inspect(path: Path, rows: int = 5, console: Console | None = None) -> None:
    """Print what ``path`` holds."""
    console = console or Console()
    path = Path(path)
    files = artifact_files(path)
    schema = read_schema(path)
    meta = read_meta(path)
    kind = artifact_kind(schema, meta)
    n = count_rows(path)
    size = sum(f.stat().st_size for f in files)
    console.print(
        f"[bold]{path}[/bold]  {kind or 'parquet'}  {n:,} rows  "
        f"{len(files)} file{'s' * (len(files) != 1)}  {size / 1e6:.2f} MB"
    )
    console.print(_schema_table(schema))
    if meta:
        console.print(_meta_table(meta))
    for table in _distributions(path, schema):
        console.print(table)
    if rows > 0 and n:
        console.print(_rows_table(path, schema, kind, rows))


def artifact_kind(schema: pa.Schema, meta: dict[str, Any]) -> str | None:
    """The artifact kind, from its columns (and its producing stage, for look-alikes)."""
    stage = meta.get("stage")
    if not schema_problems(schema, NORMALIZED):
        return "split" if stage == "split" else "feedback"
    for name in ("interactions", "rejects", "metrics", "predictions"):
        if not schema_problems(schema, ARTIFACTS[name]):
            return "clean" if name == "interactions" and stage == "clean" else name
    return stage


def _schema_table(schema: pa.Schema) -> Table:
    table = Table(title="schema", title_justify="left")
    table.add_column("column", style="bold")
    table.add_column("type")
    table.add_column("null")
    for f in schema:
        table.add_row(
            escape(f.name), escape(_short(str(f.type), 90)), "yes" if f.nullable else "no"
        )
    return table


def _meta_table(meta: dict[str, Any]) -> Table:
    table = Table(title="lfft metadata", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key in ("stage", "version", "fingerprint", "counts", "inputs", "config"):
        if key in meta:
            table.add_row(key, escape(_short(_json(meta[key]), 400)))
    for key, value in meta.items():
        if key not in ("stage", "version", "fingerprint", "counts", "inputs", "config"):
            table.add_row(key, escape(_short(_json(value), 400)))
    return table


def _distributions(path: Path, schema: pa.Schema) -> list[Table]:
    names = set(schema.names)
    counted = [c for c in COUNTED if c in names and pa.types.is_string(schema.field(c).type)]
    numeric = [
        c
        for c in ("score", "weight", "nll", "feedback_pred", "loss")
        if c in names and pa.types.is_floating(schema.field(c).type)
    ]
    has_label = "label" in names and pa.types.is_integer(schema.field("label").type)
    has_feedback = "feedback" in names and pa.types.is_list(schema.field("feedback").type)
    columns = counted + numeric + ["label"] * has_label + ["feedback"] * has_feedback
    if not columns:
        return []
    counts = {c: Counter() for c in counted + ["label"] * has_label}
    kinds: Counter = Counter()
    stats = {c: [0, 0.0, math.inf, -math.inf] for c in numeric}  # n, sum, min, max
    for batch in iter_batches(path, columns=columns):
        for c in counts:
            counts[c].update(_counts(batch.column(c).value_counts()))
        for c in numeric:
            col = batch.column(c)
            valid = len(col) - col.null_count
            if valid:
                minmax = pc.min_max(col)
                s = stats[c]
                s[0] += valid
                s[1] += pc.sum(col).as_py()
                s[2] = min(s[2], minmax["min"].as_py())
                s[3] = max(s[3], minmax["max"].as_py())
        if has_feedback:
            flat = batch.column("feedback").flatten()
            if len(flat):
                vc = pc.struct_field(flat, "kind").value_counts()
                kinds.update(_counts(vc))
    tables = []
    for c, counter in counts.items():
        if not counter:
            continue
        if c == "label":
            names = {1: "1 (good)", 0: "0 (bad)", None: "null"}
            counter = Counter({names.get(k, str(k)): v for k, v in counter.items()})
        tables.append(_count_table(c, counter))
    if kinds:
        tables.append(_count_table("feedback kinds", kinds))
    if numeric:
        t = Table(title="numbers", title_justify="left")
        for head in ("column", "non-null", "mean", "min", "max"):
            t.add_column(head, justify="right" if head != "column" else "left")
        for c, (k, total, lo, hi) in stats.items():
            if k:
                t.add_row(c, f"{k:,}", f"{total / k:.4g}", f"{lo:.4g}", f"{hi:.4g}")
            else:
                t.add_row(c, "0", "-", "-", "-")
        tables.append(t)
    return tables


def _counts(vc: pa.StructArray) -> dict:
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))


def _count_table(title: str, counter: Counter) -> Table:
    total = sum(counter.values()) or 1
    table = Table(title=title, title_justify="left")
    table.add_column("value")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    for value, k in counter.most_common(20):
        table.add_row(escape(str(value)), f"{k:,}", f"{k / total:.1%}")
    if len(counter) > 20:
        table.add_row(f"... {len(counter) - 20} more", "", "")
    return table


def _rows_table(path: Path, schema: pa.Schema, kind: str | None, n: int) -> Table:
    wanted = ROW_COLUMNS.get(kind or "", schema.names[:8])
    columns = [c for c in wanted if c in schema.names] or schema.names[:8]
    rows = []
    for batch in iter_batches(path, columns=columns, batch_rows=max(n, 1)):
        rows.extend(batch.to_pylist())
        if len(rows) >= n:
            break
    table = Table(title=f"first {min(n, len(rows))} rows", title_justify="left")
    for c in columns:
        table.add_column(c, overflow="fold", max_width=CELL_CHARS)
    for row in rows[:n]:
        table.add_row(*(_cell(c, row[c]) for c in columns))
    return table


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "[dim]null[/dim]"
    if column == "feedback":
        return escape(_short(", ".join(_event(e) for e in value) or "-", CELL_CHARS))
    if column == "context":
        return f"{len(value)} turns"
    if column == "token_spans":
        modify = sum(1 for s in value if s["label"] == 0)
        return f"{len(value)} spans ({modify} modify)"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        value = _json(value)
    return escape(_short(str(value), CELL_CHARS))


def _event(event: dict[str, Any]) -> str:
    value = event.get("value")
    text = event.get("text")
    detail = f"{value:g}" if value is not None else (_short(text, 12) if text else "")
    return f"{event['kind']}:{detail}" if detail else event["kind"]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _short(text: str, limit: int) -> str:
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
