"""Checks of the fields of one lfft-events line: each returns what collect keeps of a value
or raises :class:`EventError` with the reject reason (``docs/collect.md`` tables them)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from lfft.data.records import parse_ts

DEFAULT_SCALE = 5.0  # a rating without a scale is out of 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_THUMBS = {"up": 1.0, "down": 0.0}
_MIN_MS, _MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # years 1..9999
_fromiso = datetime.fromisoformat


class EventError(Exception):
    """A line that is not a usable event: ``reason`` is the reject reason."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def feedback_value(kind: str, v: Any, scale: Any) -> tuple[float | None, str | None, Any, Any]:
    """(value, text, ref, scale) of an explicit feedback event."""
    if kind == "thumbs":
        return thumbs(v), None, None, None
    if kind == "rating":
        scale = DEFAULT_SCALE if scale is None else number(scale, "scale")
        if not scale > 1:
            raise EventError("bad_value", f"rating scale {scale!r} must be above 1")
        value = number(v, "rating")
        if not 1 <= value <= scale:
            raise EventError("bad_value", f"rating {value!r} is outside 1..{scale:g}")
        return value, None, None, scale
    if kind == "preference":
        if v is None:
            return None, None, None, None
        if type(v) is int or (type(v) is str and v):
            return None, None, str(v), None
        raise EventError("bad_value", f"preference value must be a message id, got {type_name(v)}")
    # label, comment, edit: text
    if type(v) is not str:
        missing_or_wrong("value", v, reason="bad_value", what=f"{kind} value")
    if not v.strip():
        raise EventError("bad_value", f"empty {kind}")
    return None, v, None, None


def action_value(kind: str, v: Any) -> tuple[float | None, str | None]:
    if kind == "dwell_ms":
        if v is None:
            raise EventError("missing_field", "dwell_ms needs a numeric 'value'")
        value = number(v, "dwell_ms")
        if value < 0:
            raise EventError("bad_value", f"dwell_ms {value!r} is negative")
        return value, None
    if v is None:
        return None, None
    if type(v) is str:
        return None, v
    if type(v) is bool:
        return float(v), None
    return number(v, f"{kind} value"), None


def thumbs(v: Any) -> float:
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


def number(v: Any, what: str) -> float:
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
    raise EventError("bad_value", f"{what} {short(v)} is not a number")


def check_id(v: Any, key: str, required: bool = True) -> str | None:
    """An id field's value as a string (integers accepted); None or an error if absent."""
    t = type(v)
    if t is str and v:
        return v
    if t is int:
        return str(v)
    if v is None or v == "":
        if required:
            raise EventError("missing_field", f"no {key!r}")
        return None
    raise EventError("wrong_type", f"{key!r} must be a string or integer, got {type_name(v)}")


def timestamp_ms(v: Any) -> int | None:
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
        raise EventError("bad_timestamp", f"ts {short(v)} is not ISO-8601 or epoch") from None


def missing_or_wrong(key: str, v: Any, reason: str = "wrong_type", what: str = "") -> NoReturn:
    if v is None:
        raise EventError("missing_field", f"no {key!r}")
    raise EventError(reason, f"{what or repr(key)} must be a string, got {type_name(v)}")


def type_name(v: Any) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", str: "a string"}.get(
        type(v), "a number" if isinstance(v, int | float) else type(v).__name__
    )


def short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."
