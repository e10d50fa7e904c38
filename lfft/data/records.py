"""What a format reader makes of one input *record* (a JSON object, a CSV or Parquet row):
``interactions`` rows as dicts (:func:`interaction`, :func:`feedback_event`), handed back as
:class:`Parsed`, or a :class:`Reject`. lfft-events lines are parsed into typed events instead
(:mod:`lfft.data.events`), which share :func:`parse_ts`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa

from lfft.schemas import INTERACTIONS

FEEDBACK_FIELDS = ("kind", "origin", "value", "text", "ts", "ref", "scale", "start", "end")


def stable_id(*parts: Any) -> str:
    """A short deterministic id from parts (for sources without their own ids)."""
    h = hashlib.blake2b(digest_size=10)
    for p in parts:
        h.update(repr(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()


def parse_ts(value: Any) -> datetime | None:
    """ISO-8601 string, epoch seconds or epoch milliseconds -> aware UTC datetime.

    Raises ``ValueError`` for anything else (callers turn that into a reject reason).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"bad timestamp {value!r}")
    if isinstance(value, int | float):
        secs = value / 1000.0 if abs(value) >= 1e11 else float(value)
        return datetime.fromtimestamp(secs, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    raise ValueError(f"bad timestamp {value!r}")


def feedback_event(
    kind: str,
    origin: str = "explicit",
    value: float | None = None,
    text: str | None = None,
    ts: datetime | None = None,
    ref: str | None = None,
    scale: float | None = None,
    start: int | None = None,
    end: int | None = None,
) -> dict[str, Any]:
    """One element of an interaction's ``feedback`` list."""
    return {
        "kind": kind,
        "origin": origin,
        "value": None if value is None else float(value),
        "text": text,
        "ts": ts,
        "ref": ref,
        "scale": None if scale is None else float(scale),
        "start": start,
        "end": end,
    }


def interaction(
    *,
    session_id: str,
    prompt: str,
    response: str,
    source: str,
    context: Sequence[Mapping[str, str]] = (),
    feedback: Iterable[Mapping[str, Any]] = (),
    interaction_id: str | None = None,
    user_id: str | None = None,
    ts: datetime | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """One ``interactions`` row as a dict; the id defaults to a hash of its content."""
    context = [{"role": m["role"], "content": m["content"]} for m in context]
    if interaction_id is None:
        interaction_id = stable_id(source, session_id, context, prompt, response)
    return {
        "interaction_id": interaction_id,
        "session_id": session_id,
        "user_id": user_id,
        "source": source,
        "ts": ts,
        "context": context,
        "prompt": prompt,
        "response": response,
        "model": model,
        "feedback": [dict(f) for f in feedback],
    }


def to_table(rows: list[dict[str, Any]], schema: pa.Schema = INTERACTIONS) -> pa.Table:
    """Rows (dicts) -> a table of ``schema``."""
    return pa.Table.from_pylist(rows, schema=schema)


class RowBuffer:
    """Accumulate row dicts and hand them out as tables of ``max_rows`` (bounded memory)."""

    def __init__(self, schema: pa.Schema = INTERACTIONS, max_rows: int = 16_384):
        self.schema = schema
        self.max_rows = max_rows
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> pa.Table | None:
        self.rows.append(row)
        if len(self.rows) >= self.max_rows:
            return self.drain()
        return None

    def drain(self) -> pa.Table | None:
        if not self.rows:
            return None
        table = to_table(self.rows, self.schema)
        self.rows = []
        return table


class Reject(NamedTuple):
    """One input record a reader could not use, with a short snake_case reason: a reject row
    (``schemas.REJECTS``) before the stage adds its name and the source file."""

    location: str
    reason: str
    raw: str | None = None
    detail: str | None = None


class Parsed(NamedTuple):
    """One input record a format reader understood: it becomes one or more interactions rows
    (an HH-RLHF record gives two: chosen and rejected). ``skipped`` notes the parts of the
    record the reader left out on purpose (an OpenAssistant message deleted by moderators),
    as reject rows (:class:`Reject`) that collect counts by reason."""

    location: str  # file:line (or file:index for JSON arrays)
    rows: list[dict[str, Any]]
    skipped: tuple[Reject, ...] = ()
