"""Chatbot Arena battles: two models answer the same user, a human picks the winner.

Layout of ``lmsys/chatbot_arena_conversations`` and ``lmarena-ai/arena-human-preference-100k``
(their dataset cards): ``{question_id | id, model_a, model_b, winner, judge, conversation_a,
conversation_b, turn, anony, language, tstamp, ...}``, ``winner`` one of ``model_a``,
``model_b``, ``tie``, ``tie (bothbad)`` / ``both_bad``; each conversation an OpenAI-style
message list.

Rows: the two answers to the last user turn, in one session (``question_id``); ``model`` is
each side's model, ``user_id`` the judge, ``ts`` the battle's ``tstamp``. The winner's row
carries a ``preference`` for it over the loser's; ``tie (bothbad)`` is a thumbs-down on both;
a plain ``tie`` gives two rows without a signal. A multi-turn battle whose two conversations
differ before the last user turn is a ``multi_turn_battle`` reject: lfft pairs share one context,
and the vote judges the whole conversation, not its last turn.
"""

from __future__ import annotations

from typing import Any

from lfft.data.formats.common import (
    BadRecord,
    Row,
    messages,
    optional_text,
    session_of,
    split_conversation,
    timestamp,
)
from lfft.data.records import feedback_event, interaction, stable_id

NAME = "arena"
WINNERS = {"model_a": 0, "model_b": 1}
BOTH_BAD = ("tie (bothbad)", "both_bad")


def looks_like(rec: dict[str, Any]) -> bool:
    return "model_a" in rec and "model_b" in rec and "conversation_a" in rec


def parse(rec: dict[str, Any]) -> list[Row]:
    sides = [split_conversation(messages(rec.get(f"conversation_{s}"))) for s in "ab"]
    (ctx_a, prompt_a, resp_a), (ctx_b, prompt_b, resp_b) = sides
    if (ctx_a, prompt_a) != (ctx_b, prompt_b):
        raise BadRecord("multi_turn_battle", "the conversations differ before the last user turn")
    winner = rec.get("winner")
    if winner not in WINNERS and winner != "tie" and winner not in BOTH_BAD:
        raise BadRecord("bad_preference", f"winner {winner!r} is not model_a, model_b or a tie")
    if winner in WINNERS and resp_a == resp_b:
        raise BadRecord("identical_pair", "both models gave the same answer")
    qid = rec.get("question_id", rec.get("id"))
    session = str(qid) if qid is not None else session_of(ctx_a, prompt_a)
    common = {
        "session_id": session,
        "prompt": prompt_a,
        "source": NAME,
        "context": ctx_a,
        "user_id": optional_text(rec.get("judge"), "judge"),
        "ts": timestamp(rec.get("tstamp")),
    }
    rows = [
        interaction(
            interaction_id=stable_id(NAME, session, side, response),
            response=response,
            model=optional_text(rec.get(f"model_{side}"), f"model_{side}"),
            feedback=[feedback_event("thumbs", value=0.0)] if winner in BOTH_BAD else [],
            **common,
        )
        for side, response in (("a", resp_a), ("b", resp_b))
    ]
    if winner in WINNERS:
        win = WINNERS[winner]
        loser = rows[1 - win]["interaction_id"]
        rows[win]["feedback"].append(feedback_event("preference", ref=loser))
        rows = [rows[win], rows[1 - win]]
    return rows
