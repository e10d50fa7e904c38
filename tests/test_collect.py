"""``lfft collect`` on lfft-events: trees, feedback, dedup, implicit rules, every reject reason."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from lfft.config import CollectConfig
from lfft.data.collect import collect, parse_column_map
from lfft.errors import ConfigError, LfftError
from lfft.io import ArtifactWriter, read_meta, read_table, rejects_path
from lfft.schemas import INTERACTIONS, REJECTS

EVENTS = CollectConfig(format="events")


def msg(mid, parent, role, content, sid="s1", **kw) -> str:
    return json.dumps(
        {"event": "message", "session_id": sid, "message_id": mid, "parent_id": parent,
         "role": role, "content": content, **kw}
    )  # fmt: skip


def fb(mid, kind, value=None, sid="s1", event="feedback", **kw) -> str:
    e = {"event": event, "session_id": sid, "message_id": mid, "kind": kind, **kw}
    if value is not None:
        e["value"] = value
    return json.dumps(e)


# A system prompt, one question, one answer.
BASE = [
    msg("sys", None, "system", "Be brief.", ts="2024-05-01T10:00:00Z"),
    msg("u1", "sys", "user", "What is the capital of France?", ts=1714557601, user_id="alice"),
    msg("a1", "u1", "assistant", "Paris.", ts=1714557602000, model="m1"),
]


def write(path: Path, lines: list[str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif path.name.endswith(".zst"):
        with pa.CompressedOutputStream(str(path), "zstd") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def run(tmp_path: Path, lines, cfg: CollectConfig = EVENTS, name="log.jsonl"):
    src = write(tmp_path / "in" / name, lines)
    out = tmp_path / "out" / "interactions.parquet"
    result = collect([src], out, cfg)
    rows = read_table(out, schema=INTERACTIONS).to_pylist()
    rejects = read_table(rejects_path(out), schema=REJECTS).to_pylist()
    return {r["interaction_id"]: r for r in rows}, rejects, result, src


def kinds(row) -> list[tuple]:
    return [(f["kind"], f["origin"], f["value"], f["text"], f["ref"], f["scale"])
            for f in row["feedback"]]  # fmt: skip


def check_accounting(result) -> None:
    assert result.rows_in == result.extra["lines used"] + sum(result.rejects.values())


# --- trees --------------------------------------------------------------------------------------


def test_one_row_per_response_with_context_prompt_and_ids(tmp_path):
    lines = [
        *BASE,
        msg("u2", "a1", "user", "And of Spain?"),
        msg("a2", "u2", "assistant", "Madrid."),
    ]
    rows, rejects, result, _ = run(tmp_path, lines)
    assert set(rows) == {"s1:a1", "s1:a2"} and rejects == []
    first, second = rows["s1:a1"], rows["s1:a2"]
    assert first["context"] == [{"role": "system", "content": "Be brief."}]
    assert first["prompt"] == "What is the capital of France?" and first["response"] == "Paris."
    assert (first["user_id"], first["model"], first["source"]) == ("alice", "m1", "events")
    assert first["ts"].isoformat() == "2024-05-01T10:00:02+00:00"
    assert [m["content"] for m in second["context"]] == [
        "Be brief.", "What is the capital of France?", "Paris."
    ]  # fmt: skip
    assert second["user_id"] == "alice"  # inherited from the conversation
    assert result.rows_in == 5 and result.rows_out == 2
    check_accounting(result)


def test_regenerated_siblings_share_context_and_preference_refs_the_rejected_one(tmp_path):
    lines = [
        *BASE,
        fb("a1", "regenerate", event="action"),
        msg("a1b", "u1", "assistant", "Paris, on the Seine."),
        fb("a1b", "preference", "a1"),
        fb("a1b", "preference"),  # preferred over all its siblings
    ]
    rows, rejects, result, _ = run(tmp_path, lines)
    assert rejects == []
    a, b = rows["s1:a1"], rows["s1:a1b"]
    assert (a["context"], a["prompt"]) == (b["context"], b["prompt"])
    assert kinds(a) == [("regenerate", "behavioral", None, None, None, None)]
    assert kinds(b) == [
        ("preference", "explicit", None, None, "s1:a1", None),
        ("preference", "explicit", None, None, None, None),
    ]


def test_feedback_before_its_message_and_in_a_later_file_attaches(tmp_path):
    early = fb("a1", "thumbs", "up", ts="2024-05-01T10:00:05Z")
    first = write(tmp_path / "in" / "a.jsonl", [early, *BASE])
    later = write(
        tmp_path / "in" / "b.jsonl.gz", [fb("a1", "rating", 4, ts="2024-05-09T00:00:00Z")]
    )
    out = tmp_path / "i.parquet"
    result = collect([first, later], out, EVENTS)
    (row,) = read_table(out).to_pylist()
    assert [f["kind"] for f in row["feedback"]] == ["thumbs", "rating"]  # sorted by time
    assert result.rejects == {} and result.rows_in == 5


@pytest.mark.parametrize(
    ("kind", "value", "extra", "expected"),
    [
        ("thumbs", "up", {}, ("thumbs", "explicit", 1.0, None, None, None)),
        ("thumbs", "Down", {}, ("thumbs", "explicit", 0.0, None, None, None)),
        ("thumbs", True, {}, ("thumbs", "explicit", 1.0, None, None, None)),
        ("thumbs", -1, {}, ("thumbs", "explicit", 0.0, None, None, None)),
        ("thumbs", 0, {}, ("thumbs", "explicit", 0.0, None, None, None)),
        ("rating", 4, {}, ("rating", "explicit", 4.0, None, None, 5.0)),
        ("rating", 9, {"scale": 10}, ("rating", "explicit", 9.0, None, None, 10.0)),
        ("label", "helpful", {}, ("label", "explicit", None, "helpful", None, None)),
        ("comment", "Too short.", {}, ("comment", "explicit", None, "Too short.", None, None)),
        ("edit", "Paris!", {}, ("edit", "explicit", None, "Paris!", None, None)),
    ],
)
def test_feedback_values(tmp_path, kind, value, extra, expected):
    rows, rejects, _, _ = run(tmp_path, [*BASE, fb("a1", kind, value, **extra)])
    assert rejects == [] and kinds(rows["s1:a1"]) == [expected]


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("dwell_ms", 5300, ("dwell_ms", "behavioral", 5300.0, None, None, None)),
        ("copy", None, ("copy", "behavioral", None, None, None, None)),
        ("click", "https://example.org", ("click", "behavioral", None, "https://example.org",
                                          None, None)),
    ],
)  # fmt: skip
def test_actions_are_behavioral(tmp_path, kind, value, expected):
    rows, rejects, _, _ = run(tmp_path, [*BASE, fb("a1", kind, value, event="action")])
    assert rejects == [] and kinds(rows["s1:a1"]) == [expected]


# --- dedup --------------------------------------------------------------------------------------


def test_same_event_twice_counts_once(tmp_path):
    thumbs = fb("a1", "thumbs", "up")
    lines = [
        *BASE,
        thumbs,
        thumbs,  # byte-identical
        json.dumps(json.loads(thumbs), indent=None, separators=(",", ":")),  # same, other bytes
        fb("a1", "rating", 5, id="e7"),
        fb("a1", "rating", 4, id="e7"),  # same id: the first delivery wins
        BASE[2],  # a message delivered again
    ]
    rows, rejects, result, src = run(tmp_path, lines)
    assert kinds(rows["s1:a1"]) == [
        ("thumbs", "explicit", 1.0, None, None, None),
        ("rating", "explicit", 5.0, None, None, 5.0),
    ]
    assert {(r["location"], r["reason"]) for r in rejects} == {
        (f"{src}:{n}", "duplicate_event") for n in (5, 6, 8, 9)
    }
    check_accounting(result)


# --- implicit feedback --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Thanks, that helps!", ("thanks", 1.0)),
        ("perfect", ("thanks", 1.0)),
        ("That's wrong, it is Paris in Texas.", ("complaint", 0.0)),
        ("thanks but it doesn't answer my question", ("complaint", 0.0)),
        ("I mean: which city is the French capital?", ("rephrase", 0.0)),
        ("What is the capital of France, please?", ("rephrase", 0.0)),  # same content words
        ("And what is the capital of Germany?", None),  # a new question
        ("Tell me about the Eiffel tower.", None),
    ],
)
def test_implicit_rules(tmp_path, reply, expected):
    lines = [*BASE, msg("u2", "a1", "user", reply)]
    rows, rejects, result, _ = run(tmp_path, lines)
    got = [(f["kind"], f["value"]) for f in rows["s1:a1"]["feedback"]]
    assert got == ([expected] if expected else [])
    if expected:
        assert rows["s1:a1"]["feedback"][0]["origin"] == "implicit"
        assert rows["s1:a1"]["feedback"][0]["text"] == reply
        assert rejects == []
    else:  # an unanswered question that says nothing about the answer before it
        assert [r["reason"] for r in rejects] == ["no_response"]
    check_accounting(result)


def test_no_implicit_option(tmp_path):
    lines = [*BASE, msg("u2", "a1", "user", "Thanks!")]
    rows, rejects, _, _ = run(tmp_path, lines, CollectConfig(format="events", implicit=False))
    assert rows["s1:a1"]["feedback"] == [] and [r["reason"] for r in rejects] == ["no_response"]


def test_implicit_rules_file_overrides_defaults(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('order = ["thanks"]\n[thanks]\npatterns = ["^cool\\\\b"]\nvalue = 0.9\n')
    cfg = CollectConfig(format="events", implicit_rules=str(rules))
    lines = [*BASE, msg("u2", "a1", "user", "cool, merci"), msg("a2", "u2", "assistant", "De rien"),
             msg("u3", "a2", "user", "That's wrong.")]  # fmt: skip
    rows, rejects, _, _ = run(tmp_path, lines, cfg)
    assert [(f["kind"], f["value"]) for f in rows["s1:a1"]["feedback"]] == [("thanks", 0.9)]
    assert rows["s1:a2"]["feedback"] == []  # complaint switched off by `order`
    assert [r["reason"] for r in rejects] == ["no_response"]


def test_implicit_rules_file_with_unknown_key_is_an_error(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("[thanks]\npaterns = []\n")
    with pytest.raises(ConfigError, match="paterns"):
        run(tmp_path, BASE, CollectConfig(format="events", implicit_rules=str(rules)))


# --- one test per reject reason -----------------------------------------------------------------

REASONS = [
    ("blank_line", "   "),
    ("invalid_utf8", b'{"event":"message","content":"caf\xe9"}'),
    ("invalid_utf8", msg("u9", "a1", "user", "\ud800")),  # a lone surrogate escape
    ("malformed_json", '{"event": "message", "session_id": "s1"'),
    ("not_an_object", "[1, 2, 3]"),
    ("unknown_event", json.dumps({"event": "heartbeat", "session_id": "s1"})),
    ("missing_field", fb("a1", "thumbs", "up", sid=None)),
    ("missing_field", json.dumps({"event": "message", "session_id": "s1", "role": "user"})),
    ("missing_field", fb("a1", "dwell_ms", event="action")),
    ("wrong_type", msg("u9", "a1", "user", 42)),
    ("wrong_type", msg("u9", "a1", "user", "hi", sid={"id": 1})),
    ("unknown_role", msg("t1", "a1", "tool", "{}")),
    ("unknown_kind", fb("a1", "emoji", ":)")),
    ("unknown_kind", fb("a1", "hover", event="action")),
    ("unknown_kind", fb("a1", "copy")),  # an action sent as feedback
    ("bad_value", fb("a1", "rating", "five")),
    ("bad_value", fb("a1", "rating", 6)),  # outside 1..5
    ("bad_value", fb("a1", "rating", 3, scale="ten")),
    ("bad_value", fb("a1", "thumbs", "maybe")),
    ("bad_value", fb("a1", "comment", "  ")),
    ("bad_value", fb("a1", "dwell_ms", -5, event="action")),
    ("bad_timestamp", fb("a1", "thumbs", "up", ts="yesterday")),
    ("bad_timestamp", fb("a1", "thumbs", "up", ts=10**20)),
    ("duplicate_event", BASE[1]),
    ("conflicting_message", msg("a1", "u1", "assistant", "Lyon.")),
    ("missing_parent", msg("a9", "u-gone", "assistant", "An answer to nothing.")),
    ("parent_not_user", msg("a9", "sys", "assistant", "Hello, how can I help?")),
    ("no_response", msg("u9", "a1", "user", "Where is it on a map?")),
    ("orphan_feedback", fb("m-never", "thumbs", "up")),
    ("orphan_feedback", fb("a1", "preference", "a-never")),
    ("bad_target", fb("u1", "thumbs", "up")),  # a user message
    ("bad_target", fb("a1", "preference", "a1")),  # not a sibling
]


@pytest.mark.parametrize(("reason", "line"), REASONS, ids=[r for r, _ in REASONS])
def test_reject_reason_and_location(tmp_path, reason, line):
    rows, rejects, result, src = run(tmp_path, [*BASE, line])
    assert [(r["reason"], r["location"]) for r in rejects] == [(reason, f"{src}:4")]
    assert rejects[0]["stage"] == "collect" and rejects[0]["source"] == str(src)
    assert rejects[0]["raw"] and rejects[0]["detail"]
    assert "s1:a1" in rows  # the good conversation is untouched
    assert result.rows_in == 4 and result.rejects == {reason: 1}
    check_accounting(result)


def test_parent_cycle_rejects_every_message_in_the_loop(tmp_path):
    lines = [msg("x", "y", "user", "loop"), msg("y", "x", "assistant", "back")]
    rows, rejects, result, src = run(tmp_path, lines)
    assert rows == {}
    assert sorted((r["location"], r["reason"]) for r in rejects) == [
        (f"{src}:1", "parent_cycle"), (f"{src}:2", "parent_cycle")
    ]  # fmt: skip


def test_feedback_on_a_rejected_response_is_rejected_with_it(tmp_path):
    lines = [*BASE, msg("a9", "u-gone", "assistant", "?"), fb("a9", "thumbs", "down")]
    _, rejects, result, src = run(tmp_path, lines)
    assert {(r["location"], r["reason"]) for r in rejects} == {
        (f"{src}:4", "missing_parent"), (f"{src}:5", "target_rejected")
    }  # fmt: skip
    check_accounting(result)


# --- inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["log.jsonl.gz", "log.jsonl.zst"])
def test_compressed_inputs(tmp_path, name):
    rows, rejects, result, src = run(tmp_path, [*BASE, "not json"], name=name)
    assert set(rows) == {"s1:a1"}
    assert [(r["reason"], r["location"]) for r in rejects] == [("malformed_json", f"{src}:4")]


def test_folders_are_searched_recursively_skipping_hidden_files(tmp_path):
    write(tmp_path / "logs" / "day1" / "a.jsonl", BASE[:2])
    write(tmp_path / "logs" / "day2" / "b.jsonl.gz", BASE[2:])
    write(tmp_path / "logs" / ".partial.jsonl", ["garbage"])
    (tmp_path / "logs" / "README.md").write_text("not a log")
    result = collect([tmp_path / "logs"], tmp_path / "i.parquet", EVENTS)
    assert (result.rows_in, result.rows_out, result.rejects) == (3, 1, {})


def test_missing_input_is_a_user_error(tmp_path):
    with pytest.raises(LfftError, match="no such file or folder"):
        collect([tmp_path / "nope.jsonl"], tmp_path / "i.parquet", EVENTS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LfftError, match="holds no log files"):
        collect([tmp_path / "empty"], tmp_path / "i.parquet", EVENTS)


def test_cli_missing_input_exits_1_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lfft", "collect", str(tmp_path / "nope"), "--out",
         str(tmp_path / "i.parquet")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "nope" in proc.stderr and not (tmp_path / "i.parquet").exists()


def test_column_map():
    assert parse_column_map("prompt=question, response = answer") == {
        "prompt": "question", "response": "answer"
    }  # fmt: skip
    for bad in ("prompt", "prompt=", "=q", "prompt=a,prompt=b"):
        with pytest.raises(LfftError):
            parse_column_map(bad)


# --- accounting, metadata, streaming, atomicity ---------------------------------------------------


def test_summary_and_metadata_add_up(tmp_path):
    lines = [*BASE, "oops", fb("zz", "thumbs", "up"), fb("a1", "thumbs", "up")]
    _, _, result, _ = run(tmp_path, lines)
    meta = read_meta(tmp_path / "out" / "interactions.parquet")
    assert meta["stage"] == "collect" and meta["config"]["format"] == "events"
    assert meta["counts"] == {
        "rows": 1, "lines_read": 6, "lines_used": 4, "rejected": 2, "sessions": 1
    }  # fmt: skip
    assert list(meta["inputs"]) == [str(tmp_path / "in" / "log.jsonl")]
    assert result.extra["lines read"] == "6 = 4 used + 2 rejected"
    check_accounting(result)


def conversations(n: int) -> list[str]:
    lines = []
    for s in range(n):
        lines += [msg("u", None, "user", f"q{s}", sid=f"s{s}"),
                  msg("a", "u", "assistant", f"a{s}", sid=f"s{s}"),
                  fb("a", "thumbs", s % 2, sid=f"s{s}"), f"bad {s}"]  # fmt: skip
    return lines


def test_spilled_partitions_and_worker_processes_give_the_same_output(tmp_path):
    src = write(tmp_path / "a.jsonl", conversations(30))
    src2 = write(tmp_path / "b.jsonl", conversations(60)[120:])
    base = CollectConfig(format="events", partitions=4, batch_rows=7)
    assert "spilled to disk" not in collect([src, src2], tmp_path / "one.parquet", base).extra
    tiny = CollectConfig(**{**vars(base), "memory_budget": 0.0005})  # 500 bytes: always spill
    assert collect([src, src2], tmp_path / "spill.parquet", tiny).extra["spilled to disk"] > 0
    collect([src, src2], tmp_path / "two.parquet", CollectConfig(**{**vars(base), "workers": 2}))
    want = read_table(tmp_path / "one.parquet")
    want_rejects = read_table(rejects_path(tmp_path / "one.parquet"))
    assert want.num_rows == 60
    two = tmp_path / "two.parquet"
    assert read_table(two).equals(want)  # the same rows in the same order
    assert read_table(rejects_path(two)).equals(want_rejects)
    # a smaller budget makes smaller partitions: the same rows, in another order
    spill = tmp_path / "spill.parquet"
    assert read_table(spill).sort_by("interaction_id").equals(want.sort_by("interaction_id"))
    by = [("location", "ascending"), ("reason", "ascending")]
    assert read_table(rejects_path(spill)).sort_by(by).equals(want_rejects.sort_by(by))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.jsonl", "b.jsonl", "one.parquet", "one.rejects.parquet", "spill.parquet",
        "spill.rejects.parquet", "two.parquet", "two.rejects.parquet",
    ]  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2])
def test_failure_mid_write_leaves_no_artifact_and_no_temp_files(tmp_path, monkeypatch, workers):
    src = write(tmp_path / "in" / "a.jsonl", conversations(20))
    out_dir = tmp_path / "out"
    calls = []

    def failing_write(self, data):
        calls.append(data.num_rows)
        if self.path.name == "i.parquet" and len(calls) > 1:
            raise RuntimeError("killed")
        return original(self, data)

    original = ArtifactWriter.write
    monkeypatch.setattr(ArtifactWriter, "write", failing_write)
    with pytest.raises(RuntimeError, match="killed"):
        cfg = CollectConfig(format="events", batch_rows=5, workers=workers)
        collect([src], out_dir / "i.parquet", cfg)
    assert list(out_dir.iterdir()) == []


def test_other_formats_stream_into_the_same_output(tmp_path):
    formats = pytest.importorskip("lfft.data.formats")
    if not hasattr(formats, "detect"):
        pytest.skip("lfft.data.formats has no detect() yet")
    write(tmp_path / "logs" / "a.jsonl", BASE)
    kto = [
        json.dumps({"prompt": "Hi?", "completion": "Hello!", "label": True}),
        json.dumps({"prompt": "2+2?", "completion": "5", "label": False}),
    ]
    write(tmp_path / "logs" / "kto.jsonl", kto)
    result = collect([tmp_path / "logs"], tmp_path / "i.parquet", CollectConfig())
    rows = read_table(tmp_path / "i.parquet").to_pylist()
    assert sorted(r["source"] for r in rows) == ["events", "trl", "trl"]
    assert result.extra["formats"] == {"events": 1, "trl": 1}
    assert result.rows_in == 5 and result.rejects == {}
    check_accounting(result)


def oasst(mid: str, role: str, text: str, *replies: dict, **kw) -> dict:
    return {"message_id": mid, "role": role, "text": text, "replies": list(replies), **kw}


def test_oasst_messages_deleted_by_moderators_are_counted_not_lost(tmp_path):
    below = oasst("p2", "prompter", "And?", oasst("a3", "assistant", "More."))
    kept_tree = oasst(
        "p1",
        "prompter",
        "Q?",
        oasst("a1", "assistant", "Fine answer.", rank=0),
        oasst("a2", "assistant", "Removed text.", below, deleted=True, rank=1),
    )
    deleted_root = oasst("p9", "prompter", "Spam", oasst("a9", "assistant", "x"), deleted=True)
    trees = [{"message_tree_id": t["message_id"], "prompt": t} for t in (kept_tree, deleted_root)]
    rows, rejects, result, src = run(
        tmp_path, [json.dumps(t) for t in trees], CollectConfig(format="oasst")
    )

    assert list(rows) == ["a1"]  # a2, and p2/a3 below it, are gone
    assert [(r["reason"], r["location"]) for r in rejects] == [("no_assistant_reply", f"{src}:2")]
    assert "deleted" in rejects[0]["detail"]
    assert result.extra["left out of used records"] == {"deleted_message": 1}
    assert result.extra["lines read"] == "2 = 1 used + 1 rejected"
    meta = read_meta(tmp_path / "out" / "interactions.parquet")
    assert meta["counts"]["skipped"] == {"deleted_message": 1}
    check_accounting(result)


def test_memory_budget_must_be_positive(tmp_path):
    src = write(tmp_path / "in" / "a.jsonl", BASE)
    with pytest.raises(ConfigError, match="memory_budget must be > 0"):
        collect([src], tmp_path / "out" / "i.parquet", CollectConfig(memory_budget=0))
    assert not (tmp_path / "out").exists()


def test_memory_budget_from_the_command_line_and_the_config_file(tmp_path):
    from typer.testing import CliRunner

    from lfft.cli import app

    src = write(tmp_path / "in" / "a.jsonl", conversations(20))
    toml = tmp_path / "lfft.toml"
    toml.write_text("[collect]\nmemory_budget = 0.001\n")
    for name, option in (("cli", ["--memory-budget", "0.001"]), ("toml", ["--config", str(toml)])):
        out = tmp_path / f"{name}.parquet"
        result = CliRunner().invoke(app, ["collect", str(src), "--out", str(out), *option])
        assert result.exit_code == 0, result.output
        assert "spilled to disk" in result.output
        assert read_meta(out)["config"]["memory_budget"] == 0.001


def test_truncated_gzip_is_a_user_error_and_writes_nothing(tmp_path):
    src = write(tmp_path / "in" / "log.jsonl.gz", BASE * 200)
    src.write_bytes(src.read_bytes()[:-20])
    with pytest.raises(LfftError, match="truncated or corrupt"):
        collect([src], tmp_path / "out" / "i.parquet", EVENTS)
    assert list((tmp_path / "out").iterdir()) == []
