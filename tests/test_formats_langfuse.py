"""Langfuse exports (blob storage and UI): detection, mapping record by record, the score join,
dedup of overlapping export windows, rejects; every container; counts add up."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from export_fixtures import (
    chat,
    lf_manifest,
    lf_observation,
    lf_score,
    lf_trace,
    lf_ui_observation,
    lf_ui_score,
    write_jsonl,
)

from lfft.config import CollectConfig
from lfft.data.collect import collect
from lfft.data.formats import detect, role
from lfft.io import read_meta, read_table, rejects_path

GEN = {"role": "assistant", "content": "Paris."}


def events(row: dict) -> list[tuple]:
    """A row's feedback as (kind, value, text, scale), in order."""
    return [(e["kind"], e["value"], e["text"], e["scale"]) for e in row["feedback"]]


def run(tmp_path: Path, *inputs: Path, **cfg):
    """collect -> (rows by id, rejects by location as (reason, detail), the result)."""
    out = tmp_path / "out" / "interactions.parquet"
    result = collect(list(inputs), out, CollectConfig(**cfg))
    rows = {r["interaction_id"]: r for r in read_table(out).to_pylist()}
    rejected = read_table(rejects_path(out)).to_pylist()
    rejects = {r["location"]: (r["reason"], r["detail"]) for r in rejected}
    assert len(rejects) == len(rejected) == sum(result.rejects.values())
    assert result.rows_in == result.extra["lines used"] + len(rejected)  # counts add up
    return rows, rejects, result


def export(root: Path, observations: list[dict], scores: list[dict], **more: list[dict]) -> Path:
    """A blob-storage export folder: ``<project>/<table>/<timestamp>.jsonl``."""
    project = root / "proj-1"
    write_jsonl(project / "observations_v2" / "2024-05-01T10-00-00.jsonl", observations)
    write_jsonl(project / "scores" / "2024-05-01T10-00-00.jsonl", scores)
    for table, rows in more.items():
        write_jsonl(project / table / "2024-05-01T10-00-00.jsonl", rows)
    return root


def test_generations_become_rows_field_by_field(tmp_path):
    obs = [
        lf_observation("span-1", "t1", "SPAN", session_id="s1"),
        lf_observation(
            "g1",
            "t1",
            messages=chat("Capital of France?", system="Answer briefly."),
            output=GEN,
            parent="span-1",
            session_id="s1",
            user_id="u7",
        ),
        # input wrapped with tools, output as a raw OpenAI completion, no session: the trace's
        lf_observation(
            "g2",
            "t2",
            messages={"messages": chat("Hi", "Hello!", "Capital of Italy?"), "tools": []},
            output={"choices": [{"message": {"role": "assistant", "content": "Rome."}}]},
            model=None,
        ),
        lf_observation("g3", "t3", messages="Plain prompt", output="Plain answer"),
    ]
    root = export(tmp_path / "e", obs, [], traces=[lf_trace("t2", "s2", "u2")])
    rows, rejects, result = run(tmp_path, root)
    assert set(rows) == {"g1", "g2", "g3"} and not rejects
    g1 = rows["g1"]
    assert g1["session_id"] == "s1" and g1["user_id"] == "u7" and g1["source"] == "langfuse"
    assert g1["context"] == [{"role": "system", "content": "Answer briefly."}]
    assert (g1["prompt"], g1["response"], g1["model"]) == (
        "Capital of France?",
        "Paris.",
        "gpt-4o-mini",
    )
    assert g1["ts"].isoformat().startswith("2024-05-01T10:00:00")
    g2 = rows["g2"]
    assert (g2["session_id"], g2["user_id"], g2["model"]) == ("s2", "u2", None)
    assert [m["content"] for m in g2["context"]] == ["Hi", "Hello!"]
    assert (g2["prompt"], g2["response"]) == ("Capital of Italy?", "Rome.")
    assert rows["g3"]["session_id"] == "t3"  # no session anywhere: the trace
    assert (rows["g3"]["prompt"], rows["g3"]["response"]) == ("Plain prompt", "Plain answer")
    assert result.extra["left out of used records"] == {"not_a_generation": 1}
    # the scores file is empty (an export window without scores): read as nothing, no error
    assert result.extra["formats"] == {
        "langfuse/observations": 1,
        "langfuse/traces": 1,
        "events": 1,
    }


def test_scores_map_by_data_type_and_name(tmp_path):
    obs = [
        lf_observation("g1", "t1", messages=chat("Q1"), output=GEN),
        lf_observation("g2", "t2", messages=chat("Q2"), output=GEN),
    ]
    scores = [
        lf_score("s1", "t1", "user-feedback", "BOOLEAN", 0, observation_id="g1"),
        lf_score("s2", "t1", "quality", "NUMERIC", 4, observation_id="g1", comment="Good."),
        lf_score("s3", "t2", "quality", "NUMERIC", 1, observation_id="g2"),  # a 1 of 5: no thumb
        lf_score("s4", "t1", "tone", "CATEGORICAL", 0, string_value="helpful"),
        lf_score("s5", "t1", "review", "TEXT", string_value="Too terse.", observation_id="g1"),
        lf_score("s6", "t2", "faithfulness", "NUMERIC", 0.25, observation_id="g2"),
        lf_score("s7", "t2", "faithfulness", "NUMERIC", 1, observation_id="g2"),
        lf_score("s8", "t2", "stars-0-4", "NUMERIC", 0, observation_id="g2"),
        lf_score("s9", "t2", "stars-0-4", "NUMERIC", 3, observation_id="g2"),
    ]
    correction = lf_score("s10", "t1", "output", "CORRECTION", observation_id="g1")
    correction["long_string_value"] = "Paris, France."
    rows, rejects, result = run(tmp_path, export(tmp_path / "e", obs, [*scores, correction]))
    assert events(rows["g1"]) == [
        ("thumbs", 0.0, None, None),
        ("rating", 4.0, None, 5.0),
        ("comment", None, "Good.", None),
        ("label", None, "helpful", None),  # no observation_id: the trace's last generation
        ("comment", None, "Too terse.", None),
        ("edit", None, "Paris, France.", None),
    ]
    # 0..1 fractions are a rating on 0..1 (value + 1 on a scale of 2: normalize gives v)
    assert events(rows["g2"]) == [
        ("rating", 1.0, None, 5.0),
        ("rating", 1.25, None, 2.0),
        ("rating", 2.0, None, 2.0),
    ]
    where = {loc.rsplit(":", 1)[1]: why[0] for loc, why in rejects.items()}
    assert where == {"8": "rating_without_scale", "9": "rating_without_scale"}
    assert "pass --map scale.stars-0-4=N" in next(iter(rejects.values()))[1]
    scales = result.extra["scores read as"]
    assert scales["langfuse quality"] == "rating 1..5 (inferred from 2 values from 1 to 4)"
    assert scales["langfuse stars-0-4"].startswith("rejected (no scale for 2 values from 0 to 3")
    assert read_meta(tmp_path / "out" / "interactions.parquet")["scores"] == scales
    assert result.extra["joined"] == {"langfuse": 8}


def test_map_sets_scales_and_kinds(tmp_path):
    obs = [lf_observation("g1", "t1", messages=chat("Q"), output=GEN)]
    scores = [
        lf_score("s1", "t1", "quality", "NUMERIC", 4),
        lf_score("s2", "t1", "stars-0-4", "NUMERIC", 0),
        lf_score("s3", "t1", "flag", "NUMERIC", 5),
        lf_score("s4", "t1", "helpfulness", "NUMERIC", 1),
    ]
    column_map = {
        "scale": "10",
        "scale.stars-0-4": "0..4",
        "kind.flag": "thumbs",
        "kind.helpfulness": "rating",
    }
    root = export(tmp_path / "e", obs, scores)
    rows, rejects, result = run(tmp_path, root, column_map=column_map)
    assert not rejects
    assert events(rows["g1"]) == [
        ("rating", 4.0, None, 10.0),
        ("rating", 1.0, None, 5.0),  # 0 on 0..4 -> 1 on 1..5
        ("thumbs", 1.0, None, None),
        ("rating", 1.0, None, 10.0),  # a lone 1 would be thumbs; the map says rating
    ]
    assert result.extra["scores read as"]["langfuse quality"] == "rating 1..10 (--map)"


def test_score_targets_and_their_rejects(tmp_path):
    obs = [
        lf_observation("agent", "t1", "AGENT"),
        lf_observation("g1", "t1", messages=chat("Q1"), output=GEN, parent="agent"),
        lf_observation(
            "g2",
            "t1",
            messages=chat("Q2"),
            output=GEN,
            parent="agent",
            start="2024-05-01 10:00:05.000",
        ),
        lf_observation("tool", "t1", "TOOL"),
        lf_observation("bad", "t2", messages=chat("Q3"), level="ERROR"),
        lf_observation(
            "noout", "t3", messages=chat("Q4"), output={"role": "assistant", "tool_calls": []}
        ),
    ]
    scores = [
        lf_score("on-agent", "t1", "ok", "BOOLEAN", 1, observation_id="agent"),
        lf_score("on-tool", "t1", "ok", "BOOLEAN", 1, observation_id="tool"),
        lf_score("on-missing-obs", "t1", "ok", "BOOLEAN", 1, observation_id="gone"),
        lf_score("on-missing-trace", "t9", "ok", "BOOLEAN", 1),
        lf_score("on-error", "t2", "ok", "BOOLEAN", 1, observation_id="bad"),
        lf_score("on-session", None, "ok", "BOOLEAN", 1, session_id="s1"),
    ]
    rows, rejects, _ = run(tmp_path, export(tmp_path / "e", obs, scores))
    assert set(rows) == {"g1", "g2"}
    assert events(rows["g2"]) == [("thumbs", 1.0, None, None)]  # the last generation beneath
    assert events(rows["g1"]) == []
    by_line = {loc.rsplit(":", 1)[1]: why for loc, why in rejects.items() if "scores" in loc}
    assert by_line["2"][1] == "no usable generation at or beneath observation tool"
    assert by_line["3"] == ("orphan_feedback", "observation gone is not in the export")
    assert by_line["4"] == ("orphan_feedback", "the trace has no observations in the export")
    assert by_line["5"][0] == "target_rejected"
    assert by_line["6"] == ("unsupported_target", "a score on a session, not on a trace")
    obs_rejects = sorted(why[0] for loc, why in rejects.items() if "observations" in loc)
    assert obs_rejects == ["generation_error", "missing_response"]


def test_overlapping_windows_are_deduplicated_latest_wins(tmp_path):
    project = tmp_path / "e" / "proj-1"
    first = [
        lf_observation(
            "g1", "t1", messages=chat("Q"), output={"role": "assistant", "content": "v1"}
        ),
    ]
    later = [  # the next window re-exports g1 (updated) and the score at the bound, twice
        lf_observation(
            "g1",
            "t1",
            messages=chat("Q"),
            output={"role": "assistant", "content": "v2"},
            updated="2024-05-01 11:00:00.000",
        ),
    ]
    score_old = lf_score("s1", "t1", "quality", "NUMERIC", 2)
    score_new = lf_score("s1", "t1", "quality", "NUMERIC", 5, updated="2024-05-01 12:00:00.000")
    write_jsonl(project / "observations_v2" / "2024-05-01T11-00-00.jsonl", later)
    write_jsonl(project / "observations_v2" / "2024-05-01T10-00-00.jsonl", first)
    write_jsonl(project / "scores" / "2024-05-01T10-00-00.jsonl", [score_new, score_old])
    rows, rejects, result = run(tmp_path, tmp_path / "e")
    assert rows["g1"]["response"] == "v2" and events(rows["g1"]) == [("rating", 5.0, None, 5.0)]
    assert sorted(why[0] for why in rejects.values()) == ["duplicate_event", "duplicate_event"]
    old = next(loc for loc in rejects if "T10-00-00.jsonl:1" in loc and "observations" in loc)
    assert "newest, at" in rejects[old][1] and "T11-00-00.jsonl:1" in rejects[old][1]
    assert result.rows_in == 4 and result.rows_out == 1


def test_detection_roles_manifest_and_bad_records(tmp_path):
    obs = [lf_observation("g1", "t1", messages=chat("Q"), output=GEN)]
    root = export(tmp_path / "e", obs, [lf_score("s1", "t1", "ok", "BOOLEAN", 1)])
    manifest = root / "proj-1" / "manifests" / "2024-05-02T00-00-00.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps(lf_manifest(["proj-1/observations_v2/a.jsonl"])))
    with open(next((root / "proj-1" / "scores").iterdir()), "a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "x", "unrelated": True}) + "\n")
    for path, want in [
        (next((root / "proj-1" / "observations_v2").iterdir()), "observations"),
        (next((root / "proj-1" / "scores").iterdir()), "scores"),
        (manifest, "manifests"),
    ]:
        assert detect(path) == "langfuse" and role(path, "langfuse") == want
    rows, rejects, result = run(tmp_path, root)
    assert events(rows["g1"]) == [("thumbs", 1.0, None, None)]
    assert sorted(why[0] for why in rejects.values()) == ["malformed_json", "unknown_record"]
    assert result.extra["left out of used records"] == {"export_manifest": 1}
    assert result.rows_in == 5


def test_every_container_and_the_ui_export(tmp_path):
    """JSONL.gz observations + CSV scores (blob export), Parquet observations (its ClickHouse
    Parquet), and the UI's camelCase JSON array export: the same rows and events."""
    obs = [
        lf_observation("g1", "t1", messages=chat("Q1"), output=GEN, session_id="s1"),
        lf_observation("g2", "t2", messages=chat("Q2"), output=GEN, session_id="s2"),
    ]
    scores = [
        lf_score("s1", "t1", "quality", "NUMERIC", 4, observation_id="g1"),
        lf_score("s2", "t2", "ok", "BOOLEAN", 1, observation_id="g2"),
    ]
    blob = tmp_path / "blob" / "proj-1"
    (blob / "observations_v2").mkdir(parents=True)
    (blob / "scores").mkdir(parents=True)
    with gzip.open(blob / "observations_v2" / "a.jsonl.gz", "wt") as f:
        f.write(json.dumps(obs[0]) + "\n")
    table = pa.Table.from_pylist([{k: v for k, v in obs[1].items() if v not in ({}, [])}])
    pq.write_table(table, blob / "observations_v2" / "b.parquet")
    columns = list(scores[0])
    lines = [",".join(columns)]
    lines += [",".join("" if s[c] is None else str(s[c]) for c in columns) for s in scores]
    (blob / "scores" / "a.csv").write_text("\n".join(lines) + "\n")
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "observations.json").write_text(json.dumps([lf_ui_observation(o) for o in obs]))
    (ui / "scores.json").write_text(json.dumps([lf_ui_score(s) for s in scores]))
    got = {}
    for name in ("blob", "ui"):
        rows, rejects, _ = run(tmp_path / f"out-{name}", tmp_path / name)
        assert not rejects
        got[name] = {
            i: (r["session_id"], r["prompt"], r["model"], events(r)) for i, r in rows.items()
        }
    assert got["blob"] == got["ui"]
    assert got["blob"]["g1"] == ("s1", "Q1", "gpt-4o-mini", [("rating", 4.0, None, 5.0)])
    assert got["blob"]["g2"] == ("s2", "Q2", "gpt-4o-mini", [("thumbs", 1.0, None, None)])


@pytest.mark.parametrize("budget", [512.0, 0.001])
def test_partitions_do_not_change_the_output(tmp_path, budget):
    """A tiny memory budget spreads traces over many partitions: the same rows and rejects."""
    obs, scores = [], []
    for t in range(40):
        obs.append(lf_observation(f"g{t}", f"t{t}", messages=chat(f"Q{t}"), output=GEN))
        scores.append(lf_score(f"s{t}", f"t{t}", "quality", "NUMERIC", 1 + t % 5))
    scores.append(lf_score("orphan", "t99", "quality", "NUMERIC", 3))
    rows, rejects, result = run(tmp_path, export(tmp_path / "e", obs, scores), memory_budget=budget)
    assert len(rows) == 40 and list(rejects.values())[0][0] == "orphan_feedback"
    assert all(events(rows[f"g{t}"]) == [("rating", 1.0 + t % 5, None, 5.0)] for t in range(40))
    assert result.rows_in == 81
