"""OpenAI fine-tuning JSONL: supervised chat records and preference (DPO) records.

Layouts (OpenAI's fine-tuning guide; the SDK's ``openai/types/fine_tuning`` types):

- chat: ``{"messages": [{"role", "content", "weight"?, "tool_calls"?, "name"?}, ...],
  "tools"?, "parallel_tool_calls"?}``; ``weight`` 0/1 on assistant messages says whether the
  model is trained on that turn (default 1);
- preference: ``{"input": {"messages": [...], "tools"?}, "preferred_output": [assistant
  message], "non_preferred_output": [assistant message]}``.

Chat: every user turn followed by assistant turns with weight 1 is a row (context = every
message before the user turn, weight-0 replies included; response = the assistant turns up to
the next user turn, joined by a blank line); all rows of a record share a session. A record
with no weight-1 turn is a ``no_trainable_turn`` reject. A tool call without text becomes its
JSON (``[{"name", "arguments"}]``); a tool's output is a user turn (:data:`.common.ROLES`).

Detection: a ``messages`` record is OpenAI's only when it carries something TRL's does not: a
``weight``, ``tools``/``functions``/``parallel_tool_calls``, or an assistant ``tool_calls``.
Other ``messages`` records stay with the ``trl`` reader (one row: the last exchange), which
LLaMA-Factory and TRL datasets rely on; pass ``--format openai`` for a row per exchange.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lfft.data.formats.common import (
    ROLES,
    BadRecord,
    Message,
    Row,
    content_text,
    pair_rows,
    session_of,
    split_prompt,
)
from lfft.data.records import interaction

NAME = "openai"
_TOOL_KEYS = ("tools", "functions", "parallel_tool_calls")


def looks_like(rec: dict[str, Any]) -> bool:
    if isinstance(rec.get("input"), Mapping) and "preferred_output" in rec:
        return True
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or any(k in rec for k in ("label", "kto_tag", "chosen")):
        return False
    marked = any(isinstance(m, Mapping) and ("weight" in m or "tool_calls" in m) for m in msgs)
    return marked or any(k in rec for k in _TOOL_KEYS)


def parse(rec: dict[str, Any]) -> list[Row]:
    if "preferred_output" in rec or "input" in rec:
        return _preference(rec)
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRecord("bad_messages", "expected a non-empty list of messages")
    turns = [_message(m) for m in msgs]
    rows: list[Row] = []
    session = None
    i = 0
    while i < len(turns):
        if turns[i][0]["role"] != "user":
            i += 1
            continue
        j = i + 1
        while j < len(turns) and turns[j][0]["role"] == "assistant":
            j += 1
        replies = turns[i + 1 : j]
        context = [t for t, _ in turns[:i]]
        session = session or session_of(context, turns[i][0]["content"])
        if replies and any(w for _, w in replies):
            response = "\n\n".join(t["content"] for t, _ in replies)
            rows.append(
                interaction(
                    session_id=session,
                    prompt=turns[i][0]["content"],
                    response=response,
                    source=NAME,
                    context=context,
                )
            )
        i = j
    if not rows:
        if not any(t["role"] == "user" for t, _ in turns):
            raise BadRecord("missing_prompt", "no user turn in the conversation")
        raise BadRecord("no_trainable_turn", "no assistant turn with weight 1 after a user turn")
    return rows


def _message(m: Any) -> tuple[Message, int]:
    """One message -> (lfft message, weight); ``weight`` other than 0/1 is ``bad_weight``."""
    if not isinstance(m, Mapping):
        raise BadRecord("bad_messages", f"a message is a {type(m).__name__}, not an object")
    role = ROLES.get(str(m.get("role", "")).lower())
    if role is None:
        raise BadRecord("bad_messages", f"unknown role {m.get('role')!r}")
    weight = m.get("weight", 1)
    if isinstance(weight, bool) or weight not in (0, 1):
        raise BadRecord("bad_weight", f"weight {weight!r} is not 0 or 1")
    if weight == 0 and role != "assistant":
        raise BadRecord("bad_weight", "weight is only allowed on assistant messages")
    return {"role": role, "content": _content(m)}, int(weight)


def _content(m: Mapping[str, Any]) -> str:
    """The text, or the tool calls as JSON when an assistant message calls tools only."""
    text = content_text(m.get("content"))
    calls = m.get("tool_calls") or ([m["function_call"]] if m.get("function_call") else [])
    if text or not calls:
        return text
    out = []
    for call in calls:
        fn = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping):
            raise BadRecord("bad_messages", "a tool call without a function")
        out.append({"name": fn.get("name"), "arguments": fn.get("arguments")})
    return json.dumps(out, ensure_ascii=False)


def _preference(rec: Mapping[str, Any]) -> list[Row]:
    source = rec.get("input")
    if not isinstance(source, Mapping):
        raise BadRecord("missing_prompt", "'input' is not an object with messages")
    msgs = source.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRecord("missing_prompt", "input.messages is not a non-empty list")
    context, prompt = split_prompt([_message(m)[0] for m in msgs])
    chosen = _output(rec.get("preferred_output"), "preferred_output")
    rejected = _output(rec.get("non_preferred_output"), "non_preferred_output")
    return pair_rows(NAME, context, prompt, chosen, rejected)


def _output(value: Any, key: str) -> str:
    if not isinstance(value, list) or not value:
        raise BadRecord("missing_response", f"{key!r} is not a non-empty list of messages")
    turns = [_message(m)[0] for m in value]
    if any(t["role"] != "assistant" for t in turns):
        raise BadRecord("bad_messages", f"{key!r} holds a non-assistant message")
    return "\n\n".join(t["content"] for t in turns)
