"""Open WebUI's feedback export and chat export read together (see :mod:`.groups`).

Three passes, memory bounded by two on-disk tables (:class:`.groups.Stash`):

1. every feedback record is checked and its events are stored by (chat, message): a bad record
   is rejected here; when several records rate one message, the latest ``updated_at`` wins and
   the others are ``duplicate_feedback`` rejects (the user changed their rating);
2. every chat of the chat export gives its replies (feedback from the feedback records where
   there is one, else the message's ``annotation``); the replies written are remembered;
3. every feedback record again: a rated reply already written (by the chat export, which counts
   as *joined*, or by an earlier feedback record) leaves nothing more to write; otherwise its
   snapshot gives the reply and its siblings not yet written. A record without a snapshot whose
   chat is not in the chat export is a ``no_snapshot`` reject; a reply in neither is
   ``message_not_found``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from lfft.data.formats import openwebui as owui
from lfft.data.formats.common import BadRecord, Rows, parse_one, timestamp
from lfft.data.formats.groups import Stash
from lfft.data.formats.jsonio import JsonRecord
from lfft.data.formats.sources import records
from lfft.data.records import Parsed, Reject

FROM_CHAT, FROM_FEEDBACK = "chat", "feedback"


def read_group(files: dict[str, list[Path]], cfg: Any = None) -> Iterator[Parsed | Reject]:
    """One Parsed or Reject per record of every feedback and chat file; returns
    ``{"joined": feedback records whose reply came from the chat export}``."""
    joined = 0
    with Stash() as ratings, Stash() as written:

        def lookup(chat_id: str, message_id: str) -> tuple[list, int] | None:
            found = ratings.get(_key(chat_id, message_id))
            if not found:
                return None
            latest = _latest(found)
            return [_load(e) for e in latest["events"]], latest["sign"]

        for rec in _records(files.get("feedback", [])):  # pass 1
            fb = _feedback(rec)
            if isinstance(fb, Reject):
                yield fb
                continue
            entry = {"loc": rec.location, "sign": fb.sign, "updated": fb.updated}
            ratings.add(_key(fb.chat_id, fb.message_id), {**entry, "events": _dump(fb.events)})

        for rec in _records(files.get("chat", [])):  # pass 2
            if rec.error is not None:
                yield Reject(rec.location, rec.error, rec.raw, rec.detail)
                continue
            yield parse_one(rec.location, rec.value, rec.raw, _chat_parser(lookup, written))

        for rec in _records(files.get("feedback", [])):  # pass 3
            fb = _feedback(rec)
            if isinstance(fb, Reject):
                continue  # rejected in pass 1
            key = _key(fb.chat_id, fb.message_id)
            latest = _latest(ratings.get(key))
            if latest["loc"] != rec.location:
                why = f"{latest['loc']} rates the same reply later"
                yield Reject(rec.location, "duplicate_feedback", rec.raw, why)
                continue
            by = written.get(key)
            if by:
                joined += by[0] == FROM_CHAT
                yield Parsed(rec.location, [])  # its events are on the row written before
                continue
            yield _from_snapshot(rec, fb, lookup, written)
    return {"joined": joined}


def _records(paths: list[Path]) -> Iterator[JsonRecord]:
    for path in paths:
        yield from records(path)


def _feedback(rec: JsonRecord) -> owui.Feedback | Reject:
    """A feedback record checked, or its reject (the same verdict in passes 1 and 3)."""
    if rec.error is not None:
        return Reject(rec.location, rec.error, rec.raw, rec.detail)
    found: list[owui.Feedback] = []

    def check(value: dict) -> list:
        if not owui.is_feedback(value):
            raise BadRecord("not_feedback", "a record of a feedback export that is not a rating")
        found.append(owui.feedback_of(value))
        return []

    item = parse_one(rec.location, rec.value, rec.raw, check)
    return found[0] if isinstance(item, Parsed) else item


def _chat_parser(lookup, written: Stash):
    """``parse`` for a chat export record: every reply, remembered as written."""

    def parse(value: dict) -> Rows:
        if not owui.is_chat(value):
            raise BadRecord("not_a_chat", "a record of a chat export without id and chat history")
        chat_id, chat = owui.chat_of(value)
        rows = owui.chat_rows(chat_id, chat, lookup, None, user_id=value.get("user_id"))
        written.add(f"chat:{chat_id}", FROM_CHAT)
        for row in rows:
            written.add(row["interaction_id"], FROM_CHAT)
        return rows

    return parse


def _from_snapshot(rec: JsonRecord, fb: owui.Feedback, lookup, written: Stash) -> Parsed | Reject:
    """The rated reply and its siblings not yet written, from the record's snapshot."""
    if fb.chat is None:
        if f"chat:{fb.chat_id}" in written:
            why = f"chat {fb.chat_id!r} of the chat export has no reply {fb.message_id!r}"
            return Reject(rec.location, "message_not_found", rec.raw, why)
        why = f"no snapshot, and chat {fb.chat_id!r} is not in a chat export given with it"
        return Reject(rec.location, "no_snapshot", rec.raw, why)

    def parse(value: dict) -> Rows:
        def seen(mid: str) -> bool:
            return _key(fb.chat_id, mid) in written

        rows = owui.chat_rows(fb.chat_id, fb.chat, lookup, [fb.message_id], seen, fb.user_id)
        for row in rows:
            written.add(row["interaction_id"], FROM_FEEDBACK)
        return rows

    return parse_one(rec.location, rec.value, rec.raw, parse)


def _key(chat_id: str, message_id: str) -> str:
    return f"{chat_id}:{message_id}"


def _latest(entries: list[dict]) -> dict:
    """The entry with the latest ``updated`` (the last one among equals)."""
    best = entries[0]
    for e in entries[1:]:
        if e["updated"] >= best["updated"]:
            best = e
    return best


def _dump(events: list[dict]) -> list[dict]:
    return [
        {**e, "ts": e["ts"].isoformat() if isinstance(e["ts"], datetime) else None} for e in events
    ]


def _load(event: dict) -> dict:
    return {**event, "ts": timestamp(event["ts"])}
