"""Open WebUI: the admin feedback export and the users' chat export (two roles of one format).

Upstream schemas (open-webui/open-webui), checked against:

- ``backend/open_webui/models/feedbacks.py`` @ 033ac2ee: a feedback record is ``FeedbackModel``
  ``{id, user_id, version, type: "rating", data, meta, snapshot, created_at, updated_at}`` (epoch
  seconds); ``RatingData`` ``{rating: str | int, model_id, sibling_model_ids, reason, comment}``
  with extra keys allowed (``details``, ``tags``); some versions add ``chat_id``.
- ``backend/open_webui/routers/evaluations.py`` @ 41511450: ``GET /feedbacks/all/export`` returns
  ``list[FeedbackModel]`` (with ``snapshot``); later versions return ``FeedbackUserResponse``,
  which has no ``snapshot`` (hence the join with a chat export, :mod:`.openwebui_group`).
- ``src/lib/components/chat/Messages/ResponseMessage.svelte`` (``feedbackHandler``): ``data`` is the
  message's ``annotation`` (``rating`` 1/-1, ``details.rating`` 1-10 or null, ``reason``,
  ``comment``, ``tags``) plus ``model_id`` and ``sibling_model_ids``; ``meta`` is ``{arena,
  model_id, message_id, message_index, chat_id, base_models}``; ``snapshot`` is ``{chat:
  getChatById(chatId)}``, a ``ChatModel``, fetched *before* the rating is saved.
- ``src/lib/components/chat/Messages/RateComment.svelte`` @ dc5771d6: ``reason`` keys
  (``accurate_information``, ``not_helpful``, ...), free-text ``comment``, ``tags``.
- ``backend/open_webui/models/chats.py`` @ 00059776: ``ChatModel`` ``{id, user_id, title, chat,
  created_at, updated_at, ...}``; ``chat.history`` = ``{messages: {id: message}, currentId}``,
  legacy chats a ``chat.messages`` list. A message: ``{id, parentId, childrenIds, role, content,
  model, timestamp, annotation, originalContent, selectedModelId, arena, modelIdx}``.
- ``src/lib/components/chat/Messages.svelte``: editing a reply in place sets ``originalContent``
  to the text before the edit, then ``content`` to the edited text.

Rows: one per assistant message answering a user message; ``session_id`` = the chat id,
``interaction_id`` = ``"{chat_id}:{message_id}"`` (as for lfft-events), context = the path
from the root through ``parentId``. Mapping table: docs/formats.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lfft.data.formats.common import (
    ROLES as CHAT_ROLES,
)
from lfft.data.formats.common import (
    BadRecord,
    Row,
    Rows,
    as_number,
    content_text,
    optional_text,
    timestamp,
)
from lfft.data.records import Parsed, Reject, feedback_event, interaction

NAME = "openwebui"
ROLES = ("feedback", "chat")
SCALE = 10  # details.rating: the 1-10 buttons of RateComment
Event = dict[str, Any]
# What a message's feedback is looked up by: (chat_id, message_id) -> (events, sign) or None
Lookup = Callable[[str, str], tuple[list[Event], int] | None]


def looks_like(rec: dict[str, Any]) -> bool:
    return is_feedback(rec) or is_chat(rec)


def is_feedback(rec: Mapping[str, Any]) -> bool:
    return rec.get("type") == "rating" and "data" in rec and "meta" in rec


def is_chat(rec: Mapping[str, Any]) -> bool:
    chat = rec.get("chat")
    return "id" in rec and isinstance(chat, Mapping) and ("history" in chat or "messages" in chat)


def role(rec: dict[str, Any]) -> str:
    return "feedback" if is_feedback(rec) else "chat"


def read_group(files: dict[str, list[Path]], cfg: Any = None) -> Iterator[Parsed | Reject]:
    """Feedback and chat exports joined: :func:`.openwebui_group.read_group`."""
    from lfft.data.formats.openwebui_group import read_group as read

    return read(files, cfg)


def parse(rec: dict[str, Any]) -> list[Row]:
    """One record alone: a chat's every reply, or a feedback record's rated reply and its
    siblings from its own snapshot (what :func:`.openwebui_group.read_group` joins across)."""
    if is_feedback(rec):
        fb = feedback_of(rec)
        if fb.chat is None:
            raise BadRecord("no_snapshot", "the record has no snapshot; give the chat export too")
        own = {(fb.chat_id, fb.message_id): (fb.events, fb.sign)}
        lookup = lambda c, m: own.get((c, m))  # noqa: E731
        return chat_rows(fb.chat_id, fb.chat, lookup, [fb.message_id], user_id=fb.user_id)
    chat_id, chat = chat_of(rec)
    return chat_rows(chat_id, chat, lambda c, m: None, None, user_id=rec.get("user_id"))


# --- records ---------------------------------------------------------------------------------


class Feedback:
    """A validated feedback record: which message it rates and the events it gives."""

    def __init__(self, rec: Mapping[str, Any]):
        data, meta = rec.get("data"), rec.get("meta")
        if not isinstance(data, Mapping) or not isinstance(meta, Mapping):
            raise BadRecord("bad_record", "'data' and 'meta' must be objects")
        message_id = meta.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise BadRecord("missing_target", "no meta.message_id: which reply was rated?")
        self.message_id = message_id
        self.chat = snapshot_chat(rec.get("snapshot"))
        self.chat_id = _chat_id(rec, meta)
        self.updated = as_number(rec.get("updated_at") or rec.get("created_at") or 0, "bad_ts")
        ts = timestamp(rec.get("updated_at") or rec.get("created_at"))
        self.events, self.sign = annotation_events(data, ts)
        if not self.events:
            raise BadRecord("no_feedback", "no rating, detailed rating, reason, tag or comment")
        self.user_id = optional_text(rec.get("user_id"), "user_id")


def feedback_of(rec: Mapping[str, Any]) -> Feedback:
    if rec.get("type") != "rating":
        raise BadRecord("unknown_feedback_type", f"type {rec.get('type')!r}, not 'rating'")
    return Feedback(rec)


def _chat_id(rec: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The chat id: the record's ``chat_id``, ``meta.chat_id``, else the snapshot's chat id (a
    chat created in the UI stores ``chat.chat.id`` as "", so only the outer id counts)."""
    snap = rec.get("snapshot")
    outer = snap.get("chat") if isinstance(snap, Mapping) else None
    for value in (rec.get("chat_id"), meta.get("chat_id"), _get(outer, "id")):
        if isinstance(value, str) and value:
            return value
    raise BadRecord("missing_target", "no chat id (chat_id, meta.chat_id or snapshot.chat.id)")


def snapshot_chat(snapshot: Any) -> Mapping[str, Any] | None:
    """The chat body (with ``history`` or ``messages``) inside a feedback's snapshot:
    ``snapshot.chat.chat`` (a ChatModel) or ``snapshot.chat`` itself; None when absent."""
    if not snapshot:
        return None
    outer = snapshot.get("chat") if isinstance(snapshot, Mapping) else None
    for body in (_get(outer, "chat"), outer):
        if isinstance(body, Mapping) and ("history" in body or "messages" in body):
            return body
    raise BadRecord("bad_snapshot", "snapshot.chat holds neither history nor messages")


def chat_of(rec: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """A chat export record -> (chat id, chat body)."""
    chat_id = rec.get("id")
    if not isinstance(chat_id, str) or not chat_id:
        raise BadRecord("missing_id", "a chat without an 'id'")
    return chat_id, rec["chat"]


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def annotation_events(ann: Mapping[str, Any], ts: Any = None) -> tuple[list[Event], int]:
    """An annotation (or a feedback's ``data``) -> (events, sign of the thumbs: 1, -1, 0)."""
    events, sign = [], 0
    rating = ann.get("rating")
    if rating is not None:
        sign = {"1": 1, "-1": -1}.get(str(rating).strip(), 0) if not isinstance(rating, bool) else 0
        if sign == 0:
            raise BadRecord("bad_rating", f"rating {rating!r} is not 1 or -1")
        events.append(feedback_event("thumbs", value=1.0 if sign > 0 else 0.0, ts=ts))
    details = ann.get("details")
    if details is not None and not isinstance(details, Mapping):
        raise BadRecord("bad_rating", "'details' is not an object")
    score = _get(details, "rating")
    if score is not None:
        value = as_number(score, "bad_rating")
        if not 1 <= value <= SCALE:
            raise BadRecord("bad_rating", f"details.rating {score!r} is not in 1..{SCALE}")
        events.append(feedback_event("rating", value=value, scale=SCALE, ts=ts))
    reason = optional_text(ann.get("reason"), "reason", "bad_label")
    if reason:
        events.append(feedback_event("label", text=reason, ts=ts))
    tags = ann.get("tags") or []
    if not isinstance(tags, list):
        raise BadRecord("bad_label", "'tags' is not a list")
    for tag in tags:
        name = tag.get("name") if isinstance(tag, Mapping) else tag
        events.append(feedback_event("label", text=optional_text(name, "tags", "bad_label"), ts=ts))
    comment = optional_text(ann.get("comment"), "comment", "bad_comment")
    if comment and comment.strip():
        events.append(feedback_event("comment", text=comment, ts=ts))
    return events, sign


# --- the message tree ------------------------------------------------------------------------


def history(chat: Mapping[str, Any]) -> tuple[dict[str, Mapping[str, Any]], str | None]:
    """(messages by id, currentId) of a chat body: ``history.messages``, or the legacy
    ``messages`` list (linked by ``parentId`` when present, else in list order)."""
    hist = chat.get("history")
    if isinstance(hist, Mapping) and isinstance(hist.get("messages"), Mapping):
        msgs = {str(k): v for k, v in hist["messages"].items() if isinstance(v, Mapping)}
        return msgs, optional_text(hist.get("currentId"), "currentId", "bad_tree")
    legacy = chat.get("messages")
    if not isinstance(legacy, list):
        raise BadRecord("bad_tree", "chat.history.messages is not an object")
    msgs: dict[str, dict[str, Any]] = {}
    prev = None
    for i, m in enumerate(legacy):
        if not isinstance(m, Mapping):
            raise BadRecord("bad_tree", "a message is not an object")
        mid = str(m.get("id") or f"#{i}")
        msgs[mid] = {"parentId": prev, **m, "id": mid}
        prev = mid
    if not any("childrenIds" in m for m in msgs.values()):
        for mid, m in msgs.items():
            if m["parentId"] in msgs:
                msgs[m["parentId"]].setdefault("childrenIds", []).append(mid)
    return msgs, prev


def _path(msgs: Mapping[str, Mapping], start: str | None) -> list[str]:
    """Ids from the root down to ``start`` (following ``parentId``)."""
    path, seen = [], set()
    while start is not None and start in msgs:
        if start in seen:
            raise BadRecord("bad_tree", f"parentId loop at message {start!r}")
        seen.add(start)
        path.append(start)
        start = msgs[start].get("parentId")
    return path[::-1]


def _text(m: Mapping[str, Any]) -> str:
    return content_text(m.get("content"))


def _role(m: Mapping[str, Any]) -> str | None:
    return CHAT_ROLES.get(str(m.get("role", "")).lower())


def chat_rows(
    chat_id: str,
    chat: Mapping[str, Any],
    lookup: Lookup,
    targets: list[str] | None,
    skip: Callable[[str], bool] = lambda mid: False,
    user_id: Any = None,
) -> Rows:
    """Rows for assistant messages of one chat: every one (``targets`` None), or the given
    ones and their siblings; ``skip(message_id)`` leaves out rows already written.

    Feedback of a message comes from ``lookup`` (feedback records), else its ``annotation``.
    Siblings (a parent's other assistant children: regenerations, arena or multi-model answers)
    give a ``preference`` where one's thumbs beat the other's (rated over unrated or opposite).
    A sibling the user left for a later regeneration they kept (on the path to ``currentId``)
    gets a ``regenerate`` action, unless the siblings are answers of several models at once.
    """
    msgs, current = history(chat)
    if targets is None:
        wanted = [mid for mid, m in msgs.items() if _role(m) == "assistant"]
    else:
        wanted = []
        for mid in targets:
            if mid not in msgs:
                raise BadRecord("message_not_found", f"message {mid!r} is not in the chat")
            if _role(msgs[mid]) != "assistant":
                raise BadRecord("bad_target", f"message {mid!r} is not an assistant reply")
            wanted.extend(_siblings(msgs, mid))
    kept = set(_path(msgs, current))
    rows, notes, done = [], [], set()
    for mid in wanted:
        if mid in done or skip(mid):
            continue
        done.add(mid)
        m = msgs[mid]
        path = _path(msgs, m.get("parentId"))
        if not path or _role(msgs[path[-1]]) != "user":
            notes.append(("no_user_turn", f"reply {mid!r} does not answer a user message"))
            continue
        if m.get("error"):
            notes.append(("error_reply", f"reply {mid!r} is an error message"))
            continue
        group = _siblings(msgs, mid)
        events = _events(chat_id, msgs, mid, lookup)[0]
        events += _preferences(chat_id, msgs, mid, group, lookup)
        if _regenerated(msgs, mid, group, kept):
            events.append(feedback_event("regenerate", origin="behavioral"))
        rows.append(_row(chat_id, msgs, mid, path, events, user_id))
    return Rows(rows, notes)


def _siblings(msgs: Mapping[str, Mapping], mid: str) -> list[str]:
    """The assistant replies to the parent of ``mid`` (``mid`` included), in creation order."""
    parent = msgs.get(msgs[mid].get("parentId"))
    children = parent.get("childrenIds") if parent else None
    ids = [c for c in children or [] if c in msgs and _role(msgs[c]) == "assistant"]
    return ids if mid in ids else [*ids, mid]


def _events(chat_id: str, msgs, mid: str, lookup: Lookup) -> tuple[list[Event], int]:
    found = lookup(chat_id, mid)
    if found is not None:
        return list(found[0]), found[1]
    ann = msgs[mid].get("annotation")
    if not isinstance(ann, Mapping):
        return [], 0
    return annotation_events(ann)


def _preferences(chat_id: str, msgs, mid: str, group: list[str], lookup: Lookup) -> list[Event]:
    others = [(f"{chat_id}:{o}", _events(chat_id, msgs, o, lookup)[1]) for o in group if o != mid]
    return sign_preferences(_events(chat_id, msgs, mid, lookup)[1], others)


def sign_preferences(mine: int, siblings: list[tuple[str, int]]) -> list[Event]:
    """``preference`` events of a reply whose thumbs (1 up, 0 none, -1 down) beat a sibling's:
    up over unrated or down, unrated over down. ``siblings``: (interaction id, thumbs)."""
    return [feedback_event("preference", ref=ref) for ref, theirs in siblings if mine > theirs]


def _regenerated(msgs, mid: str, group: list[str], kept: set[str]) -> bool:
    """Whether the user asked for another answer after ``mid`` and kept a later sibling."""
    keep = next((g for g in group if g in kept), None)
    if keep is None or keep == mid or group.index(mid) > group.index(keep):
        return False
    several_models = len({msgs[g].get("modelIdx") for g in group} - {None}) > 1
    return not (several_models or any(msgs[g].get("arena") for g in group))


def _row(chat_id: str, msgs, mid: str, path: list[str], events: list[Event], user_id) -> Row:
    """The interaction of reply ``mid``: an in-place edit keeps the model's text in
    ``originalContent`` (the response); the edited ``content`` is an ``edit``."""
    m = msgs[mid]
    context = []
    for pid in path[:-1]:
        r = _role(msgs[pid])
        if r is not None:
            context.append({"role": r, "content": _text(msgs[pid])})
    response = _text(m)
    original = m.get("originalContent")
    if isinstance(original, str) and original != response:
        events = [*events, feedback_event("edit", text=response)]
        response = original
    model = m.get("selectedModelId") or m.get("model")
    return interaction(
        interaction_id=f"{chat_id}:{mid}",
        session_id=chat_id,
        prompt=_text(msgs[path[-1]]),
        response=response,
        source=NAME,
        context=context,
        feedback=events,
        user_id=optional_text(user_id, "user_id"),
        ts=timestamp(m.get("timestamp")),
        model=model if isinstance(model, str) else None,
    )
