"""Join the events of one lfft-events session into ``interactions`` rows.

:func:`join_session` takes every event of one session (:mod:`lfft.data.events`), in read
order, and returns the rows (:class:`Row`, their feedback lists of :class:`FeedbackEvent`), the
events it could not use (with a reason) and how many it used, so that
``events == used + rejected`` for every session. ``docs/collect.md`` tables every reason.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

import msgspec

from lfft.data.events import Event, Feedback, Message

Rejected = tuple[Event, str, str]  # (event, reason, detail)
Implicit = Callable[[str, str], "tuple[str, float] | None"]
# A chain: the turns from a conversation's root down to a message, as a tuple of roles and a
# tuple of contents (shared by every row below it), and the nearest user id among them.
Chain = tuple[tuple[str, ...], tuple[str, ...], "str | None"]
_ROOT: Chain = ((), (), None)  # the context above a first message: no turns, no user
_TS = attrgetter("ts")


class FeedbackEvent(msgspec.Struct, gc=False):
    """One element of a row's ``feedback`` list (``schemas.FEEDBACK_EVENT``, less the span
    offsets, which lfft-events never sets)."""

    kind: str
    origin: str
    value: float | None
    text: str | None
    ts: int | None  # epoch milliseconds
    ref: str | None  # preference: the interaction id of the response that lost
    scale: float | None


class Row(msgspec.Struct, gc=False):
    """One ``interactions`` row in the making (``schemas.INTERACTIONS``; ``source`` is
    ``events`` for every row)."""

    interaction_id: str
    session_id: str
    user_id: str | None
    ts: int | None  # epoch milliseconds
    roles: tuple[str, ...]  # the context: roles and contents of the turns above the prompt
    contents: tuple[str, ...]
    prompt: str
    response: str
    model: str | None
    feedback: list[FeedbackEvent]


def join_session(
    sid: str, events: list[Event], implicit: Implicit | None = None
) -> tuple[list[Row], list[Rejected], int]:
    """Every event of session ``sid`` (read order) -> (rows, rejected events, events used).

    One row per assistant message whose ancestors all arrived and whose parent is a user
    message; a message is *used* when it is in some row (response, prompt or context, or the
    user reply an implicit signal came from); a feedback event when it attached to a row.
    """
    rejected: list[Rejected] = []
    msgs, feedback, chains = _dedup(events, rejected)
    broken = _chains(msgs, chains) if len(chains) < len(msgs) else {}
    answers = [m for m in msgs.values() if m.role == "assistant" and m.message_id in chains]
    if len(answers) > 1:
        _sort(answers, _message_order)
    used: set[str] = set()
    rows: list[Row] = []
    row_of: dict[str, Row] = {}
    for m in answers:
        parent = m.parent_id
        prompt = msgs.get(parent) if parent is not None else None
        if prompt is None or prompt.role != "user":
            continue
        above = prompt.parent_id
        roles, contents, user = chains[above] if above is not None else _ROOT
        mid = m.message_id
        row = Row(
            f"{sid}:{mid}",
            sid,
            m.user_id or prompt.user_id or user,
            m.ts,
            roles,
            contents,
            prompt.content,
            m.content,
            m.model,
            [],
        )
        rows.append(row)
        row_of[mid] = row
        while mid is not None and mid not in used:  # the response and all its ancestors
            used.add(mid)
            mid = msgs[mid].parent_id
    if implicit is not None and rows:
        _infer(msgs, row_of, implicit, used)
    if len(used) < len(msgs):
        for m in msgs.values():
            if m.message_id not in used:
                rejected.append((m, *_why_unused(m, msgs, broken)))
    n_fb = _attach(sid, feedback, msgs, row_of, rejected) if feedback else 0
    for row in rows:
        if len(row.feedback) > 1:
            _sort(row.feedback, _feedback_order)
    return rows, rejected, len(used) + n_fb


def _dedup(
    events: list[Event], rejected: list[Rejected]
) -> tuple[dict[str, Message], list[Feedback], dict[str, Chain]]:
    """Drop repeated deliveries: the same event id, or the same content (first one wins).

    Returns the messages by id, the feedback events and the chains (see :func:`_chains`) of
    the messages whose parent came before them (the usual case: no tree to walk).
    """
    msgs: dict[str, Message] = {}
    chains: dict[str, Chain] = {}
    feedback: list[Feedback] = []
    seen: set = set()  # event ids (str) and content keys of feedback without an id (tuples)
    for e in events:
        eid = e.event_id
        if type(e) is Message:
            if eid is not None:
                if eid in seen:
                    rejected.append((e, "duplicate_event", f"event id {eid!r} was seen before"))
                    continue
                seen.add(eid)
            mid = e.message_id
            old = msgs.setdefault(mid, e)
            if old is e:
                parent = e.parent_id
                base = _ROOT if parent is None else chains.get(parent)
                if base is not None:
                    roles, contents, user = base
                    chains[mid] = (roles + (e.role,), contents + (e.content,), e.user_id or user)
                continue
            if old.same_message(e):
                rejected.append((e, "duplicate_event", f"message {mid!r} delivered again"))
            else:
                detail = f"message {mid!r} arrived earlier with other fields; the first is kept"
                rejected.append((e, "conflicting_message", detail))
        else:
            key = eid if eid is not None else e.content_key()
            if key in seen:
                what = f"event id {eid!r} was seen before" if eid else "the same feedback again"
                rejected.append((e, "duplicate_event", what))
                continue
            seen.add(key)
            feedback.append(e)
    return msgs, feedback, chains


def _chains(msgs: dict[str, Message], chains: dict[str, Chain]) -> dict[str, tuple[str, str]]:
    """Complete ``chains`` by walking every other message up to its root, once; returns
    ``broken``.

    ``chains[m]`` is, for a message whose ancestors all arrived, the :data:`Chain` from the root
    down to ``m`` (inclusive); ``broken[m]`` is ``(reason, detail)`` for every other message.
    """
    broken: dict[str, tuple[str, str]] = {}
    limit = len(msgs)
    for start, msg in msgs.items():
        if start in chains or start in broken:
            continue
        path = [msg]
        parent = msg.parent_id
        while True:
            if parent is None:
                base = _ROOT
                break
            base = chains.get(parent)
            if base is not None:
                break
            bad = broken.get(parent)
            if bad is not None:
                break
            above = msgs.get(parent)
            if above is None:
                bad = ("missing_parent", f"ancestor {parent!r} never appears in the session")
                break
            if len(path) > limit:
                bad = ("parent_cycle", f"message {parent!r} is its own ancestor")
                break
            path.append(above)
            parent = above.parent_id
        if base is None:
            for m in path:
                broken[m.message_id] = bad
            continue
        roles, contents, user = base
        for m in reversed(path):
            roles += (m.role,)
            contents += (m.content,)
            user = m.user_id or user
            chains[m.message_id] = (roles, contents, user)
    return broken


def _infer(
    msgs: dict[str, Message], row_of: dict[str, Row], implicit: Implicit, used: set[str]
) -> None:
    """Implicit feedback: the user's next message after a response (its user children)."""
    for m in msgs.values():
        if m.role != "user":
            continue
        row = row_of.get(m.parent_id)
        if row is None:
            continue
        signal = implicit(row.prompt, m.content)
        if signal is not None:
            kind, value = signal
            row.feedback.append(FeedbackEvent(kind, "implicit", value, m.content, m.ts, None, None))
            used.add(m.message_id)


def _why_unused(m: Message, msgs: dict[str, Message], broken: dict) -> tuple[str, str]:
    bad = broken.get(m.message_id)
    if bad is not None:
        return bad
    if m.role == "assistant":
        parent = msgs.get(m.parent_id) if m.parent_id is not None else None
        what = "has no parent" if parent is None else f"answers a {parent.role} message"
        return "parent_not_user", f"assistant message {m.message_id!r} {what}, not a user message"
    return "no_response", f"no assistant message answers {m.role} message {m.message_id!r}"


def _attach(
    sid: str,
    feedback: list[Feedback],
    msgs: dict[str, Message],
    row_of: dict[str, Row],
    rejected: list[Rejected],
) -> int:
    """Attach feedback/action events to their rows; returns how many attached."""
    n = 0
    for f in feedback:
        mid, ref = f.message_id, f.ref
        row = row_of.get(mid)
        if row is None or ref is not None:  # else the common case: a response in a row
            target = msgs.get(mid)
            problem = _target_problem(mid, target, row_of)
            if problem is None and ref is not None:
                problem = _preference_problem(f, target, msgs.get(ref), row_of)
                ref = f"{sid}:{ref}"
            if problem is not None:
                rejected.append((f, *problem))
                continue
        row.feedback.append(FeedbackEvent(f.kind, f.origin, f.value, f.text, f.ts, ref, f.scale))
        n += 1
    return n


def _target_problem(mid: str, target: Message | None, row_of: dict) -> tuple[str, str] | None:
    if target is None:
        return "orphan_feedback", f"message {mid!r} never appears in the session"
    if target.role != "assistant":
        return "bad_target", f"message {mid!r} is a {target.role} message, not a response"
    if mid not in row_of:
        return "target_rejected", f"message {mid!r} was rejected, so is its feedback"
    return None


def _preference_problem(f: Feedback, chosen: Message, other: Message | None, row_of: dict):
    ref = f.ref
    if other is None:
        return "orphan_feedback", f"preferred over {ref!r}, which never appears in the session"
    if ref == f.message_id or other.role != "assistant" or other.parent_id != chosen.parent_id:
        return "bad_target", f"{ref!r} is not a regenerated sibling of {f.message_id!r}"
    if ref not in row_of:
        return "target_rejected", f"sibling {ref!r} was rejected"
    return None


def _sort(items: list, key: Callable) -> None:
    """Sort ``items`` (in read order) by ``key``: timestamp, missing ones last, then read order.

    A stable sort by the timestamp alone gives that order when every item has one (the usual
    case), with a key function in C.
    """
    items.sort(key=key if None in map(_TS, items) else _TS)


def _message_order(m: Message) -> tuple:
    ts = m.ts
    return (ts is None, ts or 0, m.file, m.line)


def _feedback_order(f: FeedbackEvent) -> tuple:
    return (f.ts is None, f.ts or 0)
