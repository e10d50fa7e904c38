"""The group mechanism of ``lfft collect``: formats whose data comes in several files.

A toy two-file format (questions in one file, answers pointing at them in another) is registered
for these tests; the real group formats (Open WebUI, ...) have their own test files.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from lfft.config import CollectConfig
from lfft.data import formats
from lfft.data.collect import collect
from lfft.data.formats.common import read_records
from lfft.data.formats.groups import Stash, source_of
from lfft.data.records import Parsed, Reject, interaction
from lfft.errors import LfftError
from lfft.io import read_meta, read_table, rejects_path


def _read_group(files: dict[str, list[Path]], cfg):
    """Questions first (stashed by id), then each answer joined with its question."""
    calls.append({role: [p.name for p in paths] for role, paths in files.items()})
    joined = 0
    with Stash() as questions:
        for path in files.get("questions", []):
            for rec in read_records(path, lambda r: [r]):
                if isinstance(rec, Parsed):
                    questions.add(rec.rows[0]["qid"], rec.rows[0]["question"])
                    rec = Parsed(rec.location, [])  # used: its text lands in an answer's row
                yield rec
        for path in files.get("answers", []):
            for rec in read_records(path, lambda r: [r]):
                if isinstance(rec, Reject):
                    yield rec
                    continue
                found = questions.get(rec.rows[0]["qid"])
                if not found:
                    yield Reject(rec.location, "orphan_answer", None, "no such question")
                    continue
                joined += 1
                row = interaction(
                    session_id=rec.rows[0]["qid"],
                    prompt=found[0],
                    response=rec.rows[0]["answer"],
                    source="toy",
                )
                yield Parsed(rec.location, [row])
    return {"joined": joined}


calls: list[dict] = []
TOY = types.ModuleType("toy")
TOY.NAME = "toy"
TOY.ROLES = ("answers", "questions")
TOY.looks_like = lambda rec: "qid" in rec
TOY.role = lambda rec: "questions" if "question" in rec else "answers"
TOY.read_group = _read_group


@pytest.fixture
def toy(monkeypatch):
    """Register the toy group format first in detection order."""
    monkeypatch.setattr(formats, "RECORD_READERS", {"toy": TOY, **formats.RECORD_READERS})
    monkeypatch.setattr(formats, "GROUPS", ("toy", *formats.GROUPS))
    calls.clear()
    return TOY


def jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def toy_folder(root: Path) -> Path:
    questions = [{"qid": "q1", "question": "2+2?"}, {"qid": "q2", "question": "Hi?"}]
    jsonl(root / "a_questions.jsonl", questions)
    answers = [{"qid": "q1", "answer": "4"}, {"qid": "q9", "answer": "?"}]
    answers.append({"qid": "q2", "answer": "Hello"})
    path = jsonl(root / "b_answers.jsonl", answers)
    path.write_text(path.read_text() + "{broken\n")
    jsonl(root / "c_kto.jsonl", [{"prompt": "Hi?", "completion": "Hey", "label": True}])
    return root


def test_group_files_are_read_together_once_and_counts_add_up(tmp_path, toy):
    src = toy_folder(tmp_path / "logs")
    out = tmp_path / "i.parquet"
    result = collect([src], out, CollectConfig())
    assert calls == [{"questions": ["a_questions.jsonl"], "answers": ["b_answers.jsonl"]}]
    rows = read_table(out).to_pylist()
    assert sorted((r["source"], r["prompt"], r["response"]) for r in rows) == [
        ("toy", "2+2?", "4"), ("toy", "Hi?", "Hello"), ("trl", "Hi?", "Hey")
    ]  # fmt: skip
    # 2 questions + 4 answer lines + 1 KTO record: every one used or rejected
    assert result.rows_in == 7 and result.extra["lines used"] == 5
    assert result.rejects == {"orphan_answer": 1, "malformed_json": 1}
    assert result.extra["formats"] == {"toy/questions": 1, "toy/answers": 1, "trl": 1}
    assert result.extra["joined"] == {"toy": 2}
    meta = read_meta(out)
    assert meta["files"] == {
        str(src / "a_questions.jsonl"): "toy/questions",
        str(src / "b_answers.jsonl"): "toy/answers",
        str(src / "c_kto.jsonl"): "trl",
    }
    rejects = read_table(rejects_path(out)).to_pylist()
    answers = str(src / "b_answers.jsonl")
    assert sorted((r["source"], r["location"], r["reason"]) for r in rejects) == [
        (answers, f"{answers}:2", "orphan_answer"), (answers, f"{answers}:4", "malformed_json")
    ]  # fmt: skip


def test_a_group_needs_all_its_files_in_one_call(tmp_path, toy):
    """Answers alone cannot be joined: every one is a reject, none is lost."""
    src = toy_folder(tmp_path / "logs")
    out = tmp_path / "i.parquet"
    result = collect([src / "b_answers.jsonl", src / "c_kto.jsonl"], out, CollectConfig())
    assert result.rejects == {"orphan_answer": 3, "malformed_json": 1}
    assert result.rows_out == 1 and "joined" in result.extra
    assert result.extra["joined"] == {"toy": 0}


def test_given_format_still_finds_each_files_role(tmp_path, toy):
    src = toy_folder(tmp_path / "logs")
    files = [src / "b_answers.jsonl", src / "a_questions.jsonl"]
    result = collect(files, tmp_path / "i.parquet", CollectConfig(format="toy"))
    assert calls == [{"answers": ["b_answers.jsonl"], "questions": ["a_questions.jsonl"]}]
    assert result.rows_out == 2 and result.extra["joined"] == {"toy": 2}


def test_read_format_reads_one_group_file_alone(tmp_path, toy):
    src = toy_folder(tmp_path / "logs")
    items = list(formats.read_format(src / "a_questions.jsonl", "toy"))
    assert [type(i) for i in items] == [Parsed, Parsed] and calls == [
        {"questions": ["a_questions.jsonl"]}
    ]
    assert formats.detect(src / "b_answers.jsonl") == "toy"
    assert formats.role(src / "b_answers.jsonl", "toy") == "answers"
    assert formats.role(src / "c_kto.jsonl", "trl") is None


def test_a_role_the_format_does_not_declare_is_a_user_error(tmp_path, toy, monkeypatch):
    src = toy_folder(tmp_path / "logs")
    monkeypatch.setattr(TOY, "role", lambda rec: "replies")
    with pytest.raises(LfftError, match="role 'replies'"):
        collect([src], tmp_path / "i.parquet", CollectConfig())


def test_source_of_finds_the_file_of_a_location(tmp_path):
    a, ab = tmp_path / "a.json", tmp_path / "a.json.gz"
    where = source_of([a, ab])
    assert where(f"{a}[3]") == str(a) and where(f"{ab}:7") == str(ab)
    assert where("elsewhere:1") == "elsewhere:1"


def test_stash_keeps_values_per_key_in_order_on_disk():
    with Stash() as stash:
        for i in range(10_000):  # more than one flush
            stash.add(f"k{i % 3}", {"i": i})
        assert [v["i"] for v in stash.get("k1")][:3] == [1, 4, 7]
        assert len(stash.get("k0")) == 3334 and stash.get("nope") == []
        assert "k2" in stash and "k3" not in stash
        folder = Path(stash._dir.name)
    assert not folder.exists()  # removed on close
