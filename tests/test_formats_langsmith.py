"""LangSmith runs + feedback: detection, mapping record by record (LangChain and OpenAI forms),
threads, feedback on root runs, mapping by key not by value, comparisons, dedup, rejects;
counts add up."""

from __future__ import annotations

from pathlib import Path

from export_fixtures import (
    chat,
    lc_generation,
    lc_serialized,
    ls_feedback,
    ls_run,
    openai_completion,
    write_jsonl,
)

from lfft.config import CollectConfig
from lfft.data.collect import collect
from lfft.data.formats import detect, role
from lfft.io import read_table, rejects_path


def events(row: dict) -> list[tuple]:
    """A row's feedback as (kind, value, text, scale, ref), in order."""
    return [(e["kind"], e["value"], e["text"], e["scale"], e["ref"]) for e in row["feedback"]]


def run(tmp_path: Path, runs: list[dict], feedback: list[dict], **cfg):
    """runs.jsonl + feedback.jsonl in a folder -> collect -> (rows, rejects, result)."""
    folder = tmp_path / "export"
    write_jsonl(folder / "runs.jsonl", runs)
    write_jsonl(folder / "feedback.jsonl", feedback)
    out = tmp_path / "out" / "interactions.parquet"
    result = collect([folder], out, CollectConfig(**cfg))
    rows = {r["interaction_id"]: r for r in read_table(out).to_pylist()}
    rejected = read_table(rejects_path(out)).to_pylist()
    rejects = {r["location"].split("/")[-1]: (r["reason"], r["detail"]) for r in rejected}
    assert len(rejects) == len(rejected) == sum(result.rejects.values())
    assert result.rows_in == len(runs) + len(feedback)
    assert result.rows_in == result.extra["lines used"] + len(rejected)  # counts add up
    return rows, rejects, result


def chain_trace(tid: str, thread: str | None = None) -> list[dict]:
    """A LangChain trace: a root chain run (thread id in its metadata) and a chat model run."""
    meta = {"thread_id": thread} if thread else {}
    llm_inputs = {
        "messages": [
            [
                lc_serialized("SystemMessage", "Answer briefly."),
                lc_serialized("HumanMessage", "Capital of France?"),
            ]
        ]
    }
    return [
        ls_run(tid, tid, "chain", metadata=meta, inputs={"question": "Capital of France?"}),
        ls_run(
            f"{tid}-llm",
            tid,
            parent=tid,
            inputs=llm_inputs,
            outputs={"generations": [[lc_generation("Paris.")]], "llm_output": None},
            metadata={**meta, "ls_model_name": "gpt-4o-mini"},
            start="2024-05-01T10:00:00.500000+00:00",
        ),
    ]


def test_runs_become_rows_field_by_field(tmp_path):
    runs = [
        *chain_trace("t1", thread="thread-9"),
        # wrap_openai: inputs are the create() kwargs, outputs the ChatCompletion
        ls_run(
            "t2",
            "t2",
            inputs={"messages": chat("Hi", "Hello!", "Capital of Italy?"), "model": "gpt-4o"},
            outputs=openai_completion("Rome."),
        ),
        # a completion LLM in LangChain: prompts + text generations
        ls_run(
            "t3",
            "t3",
            inputs={"prompts": ["Q: Capital of Spain?\nA:"]},
            outputs={"generations": [[{"text": " Madrid.", "type": "Generation"}]]},
        ),
        # stored messages ({"type", "data"}), a batch of two prompts
        ls_run(
            "t4",
            "t4",
            inputs={
                "messages": [
                    [{"type": "human", "data": {"content": "One?"}}],
                    [{"type": "human", "data": {"content": "Two?"}}],
                ]
            },
            outputs={"generations": [[lc_generation("1")], [lc_generation("2")]]},
        ),
    ]
    rows, rejects, result = run(tmp_path, runs, [])
    assert not rejects
    assert set(rows) == {"t1-llm", "t2", "t3", "t4:0", "t4:1"}
    r = rows["t1-llm"]
    assert (r["session_id"], r["source"], r["model"]) == ("thread-9", "langsmith", "gpt-4o-mini")
    assert r["context"] == [{"role": "system", "content": "Answer briefly."}]
    assert (r["prompt"], r["response"]) == ("Capital of France?", "Paris.")
    assert r["ts"].isoformat() == "2024-05-01T10:00:00.500000+00:00"
    r = rows["t2"]
    assert (r["session_id"], r["model"]) == ("t2", "gpt-4o-mini")  # no thread: the trace
    assert [m["content"] for m in r["context"]] == ["Hi", "Hello!"]
    assert (r["prompt"], r["response"]) == ("Capital of Italy?", "Rome.")
    assert (rows["t3"]["prompt"], rows["t3"]["response"]) == (
        "Q: Capital of Spain?\nA:",
        " Madrid.",
    )
    assert [(rows[i]["prompt"], rows[i]["response"]) for i in ("t4:0", "t4:1")] == [
        ("One?", "1"),
        ("Two?", "2"),
    ]
    assert result.extra["left out of used records"] == {"not_an_llm_run": 1}


def test_feedback_maps_by_key_not_by_value(tmp_path):
    runs = [*chain_trace("t1"), *chain_trace("t2"), *chain_trace("t3")]
    feedback = [
        # feedback on the root run lands on the llm run beneath it
        ls_feedback("f1", "t1", "user_score", True, trace_id="t1", comment="Spot on."),
        ls_feedback("f2", "t2", "user_score", False, trace_id="t2"),
        # a 1-5 key: its 1 is a rating of 1, not a thumbs-up; a 0/1 key is thumbs
        ls_feedback("f3", "t1", "stars", 5, trace_id="t1"),
        ls_feedback("f4", "t2", "stars", 1, trace_id="t2"),
        ls_feedback("f5", "t1-llm", "helpful", 1, trace_id="t1"),
        ls_feedback("f6", "t2-llm", "helpful", 0, trace_id="t2"),
        ls_feedback("f7", "t3", "category", value="off-topic", trace_id="t3"),
        ls_feedback("f8", "t3", "fix", correction={"output": "Paris, France."}, trace_id="t3"),
        ls_feedback("f9", "t3", "note", correction="Paris (France).", trace_id="t3"),
        ls_feedback("f10", "t3", "empty", trace_id="t3"),
        ls_feedback("f11", "t3", "nps", 0, trace_id="t3"),
        ls_feedback("f12", "t3", "nps", 9, trace_id="t3"),
    ]
    rows, rejects, result = run(tmp_path, runs, feedback)
    assert events(rows["t1-llm"]) == [
        ("thumbs", 1.0, None, None, None),
        ("comment", None, "Spot on.", None, None),
        ("rating", 5.0, None, 5.0, None),
        ("thumbs", 1.0, None, None, None),
    ]
    assert events(rows["t2-llm"]) == [
        ("thumbs", 0.0, None, None, None),
        ("rating", 1.0, None, 5.0, None),
        ("thumbs", 0.0, None, None, None),
    ]
    assert events(rows["t3-llm"]) == [
        ("label", None, "off-topic", None, None),
        ("edit", None, "Paris, France.", None, None),
        ("edit", None, "Paris (France).", None, None),
    ]
    assert rejects == {
        "feedback.jsonl:10": ("empty_feedback", "no score, value, comment or correction"),
        "feedback.jsonl:11": rejects["feedback.jsonl:11"],
        "feedback.jsonl:12": rejects["feedback.jsonl:12"],
    }
    assert {why[0] for why in rejects.values()} == {"empty_feedback", "rating_without_scale"}
    kinds = result.extra["scores read as"]
    assert kinds["langsmith stars"] == "rating 1..5 (inferred from 2 values from 1 to 5)"
    assert (
        kinds["langsmith helpful"]
        == kinds["langsmith user_score"]
        == "thumbs (inferred from 2 values)"
    )
    # the user's scale makes the 0..10 key usable
    rows, rejects, _ = run(tmp_path / "mapped", runs, feedback, column_map={"scale.nps": "0..10"})
    assert events(rows["t3-llm"])[-2:] == [
        ("rating", 1.0, None, 11.0, None),
        ("rating", 10.0, None, 11.0, None),
    ]
    assert [why[0] for why in rejects.values()] == ["empty_feedback"]


def test_targets_errors_orphans_and_threads(tmp_path):
    runs = [
        *chain_trace("t1", thread="thread-1"),
        ls_run("t2", "t2", inputs={"messages": chat("Q")}, error="RateLimitError('429')"),
        ls_run("t3", "t3", inputs={"messages": chat("Q")}, outputs=None, end=None),
        ls_run("t4", "t4", "chain", inputs={}, outputs={}),  # a chain with no llm run
        # no root in the export: the llm run's own metadata gives the thread
        ls_run(
            "t5-llm",
            "t5",
            parent="t5",
            inputs={"messages": chat("Q5")},
            outputs=openai_completion("A5"),
            metadata={"conversation_id": "conv-5"},
        ),
    ]
    feedback = [
        ls_feedback("f1", "t2", "user_score", 1, trace_id="t2"),
        ls_feedback("f2", "t4", "user_score", 1, trace_id="t4"),
        ls_feedback("f3", "gone", "user_score", 1, trace_id="t9"),
        ls_feedback("f4", "t1", "user_score", 0),  # no trace_id: the root run's id is the trace
    ]
    rows, rejects, _ = run(tmp_path, runs, feedback)
    assert set(rows) == {"t1-llm", "t5-llm"}
    assert rows["t5-llm"]["session_id"] == "conv-5"
    assert events(rows["t1-llm"]) == [("thumbs", 0.0, None, None, None)]
    assert rejects["runs.jsonl:3"] == ("run_error", "RateLimitError('429')")
    assert rejects["runs.jsonl:4"][0] == "missing_response"
    assert rejects["feedback.jsonl:1"] == ("target_rejected", "llm run t2 was rejected (run_error)")
    assert rejects["feedback.jsonl:2"] == (
        "orphan_feedback",
        "no usable llm run at or beneath run t4",
    )
    assert rejects["feedback.jsonl:3"] == ("orphan_feedback", "run gone is not in the export")


def test_comparison_group_gives_a_preference_across_traces(tmp_path):
    runs = [*chain_trace("a"), *chain_trace("b"), *chain_trace("c"), *chain_trace("d")]
    feedback = [
        ls_feedback("f1", "a", "preferred", 1, trace_id="a", group="g1"),
        ls_feedback("f2", "b", "preferred", 0, trace_id="b", group="g1"),
        ls_feedback("f3", "c", "preferred", 1, trace_id="c", group="g2"),  # a tie: no winner
        ls_feedback("f4", "d", "preferred", 1, trace_id="d", group="g2"),
    ]
    rows, rejects, result = run(tmp_path, runs, feedback)
    assert not rejects and result.rows_out == 4
    assert events(rows["a-llm"]) == [
        ("thumbs", 1.0, None, None, None),
        ("preference", None, None, None, "b-llm"),
    ]
    assert events(rows["b-llm"]) == [("thumbs", 0.0, None, None, None)]
    assert [e[0] for e in events(rows["c-llm"]) + events(rows["d-llm"])] == ["thumbs", "thumbs"]


def test_duplicates_latest_wins_and_detection(tmp_path):
    runs = chain_trace("t1")
    old_llm = dict(runs[1], outputs={"generations": [[lc_generation("Lyon.")]]})
    old_llm["end_time"] = "2024-05-01T10:00:00.900000+00:00"
    runs = [old_llm, *runs, runs[0]]  # an older copy first, the root exported twice
    feedback = [
        ls_feedback(
            "f1", "t1", "user_score", 1, trace_id="t1", modified="2024-05-01T11:00:00+00:00"
        ),
        ls_feedback("f1", "t1", "user_score", 0, trace_id="t1"),
    ]
    rows, rejects, result = run(tmp_path, runs, feedback)
    assert result.extra["formats"] == {"langsmith/runs": 1, "langsmith/feedback": 1}
    assert rows["t1-llm"]["response"] == "Paris."
    assert events(rows["t1-llm"]) == [("thumbs", 1.0, None, None, None)]
    assert sorted(rejects) == ["feedback.jsonl:2", "runs.jsonl:1", "runs.jsonl:2"]
    assert {why[0] for why in rejects.values()} == {"duplicate_event"}
    folder = tmp_path / "export"
    for name, want in [("runs.jsonl", "runs"), ("feedback.jsonl", "feedback")]:
        assert detect(folder / name) == "langsmith" and role(folder / name, "langsmith") == want


def test_runs_without_trace_id_join_by_dotted_order(tmp_path):
    """Older exports have no ``trace_id``: the root run's id leads ``dotted_order``."""
    root, child = "0b5c7a0e-0000-4000-8000-000000000001", "0b5c7a0e-0000-4000-8000-000000000002"
    runs = [
        ls_run(root, root, "chain", metadata={"session_id": "chat-3"}),
        ls_run(child, root, parent=root, inputs={"prompt": "Q"}, outputs={"output": "A"}),
    ]
    for run_ in runs:
        run_["trace_id"] = None
    assert runs[1]["dotted_order"].split(".")[0].endswith(root)
    rows, rejects, _ = run(tmp_path, runs, [ls_feedback("f1", root, "user_score", 1)])
    assert not rejects
    assert (rows[child]["session_id"], rows[child]["prompt"], rows[child]["response"]) == (
        "chat-3",
        "Q",
        "A",
    )
    assert events(rows[child]) == [("thumbs", 1.0, None, None, None)]
