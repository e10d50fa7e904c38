"""One row's feedback events -> its unified feedback (score, weight, signal, target, spans).

The rules (``docs/feedback.md``): ``score`` comes from the strongest tier present (explicit >
implicit > behavioral); within it, judgements (thumbs, rating, label, emoji, preference, rank)
beat the score derived from an edit or error spans (0 if they change or mark anything, else 1);
among judgements ``conflict="latest"`` takes the newest event (events at the same time, or
without times, are averaged) and ``conflict="mean"`` averages them all. ``signal`` is the
strongest kind in that tier; ``target`` is the newest edit; ``token_spans`` cover the response
(word diff against the edit, plus ``span`` events as modify); ``critique`` joins comments.
Events that cannot be used are ignored: their reason is appended to ``ignored``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lfft.data.diff import MODIFY, diff_spans, spans_from_modified
from lfft.data.feedback_map import (
    SIGNAL_OF_KIND,
    SIGNAL_STRENGTH,
    TIER_RANK,
    TOKEN_KINDS,
    FeedbackMap,
    Observation,
)

UNLABELED_WEIGHT = 1.0  # rows without signal only take part in LM-only objectives
_ROW_KINDS = frozenset(("preference", "emoji", "edit", "span", "comment"))  # need the whole row


@dataclass
class RowFeedback:
    """The unified feedback of one row (before it becomes columns)."""

    score: float | None = None
    weight: float = UNLABELED_WEIGHT
    signal: str = "none"
    target: str | None = None  # None: the response
    spans: list[dict[str, int]] = field(default_factory=list)
    critique: str | None = None


def resolve_row(
    events: list[dict[str, Any]],
    response: str,
    extra: list[Observation],
    fmap: FeedbackMap,
    ignored: list[str],
) -> RowFeedback:
    """One row's events (plus cross-row preference observations) -> its unified feedback;
    appends the reason of each event it ignores to ``ignored``."""
    observations = list(extra)
    emoji, edits, span_ranges, comments = [], [], [], []
    span_tier = None
    for order, event in enumerate(events):
        kind = event["kind"]
        if kind not in _ROW_KINDS:
            obs = fmap.observe(event)
            if obs.__class__ is str:
                ignored.append(obs)
            elif obs is not None:
                observations.append(obs)
        elif kind == "emoji":
            emoji.append(event)
        elif kind == "edit":
            if event.get("text"):
                when = _when(event.get("ts"), order)
                edits.append((when, event["text"], fmap.tier(event), event.get("ts")))
            else:
                ignored.append("empty_edit")
        elif kind == "span":
            start, end = event.get("start"), event.get("end")
            if start is None or end is None or not 0 <= start < end <= len(response):
                ignored.append("span_out_of_range")
            else:
                span_ranges.append((start, end))
                span_tier = span_tier or fmap.tier(event)
        elif kind == "comment" and event.get("text"):
            comments.append((_when(event.get("ts"), order), event["text"]))
        # preference: resolved across rows in _preference_marks; empty comments: nothing
    if emoji:
        obs, bad = fmap.emoji(emoji)
        ignored += bad
        if obs is not None:
            observations.append(obs)

    row = RowFeedback(critique="\n\n".join(t for _, t in sorted(comments)) or None)
    if edits or span_ranges:
        observations.append(_token_observation(row, response, edits, span_ranges, span_tier))
    if len(observations) == 1:
        o = observations[0]
        row.score, row.weight, row.signal = o.score, fmap.weights[o.tier], o.signal
    elif observations:
        top = min(TIER_RANK[o.tier] for o in observations)
        in_tier = [o for o in observations if TIER_RANK[o.tier] == top]
        judged = [o for o in in_tier if o.kind not in TOKEN_KINDS] or in_tier
        score = judged[0].score if len(judged) == 1 else _pick(judged, fmap.cfg.conflict)
        row.score = min(1.0, max(0.0, score))
        row.weight = fmap.weights[in_tier[0].tier]
        row.signal = max((o.signal for o in in_tier), key=SIGNAL_STRENGTH.__getitem__)
    return row


def _token_observation(
    row: RowFeedback,
    response: str,
    edits: list[tuple],
    span_ranges: list[tuple[int, int]],
    span_tier: str | None,
) -> Observation:
    """Set the row's target and token spans from its newest edit and its error spans.

    The derived score is 0 when anything was changed or marked (the response as written was
    not acceptable; ``target`` holds the fix), 1 when an edit left it as it was.
    """
    modified = list(span_ranges)
    tier, ts = span_tier or "explicit", None
    if edits:
        _, text, tier, ts = max(edits, key=lambda e: e[0])
        row.target = text
        spans = diff_spans(response, text)
        modified += [(s["start"], s["end"]) for s in spans if s["label"] == MODIFY]
    row.spans = spans_from_modified(len(response), modified)
    changed = bool(span_ranges) or row.target != response
    kind = "edit" if edits else "span"
    return Observation(tier, kind, 0.0 if changed else 1.0, SIGNAL_OF_KIND[kind], ts)


def _pick(observations: list[Observation], policy: str) -> float:
    """The newest observations (``latest``) or all (``mean``), averaged per kind, then across
    kinds: thirteen OASST labels do not outvote one rank."""
    if policy == "latest":
        times = [o.ts for o in observations if o.ts is not None]
        if times:
            newest = max(times)
            observations = [o for o in observations if o.ts == newest]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for o in observations:
        by_kind[o.kind].append(o.score)
    return sum(sum(v) / len(v) for v in by_kind.values()) / len(by_kind)


def _when(ts: int | None, order: int) -> tuple:
    """Sort key: events without a time count as older than timed ones, then list order."""
    return (ts is not None, ts or 0, order)
