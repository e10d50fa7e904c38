"""Format readers: the slices of public datasets in data/samples/formats and small fixtures.

Every sample: each record is read (parsed + rejected = the README's count), auto-detection picks
the right reader, and signals land where docs/formats.md says. Malformed records become rejects
with a reason; fixtures for them are written to tmp_path.
"""

from __future__ import annotations

import gzip
import json
import re
import tracemalloc
from collections import Counter
from itertools import combinations
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lfft.config import CollectConfig
from lfft.data.formats import FORMATS, canonical, detect, read_format
from lfft.data.formats.jsonio import iter_records
from lfft.data.records import Parsed, Reject, to_table
from lfft.errors import LfftError

DATASETS = Path(__file__).resolve().parents[1] / "data" / "samples" / "formats"

# file -> (reader auto-detection must pick, records per the folder's README)
SAMPLES = {
    "hh-rlhf/helpful-base/test.jsonl.gz": ("hh-rlhf", 63),
    "hh-rlhf/harmless-base/test.jsonl.gz": ("hh-rlhf", 61),
    "llamafactory-dpo-en-demo/dpo_en_demo.json": ("trl", 12),
    "llamafactory-kto-en-demo/kto_en_demo.json": ("trl", 20),
    "oasst-export-sample/en_100_message.jsonl": ("oasst", 6),
    "oasst2-trees/oasst2_filtered.jsonl": ("oasst", 9),
    "finegrained-rlhf-qa-feedback/dev_feedback.json": ("finegrained", 8),
    "helpsteer2-nemo-rm-sample/test-rm.jsonl": ("helpsteer", 6),
    "prometheus-vicuna-feedback/vicuna_eval.json": ("prometheus", 8),
    "prm800k-examples/prm800k-phase1-train-example.json": ("prm800k", 3),
    "prm800k-examples/prm800k-phase2-test-example.json": ("prm800k", 1),
}


def sample(rel: str) -> Path:
    path = DATASETS / rel
    assert path.exists(), f"sample {rel} is missing from {DATASETS}"
    return path


def read(path: Path, fmt: str | None = None, cfg: CollectConfig | None = None):
    """(parsed items, rejects) of a file."""
    items = list(read_format(path, fmt or detect(path), cfg or CollectConfig()))
    return [i for i in items if isinstance(i, Parsed)], [i for i in items if isinstance(i, Reject)]


def rows_of(parsed: list[Parsed]) -> list[dict]:
    return [r for p in parsed for r in p.rows]


def events(row: dict, kind: str) -> list[dict]:
    return [e for e in row["feedback"] if e["kind"] == kind]


def raw_json(rel: str) -> list:
    path = sample(rel)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        if path.suffix in (".jsonl", ".gz"):
            return [json.loads(line) for line in f if line.strip()]
        return json.load(f)


def walk(msg: dict):
    yield msg
    for child in msg.get("replies") or []:
        yield from walk(child)


# --- every sample ----------------------------------------------------------------------------


@pytest.mark.parametrize("rel", sorted(SAMPLES))
def test_sample_detected_read_whole_and_schema_valid(rel):
    path = sample(rel)
    fmt, records = SAMPLES[rel]
    assert detect(path) == fmt
    parsed, rejected = read(path)
    assert len(parsed) + len(rejected) == records
    rows = rows_of(parsed)
    assert to_table(rows).num_rows == len(rows)  # every row fits the interactions schema
    assert all(r["source"] == fmt for r in rows)
    by_id: dict[str, dict] = {}
    for row in rows:  # an id names one response: the same id only for a repeated record
        assert by_id.setdefault(row["interaction_id"], row) == row


def test_every_sample_folder_is_covered():
    folders = {p.parent.name for p in DATASETS.rglob("README.md")} - {"formats"}
    assert len(folders) == 9, folders
    covered = {Path(rel).parts[0] for rel in SAMPLES}
    assert folders <= covered, f"samples without a test: {folders - covered}"


# --- HH-RLHF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["helpful-base", "harmless-base"])
def test_hh_rlhf_pairs_keep_context_and_last_turns(part):
    rel = f"hh-rlhf/{part}/test.jsonl.gz"
    raw = raw_json(rel)
    parsed, rejected = read(sample(rel), "hh-rlhf")
    for rej in rejected:  # the only records dropped are pairs with nothing to prefer
        assert rej.reason == "identical_pair"
        rec = raw[int(rej.location.rsplit(":", 1)[1]) - 1]
        assert rec["chosen"] == rec["rejected"]
    assert len(rejected) == sum(r["chosen"] == r["rejected"] for r in raw)
    by_line = {int(p.location.rsplit(":", 1)[1]): p.rows for p in parsed}
    for line, (win, lose) in by_line.items():
        assert events(win, "preference")[0]["ref"] == lose["interaction_id"]
        assert not lose["feedback"]
        assert win["session_id"] == lose["session_id"]
        assert (win["context"], win["prompt"]) == (lose["context"], lose["prompt"])
        rec = raw[line - 1]
        assert win["response"] == _last_reply(rec["chosen"])
        assert lose["response"] == _last_reply(rec["rejected"])
        assert win["prompt"] == rec["chosen"].rsplit("\n\nHuman: ", 1)[1].split("\n\nAssistant:")[0]


def _last_reply(transcript: str) -> str:
    """The Assistant text after the last Human turn (several Assistant turns: blank-line joined)."""
    tail = transcript.rsplit("\n\nHuman:", 1)[1].split("\n\nAssistant:")[1:]
    return "\n\n".join(t[1:] if t.startswith(" ") else t for t in tail)


def test_hh_rlhf_merges_two_assistant_turns_in_a_row():
    parsed, _ = read(sample("hh-rlhf/helpful-base/test.jsonl.gz"), "hh-rlhf")
    win, lose = next(p.rows for p in parsed if p.location.endswith(":62"))
    assert win["prompt"] == "How much do solar panels cost?"
    assert win["response"].startswith("Umm. Just a second...\n\nA solar panel should cost")


# --- LLaMA-Factory (TRL-style) ---------------------------------------------------------------


def test_llamafactory_dpo_pairs_follow_sharegpt_fields():
    rel = "llamafactory-dpo-en-demo/dpo_en_demo.json"
    raw = raw_json(rel)
    parsed, rejected = read(sample(rel))
    assert not rejected and len(parsed) == 12
    for p, rec in zip(parsed, raw, strict=True):
        win, lose = p.rows
        assert win["response"] == rec["chosen"]["value"]
        assert lose["response"] == rec["rejected"]["value"]
        assert events(win, "preference")[0]["ref"] == lose["interaction_id"]
        conv = rec["conversations"]
        assert win["prompt"] == conv[-1]["value"]
        assert len(win["context"]) == len(conv) - 1
        roles = {"system": "system", "human": "user", "gpt": "assistant"}
        assert [m["role"] for m in win["context"]] == [roles[m["from"]] for m in conv[:-1]]


def test_llamafactory_kto_labels_become_thumbs():
    rel = "llamafactory-kto-en-demo/kto_en_demo.json"
    raw = raw_json(rel)
    parsed, rejected = read(sample(rel))
    rows = rows_of(parsed)
    assert not rejected and len(rows) == 20
    thumbs = Counter(events(r, "thumbs")[0]["value"] for r in rows)
    assert thumbs == {1.0: 13, 0.0: 7}  # the README's 13 true / 7 false
    for row, rec in zip(rows, raw, strict=True):
        assert row["response"] == rec["messages"][-1]["content"]
        assert row["prompt"] == rec["messages"][-2]["content"]
        assert len(row["context"]) == len(rec["messages"]) - 2
        assert events(row, "thumbs")[0]["value"] == float(rec["label"])


# --- OpenAssistant ---------------------------------------------------------------------------


def _oasst_messages(rel: str) -> list[dict]:
    trees = raw_json(rel)
    roots = [t["prompt"] if "message_tree_id" in t else t for t in trees]
    return [m for root in roots for m in walk(root)]


def _undeleted_assistants(rel: str) -> dict[str, dict]:
    """Assistant messages not deleted and not under a deleted message, by id."""
    out = {}
    trees = raw_json(rel)
    for tree in trees:
        stack = [tree["prompt"] if "message_tree_id" in tree else tree]
        while stack:
            m = stack.pop()
            if m.get("deleted"):
                continue
            if m["role"] == "assistant":
                out[m["message_id"]] = m
            stack.extend(m.get("replies") or [])
    return out


def test_oasst_export_counts_match_readme():
    rel = "oasst-export-sample/en_100_message.jsonl"
    msgs = _oasst_messages(rel)
    assert len(msgs) == 33
    assert Counter(m["role"] for m in msgs) == {"assistant": 23, "prompter": 10}
    with_emoji = Counter(k for m in msgs for k in (m["emojis"] or {}))
    assert (with_emoji["+1"], with_emoji["-1"], with_emoji["red_flag"]) == (18, 4, 2)
    assert sum(m["rank"] is not None for m in msgs) == 23


@pytest.mark.parametrize(
    "rel", ["oasst-export-sample/en_100_message.jsonl", "oasst2-trees/oasst2_filtered.jsonl"]
)
def test_oasst_rows_rank_emojis_labels(rel):
    expected = _undeleted_assistants(rel)
    parsed, rejected = read(sample(rel), "oasst")
    assert {r.reason for r in rejected} <= {"no_assistant_reply"}
    rows = {r["interaction_id"]: r for r in rows_of(parsed)}
    assert rows.keys() == expected.keys()
    for mid, row in rows.items():
        msg = expected[mid]
        assert row["response"] == msg["text"]
        rank = events(row, "rank")
        assert [e["value"] for e in rank] == ([msg["rank"]] if msg["rank"] is not None else [])
        emoji = {e["text"]: e["value"] for e in events(row, "emoji")}
        raw = {k: v for k, v in (msg["emojis"] or {}).items() if not k.startswith("_")}
        assert emoji == raw
        labels = {e["text"]: e["value"] for e in events(row, "label")}
        assert labels == {k: v["value"] for k, v in (msg.get("labels") or {}).items()}


def test_oasst_rank_scale_counts_ranked_siblings_and_context_is_the_path():
    rel = "oasst-export-sample/en_100_message.jsonl"
    tree = raw_json(rel)[0]
    parsed, _ = read(sample(rel), "oasst")
    rows = {r["interaction_id"]: r for r in parsed[0].rows}
    first = tree["replies"]
    for reply in first:
        row = rows[reply["message_id"]]
        assert row["context"] == [] and row["prompt"] == tree["text"]
        assert row["session_id"] == tree["message_id"]
        if reply["rank"] is not None:
            ranked = sum(s["rank"] is not None for s in first)
            assert events(row, "rank")[0]["scale"] == ranked
    trees = {t["message_id"]: t for t in raw_json(rel)}
    deep = next(r for p in parsed for r in p.rows if r["context"])
    root = trees[deep["session_id"]]
    assert deep["context"][0] == {"role": "user", "content": root["text"]}
    assert deep["context"][1]["role"] == "assistant"
    assert deep["context"][1]["content"] in {m["text"] for m in root["replies"]}


# --- FineGrainedRLHF -------------------------------------------------------------------------


def test_finegrained_spans_mark_the_annotated_characters():
    rel = "finegrained-rlhf-qa-feedback/dev_feedback.json"
    raw = raw_json(rel)
    parsed, rejected = read(sample(rel))
    assert not rejected and len(rows_of(parsed)) == 32
    first = parsed[0].rows[0]
    span = events(first, "span")[0]
    assert span["text"] == "Irrelevant"
    assert first["response"][span["start"] : span["end"]].startswith(
        "is a 1999 American action comedy film directed by David Kellogg"
    )
    for p, rec in zip(parsed, raw, strict=True):
        row = p.rows[0]
        assert row["response"] == rec["prediction 1"]
        got = [(e["start"], e["end"], e["text"]) for e in events(row, "span")]
        want = [(e["start"], e["end"], e["error type"]) for e in rec["feedback"]["errors"]]
        assert got == want
        for start, end, _ in got:  # spans start and end on word boundaries
            assert start == 0 or row["response"][start - 1] == " "
            assert end == len(row["response"]) or row["response"][end] in " ."


def test_finegrained_edit_and_pairwise_preferences():
    rel = "finegrained-rlhf-qa-feedback/dev_feedback.json"
    raw = raw_json(rel)
    parsed, _ = read(sample(rel))
    for p, rec in zip(parsed, raw, strict=True):
        rows = p.rows
        assert len({r["session_id"] for r in rows}) == 1
        edit = events(rows[0], "edit")
        corrected = rec["feedback"]["corrected-prediction"]
        assert [e["text"] for e in edit] == ([corrected] if corrected.strip() else [])
        want = set()
        for (a, b), choice in zip(combinations(range(4), 2), rec["preference"], strict=True):
            if choice:
                win, lose = (a, b) if choice == 1 else (b, a)
                want.add((win, rows[lose]["interaction_id"]))
        got = {(i, e["ref"]) for i, r in enumerate(rows) for e in events(r, "preference")}
        assert got == want
    assert sum(len(events(r, "preference")) for r in rows_of(parsed)) == sum(
        x != 0 for rec in raw for x in rec["preference"]
    )


# --- HelpSteer2, Prometheus, PRM800K ---------------------------------------------------------


def test_helpsteer_rating_keeps_scale_and_prompts_pair_up():
    rel = "helpsteer2-nemo-rm-sample/test-rm.jsonl"
    raw = raw_json(rel)
    rows = rows_of(read(sample(rel))[0])
    for row, rec in zip(rows, raw, strict=True):
        rating = events(row, "rating")[0]
        assert (rating["value"], rating["scale"]) == (rec["label"][4] + 1, 5.0)
        labels = {e["text"]: e["value"] for e in events(row, "label")}
        assert labels["verbosity"] == rec["label"][8] / 4
        assert "quality" not in labels  # -100 = not annotated
        assert row["context"][0]["role"] == "system"
        assert rec["text"].index(row["prompt"]) < rec["text"].index(row["response"])
    assert [r["session_id"] for r in rows[::2]] == [r["session_id"] for r in rows[1::2]]
    assert len({r["session_id"] for r in rows}) == 3


def test_prometheus_rating_is_mean_score_and_critiques_are_comments():
    rel = "prometheus-vicuna-feedback/vicuna_eval.json"
    raw = raw_json(rel)
    rows = rows_of(read(sample(rel))[0])
    for row, rec in zip(rows, raw, strict=True):
        rating = events(row, "rating")[0]
        assert rating["value"] == pytest.approx(sum(rec["gpt4_score"]) / 3)
        assert rating["scale"] == 5.0
        assert [e["text"] for e in events(row, "comment")] == rec["gpt4_feedback"]
        assert row["model"] == rec["response_source"]
        assert f"###The instruction to evaluate:\n{row['prompt']}\n" in rec["instruction"]
        assert f"###Response to evaluate:\n{row['response']}\n" in rec["instruction"]


def test_prm800k_bad_step_span_and_corrected_solution():
    parsed, _ = read(sample("prm800k-examples/prm800k-phase2-test-example.json"))
    row = parsed[0].rows[0]
    span = events(row, "span")[0]
    assert row["response"][span["start"] : span["end"]].startswith(
        "For the Democrats, there are 5! ways to "
    )
    assert span["end"] == len(row["response"])
    assert not events(row, "edit")  # found_error: no corrected solution
    parsed, _ = read(sample("prm800k-examples/prm800k-phase1-train-example.json"))
    first = parsed[0].rows[0]
    bad = events(first, "span")[0]
    assert first["response"][bad["start"] : bad["end"]] == (
        "The first equation is 3p + e = 124, and the second equation is 5p + e = 182."
    )
    assert "We have $3p+e=1.24$ and $5p+e=1.82$." in events(first, "edit")[0]["text"]


# --- fixtures: TRL layouts, SHP, UltraFeedback, tables ---------------------------------------


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def one(path: Path, fmt: str | None = None, cfg: CollectConfig | None = None):
    parsed, rejected = read(path, fmt, cfg)
    assert not rejected, [(r.reason, r.detail) for r in rejected]
    return rows_of(parsed)


USER = {"role": "user", "content": "Hi?"}
BOT = {"role": "assistant", "content": "Hello."}


@pytest.mark.parametrize(
    "record, n_rows, kinds",
    [
        ({"prompt": "Hi?", "completion": "Hello.", "label": True}, 1, ["thumbs"]),
        ({"prompt": [USER], "completion": [BOT], "label": False}, 1, ["thumbs"]),
        ({"prompt": "Hi?", "completion": "Hello."}, 1, []),
        ({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}, 2, ["preference"]),
        (
            {"chosen": [USER, BOT], "rejected": [USER, {**BOT, "content": "No."}]},
            2,
            ["preference"],
        ),
        (
            {"prompt": "Hi?", "chosen": [USER, BOT], "rejected": [USER, {**BOT, "content": "N"}]},
            2,
            ["preference"],
        ),
        ({"messages": [USER, BOT], "label": 1}, 1, ["thumbs"]),
        (
            {"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Y"}]},
            1,
            [],
        ),
        (
            {
                "conversations": [{"from": "human", "value": "Hi?"}],
                "chosen": {"from": "gpt", "value": "Hello."},
                "rejected": {"from": "gpt", "value": "Bye."},
            },
            2,
            ["preference"],
        ),
        ({"instruction": "Hi?", "input": "", "output": "Hello.", "kto_tag": False}, 1, ["thumbs"]),
        ({"instruction": "Hi?", "chosen": "Hello.", "rejected": "Bye."}, 2, ["preference"]),
    ],
)
def test_trl_layouts(tmp_path, record, n_rows, kinds):
    path = write_jsonl(tmp_path / "data.jsonl", [record])
    assert detect(path) == "trl"
    rows = one(path)
    assert len(rows) == n_rows
    assert rows[0]["prompt"] == "Hi?"
    assert [e["kind"] for e in rows[0]["feedback"]] == kinds
    if kinds == ["preference"]:
        assert rows[0]["feedback"][0]["ref"] == rows[1]["interaction_id"]
        assert rows[0]["session_id"] == rows[1]["session_id"]


def test_alpaca_history_and_system_make_the_context(tmp_path):
    rec = {
        "instruction": "Translate",
        "input": "chat",
        "output": "cat",
        "system": "You translate.",
        "history": [["Hello", "Bonjour"]],
    }
    (row,) = one(write_jsonl(tmp_path / "a.jsonl", [rec]))
    assert row["prompt"] == "Translate\nchat"
    assert [m["role"] for m in row["context"]] == ["system", "user", "assistant"]


def test_shp_preference_carries_the_score_ratio(tmp_path):
    rec = {
        "post_id": "qt3nxl",
        "domain": "askscience_train",
        "upvote_ratio": 0.99,
        "history": "Why is the sky blue?",
        "c_root_id_A": "hkh25sc",
        "c_root_id_B": "hkh25lp",
        "created_at_utc_A": 1636822112,
        "created_at_utc_B": 1636822110,
        "score_A": 340,
        "score_B": 166,
        "human_ref_A": "Rayleigh scattering.",
        "human_ref_B": "Because of the ocean.",
        "labels": 1,
        "seconds_difference": 2.0,
        "score_ratio": 2.0481927711,
    }
    flipped = {**rec, "labels": 0, "post_id": "p2"}
    path = write_jsonl(tmp_path / "shp.jsonl", [rec, flipped])
    assert detect(path) == "shp"
    a_wins, _, b_wins, b_loses = one(path)
    pref = events(a_wins, "preference")[0]
    assert a_wins["response"] == "Rayleigh scattering."
    assert pref["value"] == pytest.approx(2.0481927711)
    assert pref["ref"] == "qt3nxl/hkh25lp"
    assert a_wins["session_id"] == "qt3nxl" and a_wins["ts"].year == 2021
    assert b_wins["response"] == "Because of the ocean."
    assert events(b_wins, "preference")[0]["ref"] == b_loses["interaction_id"] == "p2/hkh25sc"


def _uf_completion(response: str, ratings: list) -> dict:
    aspects = ("helpfulness", "honesty", "instruction_following", "truthfulness")
    return {
        "model": "m-" + response,
        "principle": "helpfulness",
        "custom_system_prompt": "Be helpful.",
        "response": response,
        "critique": f"critique of {response}",
        "overall_score": 7.5,
        "annotations": {
            a: {"Rating": str(r), "Rationale": "..."} for a, r in zip(aspects, ratings, strict=True)
        },
    }


def test_ultrafeedback_ratings_rank_and_aspects(tmp_path):
    rec = {
        "source": "evol_instruct",
        "instruction": "Name a color.",
        "models": ["a", "b", "c"],
        "completions": [
            _uf_completion("Blue.", [5, 5, 5, 5]),
            _uf_completion("Table.", [1, 2, 1, "N/A"]),
            _uf_completion("Red.", [5, 5, 5, 5]),
        ],
    }
    path = write_jsonl(tmp_path / "uf.jsonl", [rec])
    assert detect(path) == "ultrafeedback"
    blue, table, red = one(path)
    assert len({blue["session_id"], table["session_id"], red["session_id"]}) == 1
    rating = events(table, "rating")[0]
    assert (rating["value"], rating["scale"]) == (pytest.approx(4 / 3), 5.0)
    assert [e["value"] for e in events(blue, "rank")] == [0.0]
    assert [e["value"] for e in events(red, "rank")] == [0.0]  # ties share a rank
    assert [(e["value"], e["scale"]) for e in events(table, "rank")] == [(2.0, 3.0)]
    assert {e["text"] for e in events(table, "label")} == {
        "helpfulness",
        "honesty",
        "instruction_following",
    }
    assert events(blue, "comment")[0]["text"] == "critique of Blue."
    assert blue["model"] == "m-Blue." and blue["context"] == []


def test_csv_with_column_map(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        'question,answer,stars,who,thumb\nHi?,"Hello, friend.",9,u1,up\nBye?,See you.,,u2,\n',
        encoding="utf-8",
    )
    assert detect(path) == "csv"
    cfg = CollectConfig(
        column_map={
            "prompt": "question",
            "response": "answer",
            "rating": "stars",
            "scale": "10",
            "user_id": "who",
            "thumbs": "thumb",
        }
    )
    first, second = one(path, cfg=cfg)
    assert first["response"] == "Hello, friend."
    assert events(first, "rating")[0]["value"] == 9.0
    assert events(first, "rating")[0]["scale"] == 10.0
    assert events(first, "thumbs")[0]["value"] == 1.0
    assert first["user_id"] == "u1"
    assert second["feedback"] == []


def test_parquet_table_and_hub_style_parquet(tmp_path):
    plain = tmp_path / "t.parquet"
    pq.write_table(pa.table({"prompt": ["Hi?"], "response": ["Hello."], "rating": [4]}), plain)
    assert detect(plain) == "parquet"
    (row,) = one(plain)
    assert events(row, "rating")[0]["value"] == 4.0
    hub = tmp_path / "train-00000-of-00001.parquet"
    chosen = [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]]
    rejected = [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Bye."}]]
    pq.write_table(pa.table({"prompt": ["Hi?"], "chosen": chosen, "rejected": rejected}), hub)
    assert detect(hub) == "trl"
    win, lose = one(hub)
    assert (win["response"], lose["response"]) == ("Hello.", "Bye.")


def test_csv_pairs_from_chosen_and_rejected_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("prompt\tchosen\trejected\nHi?\tHello.\tBye.\n", encoding="utf-8")
    win, lose = one(path, "csv")
    assert events(win, "preference")[0]["ref"] == lose["interaction_id"]


# --- rejects: one reason per rule ------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, record, reason",
    [
        ("trl", {"messages": [{"role": "assistant", "content": "x"}]}, "missing_prompt"),
        ("trl", {"messages": [{"role": "user", "content": "x"}]}, "missing_response"),
        ("trl", {"messages": [{"role": "alien", "content": "x"}]}, "bad_messages"),
        ("trl", {"prompt": "p", "completion": "c", "label": "maybe"}, "bad_label"),
        ("trl", {"prompt": "p", "chosen": "same", "rejected": "same"}, "identical_pair"),
        ("trl", {"prompt": "p", "chosen": "only"}, "missing_response"),
        (
            "trl",
            {"chosen": [USER, BOT], "rejected": [{**USER, "content": "other"}, BOT]},
            "pair_prompt_mismatch",
        ),
        ("trl", {"text": "plain text"}, "unknown_layout"),
        ("hh-rlhf", {"chosen": "no turns", "rejected": "no turns"}, "bad_transcript"),
        (
            "hh-rlhf",
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"},
            "pair_prompt_mismatch",
        ),
        ("hh-rlhf", {"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: a"}, "missing_response"),
        (
            "finegrained",
            {
                "question": "q",
                "prediction 1": "short",
                "feedback": {"errors": [{"error type": "Irrelevant", "start": 2, "end": 99}]},
            },
            "bad_span",
        ),
        (
            "finegrained",
            {"question": "q", "prediction 1": "a", "prediction 2": "b", "preference": [1, 2]},
            "bad_preference",
        ),
        (
            "oasst",
            {"message_id": "m", "role": "prompter", "text": "hi", "replies": []},
            "no_assistant_reply",
        ),
        (
            "shp",
            {"post_id": "p", "history": "h", "human_ref_A": "a", "human_ref_B": "b"},
            "bad_label",
        ),
        (
            "ultrafeedback",
            {"instruction": "i", "completions": [_uf_completion("r", [9, 1, 1, 1])]},
            "bad_rating",
        ),
        ("prometheus", {"instruction": "no sections", "gpt4_score": [3]}, "bad_instruction"),
    ],
)
def test_reject_reasons(tmp_path, fmt, record, reason):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "completion": "ok"}, record])
    items = list(read_format(path, fmt, CollectConfig()))
    assert len(items) == 2
    rej = items[1]
    assert isinstance(rej, Reject), rej
    assert (rej.reason, rej.location) == (reason, f"{path}:2")
    assert rej.raw and json.loads(rej.raw) == record


def test_line_level_rejects_and_counts_add_up(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps({"prompt": "p", "completion": "c"}).encode()
    path.write_bytes(good + b"\n{not json\n\xff\xfe\n[1, 2]\n\n" + good + b"\n")
    items = list(read_format(path, "trl"))
    reasons = [(i.location.rsplit(":", 1)[1], getattr(i, "reason", "ok")) for i in items]
    assert reasons == [
        ("1", "ok"),
        ("2", "malformed_json"),
        ("3", "invalid_utf8"),
        ("4", "not_an_object"),
        ("6", "ok"),
    ]


def test_json_array_syntax_error_keeps_earlier_elements(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text(
        '[{"prompt": "a", "completion": "b"},\n {"prompt": "c", "completion": "d"},\n'
        ' {"prompt": oops}, {"prompt": "e", "completion": "f"}]'
    )
    items = list(read_format(path, "trl"))
    assert [type(i).__name__ for i in items] == ["Parsed", "Parsed", "Reject"]
    assert (items[2].reason, items[2].location) == ("malformed_json", f"{path}[2]")
    assert "stopped reading" in items[2].detail


def test_truncated_json_array_is_one_reject(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('[{"prompt": "a", "completion": "b"}, {"prompt": "c", "compl')
    items = list(read_format(path, "trl"))
    assert isinstance(items[0], Parsed)
    assert items[1].reason == "malformed_json" and len(items) == 2


def test_csv_row_with_wrong_cell_count(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("prompt,response\na,b\nc,d,e\n", encoding="utf-8")
    items = list(read_format(path, "csv", CollectConfig()))
    assert isinstance(items[0], Parsed)
    assert (items[1].reason, items[1].location) == ("bad_csv_row", f"{path}:3")


def test_table_map_errors_are_one_line_user_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("q,a\nx,y\n", encoding="utf-8")
    with pytest.raises(LfftError, match="no column 'stars'"):
        list(read_format(path, "csv", CollectConfig(column_map={"prompt": "q", "rating": "stars"})))
    with pytest.raises(LfftError, match="unknown name"):
        list(read_format(path, "csv", CollectConfig(column_map={"promt": "q"})))
    with pytest.raises(LfftError, match="--map prompt=COL"):
        list(read_format(path, "csv", CollectConfig()))


def test_unknown_file_or_format_is_a_user_error(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1}])
    with pytest.raises(LfftError, match="cannot tell the format of .*pass --format"):
        detect(path)
    with pytest.raises(LfftError, match="unknown format"):
        read_format(path, "nope")
    assert canonical("parquet") == canonical("csv") == "table" and "hh-rlhf" in FORMATS


def test_events_are_detected_but_left_to_collect(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [{"event": "message", "session_id": "s"}])
    assert detect(path) == "events"


def test_detection_reads_inside_gzip_and_zstd(tmp_path):
    rec = {"prompt": "p", "chosen": "a", "rejected": "b"}
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps(rec) + "\n").encode()))
    zst = tmp_path / "d.json.zst"
    with pa.CompressedOutputStream(str(zst), "zstd") as f:
        f.write(json.dumps([rec, rec]).encode())
    assert detect(gz) == detect(zst) == "trl"
    assert len(one(zst)) == 4


def test_concatenated_pretty_json_values(tmp_path):
    path = tmp_path / "values.json"
    rec = {"prompt": "p", "completion": "c"}
    path.write_text(json.dumps(rec, indent=4) + "\n" + json.dumps(rec, indent=4))
    assert [r.location for r in iter_records(path)] == [f"{path}[0]", f"{path}[1]"]


# --- streaming -------------------------------------------------------------------------------


def _peak_reading(path: Path, n: int, layout: str) -> int:
    recs = ({"prompt": f"p{i}", "completion": "x" * 400} for i in range(n))
    with open(path, "w", encoding="utf-8") as f:
        if layout == "jsonl":
            f.writelines(json.dumps(r) + "\n" for r in recs)
        else:
            f.write("[" + ",\n".join(json.dumps(r) for r in recs) + "]")
    tracemalloc.start()
    count = sum(1 for _ in read_format(path, "trl"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    return peak


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_reading_streams_memory_does_not_grow_with_the_file(tmp_path, layout):
    suffix = ".jsonl" if layout == "jsonl" else ".json"
    small = _peak_reading(tmp_path / f"small{suffix}", 2_000, layout)  # ~0.9 MB
    big = _peak_reading(tmp_path / f"big{suffix}", 12_000, layout)  # ~5.3 MB
    assert big < 1.5 * small + 500_000, f"peak {small / 1e6:.1f} MB -> {big / 1e6:.1f} MB"


def test_location_names_file_and_line():
    path = sample("oasst2-trees/oasst2_filtered.jsonl")
    _, rejected = read(path, "oasst")
    assert re.fullmatch(rf"{re.escape(str(path))}:\d+", rejected[0].location)


# --- robustness: arbitrary records never crash a reader --------------------------------------

_KEYS = sorted(
    {
        "prompt",
        "completion",
        "chosen",
        "rejected",
        "label",
        "kto_tag",
        "messages",
        "conversations",
        "instruction",
        "input",
        "output",
        "history",
        "system",
        "text",
        "role",
        "from",
        "value",
        "content",
        "replies",
        "message_id",
        "message_tree_id",
        "rank",
        "emojis",
        "labels",
        "deleted",
        "question",
        "prediction 1",
        "prediction 2",
        "feedback",
        "preference",
        "passages",
        "errors",
        "start",
        "end",
        "human_ref_A",
        "human_ref_B",
        "post_id",
        "score_ratio",
        "completions",
        "annotations",
        "response",
        "gpt4_score",
        "gpt4_feedback",
        "steps",
        "helpfulness",
        "created_date",
        "ts",
        "context",
        "interaction_id",
        # Langfuse observations and scores, LangSmith runs and feedback (read one at a time)
        *("id", "trace_id", "type", "level", "start_time", "updated_at", "observation_id"),
        *("name", "data_type", "string_value", "comment", "run_type", "inputs", "outputs"),
        *("error", "parent_run_id", "run_id", "key", "score", "correction", "dotted_order"),
        *("feedback_group_id", "extra"),
    }
)


def _json_values():
    from hypothesis import strategies as st

    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-3, 200)
        | st.floats(allow_nan=True)
        | st.text(max_size=12)
        | st.sampled_from(["\n\nHuman: hi\n\nAssistant: yo", "user", "assistant", "gpt", "N/A"])
        | st.sampled_from(["GENERATION", "SPAN", "NUMERIC", "BOOLEAN", "llm", "chain", "t1"])
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=6)
        ),
        max_leaves=25,
    )


def test_arbitrary_records_give_one_item_and_never_raise():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lfft.data.formats import RECORD_READERS, detect_record
    from lfft.data.formats.common import parse_one

    @settings(max_examples=100, deadline=None)
    @given(st.dictionaries(st.sampled_from(_KEYS), _json_values(), max_size=8))
    def check(record):
        detect_record(record)
        for module in RECORD_READERS.values():
            item = parse_one("f:1", record, None, module.parse)
            assert isinstance(item, Parsed | Reject)
            if isinstance(item, Parsed):
                to_table(item.rows)  # rows always fit the schema

    check()
