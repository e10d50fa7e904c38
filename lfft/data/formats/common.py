"""What every format reader shares: chat-message handling, pairs, the record loop.

A reader is a function ``parse(record: dict) -> list[row]`` that raises :class:`BadRecord` (a
short snake_case reason) for a record it cannot use; :func:`read_records` runs it over a file's
records and yields one :class:`Parsed` or :class:`Reject` per record, so a caller's count of
records always equals parsed + rejected.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lfft.data.formats.sources import records
from lfft.data.records import Parsed, Reject, feedback_event, interaction, parse_ts, stable_id

Row = dict[str, Any]
Message = dict[str, str]

# Role names of the common chat layouts -> lfft's three roles. Tool traffic has no role of its
# own in lfft: a tool's output is input to the model (user), a function call is model output.
ROLES = {
    "user": "user",
    "human": "user",
    "prompter": "user",
    "observation": "user",
    "tool": "user",
    "function": "user",
    "ipython": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "function_call": "assistant",
    "system": "system",
    "developer": "system",
}

# Exceptions that mean "this record does not have the shape the reader expects".
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


class BadRecord(Exception):
    """A record a reader cannot use: ``reason`` is the reject reason (snake_case)."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


def read_records(path: Path, parse: Callable[[dict], list[Row]]) -> Iterator[Parsed | Reject]:
    """Run ``parse`` over every record of a file (JSON, JSONL, CSV, Parquet): one Parsed or
    Reject each."""
    for rec in records(path):
        if rec.error is not None:
            yield Reject(rec.location, rec.error, rec.raw, rec.detail)
            continue
        yield parse_one(rec.location, rec.value, rec.raw, parse)


def parse_one(
    location: str, value: Any, raw: str | None, parse: Callable[[dict], list[Row]]
) -> Parsed | Reject:
    """Apply ``parse`` to one decoded record, turning every shape problem into a Reject."""
    if not isinstance(value, dict):
        return Reject(location, "not_an_object", _clip(raw, value), f"a {type(value).__name__}")
    try:
        rows = parse(value)
    except BadRecord as e:
        return Reject(location, e.reason, _clip(raw, value), e.detail)
    except SHAPE_ERRORS as e:
        return Reject(location, "bad_record", _clip(raw, value), f"{type(e).__name__}: {e}")
    skipped = getattr(rows, "skipped", ())
    return Parsed(location, rows, tuple(Reject(location, r, None, d) for r, d in skipped))


class Rows(list):
    """A reader's rows, plus the parts of its record it left out on purpose: ``skipped``, a
    list of ``(reason, detail)`` that collect counts by reason (see ``Parsed.skipped``)."""

    def __init__(self, rows: list[Row], skipped: list[tuple[str, str]]):
        super().__init__(rows)
        self.skipped = skipped


def _clip(raw: str | None, value: Any) -> str:
    """The reject's raw text (table rows have none: their values as JSON), cut to 2,000 chars."""
    return (raw if raw is not None else dumps(value))[:2_000]


# --- fields ----------------------------------------------------------------------------------


def text_field(record: Mapping[str, Any], key: str, reason: str | None = None) -> str:
    """``record[key]`` as a string, or BadRecord(``missing_<key>``)."""
    value = record.get(key)
    if not isinstance(value, str):
        why = "absent" if value is None else f"a {type(value).__name__}, not text"
        raise BadRecord(reason or f"missing_{key}", f"{key!r} is {why}")
    return value


def optional_text(value: Any, what: str, reason: str = "bad_record") -> str | None:
    """None, or a string; anything else is BadRecord(``reason``) naming ``what``."""
    if value is None or isinstance(value, str):
        return value
    raise BadRecord(reason, f"{what!r} is a {type(value).__name__}, not text")


def as_bool(value: Any, reason: str = "bad_label") -> bool:
    """A binary label: true/false, 1/0 (also as strings), up/down, yes/no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, int | float) and value == -1:
        return False
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1", "up", "yes", "good", "positive", "desirable", "+1"):
            return True
        if v in ("false", "0", "-1", "down", "no", "bad", "negative", "undesirable"):
            return False
    raise BadRecord(reason, f"not a binary label: {value!r}")


def as_number(value: Any, reason: str = "bad_rating") -> float:
    """A number (also from a numeric string); BadRecord(``reason``) otherwise."""
    if isinstance(value, bool):
        raise BadRecord(reason, f"not a number: {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise BadRecord(reason, f"not a number: {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise BadRecord(reason, f"not a finite number: {value!r}")
    return number


def timestamp(value: Any) -> datetime | None:
    """A source timestamp (ISO string, epoch, datetime); BadRecord(``bad_ts``) if unreadable."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    try:
        return parse_ts(value)
    except (ValueError, OverflowError, OSError) as e:
        raise BadRecord("bad_ts", str(e)) from None


# --- chat messages ---------------------------------------------------------------------------


def message(m: Any) -> Message:
    """One chat message from OpenAI (role/content) or ShareGPT (from/value) style."""
    if not isinstance(m, Mapping):
        raise BadRecord("bad_messages", f"a message is a {type(m).__name__}, not an object")
    role = m.get("role", m.get("from"))
    content = m.get("content", m.get("value"))
    if not isinstance(role, str) or role.lower() not in ROLES:
        raise BadRecord("bad_messages", f"unknown role {role!r}")
    return {"role": ROLES[role.lower()], "content": content_text(content)}


def content_text(content: Any) -> str:
    """Message content: a string, or OpenAI-style parts whose text parts are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise BadRecord("bad_messages", "content part without text")
        return "".join(parts)
    raise BadRecord("bad_messages", f"content is a {type(content).__name__}")


def messages(value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise BadRecord("bad_messages", "expected a non-empty list of messages")
    return [message(m) for m in value]


def split_prompt(msgs: Sequence[Message]) -> tuple[list[Message], str]:
    """A prompt conversation -> (context, prompt): the last turn must be the user's."""
    if not msgs or msgs[-1]["role"] != "user":
        raise BadRecord("missing_prompt", "the prompt does not end with a user turn")
    return list(msgs[:-1]), msgs[-1]["content"]


def split_conversation(msgs: Sequence[Message]) -> tuple[list[Message], str, str]:
    """A whole conversation -> (context, prompt, response).

    prompt = the last user turn; context = every turn before it; response = the assistant
    turns after it (joined by a blank line when there are several, e.g. a tool call and the
    answer).
    """
    last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
    if last_user is None:
        raise BadRecord("missing_prompt", "no user turn in the conversation")
    replies = [m["content"] for m in msgs[last_user + 1 :] if m["role"] == "assistant"]
    if not replies:
        raise BadRecord("missing_response", "no assistant turn after the last user turn")
    return list(msgs[:last_user]), msgs[last_user]["content"], "\n\n".join(replies)


def session_of(context: Sequence[Message], prompt: str) -> str:
    """The session of a record without a conversation id: a hash of its context + prompt,
    so that the two sides of a pair (and responses to the same prompt) share it."""
    return stable_id("session", [(m["role"], m["content"]) for m in context], prompt)


# --- rows ------------------------------------------------------------------------------------


def pair_rows(
    source: str,
    context: Sequence[Message],
    prompt: str,
    chosen: str,
    rejected: str,
    session_id: str | None = None,
    value: float | None = None,
    **common: Any,
) -> list[Row]:
    """Two rows, chosen first, whose ``preference`` event points at the rejected row."""
    if chosen == rejected:
        raise BadRecord("identical_pair", "chosen and rejected responses are the same text")
    sid = session_id or session_of(context, prompt)
    loser = interaction(
        session_id=sid, prompt=prompt, response=rejected, source=source, context=context, **common
    )
    pref = feedback_event("preference", value=value, ref=loser["interaction_id"])
    winner = interaction(
        session_id=sid,
        prompt=prompt,
        response=chosen,
        source=source,
        context=context,
        feedback=[pref],
        **common,
    )
    return [winner, loser]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
