"""PRM800K (Lightman et al. 2023): human ratings of every step of a model's math solution.

A record: ``question.problem``, ``labeler``, ``timestamp`` and ``label.steps``: per step the
candidate ``completions`` (``text``, ``rating`` -1/0/+1), the ``chosen_completion`` index (the
labeller continued with it) or a ``human_completion`` (the labeller wrote the step), and
``label.finish_reason`` (solution | found_error | give_up | ...).

Rows, one per record: the response is the model's trajectory, the chosen completion at each step
until the first step where none was chosen; that step's first candidate ends the response (it is
the one the labeller rejected or stopped at). Every step rated -1 becomes a ``span`` over its
characters (text ``step_rating=-1``): the step-level signal as character offsets. When the
labelled trajectory reached a solution (``finish_reason == "solution"``) and differs from the
response, that trajectory (chosen and human-written steps) becomes an ``edit``: the corrected
solution. Steps are joined with a newline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lfft.data.formats.common import BadRecord, Row, session_of, text_field, timestamp
from lfft.data.records import feedback_event, interaction, stable_id

NAME = "prm800k"


def looks_like(rec: dict[str, Any]) -> bool:
    label = rec.get("label")
    return isinstance(label, Mapping) and "steps" in label and "question" in rec


def parse(rec: dict[str, Any]) -> list[Row]:
    question = rec.get("question")
    if not isinstance(question, Mapping):
        raise BadRecord("missing_prompt", "'question' is not an object")
    prompt = text_field(question, "problem", "missing_prompt")
    label = rec["label"]
    steps = label.get("steps")
    if not isinstance(steps, list) or not steps:
        raise BadRecord("missing_response", "no labelled steps")
    response_steps, ratings, edit_steps = _walk(steps)
    if not response_steps:
        raise BadRecord("missing_response", "no model step to rate")
    response = "\n".join(response_steps)
    events, offset = [], 0
    for text, rating in zip(response_steps, ratings, strict=True):
        if rating == -1:
            events.append(
                feedback_event("span", text="step_rating=-1", start=offset, end=offset + len(text))
            )
        offset += len(text) + 1
    edit = "\n".join(edit_steps)
    if label.get("finish_reason") == "solution" and edit and edit != response:
        events.append(feedback_event("edit", text=edit))
    labeler = rec.get("labeler") if isinstance(rec.get("labeler"), str) else None
    session = session_of([], prompt)
    return [
        interaction(
            interaction_id=stable_id(NAME, labeler, rec.get("timestamp"), prompt, response),
            session_id=session,
            prompt=prompt,
            response=response,
            source=NAME,
            feedback=events,
            user_id=labeler,
            ts=timestamp(rec.get("timestamp")),
        )
    ]


def _walk(steps: list) -> tuple[list[str], list[Any], list[str]]:
    """(model steps, their ratings, the labelled trajectory incl. human-written steps)."""
    response, ratings, labelled = [], [], []
    model_open = True
    for step in steps:
        if not isinstance(step, Mapping):
            raise BadRecord("bad_step", "a step is not an object")
        comps = step.get("completions") or []
        if not isinstance(comps, list) or not all(isinstance(c, Mapping) for c in comps):
            raise BadRecord("bad_step", "'completions' is not a list of objects")
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if isinstance(chosen, int) and not isinstance(chosen, bool) and 0 <= chosen < len(comps):
            pick = comps[chosen]
        elif chosen is not None:
            raise BadRecord("bad_step", f"chosen_completion {chosen!r} out of range")
        else:
            pick = None
        if model_open:
            cand = pick if pick is not None else (comps[0] if comps else None)
            if cand is not None:
                response.append(text_field(cand, "text", "bad_step"))
                ratings.append(cand.get("rating"))
            model_open = pick is not None
        if pick is not None:
            labelled.append(text_field(pick, "text", "bad_step"))
        elif isinstance(human, Mapping) and isinstance(human.get("text"), str):
            labelled.append(human["text"])
        else:
            break
    return response, ratings, labelled
