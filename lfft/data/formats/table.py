"""Tables with a column map: CSV, TSV, Parquet (and JSON records) whose columns you name.

``--map prompt=question,response=answer,rating=stars`` maps lfft names (left) to the file's
columns (right); an lfft name without a mapping is looked up as a column of the same name.

========================  ========================================================
lfft name                 becomes
========================  ========================================================
prompt (required)         the prompt
response                  the response (required unless chosen + rejected)
chosen, rejected          a pair of rows instead of one response
context                   earlier turns: a JSON list of {role, content}
system                    a system turn before the context
session_id, user_id,      the same columns (session defaults to a hash of
interaction_id, ts, model context + prompt)
rating, scale             ``rating`` event; ``scale`` is a column or a number
                          (``scale=10``); without one normalize's default applies
thumbs, label             ``thumbs`` event (true/false, 1/0, up/down, yes/no)
comment                   ``comment`` event (a critique)
edit                      ``edit`` event (the corrected response)
========================  ========================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lfft.data.formats import sources
from lfft.data.formats.common import (
    BadRecord,
    Row,
    as_bool,
    as_number,
    messages,
    pair_rows,
    read_records,
    session_of,
    timestamp,
)
from lfft.data.records import Parsed, Reject, feedback_event, interaction
from lfft.errors import LfftError

NAME = "table"
KEYS = (
    "prompt",
    "response",
    "chosen",
    "rejected",
    "context",
    "system",
    "session_id",
    "user_id",
    "interaction_id",
    "ts",
    "model",
    "rating",
    "scale",
    "thumbs",
    "label",
    "comment",
    "edit",
)


def looks_like(rec: dict[str, Any]) -> bool:
    """JSON records in the table layout (``prompt`` + ``response`` or chosen/rejected)."""
    return "prompt" in rec and ("response" in rec or {"chosen", "rejected"} <= rec.keys())


def read(path: Path, column_map: Mapping[str, str] | None = None) -> Iterator[Parsed | Reject]:
    """Stream the rows of a table through the column map (validated before the first row:
    a bad map is an :class:`LfftError`, not a reject per row)."""
    mapping = resolve(column_map or {}, sources.columns(path), path)

    def parse(rec: dict[str, Any]) -> list[Row]:
        return parse_row(rec, mapping)

    return read_records(path, parse)


def resolve(
    column_map: Mapping[str, str], columns: list[str] | None, path: Path | str = "input"
) -> dict[str, str | float]:
    """lfft name -> column (or, for ``scale``, a number). Errors name the fix."""
    unknown = sorted(set(column_map) - set(KEYS))
    if unknown:
        raise LfftError(f"--map: unknown name(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    mapping: dict[str, str | float] = {k: k for k in KEYS if columns is None or k in columns}
    for key, col in column_map.items():
        if key == "scale" and _is_number(col) and (columns is None or col not in columns):
            mapping[key] = float(col)
        elif columns is not None and col not in columns:
            raise LfftError(
                f"{path}: --map {key}={col}: no column {col!r} (columns: {', '.join(columns)})"
            )
        else:
            mapping[key] = col
    if columns is not None:
        has_response = "response" in mapping or {"chosen", "rejected"} <= mapping.keys()
        if "prompt" not in mapping or not has_response:
            raise LfftError(
                f"{path}: need a prompt and a response (or chosen + rejected) column; "
                f"columns: {', '.join(columns)}; map them with --map prompt=COL,response=COL"
            )
    return mapping


def parse_row(rec: Mapping[str, Any], mapping: Mapping[str, str | float]) -> list[Row]:
    def get(key: str) -> Any:
        col = mapping.get(key)
        return col if isinstance(col, float) else rec.get(col) if col is not None else None

    prompt = get("prompt")
    if not isinstance(prompt, str):
        raise BadRecord("missing_prompt", f"no text in column {mapping.get('prompt')!r}")
    context = _context(get("context"))
    if isinstance(get("system"), str) and get("system"):
        context.insert(0, {"role": "system", "content": get("system")})
    session = _opt_text(get("session_id")) or session_of(context, prompt)
    common = {
        "user_id": _opt_text(get("user_id")),
        "ts": timestamp(get("ts")),
        "model": _opt_text(get("model")),
    }
    chosen, rejected = get("chosen"), get("rejected")
    if chosen is not None or rejected is not None:
        if not (isinstance(chosen, str) and isinstance(rejected, str)):
            raise BadRecord("missing_response", "a pair needs text in both chosen and rejected")
        return pair_rows(NAME, context, prompt, chosen, rejected, session_id=session, **common)
    response = get("response")
    if not isinstance(response, str):
        raise BadRecord("missing_response", f"no text in column {mapping.get('response')!r}")
    return [
        interaction(
            interaction_id=_opt_text(get("interaction_id")),
            session_id=session,
            prompt=prompt,
            response=response,
            source=NAME,
            context=context,
            feedback=_feedback(get),
            **common,
        )
    ]


def _feedback(get) -> list[dict[str, Any]]:
    events = []
    if get("rating") is not None:
        scale = None if get("scale") is None else as_number(get("scale"), "bad_scale")
        events.append(feedback_event("rating", value=as_number(get("rating")), scale=scale))
    for key in ("thumbs", "label"):
        if get(key) is not None:
            events.append(feedback_event("thumbs", value=float(as_bool(get(key)))))
    if isinstance(get("comment"), str) and get("comment").strip():
        events.append(feedback_event("comment", text=get("comment")))
    if isinstance(get("edit"), str) and get("edit").strip():
        events.append(feedback_event("edit", text=get("edit")))
    return events


def _context(value: Any) -> list[dict[str, str]]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadRecord("bad_context", "context is not a JSON list of messages") from None
    return messages(value)


def _opt_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
