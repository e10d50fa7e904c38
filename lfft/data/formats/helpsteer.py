"""HelpSteer / HelpSteer2 multi-attribute ratings (0..4 Likert per attribute).

Two layouts:

- the Hugging Face release: ``prompt``, ``response``, ``helpfulness``, ``correctness``,
  ``coherence``, ``complexity``, ``verbosity`` (multi-turn prompts hold earlier turns joined by
  ``<extra_id_1>``);
- NeMo-Aligner's regression reward-model JSONL: ``text`` in the SteerLM chat template
  (``<extra_id_0>System\\n...\\n<extra_id_1>User\\n...\\n<extra_id_1>Assistant\\n...\\n<extra_id_2>``)
  and ``label`` = 9 floats in the order of ``NEMO_ATTRIBUTES``, ``-100`` = not annotated.

Signals: ``helpfulness`` is the headline score: a ``rating`` with value ``h + 1`` on scale 5
(0..4 shifted to lfft's 1..scale convention, so the scale is kept). Every attribute (helpfulness
included) is also a ``label`` with value ``x / 4`` in 0..1. Verbosity and complexity say how
long / hard a response is, not how good, so they never feed the rating. The two responses to one
prompt share a session; pairs follow from the ratings in normalize / ``export --format trl-dpo``.
"""

from __future__ import annotations

from typing import Any

from lfft.data.formats.common import BadRecord, Message, Row, as_number, session_of, text_field
from lfft.data.records import feedback_event, interaction

NAME = "helpsteer"
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
NEMO_ATTRIBUTES = ("quality", "toxicity", "humor", "creativity", *ATTRIBUTES)
_TOP = 4.0


def looks_like(rec: dict[str, Any]) -> bool:
    if {"prompt", "response", "helpfulness"} <= rec.keys():
        return True
    text = rec.get("text")
    return isinstance(text, str) and "<extra_id_1>" in text and isinstance(rec.get("label"), list)


def parse(rec: dict[str, Any]) -> list[Row]:
    if "text" in rec and "response" not in rec:
        context, prompt, response = steerlm(text_field(rec, "text", "bad_transcript"))
        values = rec.get("label")
        if not isinstance(values, list) or len(values) != len(NEMO_ATTRIBUTES):
            raise BadRecord("bad_label", f"'label' must list {len(NEMO_ATTRIBUTES)} numbers")
        scores = {
            name: as_number(v, "bad_label") for name, v in zip(NEMO_ATTRIBUTES, values, strict=True)
        }
        scores = {k: v for k, v in scores.items() if v != -100}
    else:
        context, prompt = _hf_prompt(text_field(rec, "prompt", "missing_prompt"))
        response = text_field(rec, "response", "missing_response")
        scores = {a: as_number(rec[a], "bad_label") for a in ATTRIBUTES if rec.get(a) is not None}
    for name, value in scores.items():
        if not 0 <= value <= _TOP:
            raise BadRecord("bad_label", f"{name} = {value} outside 0..4")
    events = []
    if "helpfulness" in scores:
        events.append(feedback_event("rating", value=scores["helpfulness"] + 1, scale=5))
    events += [feedback_event("label", value=v / _TOP, text=k) for k, v in scores.items()]
    return [
        interaction(
            session_id=session_of(context, prompt),
            prompt=prompt,
            response=response,
            source=NAME,
            context=context,
            feedback=events,
        )
    ]


def steerlm(text: str) -> tuple[list[Message], str, str]:
    """Parse the SteerLM template into (context, prompt, response)."""
    body = text.split("<extra_id_2>", 1)[0]
    segments = body.split("<extra_id_1>")
    head = segments[0]
    msgs: list[Message] = []
    if head.startswith("<extra_id_0>System\n"):
        system = head[len("<extra_id_0>System\n") :].rstrip("\n")
        if system:
            msgs.append({"role": "system", "content": system})
    elif head.strip():
        raise BadRecord("bad_transcript", "text before the first <extra_id_1> turn")
    for seg in segments[1:]:
        role, _, content = seg.partition("\n")
        if role not in ("User", "Assistant"):
            raise BadRecord("bad_transcript", f"unknown SteerLM role {role!r}")
        msgs.append({"role": role.lower(), "content": content.removesuffix("\n")})
    if not msgs or msgs[-1]["role"] != "assistant" or len(msgs) < 2:
        raise BadRecord("missing_response", "the template does not end with an Assistant turn")
    if msgs[-2]["role"] != "user":
        raise BadRecord("missing_prompt", "no User turn before the last Assistant turn")
    return msgs[:-2], msgs[-2]["content"], msgs[-1]["content"]


def _hf_prompt(prompt: str) -> tuple[list[Message], str]:
    """HelpSteer2 multi-turn prompts: ``user<extra_id_1>Assistant\\n...<extra_id_1>User\\n...``."""
    if "<extra_id_1>" not in prompt:
        return [], prompt
    segments = prompt.split("<extra_id_1>")
    msgs: list[Message] = [{"role": "user", "content": segments[0].removesuffix("\n")}]
    for seg in segments[1:]:
        role, _, content = seg.partition("\n")
        if role not in ("User", "Assistant"):
            raise BadRecord("bad_transcript", f"unknown HelpSteer2 role {role!r}")
        msgs.append({"role": role.lower(), "content": content.removesuffix("\n")})
    if msgs[-1]["role"] != "user":
        raise BadRecord("missing_prompt", "a multi-turn prompt must end with a User turn")
    return msgs[:-1], msgs[-1]["content"]
