"""``lfft export``: exact TRL field names and types, pairing, and round trips through collect."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lfft.config import CollectConfig
from lfft.data import export as export_mod
from lfft.data.export import export
from lfft.data.records import feedback_event, interaction, to_table
from lfft.errors import LfftError, SchemaError
from lfft.io import read_table, write_table
from lfft.schemas import INTERACTIONS, NORMALIZED, make_metadata

SYSTEM = {"role": "system", "content": "Be brief."}


def frow(
    prompt: str,
    response: str,
    group: str,
    score: float | None = None,
    label: int | None = None,
    target: str | None = None,
    context: list | None = None,
    feedback: list | None = None,
) -> dict[str, Any]:
    """One NORMALIZED row as normalize writes it."""
    row = interaction(
        session_id=f"s-{group}",
        prompt=prompt,
        response=response,
        source="test",
        context=context or [],
        feedback=feedback or [],
        ts=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    row.update(
        score=score,
        label=label,
        weight=1.0,
        signal="none" if score is None else "scalar",
        target=target or response,
        token_spans=[],
        critique=None,
        group_id=group,
    )
    return row


ROWS = [
    frow("2+2?", "4", "g1", 1.0, 1, context=[SYSTEM], feedback=[feedback_event("thumbs", value=1)]),
    frow("2+2?", "5", "g1", 0.0, 0, feedback=[feedback_event("thumbs", value=0)]),
    frow("2+2?", "four-ish", "g1", 0.5, 1),
    frow("Capital of France?", "Lyon", "g2", 0.0, 0, target="Paris"),  # a user's edit
    frow("Hi", "Hello", "g3"),  # no signal
    frow("Tie?", "a", "g4", 0.5, 1),
    frow("Tie?", "b", "g4", 0.5, 1),
]


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "feedback.parquet"
    write_table(path, to_table(ROWS, NORMALIZED), NORMALIZED, make_metadata("normalize"))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and set(m) == {"role", "content"} and isinstance(m["content"], str)
        for m in value
    )


def test_kto_fields_and_types(artifact, tmp_path):
    out = tmp_path / "kto.jsonl"
    result = export(artifact, "trl-kto", out)
    recs = lines(out)
    assert result.rows_out == len(recs) == 6
    assert result.rejects == Counter({"no_label": 1})
    for rec in recs:
        assert set(rec) == {"prompt", "completion", "label"}
        assert is_messages(rec["prompt"]) and rec["prompt"][-1]["role"] == "user"
        assert is_messages(rec["completion"]) and [m["role"] for m in rec["completion"]] == [
            "assistant"
        ]
        assert isinstance(rec["label"], bool)
    assert recs[0]["prompt"] == [SYSTEM, {"role": "user", "content": "2+2?"}]
    assert [r["label"] for r in recs[:2]] == [True, False]


def test_sft_uses_the_target_and_skips_bad_rows(artifact, tmp_path):
    out = tmp_path / "sft.jsonl"
    result = export(artifact, "trl-sft", out)
    recs = lines(out)
    assert all(set(r) == {"messages"} and is_messages(r["messages"]) for r in recs)
    finals = [r["messages"][-1] for r in recs]
    assert all(m["role"] == "assistant" for m in finals)
    assert {"role": "assistant", "content": "Paris"} in finals  # the edit, not "Lyon"
    assert {"role": "assistant", "content": "5"} not in finals  # labelled bad, no edit
    assert result.rejects == Counter({"negative": 1})
    assert result.rows_out == len(ROWS) - 1


def test_dpo_pairs_best_against_each_lower_score_within_a_group(artifact, tmp_path):
    out = tmp_path / "dpo.jsonl"
    result = export(artifact, "trl-dpo", out)
    recs = lines(out)
    for rec in recs:
        assert set(rec) == {"prompt", "chosen", "rejected"}
        assert all(is_messages(rec[k]) for k in rec)
        assert rec["chosen"][0]["role"] == rec["rejected"][0]["role"] == "assistant"
    pairs = {
        (r["prompt"][-1]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"])
        for r in recs
    }
    assert pairs == {
        ("2+2?", "4", "5"),
        ("2+2?", "4", "four-ish"),
        ("Capital of France?", "Paris", "Lyon"),  # edit > response
    }
    assert result.rejects == Counter({"no_score": 1, "no_pair": 2})  # "Hi"; the tie a/b
    assert result.extra["rows paired"] == 4


def test_dpo_partitions_large_inputs_with_the_same_result(artifact, tmp_path, monkeypatch):
    whole = tmp_path / "whole.jsonl"
    export(artifact, "trl-dpo", whole)
    monkeypatch.setattr(export_mod, "PART_ROWS", 2)  # 7 rows -> 4 hash partitions on disk
    parts = tmp_path / "parts.jsonl"
    export(artifact, "trl-dpo", parts)
    assert sorted(whole.read_text().splitlines()) == sorted(parts.read_text().splitlines())
    assert not list(tmp_path.glob(".lfft-export-*"))  # temporary partitions removed


def test_jsonl_writes_every_column(artifact, tmp_path):
    out = tmp_path / "all.jsonl"
    export(artifact, "jsonl", out)
    recs = lines(out)
    assert len(recs) == len(ROWS)
    assert set(recs[0]) == set(NORMALIZED.names)
    assert recs[0]["ts"] == "2024-05-01T12:00:00+00:00"


def test_bad_format_and_wrong_artifact_are_user_errors(artifact, tmp_path):
    with pytest.raises(LfftError, match="unknown export format"):
        export(artifact, "trl-ppo", tmp_path / "x.jsonl")
    interactions = tmp_path / "interactions.parquet"
    write_table(
        interactions, to_table([ROWS[0]], INTERACTIONS), INTERACTIONS, make_metadata("collect")
    )
    with pytest.raises(SchemaError, match="missing column 'label'"):
        export(interactions, "trl-kto", tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


# --- round trips: export -> lfft collect --format auto -----------------------------------------


def collect_back(path: Path, tmp_path: Path) -> list[dict]:
    from lfft.data.collect import collect

    out = tmp_path / f"{path.stem}.interactions.parquet"
    result = collect([path], out, CollectConfig(format="auto"))
    assert sum(result.rejects.values()) == 0
    return read_table(out).to_pylist()


def test_round_trip_kto(artifact, tmp_path):
    out = tmp_path / "kto.jsonl"
    export(artifact, "trl-kto", out)
    back = collect_back(out, tmp_path)
    want = [
        (r["context"], r["prompt"], r["response"], r["label"])
        for r in ROWS
        if r["label"] is not None
    ]
    got = [(r["context"], r["prompt"], r["response"], int(r["feedback"][0]["value"])) for r in back]
    assert all(
        r["source"] == "trl" and [e["kind"] for e in r["feedback"]] == ["thumbs"] for r in back
    )
    assert got == want


def test_round_trip_dpo_keeps_pairs(artifact, tmp_path):
    out = tmp_path / "dpo.jsonl"
    export(artifact, "trl-dpo", out)
    back = collect_back(out, tmp_path)
    by_id = {r["interaction_id"]: r for r in back}
    pairs = {
        (r["prompt"], r["response"], by_id[e["ref"]]["response"])
        for r in back
        for e in r["feedback"]
        if e["kind"] == "preference"
    }
    assert pairs == {
        ("2+2?", "4", "5"),
        ("2+2?", "4", "four-ish"),
        ("Capital of France?", "Paris", "Lyon"),
    }


def test_round_trip_sft(artifact, tmp_path):
    out = tmp_path / "sft.jsonl"
    export(artifact, "trl-sft", out)
    back = collect_back(out, tmp_path)
    want = [
        (r["prompt"], r["target"])
        for r in ROWS
        if not (r["label"] == 0 and r["target"] == r["response"])
    ]
    assert [(r["prompt"], r["response"]) for r in back] == want


def test_round_trip_jsonl_is_lossless(artifact, tmp_path):
    out = tmp_path / "rows.jsonl"
    export(artifact, "jsonl", out)
    back = collect_back(out, tmp_path)
    assert back == [{k: r[k] for k in INTERACTIONS.names} for r in read_table(artifact).to_pylist()]


def test_cli_export(artifact, tmp_path):
    from typer.testing import CliRunner

    from lfft.cli import app

    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        app, ["export", str(artifact), "--format", "trl-kto", "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert len(lines(out)) == 6


def test_trl_datasets_loads_the_exports(artifact, tmp_path):
    datasets = pytest.importorskip("datasets", reason="the optional 'datasets' package is absent")
    for fmt, columns in (
        ("trl-kto", {"prompt", "completion", "label"}),
        ("trl-dpo", {"prompt", "chosen", "rejected"}),
        ("trl-sft", {"messages"}),
    ):
        out = tmp_path / f"{fmt}.jsonl"
        export(artifact, fmt, out)
        ds = datasets.load_dataset("json", data_files=str(out), split="train")
        assert set(ds.column_names) == columns
