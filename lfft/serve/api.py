"""The HTTP API's bodies: request checks (OpenAI error shape), responses, feedback events.

Errors are ``{"error": {"message", "type", "param", "code"}}`` as OpenAI sends them; every bad
request gets a 4xx with a one-line message naming the field, never a 500.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lfft.data.events import ACTION_KINDS, FEEDBACK_KINDS, EventError, parse_event
from lfft.serve.backend import Params
from lfft.serve.log import new_id, now_iso

ROLES = ("system", "user", "assistant")


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str = ""):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code = code or {401: "invalid_api_key", 404: "not_found", 413: "too_large"}.get(
            status, "invalid_request"
        )

    def body(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error", 503: "overloaded_error"}
        return {
            "error": {
                "message": self.message,
                "type": kind.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    params: Params
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    model: str = ""
    session_id: str | None = None
    message_ids: list[str | None] = field(default_factory=list)


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON ({e})") from None
    if type(body) is not dict:
        raise ApiError(400, "the body must be a JSON object")
    return body


def _number(body: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = body.get(key)
    if v is None:
        return default
    if type(v) not in (int, float) or not lo <= v <= hi:
        raise ApiError(400, f"'{key}' must be a number from {lo:g} to {hi:g}, got {v!r}", key)
    return float(v)


def _int(body: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = body.get(key)
    if v is None:
        return default
    if type(v) is not int or not lo <= v <= hi:
        raise ApiError(400, f"'{key}' must be an integer from {lo} to {hi}, got {v!r}", key)
    return v


def chat_request(
    body: Mapping[str, Any], max_tokens: int, default_tokens: int, max_n: int
) -> ChatRequest:
    """Check a ``/v1/chat/completions`` body."""
    msgs = body.get("messages")
    if type(msgs) is not list or not msgs:
        raise ApiError(400, "'messages' must be a non-empty array", "messages")
    messages = []
    for i, m in enumerate(msgs):
        if type(m) is not dict or m.get("role") not in ROLES:
            raise ApiError(400, f"messages[{i}]: 'role' must be one of {ROLES}", "messages")
        messages.append({"role": m["role"], "content": _content(m.get("content"), i)})
    if messages[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's", "messages")
    stop = body.get("stop")
    stop = [stop] if type(stop) is str else stop
    if stop is not None and (
        type(stop) is not list or len(stop) > 4 or any(type(s) is not str or not s for s in stop)
    ):
        raise ApiError(400, "'stop' must be a string or up to 4 non-empty strings", "stop")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    params = Params(
        max_tokens=_int({"max_tokens": limit}, "max_tokens", default_tokens, 1, max_tokens),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0) or 1e-6,
        stop=stop or [],
        n=_int(body, "n", 1, 1, max_n),
        seed=_int(body, "seed", None, -(2**63), 2**63 - 1),  # type: ignore[arg-type]
    )
    stream = body.get("stream", False)
    if type(stream) is not bool:
        raise ApiError(400, "'stream' must be true or false", "stream")
    if stream and params.n > 1:
        raise ApiError(400, "'n' above 1 is not supported with 'stream': true", "n")
    opts = body.get("stream_options") or {}
    user = body.get("user")
    if user is not None and (type(user) is not str or not user):
        raise ApiError(400, "'user' must be a non-empty string", "user")
    ext = body.get("lfft") or {}
    if type(ext) is not dict:
        raise ApiError(400, "'lfft' must be an object", "lfft")
    sid, ids = ext.get("session_id"), ext.get("message_ids") or []
    if sid is not None and (type(sid) is not str or not sid):
        raise ApiError(400, "'lfft.session_id' must be a non-empty string", "lfft.session_id")
    if (
        type(ids) is not list
        or len(ids) > len(messages)
        or any(i is not None and (type(i) is not str or not i) for i in ids)
    ):
        raise ApiError(
            400, "'lfft.message_ids' must list a string or null per message", "lfft.message_ids"
        )
    if ids and sid is None:
        raise ApiError(400, "'lfft.message_ids' needs 'lfft.session_id'", "lfft.session_id")
    return ChatRequest(
        messages,
        params,
        stream,
        bool(type(opts) is dict and opts.get("include_usage")),
        user,
        str(body.get("model") or ""),
        sid,
        ids,
    )


def _content(c: Any, i: int) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text"}`` parts."""
    if type(c) is str:
        return c
    if type(c) is list and all(type(p) is dict and p.get("type") == "text" for p in c):
        return "".join(str(p.get("text", "")) for p in c)
    raise ApiError(400, f"messages[{i}]: 'content' must be a string or text parts", "messages")


def completion(
    ids: list[str], texts: list[str], finish: list[str], version: str, usage: dict, lfft: dict
) -> dict[str, Any]:
    """A ``chat.completion`` body; ``id`` is the (first) answer's message id in the log."""
    return {
        "id": ids[0],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": version,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "finish_reason": f,
                "message_id": mid,
            }
            for i, (mid, t, f) in enumerate(zip(ids, texts, finish, strict=True))
        ],
        "usage": usage,
        "lfft": lfft,
    }


def chunk(mid: str, version: str, delta: dict, finish: str | None = None, **extra) -> bytes:
    """One server-sent event of a ``chat.completion.chunk`` stream."""
    body = {
        "id": mid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": version,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def usage(prompt: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


def feedback_event(body: Mapping[str, Any], session_of) -> dict[str, Any]:
    """A ``/v1/feedback`` body -> the lfft-events line to log, checked by the events reader."""
    kind = body.get("kind")
    if kind not in FEEDBACK_KINDS and kind not in ACTION_KINDS:
        known = ", ".join(sorted(FEEDBACK_KINDS | ACTION_KINDS))
        raise ApiError(400, f"'kind' must be one of {known}, got {kind!r}", "kind")
    mid = body.get("message_id")
    if type(mid) is not str or not mid:
        raise ApiError(400, "'message_id' must be a non-empty string", "message_id")
    sid = body.get("session_id") or session_of(mid)
    if sid is None:
        raise ApiError(
            400, f"message {mid!r} is not in the log yet: send its 'session_id'", "session_id"
        )
    allowed = {"value", "scale", "user_id", "meta"}
    extra = sorted(set(body) - allowed - {"kind", "message_id", "session_id", "ts", "event"})
    if extra:
        raise ApiError(400, f"unknown field(s): {', '.join(extra)}", extra[0])
    event = {
        "event": "feedback" if kind in FEEDBACK_KINDS else "action",
        "id": new_id("e-"),
        "session_id": sid,
        "message_id": mid,
        "kind": kind,
        "ts": body.get("ts") or now_iso(),
        **{k: body[k] for k in sorted(allowed) if k in body},
    }
    try:
        parse_event(event, 0, 0)
    except EventError as e:
        raise ApiError(400, f"{e.reason}: {e.detail or e.reason}", "value", e.reason) from None
    return event
