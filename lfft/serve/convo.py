"""Conversation identity: which session and which logged messages a request's history is.

A plain OpenAI client sends the whole history with every request and no ids. Serve keeps an
index from the *path* of each logged message (a digest of the ``user`` field and the chain of
``(role, content)`` from the first message down to it) to its ``(session_id, message_id)``.
A request's history is walked down that index: the known prefix keeps its session and ids, the
rest gets new ids and is logged, and the answer's parent is the last history message. So the
same history sent twice (a regenerate) finds the same user message and its answer is a
*sibling* of the first answer, and a follow-up continues the same session.

Clients that know better send the lfft extension object (``"lfft": {"session_id": ...,
"message_ids": [...]}``): given ids win over derived ones. The index is rebuilt from the log at
start-up (:func:`lfft.serve.log.replay`), so identity survives a restart.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lfft.serve.log import new_id, now_iso


def _digest(parent: bytes, role: str, content: str) -> bytes:
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(role.encode())
    h.update(b"\0")
    h.update(content.encode("utf-8", "surrogatepass"))
    return h.digest()


def root(user: str | None) -> bytes:
    """The path digest above a first message: strangers (different ``user``) never share."""
    return hashlib.blake2b(b"u:" + (user or "").encode(), digest_size=16).digest()


@dataclass
class Plan:
    """What a request's history is: its session, an id per message, the events to log."""

    session_id: str
    message_ids: list[str]
    parent_digest: bytes  # the path digest of the last history message (the answer's parent)
    events: list[dict[str, Any]] = field(default_factory=list)
    new: list[tuple[bytes, str, str]] = field(default_factory=list)  # indexed by commit()

    @property
    def parent_id(self) -> str | None:
        return self.message_ids[-1] if self.message_ids else None


class Conversations:
    """The path index (thread-safe). ``index[digest][session_id] = message_id``."""

    def __init__(self) -> None:
        self._index: dict[bytes, dict[str, str]] = {}
        self._digest_of: dict[tuple[str, str], bytes] = {}
        self._session_of: dict[str, str] = {}
        self._lock = threading.Lock()

    def learn(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Index logged message events (parents before children, as serve writes them)."""
        n = 0
        with self._lock:
            for e in events:
                sid, mid, parent = str(e["session_id"]), str(e["message_id"]), e.get("parent_id")
                above = self._digest_of.get((sid, str(parent))) if parent is not None else None
                if above is None:
                    above = root(e.get("user_id"))
                self._add(_digest(above, e["role"], e["content"]), sid, mid)
                n += 1
        return n

    def _add(self, digest: bytes, sid: str, mid: str) -> None:
        self._index.setdefault(digest, {}).setdefault(sid, mid)
        self._digest_of[(sid, mid)] = digest
        self._session_of[mid] = sid

    def session_of(self, message_id: str) -> str | None:
        return self._session_of.get(message_id)

    def resolve(
        self,
        messages: Sequence[Mapping[str, str]],
        user: str | None,
        session_id: str | None = None,
        given_ids: Sequence[str | None] = (),
    ) -> Plan:
        """The plan of a request: known messages keep their ids, new ones are to be logged and
        then :meth:`commit`-ted (a request that fails before that leaves no trace)."""
        with self._lock:
            digest = root(user)
            ids: list[str] = []
            events: list[dict[str, Any]] = []
            new: list[tuple[bytes, str, str]] = []
            sid = session_id
            for i, m in enumerate(messages):
                digest = _digest(digest, m["role"], m["content"])
                known = self._index.get(digest, {})
                if sid is None:
                    sid = next(iter(known), None) or new_id("s-")
                given = given_ids[i] if i < len(given_ids) else None
                mid = given or known.get(sid)
                if mid is None or (given and (sid, given) not in self._digest_of):
                    mid = mid or new_id("m-")
                    events.append(message_event(sid, mid, ids[-1] if ids else None, m, user))
                    new.append((digest, sid, mid))
                ids.append(mid)
            return Plan(sid or new_id("s-"), ids, digest, events, new)

    def commit(self, plan: Plan) -> None:
        """Index the new messages of ``plan`` (once they are logged)."""
        with self._lock:
            for digest, sid, mid in plan.new:
                self._add(digest, sid, mid)

    def answer(
        self,
        plan: Plan,
        content: str,
        model: str,
        user: str | None,
        meta: dict[str, Any],
        mid: str,
    ) -> dict[str, Any]:
        """The event of the assistant answer ``mid`` to ``plan`` (indexed at once)."""
        msg = {"role": "assistant", "content": content}
        event = message_event(plan.session_id, mid, plan.parent_id, msg, user, model, meta)
        with self._lock:
            self._add(_digest(plan.parent_digest, "assistant", content), plan.session_id, mid)
        return event


def message_event(
    sid: str,
    mid: str,
    parent: str | None,
    m: Mapping[str, str],
    user: str | None,
    model: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event": "message",
        "id": new_id("e-"),
        "session_id": sid,
        "message_id": mid,
        "parent_id": parent,
        "role": m["role"],
        "content": m["content"],
        "ts": now_iso(),
    }
    if model:
        e["model"] = model
    if user:
        e["user_id"] = user
    if meta:
        e["meta"] = meta
    return e
