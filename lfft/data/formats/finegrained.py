"""FineGrainedRLHF QA feedback (Wu et al. 2023): spans, a correction and pairwise preferences.

A record is one question with its grounding ``passages``, ``prediction 1`` .. ``prediction N``
(model answers), ``feedback`` about prediction 1 (``errors``: character spans with an
``error type``; ``missing-info``; ``corrected-prediction``) and ``preference``: one entry per
prediction pair in the order (1,2), (1,3), ..., (N-1,N): 1 = first preferred, 2 = second, 0 = tie.

Rows: one per prediction, all in one session; the passages become a system turn of the context
(the model answered from them). A span whose offsets do not fit prediction 1 rejects the record
(``bad_span``): its annotations belong to some other text.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from lfft.data.formats.common import BadRecord, Message, Row, session_of, text_field
from lfft.data.records import feedback_event, interaction, stable_id

NAME = "finegrained"


def looks_like(rec: dict[str, Any]) -> bool:
    return "prediction 1" in rec and isinstance(rec.get("feedback"), dict)


def parse(rec: dict[str, Any]) -> list[Row]:
    question = text_field(rec, "question", "missing_prompt")
    preds = []
    while f"prediction {len(preds) + 1}" in rec:
        preds.append(text_field(rec, f"prediction {len(preds) + 1}", "missing_response"))
    if not preds:
        raise BadRecord("missing_response", "no 'prediction 1'")
    if not isinstance(rec.get("feedback", {}), dict):
        raise BadRecord("bad_feedback", "'feedback' is not an object")
    context = _passages(rec.get("passages") or [])
    session = session_of(context, question)
    ids = [stable_id(NAME, session, i, p) for i, p in enumerate(preds)]
    events: list[list[dict[str, Any]]] = [[] for _ in preds]
    events[0] = _about_first(rec.get("feedback") or {}, preds[0])
    pairs = combinations(range(len(preds)), 2)
    for (a, b), choice in zip(pairs, _prefs(rec, len(preds)), strict=False):  # [] = none given
        if choice and preds[a] != preds[b]:
            win, lose = (a, b) if choice == 1 else (b, a)
            events[win].append(feedback_event("preference", ref=ids[lose]))
    return [
        interaction(
            interaction_id=ids[i],
            session_id=session,
            prompt=question,
            response=pred,
            source=NAME,
            context=context,
            feedback=events[i],
        )
        for i, pred in enumerate(preds)
    ]


def _passages(passages: Any) -> list[Message]:
    """Passages ``[[title, sentence, ...], ...]`` -> one system turn (the source's input style)."""
    if not isinstance(passages, list):
        raise BadRecord("bad_passages", "'passages' is not a list")
    blocks = []
    for p in passages:
        if not isinstance(p, list) or not p or not all(isinstance(s, str) for s in p):
            raise BadRecord("bad_passages", "a passage is not a list of strings")
        blocks.append(f"wikipage: {p[0]}\ntext: {' '.join(p[1:])}")
    return [{"role": "system", "content": "\n\n".join(blocks)}] if blocks else []


def _about_first(fb: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Feedback on prediction 1: error spans, missing information, the human correction."""
    events = []
    for err in fb.get("errors") or []:
        start, end = err.get("start"), err.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            raise BadRecord("bad_span", f"span {start}..{end} does not fit a {len(text)}-char text")
        events.append(feedback_event("span", text=str(err.get("error type")), start=start, end=end))
    for miss in fb.get("missing-info") or []:
        events.append(feedback_event("label", text=str(miss.get("error type"))))
    corrected = fb.get("corrected-prediction")
    if isinstance(corrected, str) and corrected.strip():
        events.append(feedback_event("edit", text=corrected))
    return events


def _prefs(rec: dict[str, Any], n: int) -> list[int]:
    prefs = rec.get("preference") or []
    want = n * (n - 1) // 2
    if not isinstance(prefs, list) or (prefs and len(prefs) != want):
        raise BadRecord("bad_preference", f"expected {want} pairwise preferences for {n} answers")
    if any(p not in (0, 1, 2) or isinstance(p, bool) for p in prefs):
        raise BadRecord("bad_preference", "preferences must be 0 (tie), 1 or 2")
    return prefs
