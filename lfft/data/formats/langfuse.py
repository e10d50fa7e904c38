"""Langfuse exports: observations + scores (+ traces), joined by trace.

Read from the blob-storage export (``<project>/observations_v2/*``, ``observations/*``,
``scores/*``, ``traces/*``, ``manifests/*``; JSONL, JSON, CSV or Parquet, optionally gzip; the
export's snake_case columns) and from the UI's JSON/CSV export of observations and of scores
(camelCase keys). Upstream, langfuse/langfuse at 62751446: the export's columns are the SELECTs of
``packages/shared/src/server/repositories/{events,observations,scores,traces}.ts``
(``get*ForBlobStorageExport``) and ``event-query-builder.ts`` (``EVENTS_FIELDS``,
``FIELD_SETS``); file keys in ``worker/src/features/blobstorage/
handleBlobStorageIntegrationProjectJob.ts``; the manifest in ``.../blobstorage/manifest.ts``;
score data types in ``packages/shared/src/domain/scores.ts``.

- Every ``GENERATION`` observation is an interaction: ``input`` (the messages, often a JSON
  string) -> context and prompt, ``output`` -> response, ``session_id`` (else the trace's, else
  ``trace_id``) -> session, the observation id -> ``interaction_id``. Other observation types are
  read for the tree (a score on a span goes to the last generation beneath it) and counted as
  ``not_a_generation``; a generation at level ``ERROR`` is a ``generation_error`` reject.
- Scores join by ``observation_id``, else ``trace_id`` (the trace's last generation): BOOLEAN ->
  ``thumbs``; NUMERIC -> per score name (:mod:`score_kinds`: ``--map``, else inferred and
  reported); CATEGORICAL -> ``label``; TEXT -> ``comment``; CORRECTION -> ``edit``; a score's
  ``comment`` -> ``comment``. A score whose target is not in the export is ``orphan_feedback``;
  one on a session or dataset run only is ``unsupported_target``.
- Export windows overlap at their bounds and updated rows are exported again: observations,
  scores and traces are deduplicated by ``id``, the latest ``updated_at`` winning; older copies
  are ``duplicate_event`` rejects.
"""

from __future__ import annotations

import json
from typing import Any

from lfft.data.formats import trace_join as tj
from lfft.data.formats.common import (
    BadRecord,
    as_bool,
    as_number,
    content_text,
    messages,
    split_prompt,
    timestamp,
)
from lfft.data.formats.score_kinds import ScoreKinds
from lfft.data.records import Parsed, Reject, feedback_event, interaction

NAME = "langfuse"
ROLES = ("observations", "scores", "traces", "manifests")
# tuples, not sets: a list or dict where a type belongs cannot make ``in`` raise
OBSERVATION_TYPES = (
    "SPAN",
    "EVENT",
    "GENERATION",
    "AGENT",
    "TOOL",
    "CHAIN",
    "RETRIEVER",
    "EVALUATOR",
    "EMBEDDING",
    "GUARDRAIL",
)
SCORE_TYPES = ("NUMERIC", "CATEGORICAL", "BOOLEAN", "TEXT", "CORRECTION")
# snake_case (blob export) -> camelCase (UI export) of the fields read
_CAMEL = {
    "trace_id": "traceId",
    "parent_observation_id": "parentObservationId",
    "start_time": "startTime",
    "updated_at": "updatedAt",
    "created_at": "createdAt",
    "session_id": "sessionId",
    "user_id": "userId",
    "status_message": "statusMessage",
    "provided_model_name": "providedModelName",
    "observation_id": "observationId",
    "dataset_run_id": "datasetRunId",
    "data_type": "dataType",
    "string_value": "stringValue",
    "long_string_value": "longStringValue",
}


def get(rec: dict[str, Any], key: str) -> Any:
    """A field by its export name, else by the UI export's camelCase name (the legacy
    observations UI export names the model ``model``)."""
    value = rec.get(key)
    if value is None and key in _CAMEL:
        value = rec.get(_CAMEL[key])
    return rec.get("model") if value is None and key == "provided_model_name" else value


def role(rec: dict[str, Any]) -> str | None:
    """``observations``, ``scores``, ``traces`` or ``manifests``; None if not a Langfuse record."""
    if get(rec, "data_type") in SCORE_TYPES and "name" in rec and "value" in rec:
        return "scores"
    if rec.get("type") in OBSERVATION_TYPES and get(rec, "trace_id") is not None:
        return "observations"
    if "exportSource" in rec and "files" in rec and "window" in rec:
        return "manifests"
    if "bookmarked" in rec and "public" in rec and "id" in rec and "trace_id" not in rec:
        return "traces"
    return None


def looks_like(rec: dict[str, Any]) -> bool:
    return role(rec) is not None


class Joiner(tj.Joiner):
    """The Langfuse side of :func:`lfft.data.formats.trace_join.read_joined`."""

    NAME = NAME

    role = staticmethod(role)

    def ingest(self, role: str, rec: dict[str, Any]) -> tuple[str, float, dict[str, Any]]:
        if role == "manifests":
            files = rec.get("files")
            n = len(files) if isinstance(files, list) else 0
            raise tj.Skip("export_manifest", f"the manifest of an export run ({n} files)")
        rid = rec.get("id")
        if not isinstance(rid, str) or not rid:
            raise BadRecord("missing_id", "no 'id'")
        data: dict[str, Any] = {"id": rid}
        if role == "traces":
            data.update(_fields(rec, "session_id", "user_id"))
            return rid, tj.version_of(get(rec, "updated_at"), rec.get("timestamp")), data
        key = get(rec, "trace_id")
        if role == "observations":
            data.update(_fields(rec, "type", "start_time"))
            data["parent"] = get(rec, "parent_observation_id")
            if rec["type"] == "GENERATION":
                keep = ("input", "output", "session_id", "user_id", "provided_model_name")
                data.update(_fields(rec, "level", "status_message", *keep))
            version = tj.version_of(get(rec, "updated_at"), get(rec, "start_time"))
        else:
            data.update(_score_fields(rec, self.kinds))
            if not key:
                target = "a session" if get(rec, "session_id") else "a dataset run"
                raise BadRecord("unsupported_target", f"a score on {target}, not on a trace")
            version = tj.version_of(get(rec, "updated_at"), rec.get("timestamp"))
        if not isinstance(key, str) or not key:
            raise BadRecord("missing_trace_id", "no 'trace_id'")
        return key, version, data

    def join(self, key: str, entries: list[tj.Entry]) -> list[Parsed | Reject]:
        """One trace: its generations as rows, its scores attached; one item per entry."""
        by_role: dict[str, list[tj.Entry]] = {"observations": [], "scores": [], "traces": []}
        for entry in entries:
            by_role[entry[tj.ROLE]].append(entry)
        out: dict[str, Parsed | Reject] = {}
        kept: dict[str, dict[str, tj.Entry]] = {}
        for name, group in by_role.items():
            kept[name], older = tj.latest(group)
            what = name.rstrip("s")
            out.update((old[tj.LOC], tj.superseded(old, new, what)) for old, new in older)
        trace = next(iter(kept["traces"].values()), None)
        for entry in kept["traces"].values():
            out[entry[tj.LOC]] = Parsed(entry[tj.LOC], [])
        rows = self._generations(key, kept["observations"], trace, out)
        self._scores(kept["scores"], kept["observations"], rows, out)
        for row in rows.values():
            row["feedback"].sort(key=_by_time)
        return [out[entry[tj.LOC]] for entry in entries]

    def _generations(
        self,
        key: str,
        observations: dict[str, tj.Entry],
        trace: tj.Entry | None,
        out: dict[str, Parsed | Reject],
    ) -> dict[str, dict[str, Any]]:
        """A row per usable generation (by id); every observation's item into ``out``."""
        rows: dict[str, dict[str, Any]] = {}
        info = trace[tj.DATA] if trace else {}
        for oid, entry in observations.items():
            obs, loc = entry[tj.DATA], entry[tj.LOC]
            if obs.get("type") != "GENERATION":
                note = Reject(loc, "not_a_generation", None, f"a {obs.get('type')} observation")
                out[loc] = Parsed(loc, [], (note,))
                continue
            try:
                row = _row(key, obs, info)
            except tj.ERRORS as e:
                out[loc] = tj.failure(entry, e)
                continue
            rows[oid] = row
            out[loc] = Parsed(loc, [row])
        return rows

    def _scores(
        self,
        scores: dict[str, tj.Entry],
        observations: dict[str, tj.Entry],
        rows: dict[str, dict[str, Any]],
        out: dict[str, Parsed | Reject],
    ) -> None:
        """Attach each score to its generation's row, or reject it."""
        by_time = sorted(rows, key=lambda oid: _start(observations[oid]))
        for entry in scores.values():
            score, loc = entry[tj.DATA], entry[tj.LOC]
            target = score.get("observation_id")
            try:
                if target is None:
                    oid = by_time[-1] if by_time else None
                    if oid is None:
                        what = "no usable generation" if observations else "no observations"
                        raise BadRecord("orphan_feedback", f"the trace has {what} in the export")
                else:
                    oid = tj.feedback_target(
                        target, observations, rows, by_time, out, _is_generation, NAMES
                    )
                events = _score_events(score, self.kinds)
            except tj.ERRORS as e:
                out[loc] = tj.failure(entry, e)
                continue
            rows[oid]["feedback"].extend(events)
            self.joined += 1
            out[loc] = Parsed(loc, [])


NAMES = ("observation", "generation")


def _is_generation(obs: dict[str, Any]) -> bool:
    return obs.get("type") == "GENERATION"


def _row(trace_id: str, obs: dict[str, Any], trace: dict[str, Any]) -> dict[str, Any]:
    if obs.get("level") == "ERROR":
        raise BadRecord("generation_error", str(obs.get("status_message") or "level ERROR")[:300])
    context, prompt = prompt_of(obs.get("input"))
    return interaction(
        interaction_id=obs["id"],
        session_id=obs.get("session_id") or trace.get("session_id") or trace_id,
        user_id=_text(obs.get("user_id") or trace.get("user_id")),
        prompt=prompt,
        response=response_of(obs.get("output")),
        source=NAME,
        context=context,
        ts=timestamp(obs.get("start_time")),
        model=_text(obs.get("provided_model_name")),
    )


def prompt_of(value: Any) -> tuple[list[dict[str, str]], str]:
    """A generation's ``input`` -> (context, prompt): text, a message list, ``{"messages": ...}``
    or one message; a JSON string of any of these."""
    value = decode(value)
    if isinstance(value, str):
        if not value.strip():
            raise BadRecord("missing_prompt", "the input is empty")
        return [], value
    if isinstance(value, dict):
        value = value.get("messages", [value] if "role" in value else None)
    if not isinstance(value, list):
        raise BadRecord("bad_input", "the input is neither text nor chat messages")
    return split_prompt(messages(value))


def response_of(value: Any) -> str:
    """A generation's ``output`` -> the response text: text, an assistant message, an OpenAI
    completion (``choices``), or a message list (its last message)."""
    value = decode(value)
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        if isinstance(value.get("choices"), list) and value["choices"]:
            choice = value["choices"][0]
            value = choice.get("message", choice) if isinstance(choice, dict) else choice
        if isinstance(value, dict):
            value = value.get("content", value.get("text", value.get("completion")))
        value = content_text(value) if isinstance(value, list) else value
    if not isinstance(value, str) or not value.strip():
        raise BadRecord("missing_response", "the output holds no text (none, empty or a tool call)")
    return value


def decode(value: Any) -> Any:
    """A JSON string (how the export stores ``input``/``output``) -> its value; other text and
    values as they are."""
    if isinstance(value, str) and value[:1] in ('"', "[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _score_fields(rec: dict[str, Any], kinds: ScoreKinds) -> dict[str, Any]:
    """The fields of a score that are kept; NUMERIC values are shown to ``kinds`` (pass 1)."""
    data = _fields(rec, "observation_id", "data_type", "string_value", "long_string_value")
    data.update(name=rec.get("name"), value=rec.get("value"), comment=rec.get("comment"))
    data["timestamp"] = rec.get("timestamp")
    if data["data_type"] == "NUMERIC" and isinstance(data["name"], str):
        data["value"] = as_number(data["value"], "bad_score")
        kinds.observe(data["name"], data["value"])
    return data


def _score_events(score: dict[str, Any], kinds: ScoreKinds) -> list[dict[str, Any]]:
    """A score's feedback events (see the module docstring)."""
    kind, name = score.get("data_type"), score.get("name")
    ts = timestamp(score.get("timestamp"))
    text = score.get("string_value")
    if not isinstance(name, str) or not name:
        raise BadRecord("bad_score", "a score without a name")
    if kind == "BOOLEAN":
        value = score.get("value") if text is None else text
        events = [feedback_event("thumbs", value=float(as_bool(value, "bad_score")), ts=ts)]
    elif kind == "NUMERIC":
        events = [kinds.event(name, score.get("value"), ts)]
    elif kind in ("CATEGORICAL", "TEXT"):
        if not isinstance(text, str) or not text.strip():
            raise BadRecord("bad_score", f"a {kind} score without string_value")
        events = [feedback_event("label" if kind == "CATEGORICAL" else "comment", text=text, ts=ts)]
    else:  # CORRECTION (no string_value by design; the corrected output is long_string_value)
        fix = score.get("long_string_value") or text
        if not isinstance(fix, str) or not fix.strip():
            raise BadRecord("bad_score", "a CORRECTION score without the corrected text")
        events = [feedback_event("edit", text=fix, ts=ts)]
    comment = score.get("comment")
    if isinstance(comment, str) and comment.strip() and kind != "TEXT":
        events.append(feedback_event("comment", text=comment, ts=ts))
    return events


def _fields(rec: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: get(rec, k) for k in keys}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _start(entry: tj.Entry) -> float:
    return tj.version_of(entry[tj.DATA].get("start_time"))


def _by_time(event: dict[str, Any]) -> tuple[bool, Any]:
    return (event["ts"] is None, event["ts"])


read_group = tj.group_reader(Joiner)


def parse(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One record alone (see :func:`lfft.data.formats.trace_join.parse_alone`)."""
    return tj.parse_alone(Joiner(), rec)
