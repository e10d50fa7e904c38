"""LibreChat exports, OpenAI fine-tuning JSONL and Chatbot Arena battles: detection and the
mapping record by record, from fixtures built as the upstream code writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfft.config import CollectConfig
from lfft.data.collect import collect
from lfft.data.formats import detect, read_format
from lfft.data.records import Parsed, Reject
from lfft.io import read_table

ROOT = "00000000-0000-0000-0000-000000000000"  # LibreChat's parentMessageId of a first message


def events(row: dict) -> list[tuple]:
    return [(e["kind"], e["value"], e["text"], e["ref"]) for e in row["feedback"]]


def write(path: Path, records: list, lines: bool = True) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records) if lines else json.dumps(records[0])
    path.write_text(text)
    return path


def read(path: Path, fmt: str | None = None) -> tuple[list[dict], list[Reject]]:
    items = list(read_format(path, fmt or detect(path)))
    rows = [r for i in items if isinstance(i, Parsed) for r in i.rows]
    return rows, [i for i in items if isinstance(i, Reject)]


# --- LibreChat ---------------------------------------------------------------------------------
# Built as client/src/hooks/Conversations/useExportConversation.ts @ ffec4535 (exportJSON) writes
# it, messages as packages/data-schemas/src/schema/message.ts @ ce3ce5ff stores them, feedback
# tags from packages/data-provider/src/feedback.ts @ 3170d2b6.


def lc_message(mid: str, parent: str, user: bool, text: str, **extra) -> dict:
    m = {
        "messageId": mid,
        "conversationId": "conv-1",
        "parentMessageId": parent,
        "isCreatedByUser": user,
        "sender": "User" if user else "GPT-4o",
        "text": text,
        "user": "user-7",
        "endpoint": "openAI",
        "model": None if user else "gpt-4o",
        "error": False,
        "unfinished": False,
        "createdAt": "2025-05-01T10:00:00.000Z",
        "updatedAt": "2025-05-01T10:05:00.000Z",
    }
    return m | extra


def librechat_export(messages: list[dict], recursive: bool = False) -> dict:
    data = {
        "conversationId": "conv-1",
        "endpoint": "openAI",
        "title": "Capitals",
        "exportAt": "10:06:00 GMT+0000 (Coordinated Universal Time)",
        "branches": True,
        "recursive": recursive,
        "options": {"model": "gpt-4o", "promptPrefix": "Be brief."},
    }
    key = "messagesTree" if recursive else "messages"
    return data | {key: messages}


LC_MESSAGES = [
    lc_message("u1", ROOT, True, "Capital of France?"),
    lc_message("a1", "u1", False, "Lyon.", feedback={
        "rating": "thumbsDown", "tag": "com_ui_feedback_tag_incorrect", "text": "Wrong city."}),
    lc_message("a2", "u1", False, "", feedback={"rating": "thumbsUp"}, content=[
        {"type": "think", "think": "France..."}, {"type": "text", "text": "Paris."}]),
    lc_message("u2", "a2", True, "And Spain?"),
    lc_message("a3", "u2", False, "Madrid."),
    lc_message("a4", "u2", False, "Something went wrong.", error=True),
]  # fmt: skip


def test_librechat_flat_export(tmp_path):
    path = write(tmp_path / "conv-1.json", [librechat_export(LC_MESSAGES)], lines=False)
    assert detect(path) == "librechat"
    items = list(read_format(path, "librechat"))
    assert len(items) == 1 and [r.reason for r in items[0].skipped] == ["error_reply"]
    rows = {r["interaction_id"]: r for r in items[0].rows}
    assert set(rows) == {"conv-1:a1", "conv-1:a2", "conv-1:a3"}
    a1, a2, a3 = rows["conv-1:a1"], rows["conv-1:a2"], rows["conv-1:a3"]
    assert events(a1) == [
        ("thumbs", 0.0, None, None),
        ("label", None, "com_ui_feedback_tag_incorrect", None),
        ("comment", None, "Wrong city.", None),
    ]
    assert events(a2) == [("thumbs", 1.0, None, None), ("preference", None, None, "conv-1:a1")]
    assert a2["response"] == "Paris."  # the text part of content; thinking left out
    assert a3["context"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    assert (a3["prompt"], a3["session_id"], a3["model"], a3["user_id"]) == (
        "And Spain?", "conv-1", "gpt-4o", "user-7"
    )  # fmt: skip
    assert a3["ts"].isoformat() == "2025-05-01T10:00:00+00:00" and events(a3) == []


def test_librechat_recursive_tree_gives_the_same_rows(tmp_path):
    by_id = {m["messageId"]: dict(m) for m in LC_MESSAGES}
    for m in by_id.values():
        m["children"] = [c for c in by_id.values() if c["parentMessageId"] == m["messageId"]]
    tree = [by_id["u1"]]  # buildMessageTree(recursive) exports the root's children
    flat, _ = read(write(tmp_path / "flat.json", [librechat_export(LC_MESSAGES)], lines=False))
    nested, _ = read(write(tmp_path / "tree.json", [librechat_export(tree, True)], lines=False))
    assert sorted(r["interaction_id"] for r in nested) == sorted(r["interaction_id"] for r in flat)
    assert {r["interaction_id"]: r["feedback"] for r in nested} == {
        r["interaction_id"]: r["feedback"] for r in flat
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"feedback": {"rating": "meh"}}, "bad_rating"),
        ({"parentMessageId": "a4"}, "no_assistant_reply"),  # a1 answers an error reply: no rows
    ],
)
def test_librechat_rejects(tmp_path, change, reason):
    msgs = [LC_MESSAGES[0] | {"parentMessageId": ROOT}, LC_MESSAGES[1] | change]
    if reason == "no_assistant_reply":
        msgs = [LC_MESSAGES[1] | change]
    _, rejects = read(write(tmp_path / "c.json", [librechat_export(msgs)], lines=False))
    assert [r.reason for r in rejects] == [reason]


# --- OpenAI fine-tuning JSONL ------------------------------------------------------------------
# The chat and preference layouts of OpenAI's fine-tuning guide (weight 0/1 on assistant turns).

SYSTEM = {"role": "system", "content": "You are terse."}


def test_openai_chat_weights_and_tool_calls(tmp_path):
    weighted = {"messages": [
        SYSTEM,
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "5", "weight": 0},
        {"role": "user", "content": "Really?"},
        {"role": "assistant", "content": "4", "weight": 1},
    ]}  # fmt: skip
    fn = {"name": "weather", "arguments": '{"city": "Oslo"}'}
    call = {"id": "c1", "type": "function", "function": fn}
    tools = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "3C"},
        {"role": "assistant", "content": "3 degrees."},
    ], "tools": [{"type": "function", "function": {"name": "weather"}}]}  # fmt: skip
    path = write(tmp_path / "ft.jsonl", [weighted, tools])
    assert detect(path) == "openai"
    rows, rejects = read(path)
    assert rejects == []
    assert [(r["prompt"], r["response"]) for r in rows] == [
        ("Really?", "4"),  # the weight-0 reply is context only
        ("Weather in Oslo?", '[{"name": "weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}]'),
        ("3C", "3 degrees."),  # a tool's output is input to the model
    ]
    assert rows[0]["context"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "5"},
    ]
    assert rows[1]["session_id"] == rows[2]["session_id"] != rows[0]["session_id"]
    assert all(r["source"] == "openai" and r["feedback"] == [] for r in rows)


def test_openai_preference_is_a_pair(tmp_path):
    rec = {
        "input": {"messages": [SYSTEM, {"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello."}],
        "non_preferred_output": [{"role": "assistant", "content": "What?"}],
    }
    path = write(tmp_path / "dpo.jsonl", [rec])
    assert detect(path) == "openai"
    (chosen, rejected), _ = read(path)
    assert (chosen["response"], rejected["response"], chosen["prompt"]) == ("Hello.", "What?", "Hi")
    assert events(chosen) == [("preference", None, None, rejected["interaction_id"])]
    assert chosen["context"] == [SYSTEM] and chosen["session_id"] == rejected["session_id"]


def test_plain_messages_stay_with_trl(tmp_path):
    """Without an OpenAI-only field, a messages record is TRL's (LLaMA-Factory, TRL SFT)."""
    rec = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert detect(write(tmp_path / "plain.jsonl", [rec])) == "trl"
    weighted = [rec["messages"][0], {**rec["messages"][1], "weight": 1}]
    kto = {**rec, "label": True, "messages": weighted}
    assert detect(write(tmp_path / "kto.jsonl", [kto])) == "trl"  # a label is TRL's


USER_A = {"role": "user", "content": "a"}
BOT_X = {"role": "assistant", "content": "x"}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"messages": [USER_A, {**BOT_X, "weight": 2}]}, "bad_weight"),
        ({"messages": [USER_A, {**BOT_X, "weight": 0}]}, "no_trainable_turn"),
        ({"messages": [{**BOT_X, "weight": 1}]}, "missing_prompt"),
        (
            {"input": {"messages": [USER_A]}, "preferred_output": [BOT_X]}
            | {"non_preferred_output": [BOT_X]},
            "identical_pair",
        ),
        ({"input": {"messages": []}, "preferred_output": []}, "missing_prompt"),
    ],
)
def test_openai_rejects(tmp_path, record, reason):
    _, rejects = read(write(tmp_path / "bad.jsonl", [record]), "openai")
    assert [r.reason for r in rejects] == [reason]


# --- Chatbot Arena -----------------------------------------------------------------------------
# The layout of lmsys/chatbot_arena_conversations (dataset card): question_id, model_a/b,
# winner, judge, conversation_a/b, turn, anony, language, tstamp.


def battle(winner: str, a: str = "Paris.", b: str = "Lyon.", **extra) -> dict:
    q = {"role": "user", "content": "Capital of France?"}
    return {
        "question_id": f"q-{winner}",
        "model_a": "vicuna-13b",
        "model_b": "koala-13b",
        "winner": winner,
        "judge": "arena_user_42",
        "conversation_a": [q, {"role": "assistant", "content": a}],
        "conversation_b": [q, {"role": "assistant", "content": b}],
        "turn": 1,
        "anony": True,
        "language": "English",
        "tstamp": 1682351591.1322,
    } | extra


def test_arena_battles_become_pairs_ties_and_rejects(tmp_path):
    q = {"role": "user", "content": "Capital of France?"}
    two_turns = battle("model_a", turn=2)
    for side, text in (("a", "Paris."), ("b", "Lyon.")):
        two_turns[f"conversation_{side}"] = [
            q, {"role": "assistant", "content": text}, {"role": "user", "content": "Sure?"},
            {"role": "assistant", "content": "Yes."},
        ]  # fmt: skip
    records = [battle("model_b"), battle("tie"), battle("tie (bothbad)"), two_turns, battle("x")]
    path = write(tmp_path / "arena.jsonl", records)
    assert detect(path) == "arena"
    out = tmp_path / "i.parquet"
    result = collect([path], out, CollectConfig())
    rows = read_table(out).to_pylist()
    assert result.rejects == {"multi_turn_battle": 1, "bad_preference": 1}
    by = {(r["session_id"], r["model"]): r for r in rows}
    winner, loser = by[("q-model_b", "koala-13b")], by[("q-model_b", "vicuna-13b")]
    assert (winner["response"], loser["response"]) == ("Lyon.", "Paris.")
    assert events(winner) == [("preference", None, None, loser["interaction_id"])]
    assert events(loser) == [] and winner["user_id"] == "arena_user_42"
    assert winner["ts"].timestamp() == pytest.approx(1682351591.1322)
    assert [events(by[("q-tie", m)]) for m in ("vicuna-13b", "koala-13b")] == [[], []]
    assert [events(by[("q-tie (bothbad)", m)]) for m in ("vicuna-13b", "koala-13b")] == [
        [("thumbs", 0.0, None, None)], [("thumbs", 0.0, None, None)]
    ]  # fmt: skip
    assert len(rows) == 6 and result.rows_in == 5


# --- robustness ----------------------------------------------------------------------------------

_KEYS = sorted(
    {
        *("messages", "messagesTree", "conversationId", "messageId", "parentMessageId"),
        *("isCreatedByUser", "text", "content", "feedback", "rating", "tag", "children"),
        *("role", "weight", "tool_calls", "tools", "input", "preferred_output"),
        *("non_preferred_output", "model_a", "model_b", "winner", "conversation_a"),
        *("conversation_b", "type", "data", "meta", "snapshot", "chat", "id", "history"),
        *("currentId", "parentId", "childrenIds", "message_id", "chat_id", "details"),
        *("annotation", "originalContent", "options"),
    }
)


def test_arbitrary_records_give_one_item_and_never_raise():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lfft.data.formats import arena, detect_record, librechat, openai_ft, openwebui
    from lfft.data.formats.common import parse_one

    leaves = st.none() | st.booleans() | st.integers(-2, 12) | st.text(max_size=8)
    leaves |= st.sampled_from(["user", "assistant", "thumbsUp", "model_a", "rating", "u1"])
    values = st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=6)
        ),
        max_leaves=30,
    )

    @settings(max_examples=150, deadline=None)
    @given(st.dictionaries(st.sampled_from(_KEYS), values, max_size=8))
    def check(record):
        detect_record(record)
        for module in (openwebui, librechat, openai_ft, arena):
            item = parse_one("f:1", record, None, module.parse)
            assert isinstance(item, Parsed | Reject)

    check()
