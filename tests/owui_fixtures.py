"""Open WebUI exports built the way Open WebUI writes them (no public sample files exist).

Upstream (open-webui/open-webui), the fields used below:
- a feedback record is ``FeedbackModel`` (``backend/open_webui/models/feedbacks.py`` @ 033ac2ee):
  ``id, user_id, version, type, data, meta, snapshot, created_at, updated_at``; the export
  (``routers/evaluations.py`` @ 41511450, ``GET /feedbacks/all/export``) is a JSON array of them,
  saved by the admin page as ``feedback-history-export-<ts>.json``;
- ``data`` / ``meta`` / ``snapshot`` as ``feedbackHandler`` in
  ``src/lib/components/chat/Messages/ResponseMessage.svelte`` builds them: ``data`` = the
  message's annotation (``rating`` 1/-1, ``details.rating`` 1-10 or null, ``reason``,
  ``comment``, ``tags``) + ``model_id`` + ``sibling_model_ids`` (only with siblings); ``meta`` =
  ``{arena, model_id, message_id, message_index, chat_id, base_models}``; ``snapshot`` =
  ``{chat: <ChatModel from getChatById>}`` taken before the rating is saved;
- a chat is ``ChatModel`` (``backend/open_webui/models/chats.py`` @ 00059776): ``id, user_id,
  title, chat, created_at, updated_at, share_id, archived, pinned, meta, folder_id``; ``chat`` =
  ``{id: "", title, models, params, history: {messages, currentId}, messages, tags, timestamp,
  files}``; the user's "Export Chats" (Settings › Data Controls) is a JSON array of them,
  ``chat-export-<ts>.json``;
- an in-place edit of a reply (``src/lib/components/chat/Messages.svelte``) sets
  ``originalContent`` to the text before the edit and ``content`` to the new text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

T0 = 1_714_557_600  # epoch seconds, as Open WebUI stores them


def message(
    mid: str, parent: str | None, role: str, content: str, children=(), **extra: Any
) -> dict:
    m = {
        "id": mid,
        "parentId": parent,
        "childrenIds": list(children),
        "role": role,
        "content": content,
        "timestamp": T0 + len(mid),
    }
    if role == "assistant":
        m |= {"model": "llama3:8b", "modelName": "llama3:8b", "modelIdx": 0, "done": True}
    else:
        m |= {"models": ["llama3:8b"]}
    return m | extra


def chat_model(chat_id: str, messages: list[dict], current: str, user_id: str = "user-1") -> dict:
    """A ChatModel; ``chat.messages`` is the branch to ``currentId`` (as the UI saves it)."""
    by_id = {m["id"]: m for m in messages}
    branch, at = [], current
    while at is not None:
        branch.append(by_id[at])
        at = by_id[at]["parentId"]
    return {
        "id": chat_id,
        "user_id": user_id,
        "title": f"Chat {chat_id}",
        "chat": {
            "id": "",  # chats created in the UI store ""
            "title": f"Chat {chat_id}",
            "models": ["llama3:8b"],
            "params": {},
            "history": {"messages": by_id, "currentId": current},
            "messages": branch[::-1],
            "tags": [],
            "timestamp": T0 * 1000,
            "files": [],
        },
        "updated_at": T0 + 100,
        "created_at": T0,
        "share_id": None,
        "archived": False,
        "pinned": False,
        "meta": {},
        "folder_id": None,
    }


def feedback(
    fid: str,
    chat: dict,
    message_id: str,
    rating: Any = 1,
    *,
    details: int | None = None,
    reason: str | None = None,
    comment: str | None = None,
    tags: list[str] | None = None,
    snapshot: bool = True,
    updated: int = T0 + 200,
) -> dict:
    """A FeedbackModel rating ``message_id`` of ``chat`` (a ChatModel)."""
    msgs = chat["chat"]["history"]["messages"]
    target = msgs.get(message_id, {"parentId": None})  # a message deleted since: not there
    parent = msgs.get(target["parentId"]) or {"childrenIds": [message_id]}
    data: dict[str, Any] = {
        "rating": rating,
        "model_id": target.get("model"),
        "reason": reason,
        "comment": comment,
        "tags": tags or [],
        "details": {"rating": details},
    }
    if len(parent["childrenIds"]) > 1:
        others = [c for c in parent["childrenIds"] if c != message_id]
        data["sibling_model_ids"] = [msgs[c].get("model") for c in others]
    return {
        "id": fid,
        "user_id": chat["user_id"],
        "version": 0,
        "type": "rating",
        "data": data,
        "meta": {
            "arena": False,
            "model_id": target.get("model"),
            "message_id": message_id,
            "message_index": 2,
            "chat_id": chat["id"],
            "base_models": {"llama3:8b": None},
        },
        "snapshot": {"chat": chat} if snapshot else None,
        "created_at": updated - 10,
        "updated_at": updated,
    }


def regenerated_and_edited_chat(chat_id: str = "chat-1") -> dict:
    """u1 -> a1 (regenerated) | a2 (kept) -> u2 -> a3 (edited in place)."""
    return chat_model(
        chat_id,
        [
            message("u1", None, "user", "What is 2+2?", ["a1", "a2"]),
            message("a1", "u1", "assistant", "5"),
            message("a2", "u1", "assistant", "4", ["u2"]),
            message("u2", "a2", "user", "And 3+3?", ["a3"]),
            message("a3", "u2", "assistant", "6 (six)", originalContent="six"),
        ],
        current="a3",
    )


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))
    return path


def synthetic_export(n_chats: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(feedback records, chats) of a small Open WebUI instance: arithmetic questions; about a
    third of the replies wrong and rated down, then regenerated and the right answer rated up;
    every third feedback record without its snapshot (as newer versions export it), so the join
    with the chat export is needed."""
    import random

    rng = random.Random(seed)
    feedbacks, chats = [], []
    for c in range(n_chats):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        right, wrong = f"{a} plus {b} is {a + b}.", f"{a} plus {b} is {a + b + 1}."
        regenerated = rng.random() < 0.35
        first = wrong if regenerated else right
        ids = ["a1", "a2"] if regenerated else ["a1"]
        msgs = [message("u1", None, "user", f"What is {a} plus {b}?", ids)]
        msgs.append(message("a1", "u1", "assistant", first))
        if regenerated:
            msgs.append(message("a2", "u1", "assistant", right))
        chat = chat_model(f"chat-{c:04d}", msgs, current=ids[-1], user_id=f"user-{c % 7}")
        chats.append(chat)
        rated = [("a1", -1), ("a2", 1)] if regenerated else [("a1", rng.choice([1, 1, -1]))]
        for mid, rating in rated:
            n = len(feedbacks)
            rec = feedback(f"fb-{n}", chat, mid, rating, details=9 if rating > 0 else 2)
            feedbacks.append(rec if n % 3 else {**rec, "snapshot": None})
    return feedbacks, chats
