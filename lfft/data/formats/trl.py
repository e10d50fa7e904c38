"""TRL / LLaMA-Factory style records (JSON, JSONL or Parquet rows), one reader for all layouts.

===============================================  ==============================================
record                                           rows
===============================================  ==============================================
``prompt`` + ``completion`` [+ ``label``]         one row; ``label`` -> ``thumbs`` 1/0
``prompt`` + ``chosen`` + ``rejected``            a pair (chosen row carries ``preference``)
``chosen`` + ``rejected`` (implicit prompt)       a pair; both conversations share the prompt
``messages`` [+ ``label`` / ``kto_tag``]          one row from the conversation
``conversations`` (ShareGPT from/value)           one row, or a pair with ``chosen``/``rejected``
``instruction`` [+ ``input``] + ``output``        alpaca: one row; ``chosen``/``rejected`` -> pair
===============================================  ==============================================

Strings and message lists are both accepted wherever TRL accepts them ("standard" and
"conversational" formats). ``response`` is read as a synonym of ``completion`` when the format
is given; auto-detection sends ``prompt`` + ``response`` records to the table reader, which also
maps ``rating``, ``thumbs``, ``comment`` and ``edit`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lfft.data.formats import hh_rlhf
from lfft.data.formats.common import (
    BadRecord,
    Message,
    Row,
    as_bool,
    content_text,
    message,
    messages,
    pair_rows,
    session_of,
    split_conversation,
    split_prompt,
    text_field,
)
from lfft.data.records import feedback_event, interaction

NAME = "trl"
LABEL_KEYS = ("label", "kto_tag")


def looks_like(rec: dict[str, Any]) -> bool:
    keys = rec.keys()
    return bool(
        "messages" in keys
        or "conversations" in keys
        or ("prompt" in keys and keys & {"completion", "chosen", "rejected"})
        or ("chosen" in keys and "rejected" in keys)
        or ("instruction" in keys and keys & {"output", "chosen"})
    )


def parse(rec: dict[str, Any]) -> list[Row]:
    conv_key = "messages" if "messages" in rec else "conversations"
    if conv_key in rec:
        conv = messages(rec[conv_key])
        system = rec.get("system")
        if isinstance(system, str) and system and conv[0]["role"] != "system":
            conv.insert(0, {"role": "system", "content": system})
        if "chosen" in rec or "rejected" in rec:
            context, prompt = split_prompt(conv)
            return _pair(rec, context, prompt)
        context, prompt, response = split_conversation(conv)
        return [_row(context, prompt, response, rec)]
    if "instruction" in rec:
        return _alpaca(rec)
    if "prompt" in rec:
        context, prompt = _prompt_of(rec["prompt"])
        if "chosen" in rec or "rejected" in rec:
            return _pair(rec, context, prompt)
        key = "completion" if "completion" in rec else "response"
        if key not in rec:
            raise BadRecord("missing_response", "no 'completion', 'response' or 'chosen'")
        response = _response_of(rec[key], context, prompt)
        return [_row(context, prompt, response, rec)]
    if "chosen" in rec and "rejected" in rec:
        if isinstance(rec["chosen"], str) and isinstance(rec["rejected"], str):
            return hh_rlhf.parse(rec) if hh_rlhf.looks_like(rec) else _no_prompt()
        c_ctx, c_prompt, chosen = split_conversation(messages(rec["chosen"]))
        r_ctx, r_prompt, rejected = split_conversation(messages(rec["rejected"]))
        if (c_ctx, c_prompt) != (r_ctx, r_prompt):
            raise BadRecord("pair_prompt_mismatch", "chosen and rejected have different prompts")
        return pair_rows(NAME, c_ctx, c_prompt, chosen, rejected)
    raise BadRecord("unknown_layout", f"no TRL layout matches keys {sorted(rec)[:12]}")


def _no_prompt() -> list[Row]:
    raise BadRecord("missing_prompt", "chosen/rejected strings without a 'prompt'")


def _prompt_of(value: Any) -> tuple[list[Message], str]:
    if isinstance(value, str):
        return [], value
    if isinstance(value, list):
        return split_prompt(messages(value))
    raise BadRecord("missing_prompt", f"'prompt' is a {type(value).__name__}")


def _response_of(value: Any, context: Sequence[Message], prompt: str) -> str:
    """A completion / chosen / rejected value as response text.

    A string; one assistant message (ShareGPT ``{"from": "gpt", "value": ...}``); a list of
    assistant messages; or a whole conversation repeating the prompt (e.g. UltraFeedback
    binarized), whose last assistant turn is taken.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        msg = message(value)
        if msg["role"] != "assistant":
            raise BadRecord("bad_messages", f"a response from role {msg['role']!r}")
        return msg["content"]
    msgs = messages(value)
    if any(m["role"] == "user" for m in msgs):
        return split_conversation(msgs)[2]
    if any(m["role"] != "assistant" for m in msgs):
        raise BadRecord("bad_messages", "a response with non-assistant turns")
    return "\n\n".join(m["content"] for m in msgs)


def _label_feedback(rec: dict[str, Any]) -> list[dict[str, Any]]:
    for key in LABEL_KEYS:
        if rec.get(key) is not None:
            return [feedback_event("thumbs", value=1.0 if as_bool(rec[key]) else 0.0)]
    return []


def _row(context: list[Message], prompt: str, response: str, rec: dict[str, Any]) -> Row:
    return interaction(
        session_id=session_of(context, prompt),
        prompt=prompt,
        response=response,
        source=NAME,
        context=context,
        feedback=_label_feedback(rec),
    )


def _pair(rec: dict[str, Any], context: list[Message], prompt: str) -> list[Row]:
    if "chosen" not in rec or "rejected" not in rec:
        raise BadRecord("missing_response", "a pair needs both 'chosen' and 'rejected'")
    chosen = _response_of(rec["chosen"], context, prompt)
    rejected = _response_of(rec["rejected"], context, prompt)
    return pair_rows(NAME, context, prompt, chosen, rejected)


def _alpaca(rec: dict[str, Any]) -> list[Row]:
    """Alpaca: instruction (+ input) is the prompt; system and history make the context."""
    prompt = text_field(rec, "instruction", "missing_prompt")
    extra = rec.get("input")
    if isinstance(extra, str) and extra:
        prompt = f"{prompt}\n{extra}"
    context: list[Message] = []
    if isinstance(rec.get("system"), str) and rec["system"]:
        context.append({"role": "system", "content": rec["system"]})
    for turn in rec.get("history") or []:
        if not isinstance(turn, list | tuple) or len(turn) != 2:
            raise BadRecord("bad_messages", "alpaca history turns must be [query, response]")
        context.append({"role": "user", "content": content_text(turn[0])})
        context.append({"role": "assistant", "content": content_text(turn[1])})
    if "chosen" in rec or "rejected" in rec:
        return _pair(rec, context, prompt)
    output = rec.get("output")
    if isinstance(output, list) and len(output) == 2 and all(isinstance(o, str) for o in output):
        return pair_rows(NAME, context, prompt, output[0], output[1])  # LLaMA-Factory ranking
    if not isinstance(output, str):
        raise BadRecord("missing_response", "'output' is not text")
    return [_row(context, prompt, output, rec)]
