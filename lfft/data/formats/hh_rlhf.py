"""Anthropic HH-RLHF: ``{"chosen": transcript, "rejected": transcript}`` -> a pair of rows.

A transcript is ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` (multi-turn). Both transcripts share
their turns up to the last Human turn; the last Assistant turn of each is the response. Traps
seen in the data (see docs/formats.md): two Assistant turns in a row (merged into one turn),
an empty last Assistant turn (kept: an empty reply is a legitimate loser; clean decides), the
literal text ``Human:`` inside a turn without the blank line (left inside the turn), and pairs whose
responses are identical (rejected: ``identical_pair``).
"""

from __future__ import annotations

import re
from typing import Any

from lfft.data.formats.common import (
    BadRecord,
    Message,
    Row,
    pair_rows,
    split_conversation,
    text_field,
)

NAME = "hh-rlhf"
_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLE = {"Human": "user", "Assistant": "assistant"}


def looks_like(rec: dict[str, Any]) -> bool:
    chosen = rec.get("chosen")
    return (
        "prompt" not in rec
        and isinstance(chosen, str)
        and isinstance(rec.get("rejected"), str)
        and ("Human:" in chosen and "Assistant:" in chosen)
    )


def transcript(text: str) -> list[Message]:
    """Split a ``Human:``/``Assistant:`` transcript into messages (same-role runs merged)."""
    if text.startswith(("Human:", "Assistant:")):
        text = "\n\n" + text
    parts = _TURN.split(text)
    if parts[0].strip():
        raise BadRecord("bad_transcript", "text before the first Human:/Assistant: turn")
    msgs: list[Message] = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        role = _ROLE[role]
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"] += "\n\n" + content
        else:
            msgs.append({"role": role, "content": content})
    if not msgs:
        raise BadRecord("bad_transcript", "no Human:/Assistant: turns")
    return msgs


def split_pair(chosen: str, rejected: str) -> tuple[list[Message], str, str, str]:
    """Two transcripts -> (context, prompt, chosen response, rejected response)."""
    c_ctx, c_prompt, c_resp = split_conversation(transcript(chosen))
    r_ctx, r_prompt, r_resp = split_conversation(transcript(rejected))
    if (c_ctx, c_prompt) != (r_ctx, r_prompt):
        raise BadRecord(
            "pair_prompt_mismatch", "chosen and rejected differ before their last Assistant turn"
        )
    return c_ctx, c_prompt, c_resp, r_resp


def parse(rec: dict[str, Any]) -> list[Row]:
    chosen = text_field(rec, "chosen")
    rejected = text_field(rec, "rejected")
    context, prompt, win, lose = split_pair(chosen, rejected)
    return pair_rows(NAME, context, prompt, win, lose)
