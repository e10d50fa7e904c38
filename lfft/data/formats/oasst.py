"""OpenAssistant message trees: one tree per record, one row per assistant message.

Two layouts: the early export (each line *is* the root message) and the oasst1/oasst2
``*.trees.jsonl`` wrapper ``{"message_tree_id", "tree_state", "prompt": <root message>}``.
A message has ``message_id``, ``text``, ``role`` (prompter|assistant), ``rank`` (0 = best among
its siblings), ``emojis`` (name -> count), ``labels`` (name -> {value 0..1, count}), ``deleted``
and ``replies`` (its children). A conversation is a root-to-leaf path.

Rows: interaction_id = message_id, session_id = the tree id, context = the path above the
prompter message the reply answers. Deleted messages are skipped with their whole subtree (their
text was removed by moderators; what follows them answers text nobody should train on); each
is counted as ``deleted_message`` in collect's summary, its detail naming how many replies went
with it. A tree left without an assistant reply is a ``no_assistant_reply`` reject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lfft.data.formats.common import (
    BadRecord,
    Message,
    Row,
    Rows,
    as_number,
    optional_text,
    text_field,
    timestamp,
)
from lfft.data.records import feedback_event, interaction

NAME = "oasst"
_ROLE = {"prompter": "user", "assistant": "assistant"}


def looks_like(rec: dict[str, Any]) -> bool:
    if isinstance(rec.get("prompt"), dict) and "message_tree_id" in rec:
        return True
    role = rec.get("role")
    return "message_id" in rec and "replies" in rec and isinstance(role, str) and role in _ROLE


def parse(rec: dict[str, Any]) -> list[Row]:
    root = rec["prompt"] if isinstance(rec.get("prompt"), dict) else rec
    tree_id = rec.get("message_tree_id") or root.get("message_tree_id") or root.get("message_id")
    if not isinstance(tree_id, str):
        raise BadRecord("missing_id", "no message_tree_id or root message_id")
    rows: list[Row] = []
    deleted: list[tuple[str, str]] = []
    # Depth-first over (message, path of the messages above it, its sibling group).
    stack: list[tuple[dict, list[Message], list]] = [(root, [], [root])]
    while stack:
        msg, path, siblings = stack.pop()
        if not isinstance(msg, Mapping):
            raise BadRecord("bad_tree", "a reply is not an object")
        if msg.get("deleted"):
            below = _descendants(msg)
            what = f"message {msg.get('message_id')!r} was deleted by moderators"
            deleted.append(("deleted_message", f"{what}; {below} replies below it went with it"))
            continue
        role = _ROLE.get(msg.get("role"))
        if role is None:
            raise BadRecord("bad_tree", f"unknown role {msg.get('role')!r}")
        text = text_field(msg, "text", "bad_tree")
        if role == "assistant" and path and path[-1]["role"] == "user":
            rows.append(_row(msg, tree_id, path, text, siblings))
        here = [*path, {"role": role, "content": text}]
        replies = msg.get("replies") or []
        if not isinstance(replies, list):
            raise BadRecord("bad_tree", "'replies' is not a list")
        for child in reversed(replies):
            stack.append((child, here, replies))
    if not rows:
        detail = "the tree has no (undeleted) assistant reply"
        if deleted:
            detail += f" ({len(deleted)} deleted messages)"
        raise BadRecord("no_assistant_reply", detail)
    return Rows(rows, deleted)


def _descendants(msg: Mapping) -> int:
    """How many messages lie below ``msg``."""
    n, stack = -1, [msg]
    while stack:
        node = stack.pop()
        n += 1
        replies = node.get("replies") if isinstance(node, Mapping) else None
        if isinstance(replies, list):
            stack.extend(replies)
    return n


def _row(msg: Mapping, tree_id: str, path: list[Message], text: str, siblings: list) -> Row:
    message_id = msg.get("message_id")
    if not isinstance(message_id, str):
        raise BadRecord("missing_id", "an assistant message without message_id")
    return interaction(
        interaction_id=message_id,
        session_id=tree_id,
        prompt=path[-1]["content"],
        response=text,
        source=NAME,
        context=path[:-1],
        feedback=feedback(msg, siblings),
        user_id=optional_text(msg.get("user_id"), "user_id"),
        ts=timestamp(msg.get("created_date")),
        model=optional_text(msg.get("model_name"), "model_name"),
    )


def feedback(msg: Mapping, siblings: list) -> list[dict[str, Any]]:
    """rank -> ``rank`` (scale = ranked siblings), emojis -> ``emoji``, labels -> ``label``."""
    events = []
    if msg.get("rank") is not None:
        ranked = sum(1 for s in siblings if isinstance(s, Mapping) and s.get("rank") is not None)
        rank = as_number(msg["rank"], "bad_rank")
        events.append(feedback_event("rank", value=rank, scale=ranked))
    emojis = msg.get("emojis") or {}
    if not isinstance(emojis, Mapping):
        raise BadRecord("bad_emojis", "'emojis' is not an object")
    for name, count in emojis.items():
        if not name.startswith("_"):  # _skip_reply, _skip_ranking, ...: UI signals, not feedback
            events.append(feedback_event("emoji", value=as_number(count, "bad_emojis"), text=name))
    for name, value in _labels(msg.get("labels")):
        events.append(feedback_event("label", value=value, text=name))
    return events


def _labels(labels: Any) -> list[tuple[str, float]]:
    """oasst2 ``{name: {"value", "count"}}`` or oasst1 Parquet ``{"name": [], "value": []}``."""
    if not labels:
        return []
    if not isinstance(labels, Mapping):
        raise BadRecord("bad_labels", "'labels' is not an object")
    if isinstance(labels.get("name"), list):
        pairs = zip(labels["name"], labels.get("value") or [], strict=False)
    else:
        pairs = (
            (name, v.get("value") if isinstance(v, Mapping) else v) for name, v in labels.items()
        )
    return [(str(name), as_number(value, "bad_labels")) for name, value in pairs]
