"""Which feedback event a numeric score becomes, decided per score *name* (Langfuse score name,
LangSmith feedback key), never per value: a 1 on a 1..5 scale is not a thumbs-up.

A format reader shows every numeric score to :meth:`ScoreKinds.observe` in its first pass, then
asks :meth:`ScoreKinds.event` for each score in its second. Per name, in this order:

1. ``--map kind.NAME=thumbs|rating`` and ``--map scale.NAME=N`` (or ``=LO..HI``), then
   ``--map scale=N`` for every name not set itself: what the user says;
2. every value a bool, or every value in {0, 1} or in {-1, 1}: ``thumbs`` (up when > 0);
3. every value in [0, 1]: a ``rating`` on the range 0..1;
4. every value an integer from 1 to 5, or 1 to 10: a ``rating`` on 1..5 or 1..10;
5. otherwise no scale can be told: each such score is a ``rating_without_scale`` reject.

Inferred kinds (2-4) are listed by :meth:`ScoreKinds.report` for collect's summary. A rating on
the range LO..HI is written as value ``v - LO + 1`` on a scale of ``HI - LO + 1`` (lfft's ratings
run from 1): normalize then scores it ``(v - LO) / (HI - LO)``, as the source meant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lfft.data.formats.common import BadRecord
from lfft.data.records import feedback_event
from lfft.errors import LfftError

KINDS = ("thumbs", "rating")
_COMMON_SCALES = (5.0, 10.0)


@dataclass
class _Seen:
    """What the first pass saw of one name's values."""

    count: int = 0
    bools: bool = True  # every value a bool
    lo: float = math.inf
    hi: float = -math.inf
    ints: bool = True  # every value an integer
    zero_one: bool = True  # every value 0 or 1
    sign: bool = True  # every value -1 or 1


@dataclass(frozen=True)
class Kind:
    """A name's decision: ``thumbs``, or ``rating`` on ``lo..hi``; ``how`` says where it came
    from (``--map`` or what was inferred); ``kind`` None when no scale can be told."""

    kind: str | None
    lo: float = 1.0
    hi: float = 5.0
    how: str = ""


class ScoreKinds:
    """Per-name decisions for numeric scores (see the module docstring)."""

    def __init__(self, column_map: Mapping[str, str] | None = None):
        self.kinds: dict[str, str] = {}
        self.scales: dict[str, tuple[float, float]] = {}
        self.default: tuple[float, float] | None = None
        for key, text in (column_map or {}).items():
            if key == "scale":
                self.default = parse_scale(key, text)
            elif key.startswith("scale."):
                self.scales[key[6:]] = parse_scale(key, text)
            elif key.startswith("kind."):
                kind = text.strip().lower()
                if kind not in KINDS:
                    raise LfftError(f"--map {key}={text}: the kind is one of {', '.join(KINDS)}")
                self.kinds[key[5:]] = kind
        self.seen: dict[str, _Seen] = {}
        self._decided: dict[str, Kind] = {}

    def observe(self, name: str, value: Any) -> None:
        """Pass 1: one numeric (or bool) value of ``name``; other values are ignored."""
        if not _is_number(value):
            return
        seen = self.seen.get(name)
        if seen is None:
            seen = self.seen[name] = _Seen()
        v = float(value)
        seen.count += 1
        seen.bools = seen.bools and isinstance(value, bool)
        seen.lo, seen.hi = min(seen.lo, v), max(seen.hi, v)
        seen.ints = seen.ints and v.is_integer()
        seen.zero_one = seen.zero_one and v in (0.0, 1.0)
        seen.sign = seen.sign and v in (-1.0, 1.0)

    def decide(self, name: str) -> Kind:
        """The decision for ``name`` (after pass 1)."""
        kind = self._decided.get(name)
        if kind is None:
            kind = self._decided[name] = self._decide(name)
        return kind

    def event(self, name: str, value: Any, ts: datetime | None = None) -> dict[str, Any]:
        """The feedback event for one numeric score; BadRecord if it has no usable kind."""
        if not _is_number(value):
            raise BadRecord("bad_score", f"score {name!r} is not a number: {value!r}")
        kind, v = self.decide(name), float(value)
        if kind.kind == "thumbs":
            return feedback_event("thumbs", value=float(v > 0), ts=ts)
        if kind.kind is None:
            raise BadRecord("rating_without_scale", f"{name!r}: {kind.how}")
        if not kind.lo <= v <= kind.hi:
            raise BadRecord("bad_rating", f"{name!r} = {v:g} is outside {_range(kind)}")
        return feedback_event("rating", value=v - kind.lo + 1, scale=kind.hi - kind.lo + 1, ts=ts)

    def report(self) -> dict[str, str]:
        """``{name: what its numbers became}`` for every name decided."""
        return {name: _describe(self._decided[name]) for name in sorted(self._decided)}

    def _decide(self, name: str) -> Kind:
        seen = self.seen.get(name, _Seen())
        forced = self.kinds.get(name)
        scale = self.scales.get(name, self.default)
        if forced == "thumbs" or (forced is None and scale is None and _binary(seen)):
            how = "--map" if forced else f"inferred from {seen.count:,} values"
            return Kind("thumbs", how=how)
        if scale is not None:
            return Kind("rating", *scale, how="--map")
        seen_range = f"{seen.count:,} values from {seen.lo:g} to {seen.hi:g}"
        if seen.lo >= 0 and seen.hi <= 1:
            return Kind("rating", 0.0, 1.0, how=f"inferred from {seen_range}")
        if seen.ints and seen.lo >= 1:
            for top in _COMMON_SCALES:
                if seen.hi <= top:
                    return Kind("rating", 1.0, top, how=f"inferred from {seen_range}")
        hint = f"pass --map scale.{name}=N (1..N) or =LO..HI"
        return Kind(None, how=f"no scale for {seen_range}; {hint}")


def parse_scale(key: str, text: str) -> tuple[float, float]:
    """``"10"`` -> (1, 10); ``"0..4"`` -> (0, 4); LfftError for anything else."""
    lo_text, sep, hi_text = text.strip().partition("..")
    try:
        lo, hi = (float(lo_text), float(hi_text)) if sep else (1.0, float(lo_text))
    except ValueError:
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise LfftError(f"--map {key}={text}: write N (a scale 1..N, N > 1) or LO..HI (LO < HI)")
    return lo, hi


def _binary(seen: _Seen) -> bool:
    return seen.count > 0 and (seen.bools or seen.zero_one or seen.sign)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _range(kind: Kind) -> str:
    return f"{kind.lo:g}..{kind.hi:g}"


def _describe(kind: Kind) -> str:
    if kind.kind is None:
        return f"rejected ({kind.how})"
    what = "thumbs" if kind.kind == "thumbs" else f"rating {_range(kind)}"
    return f"{what} ({kind.how})"
