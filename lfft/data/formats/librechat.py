"""LibreChat conversation export (the "Export" dialog, JSON): one conversation per file.

Upstream (danny-avila/LibreChat), checked against:

- ``client/src/hooks/Conversations/useExportConversation.ts`` @ ffec4535 (``exportJSON``):
  ``{conversationId, endpoint, title, exportAt, branches, recursive, options?}`` plus either
  ``messages`` (a flat list; every branch when "branches" is ticked) or ``messagesTree`` (the
  root's ``children``, nested, when "recursive" is ticked);
- ``client/src/hooks/Messages/useBuildMessageTree.ts`` @ aedebe8a: how both are built;
- ``packages/data-schemas/src/schema/message.ts`` @ ce3ce5ff: a message has ``messageId``,
  ``parentMessageId``, ``isCreatedByUser``, ``text``, ``content`` (parts), ``sender``, ``model``,
  ``endpoint``, ``error``, ``unfinished``, ``user``, ``createdAt`` and ``feedback {rating:
  "thumbsUp" | "thumbsDown", tag, text}``;
- ``packages/data-provider/src/feedback.ts`` @ 3170d2b6: the ``tag`` keys
  (``com_ui_feedback_tag_incorrect``, ...), free ``text``.

Rows: one per reply to a user message; ``session_id`` = ``conversationId``, ``interaction_id``
= ``"{conversationId}:{messageId}"``; context = the path from the root through
``parentMessageId``, after ``options.promptPrefix`` (the conversation's instructions) as a system
turn. Replies to one user message (regenerations) are siblings: a thumbs-up beats an unrated or
thumbs-down sibling (``preference``). Error replies are left out (counted as ``error_reply``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lfft.data.formats.common import BadRecord, Row, Rows, optional_text, timestamp
from lfft.data.formats.openwebui import sign_preferences
from lfft.data.records import feedback_event, interaction

NAME = "librechat"
_THUMBS = {"thumbsUp": 1, "thumbsDown": -1}


def looks_like(rec: dict[str, Any]) -> bool:
    if "conversationId" not in rec:
        return False
    msgs = rec.get("messagesTree", rec.get("messages"))
    return isinstance(msgs, list) and any(isinstance(m, Mapping) and "messageId" in m for m in msgs)


def parse(rec: dict[str, Any]) -> list[Row]:
    conv = rec.get("conversationId")
    if not isinstance(conv, str) or not conv:
        raise BadRecord("missing_id", "no conversationId")
    msgs = _flatten(rec.get("messagesTree", rec.get("messages")))
    children: dict[str | None, list[str]] = {}
    for mid, m in msgs.items():
        parent = m.get("parentMessageId")
        children.setdefault(parent if parent in msgs else None, []).append(mid)
    system = _system(rec.get("options"))
    rows, notes = [], []
    for mid, m in msgs.items():
        if m.get("isCreatedByUser"):
            continue
        path = _path(msgs, m.get("parentMessageId"))
        if not path or not msgs[path[-1]].get("isCreatedByUser"):
            notes.append(("no_user_turn", f"reply {mid!r} does not answer a user message"))
            continue
        if m.get("error"):
            notes.append(("error_reply", f"reply {mid!r} is an error message"))
            continue
        events, mine = _feedback(m.get("feedback"), m.get("updatedAt"))
        replies = [s for s in children.get(path[-1], []) if not msgs[s].get("isCreatedByUser")]
        others = [(f"{conv}:{s}", _feedback(msgs[s].get("feedback"))[1]) for s in replies]
        events += sign_preferences(mine, [o for o in others if o[0] != f"{conv}:{mid}"])
        context = system + [_turn(msgs[p]) for p in path[:-1]]
        rows.append(
            interaction(
                interaction_id=f"{conv}:{mid}",
                session_id=conv,
                prompt=_text(msgs[path[-1]]),
                response=_text(m),
                source=NAME,
                context=context,
                feedback=events,
                user_id=optional_text(m.get("user"), "user"),
                ts=timestamp(m.get("createdAt")),
                model=optional_text(m.get("model"), "model"),
            )
        )
    if not rows:
        raise BadRecord("no_assistant_reply", "no reply to a user message in the conversation")
    return Rows(rows, notes)


def _flatten(value: Any) -> dict[str, Mapping[str, Any]]:
    """``messages`` (flat) or ``messagesTree`` (nested ``children``) -> messages by id."""
    if not isinstance(value, list):
        raise BadRecord("bad_messages", "'messages' is not a list")
    out: dict[str, Mapping[str, Any]] = {}
    stack = list(reversed(value))
    while stack:
        m = stack.pop()
        if not isinstance(m, Mapping) or not isinstance(m.get("messageId"), str):
            raise BadRecord("bad_messages", "a message without a messageId")
        kids = m.get("children") or []
        if not isinstance(kids, list):
            raise BadRecord("bad_messages", "'children' is not a list")
        out[m["messageId"]] = m
        stack.extend(reversed(kids))
    return out


def _path(msgs: Mapping[str, Mapping], start: Any) -> list[str]:
    path, seen = [], set()
    while isinstance(start, str) and start in msgs:
        if start in seen:
            raise BadRecord("bad_tree", f"parentMessageId loop at {start!r}")
        seen.add(start)
        path.append(start)
        start = msgs[start].get("parentMessageId")
    return path[::-1]


def _turn(m: Mapping[str, Any]) -> dict[str, str]:
    return {"role": "user" if m.get("isCreatedByUser") else "assistant", "content": _text(m)}


def _text(m: Mapping[str, Any]) -> str:
    """``text``, else the text parts of ``content`` (tool calls, images, thinking left out)."""
    text = m.get("text")
    if isinstance(text, str) and text:
        return text
    parts = []
    for part in m.get("content") or []:
        if isinstance(part, Mapping) and part.get("type") == "text":
            value = part.get("text")
            value = value.get("value") if isinstance(value, Mapping) else value
            if isinstance(value, str):
                parts.append(value)
    return "\n\n".join(parts) if parts else (text if isinstance(text, str) else "")


def _system(options: Any) -> list[dict[str, str]]:
    prefix = options.get("promptPrefix") if isinstance(options, Mapping) else None
    return [{"role": "system", "content": prefix}] if isinstance(prefix, str) and prefix else []


def _feedback(fb: Any, ts: Any = None) -> tuple[list[dict[str, Any]], int]:
    """``feedback`` -> (events, thumbs sign): rating -> thumbs, tag -> label, text -> comment."""
    if fb is None:
        return [], 0
    if not isinstance(fb, Mapping) or fb.get("rating") not in _THUMBS:
        raise BadRecord("bad_rating", f"feedback rating {_get(fb, 'rating')!r}, not thumbsUp/Down")
    when = timestamp(ts)
    sign = _THUMBS[fb["rating"]]
    events = [feedback_event("thumbs", value=1.0 if sign > 0 else 0.0, ts=when)]
    tag = fb.get("tag")
    tag = tag.get("key") if isinstance(tag, Mapping) else tag
    if tag:
        events.append(feedback_event("label", text=optional_text(tag, "tag", "bad_label"), ts=when))
    text = optional_text(fb.get("text"), "text", "bad_comment")
    if text and text.strip():
        events.append(feedback_event("comment", text=text, ts=when))
    return events, sign


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None
