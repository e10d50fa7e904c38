"""Every artifact's Arrow schema, in one place (the contract of ``DESIGN.md``).

Units and nullability are in the comments. ``validate`` names every bad column at once; the
``lfft`` metadata block that every Parquet file carries is built by :func:`make_metadata`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from lfft import __version__
from lfft.errors import SchemaError

METADATA_KEY = b"lfft"

TS = pa.timestamp("ms", tz="UTC")

# One chat turn of the context.
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

# One feedback event aimed at an interaction (explicit, implicit or behavioural).
FEEDBACK_EVENT = pa.struct(
    [
        ("kind", pa.string()),  # thumbs|rating|label|comment|edit|preference|span|rank|copy|...
        ("origin", pa.string()),  # explicit|implicit|behavioral
        ("value", pa.float64()),  # numeric value (thumbs 1/0, rating, dwell ms, label score); null
        ("text", pa.string()),  # label name, comment, edited text, span error type; null
        ("ts", TS),  # when the feedback was given; null if unknown
        ("ref", pa.string()),  # preference: interaction_id of the rejected sibling; null
        ("scale", pa.float64()),  # rating: top of the scale (ratings run 1..scale); null
        ("start", pa.int32()),  # span: first character offset in the response; null
        ("end", pa.int32()),  # span: one past the last character; null
    ]
)

# Keep/modify span of the response, character offsets; label 1 keep, 0 modify.
TOKEN_SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.int8())])

INTERACTIONS = pa.schema(
    [
        pa.field("interaction_id", pa.string(), nullable=False),  # stable id of the response
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),  # reader name, e.g. events, hh-rlhf
        pa.field("ts", TS),  # time of the response
        pa.field("context", pa.list_(MESSAGE), nullable=False),  # turns before the prompt
        pa.field("prompt", pa.string(), nullable=False),  # the user turn answered
        pa.field("response", pa.string(), nullable=False),  # the assistant's answer
        pa.field("model", pa.string()),
        pa.field("feedback", pa.list_(FEEDBACK_EVENT), nullable=False),
    ]
)

CLEAN = INTERACTIONS

# normalize's artifact, named ``feedback`` (``feedback.parquet``, the ``feedback`` key below):
# the interactions columns plus the feedback events resolved into one score, label, weight...
NORMALIZED = pa.schema(
    list(INTERACTIONS)
    + [
        pa.field("score", pa.float32()),  # in [0, 1]; null when no usable signal
        pa.field("label", pa.int8()),  # 1 good / 0 bad; null when no usable signal
        pa.field("weight", pa.float32(), nullable=False),  # confidence > 0
        pa.field("signal", pa.string(), nullable=False),  # binary|scalar|pairwise|token|none
        pa.field("target", pa.string(), nullable=False),  # user's edit if any, else response
        pa.field("token_spans", pa.list_(TOKEN_SPAN), nullable=False),  # char offsets, response
        pa.field("critique", pa.string()),  # natural-language critique; null
        pa.field("group_id", pa.string(), nullable=False),  # same context+prompt -> same id
    ]
)

SPLIT = NORMALIZED

REJECTS = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),  # collect|clean|normalize|split
        pa.field("source", pa.string(), nullable=False),  # input file or artifact
        pa.field("location", pa.string(), nullable=False),  # file:line, or interaction_id
        pa.field("reason", pa.string(), nullable=False),  # short machine-friendly reason
        pa.field("detail", pa.string()),  # human explanation; null
        pa.field("raw", pa.string()),  # the offending input, truncated to 2,000 chars
    ]
)

METRICS = pa.schema(
    [
        pa.field("step", pa.int64(), nullable=False),  # optimizer step
        pa.field("split", pa.string(), nullable=False),  # train|val
        pa.field("epoch", pa.float64()),
        pa.field("loss", pa.float64()),  # L = L_M + lambda * L_F
        pa.field("lm_loss", pa.float64()),
        pa.field("fb_loss", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("grad_norm", pa.float64()),
        pa.field("tokens", pa.int64()),  # useful (non-pad) tokens in this step
        pa.field("tokens_per_s", pa.float64()),  # useful tokens per second
        pa.field("pad_share", pa.float64()),  # padding / all positions
        pa.field("mem_mb", pa.float64()),  # peak memory (RSS on CPU, allocated on CUDA)
        pa.field("elapsed_s", pa.float64()),
    ]
)

PREDICTIONS = pa.schema(
    [
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("group_id", pa.string()),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("signal", pa.string()),
        pa.field("nll", pa.float64()),  # mean negative log-likelihood per response token (nats)
        pa.field("n_tokens", pa.int32()),  # response tokens scored
        pa.field("feedback_pred", pa.float64()),  # feedback head's score in [0, 1]
        pa.field("score", pa.float32()),  # the row's feedback score (ground truth); null
        pa.field("label", pa.int8()),
        pa.field("generation", pa.string()),  # greedy (or sampled) output with --generate; null
        pa.field("generation_score", pa.float64()),  # feedback head on the generation; null
        pa.field("baseline_generation", pa.string()),  # the --baseline model's output; null
        pa.field("baseline_score", pa.float64()),  # feedback head on the baseline output; null
    ]
)

ARTIFACTS: dict[str, pa.Schema] = {
    "interactions": INTERACTIONS,
    "clean": CLEAN,
    "feedback": NORMALIZED,
    "split": SPLIT,
    "rejects": REJECTS,
    "metrics": METRICS,
    "predictions": PREDICTIONS,
}

SIGNALS = ("binary", "scalar", "pairwise", "token", "none")
ORIGINS = ("explicit", "implicit", "behavioral")


def schema_problems(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Every way ``actual`` differs from ``expected``, one message per column (empty if fine)."""
    problems = []
    for field in expected:
        idx = actual.get_field_index(field.name)
        if idx < 0:
            problems.append(f"missing column {field.name!r} ({field.type})")
        elif not actual.field(idx).type.equals(field.type):
            problems.append(
                f"column {field.name!r} is {actual.field(idx).type}, expected {field.type}"
            )
    return problems


def validate(actual: pa.Schema, expected: pa.Schema, what: str = "artifact") -> None:
    """Raise :class:`SchemaError` naming every bad column of ``actual`` at once."""
    problems = schema_problems(actual, expected)
    if problems:
        raise SchemaError(f"{what}: " + "; ".join(problems))


def conform(table: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """Select and cast ``table``'s columns to ``schema`` (after :func:`validate`)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    table = table.select(schema.names)
    # the usual case (a stage built exactly these columns): no cast, which also spares the
    # import of pyarrow.compute on the hot path of every write
    return table if table.schema.equals(schema, check_metadata=True) else table.cast(schema)


def make_metadata(
    stage: str,
    config: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    counts: Mapping[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``lfft`` metadata block written on every artifact."""
    return {
        "stage": stage,
        "version": __version__,
        "config": dict(config or {}),
        "inputs": dict(inputs or {}),
        "counts": dict(counts or {}),
        **extra,
    }


def encode_metadata(meta: Mapping[str, Any]) -> dict[bytes, bytes]:
    return {METADATA_KEY: json.dumps(meta, sort_keys=True, default=str).encode()}


def decode_metadata(raw: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    if not raw or METADATA_KEY not in raw:
        return {}
    return json.loads(raw[METADATA_KEY])
