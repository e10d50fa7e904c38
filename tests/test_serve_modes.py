"""lfft serve on lfft online's layout (reload on promotion) and in --upstream capture mode."""

from __future__ import annotations

import shutil

import pytest
from serve_fixtures import client, collect_rows, events, post, running

from lfft.online_versions import OnlineLayout, set_current

pytestmark = pytest.mark.usefixtures("model_one_thread")
HI = [{"role": "user", "content": "hello"}]


def test_reload_when_current_moves_without_dropping_a_stream(tmp_path, model_tiny_ckpt):
    layout = OnlineLayout(tmp_path / "work")
    for v in ("v0000", "v0001"):
        shutil.copytree(model_tiny_ckpt, layout.versions / v)
    set_current(layout, "v0000")
    logs = tmp_path / "logs"
    with running(logs, layout.current) as url, client(url) as c:
        assert c.chat.completions.create(model="x", messages=HI, max_tokens=3).model == "v0000"
        stream = c.chat.completions.create(model="x", messages=HI, max_tokens=8, stream=True)
        it = iter(stream)
        first = next(it)
        set_current(layout, "v0001")  # promotion while the stream is in flight
        rest = list(it)
        assert {ch.model for ch in [first, *rest]} == {"v0000"}
        assert rest[-1].choices[0].finish_reason in ("stop", "length")
        after = c.chat.completions.create(model="x", messages=HI, max_tokens=3)
        assert after.model == "v0001"
        assert [m.id for m in c.models.list().data] == ["v0001"]
        set_current(layout, "v0000")  # a rollback
        assert c.chat.completions.create(model="x", messages=HI, max_tokens=3).model == "v0000"
    answers = [e for e in events(logs) if e.get("role") == "assistant"]
    assert [e["model"] for e in answers] == ["v0000", "v0000", "v0001", "v0000"]


def test_upstream_mode_captures_in_front_of_another_serve(tmp_path, model_tiny_ckpt, monkeypatch):
    up_logs, logs = tmp_path / "upstream_logs", tmp_path / "logs"
    monkeypatch.setenv("LFFT_UPSTREAM_API_KEY", "up-key")
    with (
        running(up_logs, model_tiny_ckpt, api_key="up-key") as up_url,
        running(logs, upstream=up_url, upstream_model="tiny") as url,
        client(url) as c,
    ):
        plain = c.chat.completions.create(model="m", messages=HI, max_tokens=4, temperature=0)
        chunks = list(c.chat.completions.create(model="m", messages=HI, max_tokens=4, stream=True))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        many = c.chat.completions.create(model="m", messages=HI, max_tokens=4, n=2)
        assert plain.model == model_tiny_ckpt.name  # the upstream's model name is kept
        assert [m.id for m in c.models.list().data] == ["tiny"]
        status, _ = post(url + "/feedback", {"message_id": plain.id, "kind": "thumbs", "value": 1})
        assert status == 200
    answers = {e["message_id"]: e for e in events(logs) if e.get("role") == "assistant"}
    ids = {plain.id, chunks[0].id, *(ch.message_id for ch in many.choices)}
    assert set(answers) == ids
    assert answers[chunks[0].id]["content"] == text
    upstream_answers = [e for e in events(up_logs) if e.get("role") == "assistant"]
    assert sorted(e["content"] for e in upstream_answers) == sorted(
        e["content"] for e in answers.values()
    )
    rows, rejected = collect_rows(logs, tmp_path)
    assert rejected == 0 and len(rows) == 4
    fb = {r["interaction_id"].split(":")[1]: r["feedback"] for r in rows}
    assert [f["kind"] for f in fb[plain.id]] == ["thumbs"]


def test_upstream_errors_pass_on_and_log_nothing(tmp_path, model_tiny_ckpt):
    logs = tmp_path / "logs"
    body = {"messages": HI, "max_tokens": 17}
    with running(tmp_path / "up", model_tiny_ckpt, max_tokens=16) as up_url:
        with running(logs, upstream=up_url, max_tokens=64) as url:
            status, out = post(url + "/chat/completions", body)  # the upstream says no
        assert status == 400 and "max_tokens" in out["error"]["message"], out
    with running(logs, upstream="http://127.0.0.1:9/v1") as url:  # nothing listens on port 9
        status, out = post(url + "/chat/completions", {**body, "stream": True})
    assert status == 502 and "unreachable" in out["error"]["message"], out
    assert not events(logs)
