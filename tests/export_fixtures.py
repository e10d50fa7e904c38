"""Records shaped exactly as Langfuse and LangSmith export them, for the tests and
``bench/collect_joins.py``. No public sample exports exist; each builder cites the upstream code
whose output it reproduces, field for field.
"""

from __future__ import annotations

import json
from typing import Any

T0 = "2024-05-01 10:00:00.000"  # ClickHouse DateTime64(3) as JSONEachRow writes it


# --- Langfuse (langfuse/langfuse at 62751446149b702b419a9292ddfc2280cdf74b8c) -----------------


def lf_observation(
    oid: str,
    trace_id: str,
    kind: str = "GENERATION",
    *,
    messages: Any = None,
    output: Any = None,
    parent: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    start: str = T0,
    updated: str | None = None,
    level: str = "DEFAULT",
    model: str | None = "gpt-4o-mini",
) -> dict[str, Any]:
    """One row of the blob-storage export of ``observations_v2`` (the events table), every
    field group selected: the SELECT built by ``buildEventsForBlobStorageExportQuery`` in
    packages/shared/src/server/repositories/events.ts from ``EVENTS_FIELDS``/``FIELD_SETS``
    (core, basic, time, io, metadata, model_export, usage, prompt, metrics, trace_context, tools)
    in packages/shared/src/server/queries/clickhouse-sql/event-query-builder.ts, plus the
    price enrichment of ``enrichObservationStream`` in worker/src/features/blobstorage/
    handleBlobStorageIntegrationProjectJob.ts. ``input``/``output`` are ClickHouse String
    columns: JSON text."""
    generation = kind == "GENERATION"
    return {
        "id": oid,
        "trace_id": trace_id,
        "start_time": start,
        "end_time": start,
        "project_id": "proj-1",
        "parent_observation_id": parent,
        "type": kind,
        "name": "chat-completion" if generation else kind.lower(),
        "level": level,
        "status_message": "Rate limit reached" if level == "ERROR" else None,
        "version": None,
        "environment": "default",
        "bookmarked": False,
        "public": False,
        "user_id": user_id,
        "session_id": session_id,
        "is_root_observation": parent is None,
        "completion_start_time": start if generation else None,
        "created_at": start,
        "updated_at": updated or start,
        "input": None if messages is None else json.dumps(messages),
        "output": None if output is None else json.dumps(output),
        "metadata": {},
        "provided_model_name": model if generation else None,
        "model_id": None,
        "model_parameters": json.dumps({"temperature": 0}) if generation else None,
        "usage_details": {"input": 12, "output": 7, "total": 19} if generation else {},
        "cost_details": {},
        "total_cost": 0.0,
        "usage_pricing_tier_id": None,
        "usage_pricing_tier_name": None,
        "prompt_id": None,
        "prompt_name": None,
        "prompt_version": None,
        "latency": 0.8,
        "time_to_first_token": 0.2 if generation else None,
        "tags": [],
        "release": None,
        "trace_name": "chat",
        "tool_definitions": {},
        "tool_calls": [],
        "tool_call_names": [],
        "input_price": None,
        "output_price": None,
        "total_price": None,
    }


def lf_score(
    sid: str,
    trace_id: str | None,
    name: str,
    data_type: str,
    value: float | None = None,
    *,
    observation_id: str | None = None,
    string_value: str | None = None,
    comment: str | None = None,
    session_id: str | None = None,
    at: str = "2024-05-01 10:05:00.000",
    updated: str | None = None,
) -> dict[str, Any]:
    """One row of the blob-storage export of ``scores``: the SELECT of
    ``buildScoresForBlobStorageExportQuery`` in packages/shared/src/server/repositories/
    scores.ts (data types NUMERIC, BOOLEAN, CATEGORICAL, TEXT: ``LISTABLE_SCORE_TYPES`` in
    packages/shared/src/domain/scores.ts; a BOOLEAN carries value 1/0 and string_value
    "True"/"False", validateAndInflateScore.ts)."""
    if data_type == "BOOLEAN" and string_value is None:
        string_value = "True" if value else "False"
    return {
        "id": sid,
        "timestamp": at,
        "project_id": "proj-1",
        "environment": "default",
        "trace_id": trace_id,
        "observation_id": observation_id,
        "session_id": session_id,
        "dataset_run_id": None,
        "name": name,
        "value": value,
        "source": "API",
        "comment": comment,
        "data_type": data_type,
        "string_value": string_value,
        "created_at": at,
        "updated_at": updated or at,
    }


def lf_trace(tid: str, session_id: str | None, user_id: str | None = None) -> dict[str, Any]:
    """One row of the blob-storage export of ``traces``: the SELECT of
    ``buildTracesForBlobStorageExportQuery`` in packages/shared/src/server/repositories/
    traces.ts."""
    return {
        "id": tid,
        "timestamp": T0,
        "name": "chat",
        "environment": "default",
        "project_id": "proj-1",
        "metadata": {},
        "user_id": user_id,
        "session_id": session_id,
        "release": None,
        "version": None,
        "public": False,
        "bookmarked": False,
        "tags": [],
        "input": None,
        "output": None,
        "created_at": T0,
        "updated_at": T0,
    }


def lf_manifest(files: list[str]) -> dict[str, Any]:
    """``manifests/<maxTimestamp>.json``: ``buildBlobExportManifest`` in
    worker/src/features/blobstorage/manifest.ts."""
    return {
        "version": 1,
        "projectId": "proj-1",
        "exportSource": "EVENTS",
        "window": {
            "minTimestamp": "2024-05-01T00:00:00.000Z",
            "maxTimestamp": "2024-05-02T00:00:00.000Z",
        },
        "maxTimestamp": "2024-05-02T00:00:00.000Z",
        "createdAt": "2024-05-02T00:20:00.000Z",
        "tables": sorted({f.split("/")[1] for f in files}),
        "files": [
            {
                "key": f,
                "table": f.split("/")[1],
                "fileType": "JSONL",
                "format": "jsonl-raw",
                "compressed": False,
                "contentType": "application/x-ndjson; charset=utf-8",
                "sizeBytes": 0,
                "rowCount": None,
            }
            for f in files
        ],
    }


def lf_ui_observation(row: dict[str, Any]) -> dict[str, Any]:
    """The same observation as the UI's batch export of the events table writes it (JSON/JSONL):
    ``BatchExportEventsRow`` in worker/src/features/database-read-stream/event-stream.ts
    (camelCase keys; input/output as ClickHouse returns them, JSON text; no updatedAt)."""
    return {
        "id": row["id"],
        "traceId": row["trace_id"],
        "traceName": "chat",
        "type": row["type"],
        "name": row["name"],
        "startTime": row["start_time"],
        "endTime": row["end_time"],
        "completionStartTime": row["completion_start_time"],
        "environment": row["environment"],
        "version": row["version"],
        "userId": row["user_id"],
        "sessionId": row["session_id"],
        "level": row["level"],
        "statusMessage": row["status_message"],
        "promptName": None,
        "promptId": None,
        "promptVersion": None,
        "modelId": None,
        "providedModelName": row["provided_model_name"],
        "modelParameters": row["model_parameters"],
        "usageDetails": row["usage_details"],
        "costDetails": {},
        "totalCost": 0.0,
        "input": row["input"],
        "output": row["output"],
        "metadata": {},
        "latencyMs": 800,
        "timeToFirstTokenMs": 200,
        "tags": [],
        "release": None,
        "parentObservationId": row["parent_observation_id"],
        "scores": {},
        "comments": [],
    }


def lf_ui_score(row: dict[str, Any]) -> dict[str, Any]:
    """The same score as the UI's batch export writes it: the object built for table
    ``scores`` in worker/src/features/database-read-stream/getDatabaseReadStream.ts (no
    updatedAt there)."""
    return {
        "id": row["id"],
        "traceId": row["trace_id"],
        "sessionId": row["session_id"],
        "datasetRunId": None,
        "timestamp": row["timestamp"],
        "source": row["source"],
        "name": row["name"],
        "dataType": row["data_type"],
        "value": row["value"],
        "stringValue": row["string_value"],
        "comment": row["comment"],
        "metadata": {},
        "observationId": row["observation_id"],
        "traceName": "chat",
        "userId": None,
        "traceTags": [],
        "environment": "default",
        "authorUserName": None,
    }


def chat(*turns: str, system: str | None = None) -> list[dict[str, str]]:
    """OpenAI chat messages, alternating user/assistant, starting with the user."""
    msgs = [{"role": "system", "content": system}] if system else []
    roles = ("user", "assistant")
    return msgs + [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


def write_jsonl(path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# --- LangSmith (langchain-ai/langsmith-sdk at bc8dd672a7b9e7d09bcb2fdada0baff80700f9b0) -------


def ls_run(
    rid: str,
    trace_id: str,
    run_type: str = "llm",
    *,
    parent: str | None = None,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
    start: str = "2024-05-01T10:00:00.000000+00:00",
    end: str | None = "2024-05-01T10:00:01.000000+00:00",
) -> dict[str, Any]:
    """``Run(...).model_dump(mode="json")``: every field of ``RunBase`` and ``Run`` in
    python/langsmith/schemas.py (``session_id`` is the project id; ``dotted_order`` is
    ``<start><run id>`` per ancestor, root first; ``extra.metadata`` holds thread ids)."""
    stamp = start[:23].replace("-", "").replace(":", "").replace(".", "") + "Z"
    return {
        "id": rid,
        "name": "ChatOpenAI" if run_type == "llm" else "RunnableSequence",
        "start_time": start,
        "run_type": run_type,
        "end_time": end,
        "extra": {
            "metadata": dict(metadata or {}),
            "invocation_params": {"model": "gpt-4o-mini"} if run_type == "llm" else {},
            "runtime": {"sdk": "langsmith-py"},
        },
        "error": error,
        "serialized": None,
        "events": [{"name": "start", "time": start}],
        "inputs": inputs or {},
        "outputs": outputs,
        "reference_example_id": None,
        "parent_run_id": parent,
        "tags": [],
        "attachments": {},
        "session_id": "6f4c1d4e-0000-4000-8000-000000000001",
        "child_run_ids": None,
        "child_runs": None,
        "feedback_stats": None,
        "app_path": f"/o/org/projects/p/proj/r/{rid}",
        "manifest_id": None,
        "status": "error" if error else "success",
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "total_tokens": 19,
        "prompt_token_details": None,
        "completion_token_details": None,
        "first_token_time": None,
        "total_cost": None,
        "prompt_cost": None,
        "completion_cost": None,
        "prompt_cost_details": None,
        "completion_cost_details": None,
        "parent_run_ids": [parent] if parent else [],
        "trace_id": trace_id,
        "dotted_order": f"{stamp}{trace_id}" + (f".{stamp}{rid}" if rid != trace_id else ""),
        "in_dataset": False,
    }


def ls_feedback(
    fid: str,
    run_id: str,
    key: str,
    score: Any = None,
    *,
    trace_id: str | None = None,
    value: Any = None,
    comment: str | None = None,
    correction: Any = None,
    group: str | None = None,
    at: str = "2024-05-01T10:05:00.000000+00:00",
    modified: str | None = None,
) -> dict[str, Any]:
    """``Feedback(...).model_dump(mode="json")``: ``FeedbackBase`` and ``Feedback`` in
    python/langsmith/schemas.py (``feedback_group_id`` is shared by the feedback on each run
    of one comparison)."""
    return {
        "id": fid,
        "created_at": at,
        "modified_at": modified or at,
        "run_id": run_id,
        "trace_id": trace_id,
        "key": key,
        "score": score,
        "value": value,
        "comment": comment,
        "correction": correction,
        "feedback_source": {"type": "api", "metadata": {}, "user_id": None, "user_name": None},
        "session_id": "6f4c1d4e-0000-4000-8000-000000000001",
        "start_time": None,
        "comparative_experiment_id": None,
        "feedback_group_id": group,
        "extra": None,
    }


def lc_serialized(kind: str, content: str) -> dict[str, Any]:
    """A LangChain message as ``dumpd`` serializes it into a chat model run's inputs (the
    ``lc``/``id``/``kwargs`` form read by ``_get_message_type`` in python/langsmith/utils.py)."""
    return {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", kind],
        "kwargs": {"content": content, "type": kind.removesuffix("Message").lower()},
    }


def lc_generation(content: str) -> dict[str, Any]:
    """A ChatGeneration in a chat model run's ``outputs.generations`` (a list per prompt)."""
    return {
        "text": content,
        "generation_info": {"finish_reason": "stop"},
        "type": "ChatGeneration",
        "message": lc_serialized("AIMessage", content),
    }


def openai_completion(content: str) -> dict[str, Any]:
    """The outputs of a run traced by ``wrap_openai`` (python/langsmith/wrappers/_openai.py,
    ``_process_chat_completion``: the ChatCompletion's ``model_dump`` without ``usage``)."""
    return {
        "id": "chatcmpl-1",
        "choices": [
            {
                "finish_reason": "stop",
                "index": 0,
                "logprobs": None,
                "message": {"content": content, "role": "assistant", "tool_calls": None},
            }
        ],
        "created": 1714557600,
        "model": "gpt-4o-mini-2024-07-18",
        "object": "chat.completion",
        "usage_metadata": {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
    }
