"""LangSmith exports: runs + feedback (JSON Lines of the SDK's ``Run`` and ``Feedback``
objects, e.g. ``runs.jsonl`` and ``feedback.jsonl`` from ``client.list_runs`` /
``client.list_feedback``), joined by trace.

Upstream, langchain-ai/langsmith-sdk at bc8dd672: ``Run``/``RunBase``/``Feedback``/
``FeedbackBase`` in ``python/langsmith/schemas.py``; the OpenAI wrapper's run inputs (the
``create`` kwargs) and outputs (the ``ChatCompletion``, ``choices``) in
``python/langsmith/wrappers/_openai.py``; LangChain's message and generation shapes as
``python/langsmith/utils.py`` reads them (``lc`` serialized ``kwargs`` or stored ``type``+``data``).

- Each successful ``run_type: "llm"`` run is an interaction: ``inputs.messages`` (OpenAI or
  LangChain form; a LangChain batch gives one row per prompt), ``inputs.prompts``/``prompt``
  -> context and prompt; ``outputs.generations`` or ``outputs.choices`` -> response. A run with
  an ``error`` is a ``run_error`` reject; chain/tool/prompt/parser runs are not interactions:
  they give the tree (and the thread) and are counted as ``not_an_llm_run``.
- ``Run.session_id`` is the *project*, not the conversation: the session is the root run's
  ``extra.metadata`` ``thread_id``/``session_id``/``conversation_id`` (else the llm run's own,
  else the ``trace_id``).
- Feedback goes to its ``run_id``; feedback on a chain run (usually the root) goes to the last
  successful llm run beneath it. Its ``score`` (or numeric ``value``) maps per feedback key
  (:mod:`score_kinds`: a bool or 0/1 key -> ``thumbs``, other numbers -> ``rating`` on a scale
  from ``--map`` or inferred and reported); a text ``value`` -> ``label``; ``comment`` ->
  ``comment``; ``correction`` -> ``edit``. Feedback sharing a ``feedback_group_id`` is a
  comparison: the run with the unique best score gets a ``preference`` over each other run of
  the group (those rows wait until every trace is read: memory grows with the number of
  groups, not of records). Feedback whose run is not in the export is ``orphan_feedback``.
- Runs and feedback are deduplicated by ``id`` (the latest ``end_time``/``modified_at`` wins).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lfft.data.formats import trace_join as tj
from lfft.data.formats.common import ROLES as CHAT_ROLES
from lfft.data.formats.common import BadRecord, dumps, message, split_prompt, timestamp
from lfft.data.records import Parsed, Reject, feedback_event, interaction

NAME = "langsmith"
ROLES = ("runs", "feedback")
THREAD_KEYS = ("thread_id", "session_id", "conversation_id")
# LangChain message types -> lfft roles ("chat": a ChatMessage names its own role)
_LC_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "user",
    "function": "user",
    "developer": "system",
    "chat": "",
}
_CORRECTION_KEYS = ("output", "content", "text", "answer", "correction")


def role(rec: dict[str, Any]) -> str | None:
    """``runs`` or ``feedback``; None if not a LangSmith record."""
    if "run_type" in rec and "id" in rec and ("inputs" in rec or "trace_id" in rec):
        return "runs"
    if "key" in rec and "run_id" in rec and "id" in rec:
        return "feedback"
    return None


def looks_like(rec: dict[str, Any]) -> bool:
    return role(rec) is not None


class Joiner(tj.Joiner):
    """The LangSmith side of :func:`lfft.data.formats.trace_join.read_joined`."""

    NAME = NAME
    role = staticmethod(role)

    def __init__(self, cfg: Any = None):
        super().__init__(cfg)
        self.groups: dict[str, dict[str, float | None]] = {}  # group -> {feedback id: score}
        self.resolved: dict[str, list[str]] = {}  # grouped feedback id -> interaction ids
        self.held: dict[str, tuple[Parsed, list[tuple[str, list[dict]]]]] = {}

    def ingest(self, role: str, rec: dict[str, Any]) -> tuple[str, float, dict[str, Any]]:
        rid = rec.get("id")
        if not isinstance(rid, str) or not rid:
            raise BadRecord("missing_id", "no 'id'")
        if role == "runs":
            return _run_key(rec), tj.version_of(rec.get("end_time")), _run_fields(rec)
        data = {k: rec.get(k) for k in ("id", "run_id", "key", "score", "value", "comment")}
        data.update(correction=rec.get("correction"), created_at=rec.get("created_at"))
        data["group"] = rec.get("feedback_group_id")
        key = rec.get("trace_id") or rec.get("run_id")
        if not isinstance(key, str) or not key:
            raise BadRecord("missing_run_id", "feedback without run_id")
        if not isinstance(data["key"], str) or not data["key"]:
            raise BadRecord("bad_feedback", "feedback without a key")
        number = _number(data)
        self.kinds.observe(data["key"], number)
        if data["group"]:
            self.groups.setdefault(str(data["group"]), {})[rid] = number
        return key, tj.version_of(rec.get("modified_at"), rec.get("created_at")), data

    def join(self, key: str, entries: list[tj.Entry]) -> list[Parsed | Reject]:
        """One trace: its llm runs as rows, its feedback attached; one item per entry (but the
        rows of a comparison's winner, which :meth:`finish` yields)."""
        runs, older = tj.latest([e for e in entries if e[tj.ROLE] == "runs"])
        feedback, older_fb = tj.latest([e for e in entries if e[tj.ROLE] == "feedback"])
        out: dict[str, Parsed | Reject] = {}
        for old, new in older:
            out[old[tj.LOC]] = tj.superseded(old, new, "run")
        for old, new in older_fb:
            out[old[tj.LOC]] = tj.superseded(old, new, "feedback")
        rows = self._rows(key, runs, out)
        by_time = sorted(rows, key=lambda rid: tj.version_of(runs[rid][tj.DATA]["start_time"]))
        for entry in feedback.values():
            fb, loc = entry[tj.DATA], entry[tj.LOC]
            try:
                target = tj.feedback_target(fb["run_id"], runs, rows, by_time, out, _is_llm, NAMES)
                events = self._events(fb)
            except tj.ERRORS as e:
                out[loc] = tj.failure(entry, e)
                continue
            for row in rows[target]:
                row["feedback"].extend(events)
            self.joined += 1
            out[loc] = Parsed(loc, [])
            self._group(fb, runs[target][tj.LOC], out, rows[target])
        for target_rows in rows.values():
            for row in target_rows:
                row["feedback"].sort(key=lambda e: (e["ts"] is None, e["ts"]))
        return [out[e[tj.LOC]] for e in entries if e[tj.LOC] not in self.held]

    def finish(self) -> Iterator[Parsed | Reject]:
        """The held rows of comparison winners, each with a preference over the other runs."""
        for item, wins in self.held.values():
            for group, rows in wins:
                members = self.groups[group]
                losers = [i for fid in members for i in self.resolved.get(fid, [])]
                for row in rows:
                    ts = max((e["ts"] for e in row["feedback"] if e["ts"]), default=None)
                    for ref in losers:
                        if ref != row["interaction_id"]:
                            row["feedback"].append(feedback_event("preference", ref=ref, ts=ts))
            yield item

    def _rows(
        self, key: str, runs: dict[str, tj.Entry], out: dict[str, Parsed | Reject]
    ) -> dict[str, list[dict[str, Any]]]:
        """The rows of each successful llm run (by run id); every run's item into ``out``."""
        root = runs.get(key) or next(
            (e for e in runs.values() if not e[tj.DATA].get("parent")), None
        )
        thread = root[tj.DATA].get("thread") if root else None
        rows: dict[str, list[dict[str, Any]]] = {}
        for rid, entry in runs.items():
            run, loc = entry[tj.DATA], entry[tj.LOC]
            if run.get("run_type") != "llm":
                note = Reject(loc, "not_an_llm_run", None, f"a {run.get('run_type')} run")
                out[loc] = Parsed(loc, [], (note,))
                continue
            try:
                rows[rid] = _llm_rows(run, thread or run.get("thread") or key)
            except tj.ERRORS as e:
                out[loc] = tj.failure(entry, e)
                continue
            out[loc] = Parsed(loc, rows[rid])
        return rows

    def _events(self, fb: dict[str, Any]) -> list[dict[str, Any]]:
        """Feedback -> events (see the module docstring); BadRecord if it says nothing."""
        ts = timestamp(fb.get("created_at"))
        events = []
        number, value = _number(fb), fb.get("value")
        if number is not None:
            events.append(self.kinds.event(fb["key"], number, ts))
        elif isinstance(value, str) and value.strip():
            events.append(feedback_event("label", text=value, ts=ts))
        if isinstance(fb.get("comment"), str) and fb["comment"].strip():
            events.append(feedback_event("comment", text=fb["comment"], ts=ts))
        fix = _correction(fb.get("correction"))
        if fix:
            events.append(feedback_event("edit", text=fix, ts=ts))
        if not events and not fb.get("group"):
            raise BadRecord("empty_feedback", "no score, value, comment or correction")
        return events

    def _group(
        self, fb: dict[str, Any], run_loc: str, out: dict[str, Parsed | Reject], rows: list[dict]
    ) -> None:
        """Remember a compared run's rows; hold the winner's (its preference needs the
        others, which may come in later traces)."""
        group = fb.get("group")
        if not group:
            return
        members = self.groups[str(group)]
        scores = [s for s in members.values() if s is not None]
        best = max(scores, default=None)
        if len(members) < 2 or best is None or scores.count(best) > 1 or members[fb["id"]] != best:
            self.resolved[fb["id"]] = [row["interaction_id"] for row in rows]
            return
        item = out[run_loc]
        if run_loc not in self.held:
            self.held[run_loc] = (item, [])  # type: ignore[arg-type]
        self.held[run_loc][1].append((str(group), rows))


NAMES = ("run", "llm run")


def _is_llm(run: dict[str, Any]) -> bool:
    return run.get("run_type") == "llm"


def _run_key(rec: dict[str, Any]) -> str:
    """The trace id: ``trace_id``; a root run's own id; else the root of ``dotted_order``
    (``<time><run id>.<time><run id>...``, the first run being the root)."""
    key = rec.get("trace_id") or (None if rec.get("parent_run_id") else rec.get("id"))
    dotted = rec.get("dotted_order")
    if not key and isinstance(dotted, str) and len(dotted.split(".")[0]) > 36:
        key = dotted.split(".")[0][-36:]
    if not isinstance(key, str) or not key:
        raise BadRecord("missing_trace_id", "no trace_id, and not a root run")
    return key


def _run_fields(rec: dict[str, Any]) -> dict[str, Any]:
    extra = rec.get("extra") if isinstance(rec.get("extra"), dict) else {}
    meta = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
    thread = next((str(meta[k]) for k in THREAD_KEYS if meta.get(k)), None)
    data = {k: rec.get(k) for k in ("id", "run_type", "start_time")}
    data["parent"] = rec.get("parent_run_id")
    data["thread"] = thread
    if rec.get("run_type") == "llm":
        data.update({k: rec.get(k) for k in ("inputs", "outputs", "error", "status")})
        params = (
            extra.get("invocation_params")
            if isinstance(extra.get("invocation_params"), dict)
            else {}
        )
        inputs = rec.get("inputs") if isinstance(rec.get("inputs"), dict) else {}
        model = meta.get("ls_model_name") or params.get("model") or params.get("model_name")
        data["model"] = model or inputs.get("model")
        data["user_id"] = meta.get("user_id")
    return data


def _llm_rows(run: dict[str, Any], session: str) -> list[dict[str, Any]]:
    if run.get("error") or run.get("status") == "error":
        raise BadRecord("run_error", str(run.get("error") or "status error")[:300])
    if not isinstance(run.get("outputs"), dict):
        raise BadRecord("missing_response", "the run has no outputs (still pending?)")
    if not isinstance(run.get("inputs"), dict):
        raise BadRecord("bad_inputs", "the run has no inputs")
    prompts, replies = prompts_of(run["inputs"]), responses_of(run["outputs"])
    if len(prompts) != len(replies):
        raise BadRecord("bad_outputs", f"{len(prompts)} prompts but {len(replies)} generations")
    common = {
        "session_id": session,
        "source": NAME,
        "ts": timestamp(run.get("start_time")),
        "user_id": run["user_id"] if isinstance(run.get("user_id"), str) else None,
        "model": run["model"] if isinstance(run.get("model"), str) else None,
    }
    one = len(prompts) == 1
    return [
        interaction(
            interaction_id=run["id"] if one else f"{run['id']}:{i}",
            context=context,
            prompt=prompt,
            response=reply,
            **common,
        )
        for i, ((context, prompt), reply) in enumerate(zip(prompts, replies, strict=True))
    ]


def prompts_of(inputs: dict[str, Any]) -> list[tuple[list[dict[str, str]], str]]:
    """A llm run's inputs -> one (context, prompt) per prompt of the batch."""
    msgs = inputs.get("messages")
    if isinstance(msgs, list) and msgs:
        batches = msgs if all(isinstance(b, list) for b in msgs) else [msgs]
        return [split_prompt([lc_message(m) for m in batch]) for batch in batches]
    prompts = inputs.get("prompts")
    if isinstance(prompts, list) and prompts and all(isinstance(p, str) for p in prompts):
        return [([], p) for p in prompts]
    for key in ("prompt", "input"):
        if isinstance(inputs.get(key), str) and inputs[key].strip():
            return [([], inputs[key])]
    raise BadRecord("bad_inputs", "no messages, prompts or prompt in the run's inputs")


def responses_of(outputs: dict[str, Any]) -> list[str]:
    """A llm run's outputs -> one response per prompt of the batch (the first generation)."""
    gens = outputs.get("generations")
    if isinstance(gens, list) and gens:
        batches = gens if all(isinstance(b, list) for b in gens) else [gens]
        return [_generation_text(batch[0] if batch else None) for batch in batches]
    choices = outputs.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        msg = first.get("message")
        return [_text(msg.get("content") if isinstance(msg, dict) else first.get("text"))]
    out = outputs.get("output", outputs)
    if isinstance(out, dict):  # a message (traceable functions return one), or {"content": ...}
        is_message = "lc" in out or "type" in out or "role" in out
        out = lc_message(out)["content"] if is_message else out.get("content", out.get("text"))
    return [_text(out)]


def _generation_text(gen: Any) -> str:
    """A LangChain generation's text: its message's content, else ``text``."""
    if not isinstance(gen, dict):
        raise BadRecord("missing_response", "an empty generation")
    msg = gen.get("message")
    if isinstance(msg, dict):
        content = lc_message(msg)["content"]
        if content.strip():
            return content
    return _text(gen.get("text"))


def lc_message(m: Any) -> dict[str, str]:
    """A message in LangChain's serialized (``lc``, ``id``, ``kwargs``), stored (``type``,
    ``data``) or dumped (``type``, ``content``) form, or OpenAI's (``role``, ``content``)."""
    if not isinstance(m, dict):
        raise BadRecord("bad_messages", f"a message is a {type(m).__name__}, not an object")
    if "lc" in m and isinstance(m.get("id"), list) and m["id"]:
        kind, fields = str(m["id"][-1]), m.get("kwargs") or {}
    elif "type" in m and isinstance(m.get("data"), dict):
        kind, fields = str(m["type"]), m["data"]
    elif "role" in m or "from" in m:
        return message(m)
    elif "type" in m:
        kind, fields = str(m["type"]), m
    else:
        raise BadRecord("bad_messages", "a message without role or type")
    name = kind.removesuffix("Chunk").removesuffix("Message").lower()
    lc_role = _LC_ROLES.get(name)
    if lc_role == "":  # ChatMessage: a role of its own
        lc_role = CHAT_ROLES.get(str(fields.get("role", "")).lower())
    if not lc_role:
        raise BadRecord("bad_messages", f"unknown message type {kind!r}")
    return {"role": lc_role, "content": _text(fields.get("content"), allow_empty=True)}


def _text(content: Any, allow_empty: bool = False) -> str:
    """Message content as text: a string, or the text parts of a list (tool-use and image parts
    carry no text and are left out)."""
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if p]
        content = "".join(p for p in parts if isinstance(p, str))
    if content is None and allow_empty:
        return ""
    if not isinstance(content, str) or not (allow_empty or content.strip()):
        raise BadRecord("missing_response", "the output holds no text (none, empty or a tool call)")
    return content


def _number(fb: dict[str, Any]) -> float | bool | None:
    """The feedback's number: ``score``, else a numeric ``value`` (bools stay bools)."""
    for v in (fb.get("score"), fb.get("value")):
        if isinstance(v, int | float):
            return v
    return None


def _correction(value: Any) -> str | None:
    """A correction's text: a string, or the text field of an object (else its JSON)."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, dict) and value:
        for key in _CORRECTION_KEYS:
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key]
        return dumps(value)
    return None


read_group = tj.group_reader(Joiner)


def parse(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One record alone (see :func:`lfft.data.formats.trace_join.parse_alone`)."""
    return tj.parse_alone(Joiner(), rec)
