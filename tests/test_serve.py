"""lfft serve with the official openai client: answers, ids in the log, trees, feedback."""

from __future__ import annotations

import pytest
from serve_fixtures import client, collect_rows, events, post, running

pytestmark = pytest.mark.usefixtures("model_one_thread")


def test_chat_stream_regenerate_feedback_then_collect(tmp_path, model_tiny_ckpt):
    logs = tmp_path / "logs"
    with running(logs, model_tiny_ckpt) as url, client(url) as c:
        hist = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
        first = c.chat.completions.create(model="x", messages=hist, max_tokens=6, temperature=0)
        assert first.model == model_tiny_ckpt.name
        assert first.choices[0].finish_reason in ("stop", "length")
        assert first.usage.completion_tokens <= 6
        # a regenerate: the same history again, streamed
        stream = c.chat.completions.create(model="x", messages=hist, max_tokens=6, stream=True)
        chunks = list(stream)
        second_id = chunks[0].id
        second_text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert {ch.id for ch in chunks} == {second_id}
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        # a follow-up on the first answer
        hist2 = [*hist, {"role": "assistant", "content": first.choices[0].message.content}]
        hist2.append({"role": "user", "content": "and more?"})
        third = c.chat.completions.create(model="x", messages=hist2, max_tokens=4)
        fb = [
            {"message_id": first.id, "kind": "thumbs", "value": "down"},
            {"message_id": second_id, "kind": "edit", "value": "Hello!"},
            {"message_id": second_id, "kind": "rating", "value": 4, "scale": 5},
            {"message_id": third.id, "kind": "copy"},
        ]
        for body in fb:
            status, out = post(url + "/feedback", body)
            assert status == 200, out
    log = events(logs)
    msgs = [e for e in log if e["event"] == "message"]
    by_id = {e["message_id"]: e for e in msgs}
    assert len(by_id) == len(msgs) == 6  # system, user, 2 answers, user, answer: each once
    a1, a2, a3 = by_id[first.id], by_id[second_id], by_id[third.id]
    assert a1["parent_id"] == a2["parent_id"]  # siblings under the same user message
    assert a2["content"] == second_text
    assert by_id[a3["parent_id"]]["parent_id"] == first.id  # the follow-up continues answer 1
    assert len({e["session_id"] for e in log}) == 1
    rows, rejected = collect_rows(logs, tmp_path)
    assert rejected == 0
    got = {r["interaction_id"].split(":")[1]: r for r in rows}
    assert set(got) == {first.id, second_id, third.id}
    assert [f["kind"] for f in got[first.id]["feedback"]] == ["thumbs"]
    assert sorted(f["kind"] for f in got[second_id]["feedback"]) == ["edit", "rating"]
    assert [f["kind"] for f in got[third.id]["feedback"]] == ["copy"]
    assert got[third.id]["context"][-1]["content"] == first.choices[0].message.content


def test_identity_survives_restart_and_extension_ids(tmp_path, model_tiny_ckpt):
    logs = tmp_path / "logs"
    hist = [{"role": "user", "content": "q1"}]
    with running(logs, model_tiny_ckpt) as url, client(url) as c:
        a = c.chat.completions.create(model="x", messages=hist, max_tokens=3, user="alice")
        b = c.chat.completions.create(model="x", messages=hist, max_tokens=3, user="bob")
    with running(logs, model_tiny_ckpt) as url, client(url) as c:  # a restart
        again = c.chat.completions.create(model="x", messages=hist, max_tokens=3, user="alice")
        ext = {"session_id": "mine", "message_ids": ["u-1"]}
        d = c.chat.completions.create(
            model="x", messages=hist, max_tokens=3, extra_body={"lfft": ext}
        )
    by_id = {e["message_id"]: e for e in events(logs) if e["event"] == "message"}
    assert by_id[again.id]["parent_id"] == by_id[a.id]["parent_id"]  # alice's regenerate
    assert by_id[a.id]["session_id"] != by_id[b.id]["session_id"]  # strangers never share
    assert (by_id[d.id]["session_id"], by_id[d.id]["parent_id"]) == ("mine", "u-1")
    assert by_id["u-1"]["content"] == "q1"


def test_n_choices_stop_and_limits(tmp_path, model_tiny_ckpt):
    logs = tmp_path / "logs"
    with running(logs, model_tiny_ckpt, max_tokens=16, api_key="k") as url, client(url, "k") as c:
        r = c.chat.completions.create(
            model="x", messages=[{"role": "user", "content": "a"}], n=3, max_tokens=5, seed=1
        )
        ids = [ch.message_id for ch in r.choices]
        assert len(set(ids)) == 3 and r.id == ids[0]
        import openai

        with pytest.raises(openai.BadRequestError, match="max_tokens"):
            c.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "a"}], max_tokens=17
            )
        with pytest.raises(openai.AuthenticationError), client(url, "wrong") as bad:
            bad.models.list()
        assert [m.id for m in c.models.list().data] == [model_tiny_ckpt.name]
    answers = [e for e in events(logs) if e.get("role") == "assistant"]
    assert sorted(e["message_id"] for e in answers) == sorted(ids)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (
            {"message_id": "m-x", "session_id": "s", "kind": "thumbs", "value": "sideways"},
            400,
            "bad_value",
        ),
        ({"message_id": "m-x", "session_id": "s", "kind": "rating", "value": 9}, 400, "outside"),
        ({"message_id": "m-x", "session_id": "s", "kind": "smile"}, 400, "'kind' must be one of"),
        ({"message_id": "m-x", "session_id": "s", "kind": "dwell_ms"}, 400, "dwell_ms needs"),
        (
            {"message_id": "m-x", "session_id": "s", "kind": "thumbs", "value": "up", "extra": 1},
            400,
            "unknown",
        ),
        ({"message_id": "m-never", "kind": "thumbs", "value": "up"}, 400, "session_id"),
    ],
)
def test_feedback_rejects_bad_bodies(tmp_path, model_tiny_ckpt, body, status, needle):
    logs = tmp_path / "logs"
    with running(logs, model_tiny_ckpt) as url:
        got, out = post(url + "/feedback", body)
        assert got == status and needle in out["error"]["message"], out
        assert set(out["error"]) == {"message", "type", "param", "code"}
        # feedback on an id serve has not seen is kept when its session is named
        ok, _ = post(
            url + "/feedback", {"message_id": "m-later", "session_id": "s", "kind": "copy"}
        )
        assert ok == 200
    assert [e["message_id"] for e in events(logs)] == ["m-later"]


def test_chat_rejects_bad_requests(tmp_path, model_tiny_ckpt):
    logs = tmp_path / "logs"
    with running(logs, model_tiny_ckpt, max_body_bytes=2000) as url:
        cases = [
            ({"messages": []}, "messages"),
            ({"messages": [{"role": "bot", "content": "x"}]}, "role"),
            ({"messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature"),
            ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
            ({"messages": [{"role": "user", "content": "x"}], "n": 2, "stream": True}, "stream"),
            ({"messages": [{"role": "user", "content": "x" * 3000}]}, "limit is 2000"),
        ]
        too_long = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 600}
        cases.append((too_long, "takes at most 512"))  # found by the backend, after the checks
        for body, needle in cases:
            status, out = post(url + "/chat/completions", body)
            assert 400 <= status < 500 and needle in out["error"]["message"], out
        assert not events(logs)  # nothing logged for a rejected request
        status, ok = post(url + "/chat/completions", {**too_long, "max_tokens": 2})
        assert status == 200
    assert [e["role"] for e in events(logs)] == ["user", "assistant"]
