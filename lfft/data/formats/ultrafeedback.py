"""UltraFeedback (openbmb/UltraFeedback): one instruction, several completions rated by GPT-4.

A record: ``instruction``, ``completions`` = [{``model``, ``response``, ``annotations``:
{aspect: {``Rating``: "1".."5" or "N/A", ``Rationale``}}, ``critique``, ``overall_score``,
``custom_system_prompt``, ``principle``}]. The four aspects are helpfulness, honesty,
instruction_following and truthfulness.

Rows: one per completion, in one session. Each row gets a ``rating`` (scale 5) equal to the mean
of its available aspect ratings (the "fine-grained score" the UltraFeedback authors build their
preference pairs from), one ``label`` per aspect (text = aspect, value = (rating - 1) / 4 in
0..1), the ``critique`` as a ``comment``, and a ``rank`` among the completions (0 = best mean,
ties share a rank, scale = completions with a rating): pairs follow from those in normalize and
``lfft export --format trl-dpo``. ``overall_score`` (1..10) is not used: it was found faulty
upstream (fixed in Dec. 2023) and duplicates the ratings. The per-completion
``custom_system_prompt`` is left out of the context so all completions share one prompt.
This is AI feedback (GPT-4), recorded with origin ``explicit`` like the other datasets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lfft.data.formats.common import BadRecord, Row, as_number, session_of, text_field
from lfft.data.records import feedback_event, interaction, stable_id

NAME = "ultrafeedback"
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def looks_like(rec: dict[str, Any]) -> bool:
    comps = rec.get("completions")
    return (
        "instruction" in rec
        and isinstance(comps, list)
        and bool(comps)
        and isinstance(comps[0], Mapping)
        and "response" in comps[0]
    )


def parse(rec: dict[str, Any]) -> list[Row]:
    prompt = text_field(rec, "instruction", "missing_prompt")
    comps = rec.get("completions")
    if not isinstance(comps, list) or not comps:
        raise BadRecord("missing_response", "no completions")
    session = session_of([], prompt)
    scored = [_scores(c) for c in comps]
    means = [sum(s.values()) / len(s) if s else None for s in scored]
    ranked = [m for m in means if m is not None]
    rows = []
    for i, (comp, aspects, mean) in enumerate(zip(comps, scored, means, strict=True)):
        response = text_field(comp, "response", "missing_response")
        events = []
        if mean is not None:
            events.append(feedback_event("rating", value=mean, scale=5, text="fine-grained"))
            rank = sum(1 for m in ranked if m > mean)
            events.append(feedback_event("rank", value=rank, scale=len(ranked)))
        for aspect, rating in aspects.items():
            events.append(feedback_event("label", value=(rating - 1) / 4, text=aspect))
        critique = comp.get("critique")
        if isinstance(critique, str) and critique.strip():
            events.append(feedback_event("comment", text=critique))
        rows.append(
            interaction(
                interaction_id=stable_id(NAME, session, i, response),
                session_id=session,
                prompt=prompt,
                response=response,
                source=NAME,
                feedback=events,
                model=comp.get("model") if isinstance(comp.get("model"), str) else None,
            )
        )
    return rows


def _scores(comp: Any) -> dict[str, float]:
    """The aspect ratings of one completion that are numbers ("N/A" is skipped)."""
    if not isinstance(comp, Mapping):
        raise BadRecord("bad_completion", "a completion is not an object")
    annotations = comp.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise BadRecord("bad_completion", "'annotations' is not an object")
    out = {}
    for aspect in ASPECTS:
        ann = annotations.get(aspect)
        if isinstance(ann, list):  # an early release stored one-element lists
            ann = ann[0] if ann else None
        rating = ann.get("Rating") if isinstance(ann, Mapping) else None
        if rating in (None, "N/A", ""):
            continue
        value = as_number(rating, "bad_rating")
        if not 1 <= value <= 5:
            raise BadRecord("bad_rating", f"{aspect} rating {value} outside 1..5")
        out[aspect] = value
    return out
