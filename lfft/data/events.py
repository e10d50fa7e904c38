"""The native ``lfft-events`` v1 format: one line -> one record.

:func:`parse_line` turns a line into a compact *record* tuple (cheap to keep in memory and to
spill to disk with ``marshal``) or raises :class:`EventError` with a reject reason;
:func:`render` writes a record as a line again. Joining the records of a session into
interactions rows is :mod:`lfft.data.join`. ``docs/collect.md`` tables every reason.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from lfft.data.records import parse_ts

ROLES = frozenset({"system", "user", "assistant"})
FEEDBACK_KINDS = frozenset({"thumbs", "rating", "label", "comment", "edit", "preference"})
ACTION_KINDS = frozenset({"copy", "regenerate", "click", "share", "stop", "dwell_ms"})
DEFAULT_SCALE = 5.0

# Record layouts (plain tuples: marshal can spill them, and they are small).
MSG, FB = 0, 1
# common to both: (type, session_id, file_index, line, event_id, message_id, ...)
TYPE, SID, FILE, LINE, EID, MID = range(6)
# message: ..., parent_id, role, content, ts_ms, model, user_id
PARENT, ROLE, CONTENT, MTS, MODEL, USER = range(6, 12)
# feedback/action: ..., kind, origin, value, text, ts_ms, ref (a message id), scale, raw line
KIND, ORIGIN, VALUE, TEXT, FTS, REF, SCALE, RAW = range(6, 14)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_THUMBS = {"up": 1.0, "down": 0.0}
# The one copy of each role/kind string: records share it instead of holding their own.
_NAMES = {name: name for name in ROLES | FEEDBACK_KINDS | ACTION_KINDS}
_ROLE_NAMES = {name: name for name in ROLES}
_MIN_MS, _MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # years 1..9999
_LINE_ENDS = frozenset(("\n", "\r\n"))
_scan = json.JSONDecoder().scan_once  # the C scanner behind json.loads, without its wrappers
_fromiso = datetime.fromisoformat


class EventError(Exception):
    """A line that is not a usable event: ``reason`` is the reject reason."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# --- parsing one line --------------------------------------------------------------------------


def parse_line(line: bytes, file_index: int, line_no: int) -> tuple:
    """One line of lfft-events -> a message or feedback record; :class:`EventError` if unusable.

    The line may still end with its ``\n`` (or ``\r\n``): JSON allows whitespace after a
    value, and the reader saves a copy of every line by not stripping it.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventError("invalid_utf8", f"byte {e.start} is not UTF-8 ({e.reason})") from None
    try:
        obj, end = _scan(text, 0)
        if end != len(text) and text[end:] not in _LINE_ENDS:
            raise ValueError
    except (StopIteration, ValueError, RecursionError):
        if not line or line.isspace():  # checked here, off the path of every good line
            raise EventError("blank_line", "an empty line is not an event") from None
        obj = _loads(text)
    if type(obj) is not dict:
        raise EventError("not_an_object", f"{_tname(obj)}, expected a JSON object")
    rec = parse_event(obj, file_index, line_no, text)
    if "\\" in text and "\\u" in text:  # one-character search first: much faster
        _check_encodable(rec)
    return rec


def _loads(text: str) -> Any:
    """The slow path of :func:`parse_line`: leading BOM/whitespace, trailing text, errors."""
    if text.endswith("\n"):  # errors then point into the line, not at its end
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if text[:1] == "\ufeff":
        text = text[1:]
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise EventError("malformed_json", str(e)[:200]) from None


def parse_event(obj: dict[str, Any], file_index: int, line_no: int, raw: str = "") -> tuple:
    """A decoded event object -> record (see the layouts above)."""
    event = obj.get("event")
    if event is None:
        raise EventError("missing_field", "no 'event' field")
    sid = obj.get("session_id")
    if type(sid) is not str or not sid:
        sid = _id(obj, "session_id")
    eid = obj.get("id")
    if eid is not None and (type(eid) is not str or not eid):
        eid = _id(obj, "id", required=False)
    if event == "message":
        return _message(obj, sid, eid, file_index, line_no)
    if event == "feedback" or event == "action":
        return _feedback(obj, event, sid, eid, file_index, line_no, raw)
    if type(event) is not str:
        raise EventError("wrong_type", f"'event' must be a string, got {_tname(event)}")
    raise EventError("unknown_event", f"{_short(event)}; expected message, feedback or action")


def _message(obj: dict, sid: str, eid: str | None, fi: int, ln: int) -> tuple:
    get = obj.get
    mid = get("message_id")
    if type(mid) is not str or not mid:
        mid = _id(obj, "message_id")
    parent = get("parent_id")
    if parent is not None and (type(parent) is not str or not parent):
        parent = _id(obj, "parent_id", required=False)
    role = get("role")
    role = _ROLE_NAMES.get(role) if type(role) is str else _missing_or_wrong("role", role)
    if role is None:
        raise EventError(
            "unknown_role", f"role {_short(get('role'))}; expected system, user or assistant"
        )
    content = get("content")
    if type(content) is not str:
        _missing_or_wrong("content", content)
    model = get("model")
    if model is not None and type(model) is not str:
        raise EventError("wrong_type", f"'model' must be a string, got {_tname(model)}")
    meta = get("meta")
    if meta is not None and type(meta) is not dict:
        raise EventError("wrong_type", f"'meta' must be an object, got {_tname(meta)}")
    user = get("user_id")
    if user is not None and (type(user) is not str or not user):
        user = _id(obj, "user_id", required=False)
    ts = get("ts")
    if ts is not None:
        ts = _ts(ts)
    return (MSG, sid, fi, ln, eid, mid, parent, role, content, ts, model, user)


def _feedback(obj: dict, event: str, sid: str, eid: str | None, fi: int, ln: int, raw: str):
    mid = obj.get("message_id")
    if type(mid) is not str or not mid:
        mid = _id(obj, "message_id")
    kind = obj.get("kind")
    if type(kind) is not str:
        _missing_or_wrong("kind", kind)
    if event == "feedback":
        if kind not in FEEDBACK_KINDS:
            hint = " (an action kind: send it as event 'action')" if kind in ACTION_KINDS else ""
            raise EventError("unknown_kind", f"feedback kind {_short(kind)}{hint}")
        value, text, ref, scale = _feedback_value(kind, obj)
        origin = "explicit"
    else:
        if kind not in ACTION_KINDS:
            raise EventError("unknown_kind", f"action kind {_short(kind)}")
        value, text = _action_value(kind, obj)
        ref = scale = None
        origin = "behavioral"
    ts = _ts(obj.get("ts"))
    kind = _NAMES[kind]
    return (FB, sid, fi, ln, eid, mid, kind, origin, value, text, ts, ref, scale, raw)


def _feedback_value(kind: str, obj: dict) -> tuple[float | None, str | None, str | None, Any]:
    """(value, text, ref, scale) of an explicit feedback event."""
    v = obj.get("value")
    if kind == "thumbs":
        return _thumbs(v), None, None, None
    if kind == "rating":
        scale = obj.get("scale")
        scale = DEFAULT_SCALE if scale is None else _number(scale, "scale")
        if not scale > 1:
            raise EventError("bad_value", f"rating scale {scale!r} must be above 1")
        value = _number(v, "rating")
        if not 1 <= value <= scale:
            raise EventError("bad_value", f"rating {value!r} is outside 1..{scale:g}")
        return value, None, None, scale
    if kind == "preference":
        if v is None:
            return None, None, None, None
        if type(v) is int or (type(v) is str and v):
            return None, None, str(v), None
        raise EventError("bad_value", f"preference value must be a message id, got {_tname(v)}")
    # label, comment, edit: text
    if type(v) is not str:
        _missing_or_wrong("value", v, reason="bad_value", what=f"{kind} value")
    if not v.strip():
        raise EventError("bad_value", f"empty {kind}")
    return None, v, None, None


def _action_value(kind: str, obj: dict) -> tuple[float | None, str | None]:
    v = obj.get("value")
    if kind == "dwell_ms":
        if v is None:
            raise EventError("missing_field", "dwell_ms needs a numeric 'value'")
        value = _number(v, "dwell_ms")
        if value < 0:
            raise EventError("bad_value", f"dwell_ms {value!r} is negative")
        return value, None
    if v is None:
        return None, None
    if type(v) is str:
        return None, v
    if type(v) is bool:
        return float(v), None
    return _number(v, f"{kind} value"), None


def _thumbs(v: Any) -> float:
    if v is True or v is False:
        return float(v)
    if type(v) is str:
        hit = _THUMBS.get(v.strip().lower())
        if hit is not None:
            return hit
    elif type(v) in (int, float) and v in (1, 0, -1):
        return 1.0 if v == 1 else 0.0
    if v is None:
        raise EventError("missing_field", "thumbs needs a 'value'")
    raise EventError("bad_value", f"thumbs {v!r}; expected up/down, true/false or 1/0/-1")


def _number(v: Any, what: str) -> float:
    if type(v) is int or type(v) is float:
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if math.isfinite(f):
            return f
        raise EventError("bad_value", f"{what} {v!r} is not a finite number")
    if v is None:
        raise EventError("missing_field", f"{what} needs a value")
    raise EventError("bad_value", f"{what} {_short(v)} is not a number")


def _id(obj: dict, key: str, required: bool = True) -> str | None:
    v = obj.get(key)
    t = type(v)
    if t is str and v:
        return v
    if t is int:
        return str(v)
    if v is None or v == "":
        if required:
            raise EventError("missing_field", f"no {key!r}")
        return None
    raise EventError("wrong_type", f"{key!r} must be a string or integer, got {_tname(v)}")


def _ts(v: Any) -> int | None:
    """A timestamp (ISO-8601, epoch s or ms) -> epoch milliseconds."""
    if v is None:
        return None
    t = type(v)
    try:
        if t is str:  # the common cases inline; parse_ts handles the rest and the errors
            dt = _fromiso(v)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return (dt - _EPOCH) // _MS
        if t is int:
            ms = v * 1000 if -100_000_000_000 < v < 100_000_000_000 else v
            if _MIN_MS <= ms <= _MAX_MS:
                return ms
    except ValueError:
        pass
    try:
        return (parse_ts(v) - _EPOCH) // _MS
    except (ValueError, OverflowError, OSError, TypeError):
        raise EventError("bad_timestamp", f"ts {_short(v)} is not ISO-8601 or epoch") from None


def _missing_or_wrong(key: str, v: Any, reason: str = "wrong_type", what: str = "") -> NoReturn:
    if v is None:
        raise EventError("missing_field", f"no {key!r}")
    raise EventError(reason, f"{what or repr(key)} must be a string, got {_tname(v)}")


def _check_encodable(rec: tuple) -> None:
    """Lone surrogates from ``\\ud800`` escapes cannot be written as UTF-8."""
    for v in rec:
        if type(v) is str:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise EventError("invalid_utf8", "a \\u escape encodes a lone surrogate") from None


def _tname(v: Any) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", str: "a string"}.get(
        type(v), "a number" if isinstance(v, int | float) else type(v).__name__
    )


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def render(rec: tuple) -> str:
    """A record as an lfft-events line again (the ``raw`` of rejects decided after the join)."""
    if rec[TYPE] == FB:
        raw = rec[RAW]  # the line as read, perhaps with its line end
        if raw.endswith("\n"):
            return raw[:-2] if raw.endswith("\r\n") else raw[:-1]
        return raw
    obj = {
        "event": "message",
        "session_id": rec[SID],
        "message_id": rec[MID],
        "parent_id": rec[PARENT],
        "role": rec[ROLE],
        "content": rec[CONTENT],
    }
    for key, i in (("id", EID), ("ts", MTS), ("model", MODEL), ("user_id", USER)):
        if rec[i] is not None:
            obj[key] = rec[i]
    return json.dumps(obj, ensure_ascii=False)
