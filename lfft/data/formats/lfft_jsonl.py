"""lfft's own rows as JSON (what ``lfft export --format jsonl`` writes): read back losslessly.

A record has the ``interactions`` columns (``prompt``, ``response``, ``context``, ``feedback``,
ids, ...); columns that ``normalize`` adds (``score``, ``label``, ...) are ignored: they are
derived again from the feedback events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lfft.data.formats.common import (
    BadRecord,
    Row,
    as_number,
    messages,
    optional_text,
    session_of,
    text_field,
)
from lfft.data.formats.common import timestamp as ts_of
from lfft.data.records import FEEDBACK_FIELDS, feedback_event, interaction

NAME = "lfft"


def looks_like(rec: dict[str, Any]) -> bool:
    return "prompt" in rec and "response" in rec and ("feedback" in rec or "interaction_id" in rec)


def parse(rec: dict[str, Any]) -> list[Row]:
    prompt = text_field(rec, "prompt", "missing_prompt")
    response = text_field(rec, "response", "missing_response")
    context = messages(rec["context"]) if rec.get("context") else []
    fb = rec.get("feedback") or []
    if not isinstance(fb, list):
        raise BadRecord("bad_feedback", "'feedback' is not a list")
    return [
        interaction(
            interaction_id=_opt_str(rec, "interaction_id"),
            session_id=_opt_str(rec, "session_id") or session_of(context, prompt),
            prompt=prompt,
            response=response,
            source=_opt_str(rec, "source") or NAME,
            context=context,
            feedback=[_event(e) for e in fb],
            user_id=_opt_str(rec, "user_id"),
            ts=ts_of(rec.get("ts")),
            model=_opt_str(rec, "model"),
        )
    ]


def _opt_str(rec: Mapping[str, Any], key: str) -> str | None:
    return optional_text(rec.get(key), key)


def _event(e: Any) -> dict[str, Any]:
    if not isinstance(e, Mapping) or not isinstance(e.get("kind"), str):
        raise BadRecord("bad_feedback", "a feedback event without a 'kind'")
    unknown = set(e) - set(FEEDBACK_FIELDS)
    if unknown:
        raise BadRecord("bad_feedback", f"unknown feedback fields {sorted(unknown)}")

    def num(key: str) -> float | None:
        return None if e.get(key) is None else as_number(e[key], "bad_feedback")

    def pos(key: str) -> int | None:
        if e.get(key) is None:
            return None
        offset = as_number(e[key], "bad_feedback")
        if not (offset.is_integer() and 0 <= offset < 2**31):
            raise BadRecord("bad_feedback", f"{key!r} = {e[key]!r} is not a character offset")
        return int(offset)

    def text(key: str) -> str | None:
        return optional_text(e.get(key), key, "bad_feedback")

    return feedback_event(
        e["kind"],
        origin=text("origin") or "explicit",
        value=num("value"),
        text=text("text"),
        ts=ts_of(e.get("ts")),
        ref=text("ref"),
        scale=num("scale"),
        start=pos("start"),
        end=pos("end"),
    )
