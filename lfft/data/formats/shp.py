"""Stanford Human Preferences (SHP, SHP-2): a Reddit post and two top-level comments.

Fields: ``post_id``, ``history`` (the post: the prompt), ``human_ref_A`` / ``human_ref_B`` (the
comments: responses), ``c_root_id_A`` / ``c_root_id_B`` (comment ids), ``created_at_utc_A/B``,
``score_A`` / ``score_B`` (upvotes), ``labels`` (1: A preferred, 0: B preferred) and
``score_ratio`` (preferred score / other score, >= 2 by construction in SHP).

Rows: a pair in the post's session; interaction_id = ``post_id/comment_id`` so the same comment
compared in several records is the same response. The ``preference`` event's ``value`` is the
score ratio (>= 1): the strength of the preference, which normalize may use as the pair's weight
(the SHP authors recommend keeping pairs with ratio >= 2 and capping how many per post).
"""

from __future__ import annotations

from typing import Any

from lfft.data.formats.common import BadRecord, Row, as_number, text_field, timestamp
from lfft.data.records import feedback_event, interaction

NAME = "shp"


def looks_like(rec: dict[str, Any]) -> bool:
    return "human_ref_A" in rec and "human_ref_B" in rec


def parse(rec: dict[str, Any]) -> list[Row]:
    prompt = text_field(rec, "history", "missing_prompt")
    text = {s: text_field(rec, f"human_ref_{s}", "missing_response") for s in "AB"}
    label = rec.get("labels")
    if label not in (0, 1) or isinstance(label, bool):
        raise BadRecord("bad_label", f"'labels' must be 1 (A preferred) or 0 (B), got {label!r}")
    win, lose = ("A", "B") if label == 1 else ("B", "A")
    if text[win] == text[lose]:
        raise BadRecord("identical_pair", "both comments are the same text")
    post = str(rec.get("post_id") or "")
    if not post:
        raise BadRecord("missing_id", "no post_id")
    ids = {s: f"{post}/{rec.get(f'c_root_id_{s}') or s}" for s in "AB"}
    pref = feedback_event("preference", value=_ratio(rec, win, lose), ref=ids[lose])
    return [
        interaction(
            interaction_id=ids[s],
            session_id=post,
            prompt=prompt,
            response=text[s],
            source=NAME,
            feedback=[pref] if s == win else [],
            ts=timestamp(rec.get(f"created_at_utc_{s}")),
        )
        for s in (win, lose)
    ]


def _ratio(rec: dict[str, Any], win: str, lose: str) -> float | None:
    """Preferred / other score (>= 1): ``score_ratio`` if given, else from the two scores."""
    if rec.get("score_ratio") is not None:
        ratio = as_number(rec["score_ratio"], "bad_score")
        return 1.0 / ratio if 0 < ratio < 1 else ratio
    a, b = rec.get(f"score_{win}"), rec.get(f"score_{lose}")
    if a is None or b is None:
        return None
    a, b = as_number(a, "bad_score"), as_number(b, "bad_score")
    return a / b if b > 0 and a > 0 else None
