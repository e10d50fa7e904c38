"""The loop at small scale: lfft online makes a model, serve answers a simulated user through the
openai client, lfft online learns from serve's log with no glue, serve reloads the promotion."""

from __future__ import annotations

import pytest
from serve_fixtures import client, events, post, running
from test_online import TINY, event_lines, write

from lfft.config import OnlineConfig, build, load_toml
from lfft.online import read_history, run_online
from lfft.online_versions import OnlineLayout, read_current

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("model_one_thread")]


def _round(logs, work, tmp_path) -> dict:
    from rich.console import Console

    config = tmp_path / "lfft.toml"  # a loose gate: this tests the plumbing, not the learning
    config.write_text(TINY.replace("[online]\n", "[online]\ngate_tolerance = 100.0\n"))
    cfg = build(OnlineConfig, load_toml(config).get("online"))
    run_online(logs, work, cfg, once=True, config_path=config, console=Console(quiet=True))
    return read_history(work)[-1]


def test_online_learns_from_serve_and_serve_reloads(tmp_path):
    logs, work = tmp_path / "logs", tmp_path / "work"
    seed = event_lines(range(0, 40))
    write(logs / "seed.jsonl", seed)
    first = _round(logs, work, tmp_path)
    assert first["promoted"] and read_current(OnlineLayout(work)) == "v0001"
    with running(logs, work / "current", default_max_tokens=6) as url, client(url) as c:
        for i in range(12):  # the simulated user likes answers of at most 3 words
            r = c.chat.completions.create(
                model="x", messages=[{"role": "user", "content": f"What is {i} + {i}?"}]
            )
            assert r.model == "v0001"
            liked = len(r.choices[0].message.content.split()) <= 3
            body = {"message_id": r.id, "kind": "thumbs", "value": "up" if liked else "down"}
            assert post(url + "/feedback", body)[0] == 200
        served = len(events(logs)) - len(seed)
        second = _round(logs, work, tmp_path)  # while serve keeps running
        assert second["consumed"]["lines"] == served  # every line serve wrote, once, no glue
        assert second["new_rows"] > 0 and second["promoted"]
        after = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
        assert after.model == second["current"] == "v0002"
