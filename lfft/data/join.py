"""Join one session of lfft-events records into ``interactions`` rows.

:func:`join_session` takes every record of one session (:mod:`lfft.data.events`), in read
order, and returns the interactions rows, the records it could not use (with a reason) and how
many it used, so that ``records == used + rejected`` for every session. ``docs/collect.md``
tables every reason.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter

from lfft.data.events import (
    CONTENT,
    EID,
    FILE,
    FTS,
    KIND,
    LINE,
    MID,
    MODEL,
    MSG,
    MTS,
    ORIGIN,
    PARENT,
    REF,
    ROLE,
    SCALE,
    TEXT,
    TYPE,
    USER,
    VALUE,
)

# A row: [interaction_id, session_id, user_id, ts_ms, roles, contents, prompt, response, model,
# feedback]: the context as a tuple of roles and a tuple of contents (shared by the rows that
# have the same context), feedback a list of (kind, origin, value, text, ts_ms, ref, scale).
Row = list
FEEDBACK_COL = 9  # where a row keeps its feedback list
Rejected = tuple  # (record, reason, detail)
Implicit = Callable[[str, str], "tuple[str, float] | None"]
_ROOT = ((), (), None)  # the context above a first message: no turns, no user
_MTS, _FTS = itemgetter(MTS), itemgetter(4)  # a message's timestamp; a row's feedback event's


def join_session(
    sid: str, recs: list[tuple], implicit: Implicit | None = None
) -> tuple[list[Row], list[Rejected], int]:
    """Every record of session ``sid`` (read order) -> (rows, rejected records, records used).

    One row per assistant message whose ancestors all arrived and whose parent is a user
    message; a message is *used* when it is in some row (response, prompt or context, or the
    user reply an implicit signal came from); a feedback record when it attached to a row.
    """
    rejected: list[Rejected] = []
    msgs, feedback, chains = _dedup(recs, rejected)
    broken = _chains(msgs, chains) if len(chains) < len(msgs) else {}
    answers = [m for m in msgs.values() if m[ROLE] == "assistant" and m[MID] in chains]
    if len(answers) > 1:
        _sort(answers, _MTS, _order)
    used: set[str] = set()
    rows: list[list] = []
    row_of: dict[str, list] = {}
    for m in answers:
        parent = m[PARENT]
        prompt = msgs.get(parent) if parent is not None else None
        if prompt is None or prompt[ROLE] != "user":
            continue
        above = prompt[PARENT]
        roles, contents, user = chains[above] if above is not None else _ROOT
        mid = m[MID]
        row = [
            f"{sid}:{mid}",
            sid,
            m[USER] or prompt[USER] or user,
            m[MTS],
            roles,
            contents,
            prompt[CONTENT],
            m[CONTENT],
            m[MODEL],
            [],
        ]
        rows.append(row)
        row_of[mid] = row
        while mid is not None and mid not in used:  # the response and all its ancestors
            used.add(mid)
            mid = msgs[mid][PARENT]
    if implicit is not None and rows:
        _infer(msgs, row_of, implicit, used)
    if len(used) < len(msgs):
        for m in msgs.values():
            if m[MID] not in used:
                rejected.append((m, *_why_unused(m, msgs, broken)))
    n_fb = _attach(sid, feedback, msgs, row_of, rejected) if feedback else 0
    for row in rows:
        if len(row[FEEDBACK_COL]) > 1:
            _sort(row[FEEDBACK_COL], _FTS, _fb_order)
    return rows, rejected, len(used) + n_fb


def _dedup(recs: list[tuple], rejected: list[Rejected]) -> tuple[dict, list[tuple], dict]:
    """Drop repeated deliveries: the same event id, or the same content (first one wins).

    Returns the messages by id, the feedback records and the chains (see :func:`_chains`) of
    the messages whose parent came before them (the usual case: no tree to walk).
    """
    msgs: dict[str, tuple] = {}
    chains: dict[str, tuple] = {}
    feedback: list[tuple] = []
    seen: set = set()  # event ids (str) and content keys of feedback without an id (tuples)
    for r in recs:
        eid = r[EID]
        if r[TYPE] == MSG:
            if eid is not None:
                if eid in seen:
                    rejected.append((r, "duplicate_event", f"event id {eid!r} was seen before"))
                    continue
                seen.add(eid)
            old = msgs.setdefault(r[MID], r)
            if old is r:
                parent = r[PARENT]
                base = _ROOT if parent is None else chains.get(parent)
                if base is not None:
                    roles, contents, user = base
                    chains[r[MID]] = (roles + (r[ROLE],), contents + (r[CONTENT],), r[USER] or user)
                continue
            if old[MID : USER + 1] == r[MID : USER + 1]:
                rejected.append((r, "duplicate_event", f"message {r[MID]!r} delivered again"))
            else:
                detail = f"message {r[MID]!r} arrived earlier with other fields; the first is kept"
                rejected.append((r, "conflicting_message", detail))
        else:
            key = eid if eid is not None else r[MID : SCALE + 1]
            if key in seen:
                what = f"event id {eid!r} was seen before" if eid else "the same feedback again"
                rejected.append((r, "duplicate_event", what))
                continue
            seen.add(key)
            feedback.append(r)
    return msgs, feedback, chains


def _chains(msgs: dict[str, tuple], chains: dict[str, tuple]) -> dict[str, tuple]:
    """Complete ``chains`` by walking every other message up to its root, once; returns
    ``broken``.

    ``chains[m]`` is, for a message whose ancestors all arrived, ``(roles, contents, user)`` of
    the turns from the root down to ``m`` (inclusive) and the nearest ``user_id`` among them;
    ``broken[m]`` is ``(reason, detail)`` for every other message.
    """
    broken: dict[str, tuple] = {}
    limit = len(msgs)
    for start, rec in msgs.items():
        if start in chains or start in broken:
            continue
        path = [rec]
        parent = rec[PARENT]
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
            prec = msgs.get(parent)
            if prec is None:
                bad = ("missing_parent", f"ancestor {parent!r} never appears in the session")
                break
            if len(path) > limit:
                bad = ("parent_cycle", f"message {parent!r} is its own ancestor")
                break
            path.append(prec)
            parent = prec[PARENT]
        if base is None:
            for m in path:
                broken[m[MID]] = bad
            continue
        roles, contents, user = base
        for m in reversed(path):
            roles += (m[ROLE],)
            contents += (m[CONTENT],)
            user = m[USER] or user
            chains[m[MID]] = (roles, contents, user)
    return broken


def _infer(msgs: dict[str, tuple], row_of: dict[str, list], implicit: Implicit, used: set[str]):
    """Implicit feedback: the user's next message after a response (its user children)."""
    for m in msgs.values():
        if m[ROLE] != "user":
            continue
        row = row_of.get(m[PARENT])
        if row is None:
            continue
        signal = implicit(row[6], m[CONTENT])
        if signal is not None:
            kind, value = signal
            row[FEEDBACK_COL].append((kind, "implicit", value, m[CONTENT], m[MTS], None, None))
            used.add(m[MID])


def _why_unused(m: tuple, msgs: dict[str, tuple], broken: dict) -> tuple[str, str]:
    bad = broken.get(m[MID])
    if bad is not None:
        return bad
    if m[ROLE] == "assistant":
        parent = msgs.get(m[PARENT]) if m[PARENT] is not None else None
        what = "has no parent" if parent is None else f"answers a {parent[ROLE]} message"
        return "parent_not_user", f"assistant message {m[MID]!r} {what}, not a user message"
    return "no_response", f"no assistant message answers {m[ROLE]} message {m[MID]!r}"


def _attach(sid: str, feedback: list[tuple], msgs, row_of, rejected: list[Rejected]) -> int:
    """Attach feedback/action records to their rows; returns how many attached."""
    n = 0
    for f in feedback:
        mid, ref = f[MID], f[REF]
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
        row[FEEDBACK_COL].append((f[KIND], f[ORIGIN], f[VALUE], f[TEXT], f[FTS], ref, f[SCALE]))
        n += 1
    return n


def _target_problem(mid: str, target: tuple | None, row_of: dict) -> tuple[str, str] | None:
    if target is None:
        return "orphan_feedback", f"message {mid!r} never appears in the session"
    if target[ROLE] != "assistant":
        return "bad_target", f"message {mid!r} is a {target[ROLE]} message, not a response"
    if mid not in row_of:
        return "target_rejected", f"message {mid!r} was rejected, so is its feedback"
    return None


def _preference_problem(f: tuple, chosen: tuple, other: tuple | None, row_of: dict):
    ref = f[REF]
    if other is None:
        return "orphan_feedback", f"preferred over {ref!r}, which never appears in the session"
    if ref == f[MID] or other[ROLE] != "assistant" or other[PARENT] != chosen[PARENT]:
        return "bad_target", f"{ref!r} is not a regenerated sibling of {f[MID]!r}"
    if ref not in row_of:
        return "target_rejected", f"sibling {ref!r} was rejected"
    return None


def _sort(items: list[tuple], by_ts: Callable, key: Callable) -> None:
    """Sort ``items`` (in read order) by ``key``: timestamp, missing ones last, then read order.

    A stable sort by the timestamp alone gives that order when every item has one (the usual
    case), with a key function in C.
    """
    items.sort(key=key if None in map(by_ts, items) else by_ts)


def _order(m: tuple) -> tuple:
    ts = m[MTS]
    return (ts is None, ts or 0, m[FILE], m[LINE])


def _fb_order(f: tuple) -> tuple:
    return (f[4] is None, f[4] or 0)
