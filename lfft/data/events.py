"""The native ``lfft-events`` v1 format: one line -> one typed event.

Two sets of types: the *wire* structs (:class:`WireMessage`, :class:`WireFeedback`,
:class:`WireAction`) are the JSON objects of ``docs/design.md``, decoded by msgspec straight from
the line's bytes (several times faster than ``json.loads``, and no dict is built); the *events*
(:class:`Message`, :class:`Feedback`) are what collect keeps of a line: checked, ids as strings,
timestamps as epoch milliseconds, and where the line was read.

:func:`parse_line` turns a line into an event or raises :class:`EventError` with a reject
reason. A line msgspec cannot decode into a wire struct (bad JSON, a field of the wrong type, a
BOM, ``NaN``...) takes the slow path: ``json`` and the same checks, which name the reason.
:func:`render` writes an event as a line again. Joining the events of a session into
interactions rows is :mod:`lfft.data.join`. ``docs/collect.md`` tables every reason.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from lfft.data.event_checks import (
    EventError,
    action_value,
    check_id,
    feedback_value,
    missing_or_wrong,
    short,
    timestamp_ms,
    type_name,
)

ROLES = frozenset({"system", "user", "assistant"})
FEEDBACK_KINDS = frozenset({"thumbs", "rating", "label", "comment", "edit", "preference"})
ACTION_KINDS = frozenset({"copy", "regenerate", "click", "share", "stop", "dwell_ms"})

Role = Literal["system", "user", "assistant"]
Id = str | int  # an id may be sent as an integer; it is kept as a string
Timestamp = str | int | float  # ISO-8601, epoch seconds or epoch milliseconds


# --- the wire format: one JSON object per line ------------------------------------------------


class WireMessage(msgspec.Struct, tag_field="event", tag="message", gc=False):
    """``{"event": "message", ...}``: one turn of a conversation. Every field is optional to
    the decoder: :func:`parse_line` checks presence, so that it can name what is missing."""

    session_id: Id | None = None
    message_id: Id | None = None
    parent_id: Id | None = None
    role: Role | None = None
    content: str | None = None
    ts: Timestamp | None = None
    model: str | None = None
    user_id: Id | None = None
    id: Id | None = None
    meta: dict | None = None


class WireFeedback(msgspec.Struct, tag_field="event", tag="feedback", gc=False):
    """``{"event": "feedback", ...}``: a judgement of the assistant message ``message_id``;
    ``value`` (and ``scale``) depend on ``kind``."""

    session_id: Id | None = None
    message_id: Id | None = None
    kind: str | None = None
    value: Any = None
    scale: Any = None
    ts: Timestamp | None = None
    id: Id | None = None


class WireAction(WireFeedback, tag="action"):
    """``{"event": "action", ...}``: what the user did with ``message_id``."""


_WIRE: dict[str, type[WireMessage | WireFeedback]] = {
    "message": WireMessage,
    "feedback": WireFeedback,
    "action": WireAction,
}
_decode_wire = msgspec.json.Decoder(WireMessage | WireFeedback | WireAction).decode


# --- events: what collect keeps of a line ------------------------------------------------------
# array_like: a partition spilled to disk is a msgpack array per event (compact and fast); tags
# tell the two kinds apart there. gc=False: events hold no cycles, and millions of them are live.


class Message(msgspec.Struct, array_like=True, gc=False, tag=0):
    """A message line, checked."""

    session_id: str
    file: int  # index of the input file
    line: int  # 1-based line number
    event_id: str | None  # the line's ``id``
    message_id: str
    parent_id: str | None
    role: Role
    content: str
    ts: int | None  # epoch milliseconds
    model: str | None
    user_id: str | None

    def same_message(self, other: Message) -> bool:
        """Whether ``other`` is this message delivered again (same fields, any line)."""
        return (
            self.message_id == other.message_id
            and self.parent_id == other.parent_id
            and self.role == other.role
            and self.content == other.content
            and self.ts == other.ts
            and self.model == other.model
            and self.user_id == other.user_id
        )


class Feedback(msgspec.Struct, array_like=True, gc=False, tag=1):
    """A feedback or action line, checked: one element of its row's ``feedback`` list to be
    (``schemas.FEEDBACK_EVENT``)."""

    session_id: str
    file: int
    line: int
    event_id: str | None
    message_id: str  # the message it is about
    kind: str
    origin: Literal["explicit", "behavioral"]
    value: float | None
    text: str | None
    ts: int | None
    ref: str | None  # preference: the message id of the sibling it beat
    scale: float | None
    raw: bytes  # the line as read (rejected after the join, it is written back as it came)

    def content_key(self) -> tuple:
        """What makes two deliveries without an event id the same event."""
        return (
            self.message_id,
            self.kind,
            self.origin,
            self.value,
            self.text,
            self.ts,
            self.ref,
            self.scale,
        )


Event = Message | Feedback

# The one copy of each kind string: events share it instead of holding their own.
_KINDS = {name: name for name in FEEDBACK_KINDS | ACTION_KINDS}
_ROLE_NAMES = {name: name for name in ROLES}
_LINE_ENDS = frozenset(("\n", "\r\n"))
_scan = json.JSONDecoder().scan_once  # the C scanner behind json.loads, without its wrappers


# --- parsing one line --------------------------------------------------------------------------


def parse_line(line: bytes, file_index: int, line_no: int) -> Event:
    """One line of lfft-events -> a :class:`Message` or :class:`Feedback`; :class:`EventError`
    if unusable.

    The line may still end with its ``\n`` (or ``\r\n``): JSON allows whitespace after a
    value, and the reader saves a copy of every line by not stripping it.
    """
    try:
        if not line.isascii():  # msgspec checks the UTF-8 of the values it keeps, not the rest
            line.decode("utf-8")
        wire = _decode_wire(line)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return _parse_slow(line, file_index, line_no)
    if type(wire) is WireMessage:
        return _message(wire, file_index, line_no)
    return _feedback(wire, file_index, line_no, line)


def _parse_slow(line: bytes, file_index: int, line_no: int) -> Event:
    """A line the wire types do not describe: decode it with ``json`` and check it field by
    field, which names the reason when it is unusable (and accepts what JSON and the format
    allow beyond the wire types: a BOM, ``NaN``, lone surrogates in ignored fields)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventError("invalid_utf8", f"byte {e.start} is not UTF-8 ({e.reason})") from None
    try:
        obj, end = _scan(text, 0)
        if end != len(text) and text[end:] not in _LINE_ENDS:
            raise ValueError
    except (StopIteration, ValueError, RecursionError):
        if not line or line.isspace():
            raise EventError("blank_line", "an empty line is not an event") from None
        obj = _loads(text)
    rec = parse_event(obj, file_index, line_no, line)
    if "\\u" in text:
        _check_encodable(rec)
    return rec


def parse_event(obj: Any, file_index: int = 0, line_no: int = 0, raw: bytes = b"") -> Event:
    """A decoded event object -> a :class:`Message` or :class:`Feedback`, with the checks every
    line gets (:class:`EventError` if unusable); for events made in code (``lfft serve``)."""
    if type(obj) is not dict:
        raise EventError("not_an_object", f"{type_name(obj)}, expected a JSON object")
    event = obj.get("event")
    if event is None:
        raise EventError("missing_field", "no 'event' field")
    wire_type = _WIRE.get(event) if type(event) is str else None
    if wire_type is None:  # the session and event ids are checked first, as for any event
        check_id(obj.get("session_id"), "session_id")
        check_id(obj.get("id"), "id", required=False)
        if type(event) is not str:
            raise EventError("wrong_type", f"'event' must be a string, got {type_name(event)}")
        raise EventError("unknown_event", f"{short(event)}; expected message, feedback or action")
    wire = wire_type(**{name: obj.get(name) for name in wire_type.__struct_fields__})
    if wire_type is WireMessage:
        rec: Event = _message(wire, file_index, line_no)
    else:
        rec = _feedback(wire, file_index, line_no, raw)
    if not raw:  # made in code: its strings were never checked as UTF-8
        _check_encodable(rec)
    return rec


def _loads(text: str) -> Any:
    """``json.loads`` of a line the scanner refused: leading BOM/whitespace, trailing text,
    errors."""
    if text.endswith("\n"):  # errors then point into the line, not at its end
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if text[:1] == "\ufeff":
        text = text[1:]
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise EventError("malformed_json", str(e)[:200]) from None


def _ids(w: WireMessage | WireFeedback) -> tuple[str, str | None, str]:
    """The session id, event id and message id every event has, checked in that order."""
    sid, eid, mid = w.session_id, w.id, w.message_id
    if type(sid) is not str or not sid:
        sid = check_id(sid, "session_id")
    if eid is not None and (type(eid) is not str or not eid):
        eid = check_id(eid, "id", required=False)
    if type(mid) is not str or not mid:
        mid = check_id(mid, "message_id")
    return sid, eid, mid


def _message(w: WireMessage, fi: int, ln: int) -> Message:
    """A decoded message -> :class:`Message`, its fields checked in the order of the format."""
    sid, eid, mid = _ids(w)
    parent = w.parent_id
    if parent is not None and (type(parent) is not str or not parent):
        parent = check_id(parent, "parent_id", required=False)
    role = w.role
    role = _ROLE_NAMES.get(role) if type(role) is str else missing_or_wrong("role", role)
    if role is None:
        raise EventError(
            "unknown_role", f"role {short(w.role)}; expected system, user or assistant"
        )
    content = w.content
    if type(content) is not str:
        missing_or_wrong("content", content)
    model = w.model
    if model is not None and type(model) is not str:
        raise EventError("wrong_type", f"'model' must be a string, got {type_name(model)}")
    meta = w.meta
    if meta is not None and type(meta) is not dict:
        raise EventError("wrong_type", f"'meta' must be an object, got {type_name(meta)}")
    user = w.user_id
    if user is not None and (type(user) is not str or not user):
        user = check_id(user, "user_id", required=False)
    ts = w.ts
    if ts is not None:
        ts = timestamp_ms(ts)
    return Message(sid, fi, ln, eid, mid, parent, role, content, ts, model, user)


def _feedback(w: WireFeedback, fi: int, ln: int, raw: bytes) -> Feedback:
    """A decoded feedback or action -> :class:`Feedback`."""
    sid, eid, mid = _ids(w)
    kind = w.kind
    if type(kind) is not str:
        missing_or_wrong("kind", kind)
    if type(w) is WireFeedback:
        if kind not in FEEDBACK_KINDS:
            hint = " (an action kind: send it as event 'action')" if kind in ACTION_KINDS else ""
            raise EventError("unknown_kind", f"feedback kind {short(kind)}{hint}")
        value, text, ref, scale = feedback_value(kind, w.value, w.scale)
        origin = "explicit"
    else:
        if kind not in ACTION_KINDS:
            raise EventError("unknown_kind", f"action kind {short(kind)}")
        value, text = action_value(kind, w.value)
        ref = scale = None
        origin = "behavioral"
    ts = timestamp_ms(w.ts)
    return Feedback(sid, fi, ln, eid, mid, _KINDS[kind], origin, value, text, ts, ref, scale, raw)


def _check_encodable(rec: Event) -> None:
    """Lone surrogates from ``\\ud800`` escapes cannot be written as UTF-8 (msgspec refuses
    them, so only the slow path meets them)."""
    for v in msgspec.structs.astuple(rec):
        if type(v) is str:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise EventError("invalid_utf8", "a \\u escape encodes a lone surrogate") from None


def render(event: Event) -> str:
    """An event as an lfft-events line again (the ``raw`` of rejects decided after the join)."""
    if type(event) is Feedback:
        raw = event.raw  # the line as read, perhaps with its line end
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        return raw.decode("utf-8")
    obj = {
        "event": "message",
        "session_id": event.session_id,
        "message_id": event.message_id,
        "parent_id": event.parent_id,
        "role": event.role,
        "content": event.content,
    }
    for key, value in (
        ("id", event.event_id),
        ("ts", event.ts),
        ("model", event.model),
        ("user_id", event.user_id),
    ):
        if value is not None:
            obj[key] = value
    return json.dumps(obj, ensure_ascii=False)
