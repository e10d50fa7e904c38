"""``lfft clean``: one case per drop reason, text fixes, duplicate merging, PII, streaming."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lfft.config import CleanConfig
from lfft.data import clean as clean_mod
from lfft.data.clean import clean, clean_table
from lfft.data.records import feedback_event, interaction, to_table
from lfft.errors import NoUsableRows, SchemaError
from lfft.io import read_meta, read_table, rejects_path, write_table
from lfft.schemas import INTERACTIONS, REJECTS, make_metadata


def row(iid: str, prompt: str = "Hi?", response: str = "Hello.", session: str = "s1", **kw):
    return interaction(
        interaction_id=iid, session_id=session, prompt=prompt, response=response, source="t", **kw
    )


def run_table(rows, cfg: CleanConfig | None = None):
    kept, rejects = clean_table(to_table(rows), cfg or CleanConfig())
    return kept.to_pylist(), {r["location"]: r["reason"] for r in rejects.to_pylist()}


def write_interactions(path: Path, rows) -> Path:
    write_table(path, to_table(rows), INTERACTIONS, make_metadata("collect"))
    return path


@pytest.mark.parametrize(
    ("bad", "cfg", "reason"),
    [
        (row("x", response=" \n\t "), CleanConfig(), "empty_response"),
        (row("x", prompt="  "), CleanConfig(), "empty_prompt"),
        (row("x", response="y" * 50), CleanConfig(max_chars=40), "too_long"),
        (
            row("x", context=[{"role": "user", "content": "a"}] * 3),
            CleanConfig(max_turns=2),
            "too_many_turns",
        ),
        (row("x", response="ab"), CleanConfig(min_response_chars=3), "empty_response"),
    ],
)
def test_each_drop_reason(bad, cfg, reason):
    kept, rejects = run_table([bad, row("ok", prompt="Fine?")], cfg)
    assert [r["interaction_id"] for r in kept] == ["ok"]
    assert rejects == {"x": reason}


def test_too_long_counts_context_prompt_and_response():
    ctx = [{"role": "system", "content": "s" * 30}]
    kept, rejects = run_table([row("x", response="r" * 10, context=ctx)], CleanConfig(max_chars=40))
    assert rejects == {"x": "too_long"}
    _, table = clean_table(to_table([row("x", response="r" * 9000)]), CleanConfig(max_chars=40))
    (reject,) = table.to_pylist()
    assert reject["detail"] == "9,003 chars > max_chars 40" and len(reject["raw"]) == 2000


def test_text_is_fixed_nfc_line_ends_and_control_characters():
    bad = row(
        "x",
        prompt="cafe\u0301\r\nbar",
        response="bell\x07 \ufeffok\rend",
        context=[{"role": "user", "content": "na\u0308ive\x00"}],
        feedback=[feedback_event("comment", text="tre\u0300s\x1b bien")],
    )
    counts: Counter = Counter()
    out = clean_table(to_table([bad]), CleanConfig(), counts)[0].to_pylist()[0]
    assert out["prompt"] == "caf\u00e9\nbar"
    assert out["response"] == "bell ok\nend"
    assert out["context"][0]["content"] == "n\u00e4ive"
    assert out["feedback"][0]["text"] == "tr\u00e8s bien"
    assert counts["texts_fixed"] == 4  # prompt, response, the context turn, the comment


def test_duplicates_merge_into_one_row_with_the_union_of_feedback():
    thumbs = feedback_event("thumbs", value=1.0)
    first = row("a", ts=datetime(2024, 1, 1, tzinfo=UTC), feedback=[thumbs])
    again = row("b", feedback=[thumbs, feedback_event("rating", value=4, scale=5)], user_id="u")
    other_session = row("c", session="s2")
    kept, rejects = run_table([again, first, other_session])
    assert rejects == {"b": "duplicate_merged"}
    merged = next(r for r in kept if r["interaction_id"] == "a")  # the earliest copy survives
    assert [f["kind"] for f in merged["feedback"]] == ["thumbs", "rating"]  # repeat once
    assert merged["user_id"] == "u"
    assert {r["interaction_id"] for r in kept} == {"a", "c"}  # other session: kept


def test_merge_across_sessions_option():
    kept, rejects = run_table(
        [row("a"), row("c", session="s2")], CleanConfig(merge_across_sessions=True)
    )
    assert [r["interaction_id"] for r in kept] == ["a"]
    assert rejects == {"c": "duplicate_merged"}


def test_preference_refs_follow_a_merged_duplicate():
    rows = [
        row("a", response="One."),
        row("a2", response="One."),  # duplicate of a, merged away
        row("b", response="Two.", feedback=[feedback_event("preference", ref="a2")]),
    ]
    kept, _ = run_table(rows)
    b = next(r for r in kept if r["interaction_id"] == "b")
    assert b["feedback"][0]["ref"] == "a"


def test_pii_scrubbed_everywhere_and_span_offsets_follow():
    response = "Write to jane@example.com today."
    start = response.index("today")
    bad = row(
        "x",
        prompt="My card is 4111 1111 1111 1111",
        response=response,
        context=[{"role": "user", "content": "I am at 10.0.0.1"}],
        feedback=[
            feedback_event("span", start=start, end=start + 5, text="wrong"),
            feedback_event("edit", text="Write to jane@example.com tomorrow."),
        ],
    )
    counts: Counter = Counter()
    out = clean_table(to_table([bad]), CleanConfig(), counts)[0].to_pylist()[0]
    assert out["prompt"] == "My card is <CARD>"
    assert out["context"][0]["content"] == "I am at <IP>"
    assert out["response"] == "Write to <EMAIL> today."
    span = out["feedback"][0]
    assert out["response"][span["start"] : span["end"]] == "today"
    assert out["feedback"][1]["text"] == "Write to <EMAIL> tomorrow."
    assert counts["pii_email"] == 2 and counts["pii_card"] == 1 and counts["pii_ip"] == 1


def test_no_scrub_keeps_personal_data():
    kept, _ = run_table([row("x", response="mail a@b.com")], CleanConfig(scrub_pii=False))
    assert kept[0]["response"] == "mail a@b.com"


def test_runner_streams_counts_add_up_and_matches_the_pure_core(tmp_path, monkeypatch):
    monkeypatch.setattr(clean_mod, "DUPLICATE_ROWS_PER_PARTITION", 2)  # several partitions
    rows = []
    for i in range(30):
        rows.append(row(f"r{i}", prompt=f"Q{i % 6}?", session=f"s{i % 2}", response=f"A{i % 3}"))
    rows.append(row("empty", response=" "))
    rows.append(row("pii", response="call +1 415 555 0132"))
    src = write_interactions(tmp_path / "interactions.parquet", rows)
    out = tmp_path / "clean.parquet"
    cfg = CleanConfig(batch_rows=4)  # duplicates fall in different batches
    result = clean(src, out, cfg)

    assert result.rows_in == len(rows) == result.rows_out + sum(result.rejects.values())
    assert result.rejects["empty_response"] == 1 and result.rejects["duplicate_merged"] > 0
    assert result.extra["pii"] == {"phone": 1}
    expected, expected_rejects = clean_table(to_table(rows), cfg)
    got = read_table(out)
    assert sorted(got.column("interaction_id").to_pylist()) == sorted(
        expected.column("interaction_id").to_pylist()
    )
    rejects = read_table(rejects_path(out), schema=REJECTS)
    assert Counter(rejects.column("reason").to_pylist()) == result.rejects
    assert Counter(rejects.column("reason").to_pylist()) == Counter(
        expected_rejects.column("reason").to_pylist()
    )
    meta = read_meta(out)
    assert meta["stage"] == "clean" and meta["pii"] == {"phone": 1}
    assert meta["counts"]["rows"] == result.rows_out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clean.parquet",
        "clean.rejects.parquet",
        "interactions.parquet",
    ]  # no temporary files left


def test_all_rows_rejected_is_an_error_and_leaves_no_output(tmp_path):
    src = write_interactions(tmp_path / "i.parquet", [row("x", response="")])
    out = tmp_path / "clean.parquet"
    with pytest.raises(NoUsableRows, match="empty_response"):
        clean(src, out, CleanConfig())
    assert not out.exists()
    assert pq.read_table(rejects_path(out)).num_rows == 1


def test_wrong_schema_names_the_columns(tmp_path):
    src = tmp_path / "rejects.parquet"
    write_table(src, REJECTS.empty_table(), REJECTS, make_metadata("collect"))
    with pytest.raises(SchemaError, match="'interaction_id'.*'prompt'"):
        clean(src, tmp_path / "clean.parquet", CleanConfig())


def test_cli_wrong_schema_is_a_one_line_error(tmp_path):
    src = tmp_path / "x.rejects.parquet"
    write_table(src, REJECTS.empty_table(), REJECTS, make_metadata("clean"))
    proc = subprocess.run(
        [sys.executable, "-m", "lfft", "normalize", str(src), "--out", str(tmp_path / "f.parquet")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "missing column 'prompt'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_folder_input_and_duplicates_across_parts(tmp_path):
    folder = tmp_path / "interactions"
    folder.mkdir()
    write_interactions(folder / "part-0.parquet", [row("a"), row("b", response="Other.")])
    write_interactions(folder / "part-1.parquet", [row("a2")])  # duplicate of a
    result = clean(folder, tmp_path / "clean.parquet", CleanConfig())
    assert (result.rows_in, result.rows_out) == (3, 2)
    assert result.rejects == {"duplicate_merged": 1}


def test_killed_mid_write_leaves_no_artifact_and_no_temp_files(tmp_path, monkeypatch):
    src = write_interactions(
        tmp_path / "i.parquet", [row(f"r{i}", prompt=f"Q{i}") for i in range(9)]
    )
    calls = []

    def boom(self, table):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return table.select(INTERACTIONS.names)

    monkeypatch.setattr(clean_mod.Survivors, "finish", boom)
    with pytest.raises(KeyboardInterrupt):
        clean(src, tmp_path / "clean.parquet", CleanConfig(batch_rows=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.parquet"]
