"""Open WebUI feedback export + chat export: detection, mapping record by record, the join,
rejects; and ``lfft pipeline`` from an Open WebUI export folder to a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from owui_fixtures import (
    T0,
    chat_model,
    feedback,
    message,
    regenerated_and_edited_chat,
    write_json,
)

from lfft.config import CollectConfig
from lfft.data.collect import collect
from lfft.data.formats import detect, read_format, role
from lfft.data.records import Parsed, Reject
from lfft.io import read_table, rejects_path


def events(row: dict) -> list[tuple]:
    """A row's feedback as (kind, value, text, ref, scale), in order."""
    return [(e["kind"], e["value"], e["text"], e["ref"], e["scale"]) for e in row["feedback"]]


def run(tmp_path: Path, *inputs: Path, cfg: CollectConfig | None = None):
    out = tmp_path / "out" / "interactions.parquet"
    result = collect(list(inputs), out, cfg or CollectConfig())
    rows = {r["interaction_id"]: r for r in read_table(out).to_pylist()}
    rejects = {
        r["location"]: (r["reason"], r["source"]) for r in read_table(rejects_path(out)).to_pylist()
    }
    assert result.rows_in == result.extra["lines used"] + sum(result.rejects.values())
    return rows, rejects, result


@pytest.fixture
def export(tmp_path: Path) -> dict[str, Path]:
    """A feedback export (with snapshots) and a chat export of the same instance."""
    chat = regenerated_and_edited_chat()
    records = [
        feedback(
            "f1",
            chat,
            "a2",
            1,
            details=8,
            reason="accurate_information",
            comment="Right, and short.",
            tags=["math"],
            updated=T0 + 300,
        ),
        feedback("f2", chat, "a1", "-1", reason="not_factually_correct"),  # rating as a string
        feedback("f3", chat, "a3", 1, snapshot=False),  # newer exports carry no snapshot
        feedback("f4", chat, "a2", -1, updated=T0 + 250),  # an older rating of a2: superseded
        feedback("f5", chat, "gone", 1),  # the message is not in the snapshot
    ]
    broken = [
        {**records[0], "id": "f6", "data": None},
        feedback("f7", chat, "a2", 5),
        feedback("f8", chat, "a2", 1, details=11),
        {**feedback("f9", chat, "a2", None), "data": {"rating": None, "details": {"rating": None}}},
        {**records[0], "id": "f10", "meta": {"chat_id": "chat-1"}},
    ]
    legacy = {  # an old chat: a flat messages list, no history
        "id": "chat-2",
        "user_id": "user-2",
        "title": "Hi",
        "chat": {
            "messages": [
                {"id": "m1", "role": "user", "content": "Hi"},
                {
                    "id": "m2",
                    "role": "assistant",
                    "content": "Hello!",
                    "annotation": {"rating": -1, "comment": "rude"},
                },
            ]
        },
        "created_at": T0,
        "updated_at": T0,
    }
    return {
        "feedback": write_json(
            tmp_path / "owui" / "feedback-history-export-1.json", records + broken
        ),
        "chat": write_json(tmp_path / "owui" / "chat-export-1.json", [chat, legacy]),
    }


def test_detected_with_roles(export):
    assert detect(export["feedback"]) == detect(export["chat"]) == "openwebui"
    assert role(export["feedback"], "openwebui") == "feedback"
    assert role(export["chat"], "openwebui") == "chat"


def test_feedback_export_alone_maps_record_by_record(tmp_path, export):
    rows, rejects, result = run(tmp_path, export["feedback"])
    fb = str(export["feedback"])
    # f1 writes a2 (its reply) and a1 (its sibling); f2's reply a1 is then already written
    assert set(rows) == {"chat-1:a1", "chat-1:a2"}
    a1, a2 = rows["chat-1:a1"], rows["chat-1:a2"]
    assert (a2["prompt"], a2["response"], a2["context"]) == ("What is 2+2?", "4", [])
    assert (a2["session_id"], a2["source"], a2["model"], a2["user_id"]) == (
        "chat-1",
        "openwebui",
        "llama3:8b",
        "user-1",
    )
    assert a2["ts"].timestamp() == T0 + len("a2")
    assert events(a2) == [
        ("thumbs", 1.0, None, None, None),
        ("rating", 8.0, None, None, 10.0),
        ("label", None, "accurate_information", None, None),
        ("label", None, "math", None, None),
        ("comment", None, "Right, and short.", None, None),
        ("preference", None, None, "chat-1:a1", None),  # thumbs up over a thumbs-down sibling
    ]
    assert a2["feedback"][0]["ts"].timestamp() == T0 + 300  # the feedback's updated_at
    # a1: f2's thumbs-down; the user regenerated it and kept a2 (on the path to currentId)
    assert events(a1) == [
        ("thumbs", 0.0, None, None, None),
        ("label", None, "not_factually_correct", None, None),
        ("regenerate", None, None, None, None),
    ]
    assert a1["feedback"][2]["origin"] == "behavioral"
    assert rejects == {
        f"{fb}[2]": ("no_snapshot", fb),
        f"{fb}[3]": ("duplicate_feedback", fb),
        f"{fb}[4]": ("message_not_found", fb),
        f"{fb}[5]": ("bad_record", fb),
        f"{fb}[6]": ("bad_rating", fb),
        f"{fb}[7]": ("bad_rating", fb),
        f"{fb}[8]": ("no_feedback", fb),
        f"{fb}[9]": ("missing_target", fb),
    }
    assert result.rows_in == 10 and result.rows_out == 2
    assert result.extra["formats"] == {"openwebui/feedback": 1}
    assert result.extra["joined"] == {"openwebui": 0}


def test_feedback_joined_with_the_chat_export(tmp_path, export):
    rows, rejects, result = run(tmp_path, export["feedback"].parent)  # the folder
    assert set(rows) == {"chat-1:a1", "chat-1:a2", "chat-1:a3", "chat-2:m2"}
    a3 = rows["chat-1:a3"]  # rated by f3, which has no snapshot: found in the chat export
    assert [m["content"] for m in a3["context"]] == ["What is 2+2?", "4"]  # the kept branch
    assert (a3["prompt"], a3["response"]) == ("And 3+3?", "six")  # the model's text
    assert events(a3) == [("thumbs", 1.0, None, None, None), ("edit", None, "6 (six)", None, None)]
    # the feedback records win over the chat's annotations (identical here, or absent)
    assert events(rows["chat-1:a2"])[:2] == [
        ("thumbs", 1.0, None, None, None),
        ("rating", 8.0, None, None, 10.0),
    ]
    m2 = rows["chat-2:m2"]  # legacy list, annotation only
    assert (m2["prompt"], m2["response"], m2["user_id"]) == ("Hi", "Hello!", "user-2")
    assert events(m2) == [("thumbs", 0.0, None, None, None), ("comment", None, "rude", None, None)]
    fb = str(export["feedback"])
    assert f"{fb}[2]" not in rejects and rejects[f"{fb}[4]"][0] == "message_not_found"
    # f1, f2, f3 found their replies in the chat export
    assert result.extra["joined"] == {"openwebui": 3}
    assert result.extra["formats"] == {"openwebui/chat": 1, "openwebui/feedback": 1}
    assert result.rows_in == 12 and result.rows_out == 4


def test_chat_export_alone_arena_siblings_and_annotations(tmp_path):
    arena = chat_model(
        "chat-3",
        [
            message("u", None, "user", "Name a color.", ["x", "y"]),
            message(
                "x",
                "u",
                "assistant",
                "Blue.",
                arena=True,
                selectedModelId="qwen2:7b",
                modelIdx=0,
                annotation={"rating": 1, "reason": "showcased_creativity"},
            ),
            message(
                "y", "u", "assistant", "Idk.", arena=True, selectedModelId="phi3:mini", modelIdx=1
            ),
        ],
        current="x",
    )
    path = write_json(tmp_path / "chat-export-2.json", [arena])
    rows, rejects, result = run(tmp_path, path)
    x, y = rows["chat-3:x"], rows["chat-3:y"]
    assert (x["model"], y["model"]) == ("qwen2:7b", "phi3:mini")  # the arena's real models
    assert events(x) == [
        ("thumbs", 1.0, None, None, None),
        ("label", None, "showcased_creativity", None, None),
        ("preference", None, None, "chat-3:y", None),
    ]
    assert events(y) == []  # answered at once with x: no regenerate signal
    assert rejects == {} and result.extra.get("joined") == {"openwebui": 0}


def test_snapshot_may_hold_the_chat_body_itself(tmp_path):
    chat = regenerated_and_edited_chat("chat-9")
    rec = feedback("f", chat, "a3", -1)
    rec["snapshot"] = {"chat": chat["chat"]}  # snapshot.chat.history, no ChatModel around it
    rec["meta"]["chat_id"] = ""  # only the outer chat_id field names the chat
    rec["chat_id"] = "chat-9"
    items = list(read_format(write_json(tmp_path / "f.json", [rec]), "openwebui"))
    assert [type(i) for i in items] == [Parsed]
    (row,) = items[0].rows
    assert row["interaction_id"] == "chat-9:a3" and events(row)[0] == (
        "thumbs",
        0.0,
        None,
        None,
        None,
    )


def test_arbitrary_shapes_are_rejects_not_crashes(tmp_path):
    bad_tree = feedback("f", regenerated_and_edited_chat(), "a2")
    bad_tree["snapshot"]["chat"]["chat"]["history"]["messages"]["u1"]["parentId"] = "a2"  # loop
    user_target = feedback("g", regenerated_and_edited_chat(), "a2")
    user_target["meta"]["message_id"] = "u1"
    odd = [bad_tree, user_target, [1, 2], {"type": "rating", "data": {}, "meta": []}]
    path = write_json(tmp_path / "feedback-history-export-2.json", odd)
    items = {i.location: i for i in read_format(path, "openwebui")}  # one item per record
    assert [(type(items[f"{path}[{n}]"]), items[f"{path}[{n}]"].reason) for n in range(4)] == [
        (Reject, "bad_tree"),
        (Reject, "bad_target"),
        (Reject, "not_an_object"),
        (Reject, "bad_record"),
    ]


def test_other_formats_are_not_taken_for_open_webui(tmp_path):
    chat = regenerated_and_edited_chat()
    # a LibreChat export and a TRL chat have "messages" but no Open WebUI chat object
    for rec, name in (
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            "trl",
        ),
        ({"chat": chat["chat"], "title": "no id"}, None),
    ):
        path = tmp_path / "x.jsonl"
        path.write_text(json.dumps(rec) + "\n")
        if name is None:
            with pytest.raises(Exception, match="cannot tell the format"):
                detect(path)
        else:
            assert detect(path) == name


@pytest.mark.slow
def test_pipeline_from_an_open_webui_export_to_a_checkpoint(tmp_path):
    """`lfft pipeline <folder with the two Open WebUI exports>`: every record is used, every row
    of every stage is passed on or rejected with a reason, and training writes a checkpoint
    that transformers loads."""
    import test_pipeline
    from owui_fixtures import write_export
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from lfft.cli import app
    from lfft.io import count_rows
    from lfft.stages import Layout

    raw = tmp_path / "owui"
    n_feedback, _ = write_export(raw, chats=120)
    config = tmp_path / "lfft.toml"
    config.write_text(test_pipeline.TINY.replace('format = "events"', 'format = "auto"'))
    work = tmp_path / "work"
    args = ["pipeline", str(raw), "--work", str(work), "--config", str(config)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    def record(stage: str) -> dict:
        return json.loads((work / ".lfft" / f"{stage}.json").read_text())["result"]

    L = Layout(work)
    collect_ = record("collect")
    assert collect_["rows_in"] == n_feedback + 120 and collect_["rejects"] == {}
    assert collect_["rows_out"] == count_rows(L.interactions) == n_feedback  # every reply rated
    assert collect_["extra"]["joined"] == {"openwebui": n_feedback}
    rows = collect_["rows_out"]
    for stage, out in (("clean", L.clean), ("normalize", L.normalized)):
        result = record(stage)
        rejected = count_rows(out.with_suffix(".rejects.parquet"))
        assert result["rows_in"] == rows == result["rows_out"] + rejected, stage
        rows = result["rows_out"]
    sizes = {name: count_rows(L.splits / f"{name}.parquet") for name in ("train", "val", "test")}
    assert (
        record("split")["rows_in"]
        == rows
        == sum(sizes.values()) + count_rows(L.splits / "rejects.parquet")
    )
    assert min(sizes.values()) > 0 and record("train")["rows_in"] == sizes["train"]
    model = AutoModelForCausalLM.from_pretrained(L.ckpt_final)
    assert model.config.num_hidden_layers == 1
    assert json.loads((L.eval / "metrics.json").read_text())["rows"] > 0


CHILD = """
import sys
from pathlib import Path
from lfft.config import CollectConfig
from lfft.data.collect import collect
result = collect([Path(sys.argv[1])], Path(sys.argv[2]), CollectConfig(batch_rows=1024))
hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")).split()[1]
print(hwm, result.rows_out, result.extra["joined"]["openwebui"])
"""


@pytest.mark.slow
def test_the_join_holds_its_tables_on_disk_memory_stays_flat(tmp_path):
    """4x the chats (27 MiB more JSON, ~100 MiB more as Python objects) and the peak RSS of a
    collect process barely moves: the join's lookup tables live in SQLite, not in memory."""
    import subprocess
    import sys

    from owui_fixtures import write_export

    peaks, sizes = [], []
    for chats in (4_000, 16_000):
        n_feedback, size = write_export(tmp_path / f"owui-{chats}", chats)
        out = tmp_path / f"i-{chats}.parquet"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path / f"owui-{chats}"), str(out)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        hwm_kib, rows, joined = map(int, proc.stdout.split())
        assert rows == joined == n_feedback
        peaks.append(hwm_kib / 1024)
        sizes.append(size / 2**20)
    assert sizes[1] - sizes[0] > 25
    assert peaks[1] - peaks[0] < 12, peaks
