"""How every feedback kind maps onto a score in [0, 1]: the defaults, in one place.

``docs/feedback.md`` tables the same mapping. Each valid event becomes an :class:`Observation`
(tier, kind, score, signal, time); :mod:`lfft.data.normalize` resolves a row's observations
into ``score``/``label``/``weight``/``signal``. Defaults here, overrides in
:class:`lfft.config.NormalizeConfig` (``label_scores``, ``kind_scores``, the dwell thresholds,
the tier weights, the default rating scale).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from lfft.config import NormalizeConfig

TIERS = ("explicit", "implicit", "behavioral")  # strongest first: a higher tier always wins
TIER_RANK = {tier: i for i, tier in enumerate(TIERS)}

# Explicit judgements (every other scored kind) beat the score derived from edits and spans.
TOKEN_KINDS = ("edit", "span")

# Signal per kind (others: binary), and their strength: the strongest present is the row's.
SIGNAL_OF_KIND = {
    "thumbs": "binary",
    "label": "binary",  # "scalar" when the label carries a value in [0, 1]
    "rating": "scalar",
    "emoji": "scalar",
    "preference": "pairwise",
    "rank": "pairwise",
    "edit": "token",
    "span": "token",
}
SIGNAL_STRENGTH = {"none": 0, "binary": 1, "scalar": 2, "pairwise": 3, "token": 4}

# Kinds whose score is fixed (behavioural actions, implicit signals). dwell_ms has thresholds.
KIND_SCORES = {
    # behavioural
    "copy": 1.0,
    "click": 1.0,
    "share": 1.0,
    "regenerate": 0.0,
    "stop": 0.0,
    # implicit (inferred by collect from the user's next message)
    "thanks": 1.0,
    "rephrase": 0.0,
    "complaint": 0.0,
}
DEFAULT_ORIGIN = {
    "copy": "behavioral",
    "click": "behavioral",
    "share": "behavioral",
    "regenerate": "behavioral",
    "stop": "behavioral",
    "dwell_ms": "behavioral",
    "thanks": "implicit",
    "rephrase": "implicit",
    "complaint": "implicit",
}

# Label name -> score. A label with a value v in [0, 1] (OASST label scores) scores v for a
# positive label (score >= 0.5 here) and 1 - v for a negative one, except that a negative label
# at 0 (the defect is absent) gives no score. Unlisted labels carry no polarity (humor,
# creativity, ...) and are ignored.
_POSITIVE_LABELS = (
    "helpful correct good accurate harmless safe relevant useful on-topic quality helpfulness "
    "correctness coherence clear concise complete informative polite honesty truthfulness "
    "instruction_following harmlessness"
)
_NEGATIVE_LABELS = (
    "unhelpful wrong incorrect bad inaccurate harmful unsafe off-topic irrelevant toxic "
    "toxicity spam fails_task lang_mismatch pii not_appropriate hate_speech sexual_content "
    "violence verbose unclear confusing incomplete outdated repetitive rude missing_answer "
    "missing_major_auxiliary missing_minor_auxiliary"
)
LABEL_SCORES = {
    **{name: 1.0 for name in _POSITIVE_LABELS.split()},
    **{name: 0.0 for name in _NEGATIVE_LABELS.split()},
}

# OASST emoji reactions: value = count of people who reacted.
EMOJI_POLARITY = {"+1": 1, "thumbs_up": 1, "heart": 1, "-1": -1, "thumbs_down": -1, "red_flag": -1}


class Observation(NamedTuple):
    """One usable judgement of a response."""

    tier: str  # explicit|implicit|behavioral
    kind: str
    score: float  # in [0, 1]
    signal: str  # binary|scalar|pairwise|token
    ts: int | None = None  # epoch milliseconds; only the order matters


class FeedbackMap:
    """The mapping under one config: ``observe(event) -> Observation | None | reason``."""

    def __init__(self, cfg: NormalizeConfig):
        self.cfg = cfg
        self.label_scores = {_name(k): v for k, v in {**LABEL_SCORES, **cfg.label_scores}.items()}
        self.kind_scores = {**KIND_SCORES, **cfg.kind_scores}
        self.weights = {
            "explicit": cfg.explicit_weight,
            "implicit": cfg.implicit_weight,
            "behavioral": cfg.behavioral_weight,
        }
        self._handlers = {
            "thumbs": self._thumbs,
            "rating": self._rating,
            "rank": self._rank,
            "label": self._label,
            "comment": lambda event, tier: None,
            "dwell_ms": self._dwell,
        }

    def tier(self, event: dict[str, Any]) -> str:
        origin = event.get("origin")
        if origin in TIERS:
            return origin
        return DEFAULT_ORIGIN.get(event["kind"], "explicit")

    def observe(self, event: dict[str, Any]) -> Observation | str | None:
        """The event's observation; ``None`` if it carries no score (a comment, a neutral
        dwell); a snake_case reason string if it is invalid or unknown (then it is ignored).

        Edits, spans, emoji and preferences need the whole row and are handled by normalize.
        """
        handler = self._handlers.get(event["kind"], self._fixed)
        return handler(event, self.tier(event))

    def _thumbs(self, event: dict[str, Any], tier: str) -> Observation | str:
        value = event.get("value")
        if value not in (1.0, 0.0, -1.0):
            return "invalid_thumbs"
        return Observation(
            tier, "thumbs", float(value > 0), SIGNAL_OF_KIND["thumbs"], event.get("ts")
        )

    def _rating(self, event: dict[str, Any], tier: str) -> Observation | str:
        value, scale = event.get("value"), event.get("scale") or self.cfg.rating_scale
        if not _finite(value) or not _finite(scale) or scale <= 1 or not 1 <= value <= scale:
            return "invalid_rating"
        score = (value - 1) / (scale - 1)
        return Observation(tier, "rating", score, SIGNAL_OF_KIND["rating"], event.get("ts"))

    def _rank(self, event: dict[str, Any], tier: str) -> Observation | str:
        value, scale = event.get("value"), event.get("scale")
        if not _finite(value) or not _finite(scale) or scale < 2:
            return "invalid_rank"
        if not (0 <= value <= scale - 1 and float(value).is_integer()):
            return "invalid_rank"
        score = 1 - value / (scale - 1)
        return Observation(tier, "rank", score, SIGNAL_OF_KIND["rank"], event.get("ts"))

    def _dwell(self, event: dict[str, Any], tier: str) -> Observation | str | None:
        value = event.get("value")
        if not _finite(value) or value < 0:
            return "invalid_dwell"
        if value >= self.cfg.dwell_positive_ms:
            return Observation(tier, "dwell_ms", 1.0, "binary", event.get("ts"))
        if value < self.cfg.dwell_negative_ms:
            return Observation(tier, "dwell_ms", 0.0, "binary", event.get("ts"))
        return None

    def _fixed(self, event: dict[str, Any], tier: str) -> Observation | str:
        score = self.kind_scores.get(event["kind"])
        if score is None:
            return "unknown_kind"
        return Observation(tier, event["kind"], float(score), "binary", event.get("ts"))

    def emoji(self, events: list[dict[str, Any]]) -> tuple[Observation | None, list[str]]:
        """All emoji reactions of a row as one observation: positive share of the reactions."""
        pos = neg = 0.0
        ignored, last = [], None
        for event in events:
            polarity = EMOJI_POLARITY.get(event.get("text") or "")
            count = 1.0 if event.get("value") is None else event["value"]
            if polarity is None:
                ignored.append("unknown_emoji")
            elif not _finite(count) or count < 0:
                ignored.append("invalid_emoji")
            else:
                pos, neg = (pos + count, neg) if polarity > 0 else (pos, neg + count)
                ts = event.get("ts")
                last = ts if last is None or (ts is not None and ts > last) else last
        if pos + neg == 0:
            return None, ignored
        tier = self.tier(events[0])
        score = pos / (pos + neg)
        return Observation(tier, "emoji", score, SIGNAL_OF_KIND["emoji"], last), ignored

    def _label(self, event: dict[str, Any], tier: str) -> Observation | str | None:
        name = _name(event.get("text") or "")
        if name not in self.label_scores:
            return "unknown_label"
        base = float(self.label_scores[name])
        value = event.get("value")
        if value is None:
            return Observation(tier, "label", base, SIGNAL_OF_KIND["label"], event.get("ts"))
        if not _finite(value) or not 0 <= value <= 1:
            return "invalid_label_value"
        if base < 0.5 and value == 0:
            return None  # "not spam": a defect that is absent says nothing about quality
        score = value if base >= 0.5 else 1 - value
        return Observation(tier, "label", score, "scalar", event.get("ts"))


def _name(label: str) -> str:
    return label.strip().lower().replace(" ", "_").replace("-", "_")


def _finite(x: Any) -> bool:
    return x is not None and x.__class__ is not bool and math.isfinite(x)
