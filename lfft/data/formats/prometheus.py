"""Prometheus critiques: a written critique and a 1..5 score per response (AI feedback, GPT-4).

Two layouts:

- the evaluation sets (e.g. ``vicuna_eval.json``): ``instruction`` holds the whole evaluation
  prompt, from which the task (``###The instruction to evaluate:``) and the response
  (``###Response to evaluate:``) are cut; ``gpt4_score`` and ``gpt4_feedback`` hold 3 scores
  and 3 critiques, as JSON lists or as strings of Python lists (the dataset card says strings);
- the Feedback Collection: ``orig_instruction``, ``orig_response``, ``orig_feedback``,
  ``orig_score``.

Signals: one ``rating`` (scale 5) = the mean of the scores, one ``comment`` per critique.
The origin stays ``explicit`` (lfft has no separate origin for AI judges); docs/formats.md says
these are GPT-4 judgements, not human ones.
"""

from __future__ import annotations

import ast
from typing import Any

from lfft.data.formats.common import BadRecord, Row, as_number, session_of, text_field
from lfft.data.records import feedback_event, interaction

NAME = "prometheus"
_TASK = "###The instruction to evaluate:"
_RESPONSE = "###Response to evaluate:"
_NEXT = ("###Reference Answer", "###Score Rubric")


def looks_like(rec: dict[str, Any]) -> bool:
    evalset = "instruction" in rec and ("gpt4_score" in rec or "gpt4_feedback" in rec)
    return evalset or ("orig_instruction" in rec and "orig_response" in rec)


def parse(rec: dict[str, Any]) -> list[Row]:
    if "orig_instruction" in rec:
        prompt = text_field(rec, "orig_instruction", "missing_prompt")
        response = text_field(rec, "orig_response", "missing_response")
        scores = [rec.get("orig_score")] if rec.get("orig_score") is not None else []
        critiques = [rec.get("orig_feedback")] if rec.get("orig_feedback") else []
        model = None
    else:
        prompt, response = split_eval_prompt(text_field(rec, "instruction", "missing_prompt"))
        scores = _list(rec.get("gpt4_score"), "bad_rating")
        critiques = _list(rec.get("gpt4_feedback"), "bad_comment")
        model = rec.get("response_source") if isinstance(rec.get("response_source"), str) else None
    values = [as_number(s, "bad_rating") for s in scores]
    if any(not 1 <= v <= 5 for v in values):
        raise BadRecord("bad_rating", f"scores {values} outside 1..5")
    events = []
    if values:
        events.append(feedback_event("rating", value=sum(values) / len(values), scale=5))
    for text in critiques:
        if not isinstance(text, str):
            raise BadRecord("bad_comment", "a critique is not text")
        events.append(feedback_event("comment", text=text))
    return [
        interaction(
            session_id=session_of([], prompt),
            prompt=prompt,
            response=response,
            source=NAME,
            feedback=events,
            model=model,
        )
    ]


def split_eval_prompt(text: str) -> tuple[str, str]:
    """The task and the response inside a Prometheus evaluation prompt."""
    i, j = text.find(_TASK), text.find(_RESPONSE)
    if i < 0 or j < i:
        raise BadRecord("bad_instruction", "no '###The instruction to evaluate:' section")
    ends = [k for k in (text.find(m, j) for m in _NEXT) if k >= 0]
    if not ends:
        raise BadRecord("bad_instruction", "no section after '###Response to evaluate:'")
    task = text[i + len(_TASK) : j]
    response = text[j + len(_RESPONSE) : min(ends)]
    return _section(task), _section(response)


def _section(text: str) -> str:
    """A section's text without the template's newline after the header and blank line after."""
    return text.removeprefix("\n").removesuffix("\n\n")


def _list(value: Any, reason: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise BadRecord(reason, "not a list literal") from None
    if not isinstance(value, list | tuple):
        raise BadRecord(reason, f"expected a list, got {type(value).__name__}")
    return list(value)
