"""The chat page in a real headless browser: chat, stream, thumbs down, edit, regenerate."""

from __future__ import annotations

import os
import shutil

import pytest
from serve_fixtures import collect_rows, events, running

pytestmark = pytest.mark.usefixtures("model_one_thread")
# LFFT_PAGE_SHOT=docs/serve-page.png makes the screenshot of docs/serve.md
SHOT = os.environ.get("LFFT_PAGE_SHOT")


def test_page_chat_feedback_regenerate_then_collect(tmp_path, model_tiny_ckpt, page):  # noqa: F811
    logs = tmp_path / "logs"
    with running(logs, model_tiny_ckpt, default_max_tokens=12) as url:
        page.goto(url.removesuffix("/v1") + "/")
        page.fill("#prompt", "<b>hello</b> & welcome")  # markup must show as text
        page.press("#prompt", "Enter")
        first = page.locator(".msg.assistant[data-id]").first
        first.wait_for()
        assert page.locator(".msg.user .text").inner_text() == "<b>hello</b> & welcome"
        assert page.locator(".msg.user b").count() == 0
        assert model_tiny_ckpt.name in page.inner_text("#version")
        first_id = first.get_attribute("data-id")
        first.locator("[data-act=down]").click()
        page.locator(f".msg[data-id='{first_id}'] [data-act=down].on").wait_for()
        first.locator("[data-act=edit]").click()
        first.locator(".form textarea").fill("A better answer.")
        first.locator("[data-act=save]").click()
        page.wait_for_function("document.querySelector('.msg.assistant .form').hidden")
        assert first.locator(".text").inner_text() == "A better answer."
        first.locator("[data-act=regenerate]").click()
        second = page.locator(f".msg.assistant[data-id]:not([data-id='{first_id}'])")
        second.wait_for()
        second.locator("select[data-act=rating]").select_option("4")
        second.locator("[data-act=copy]").click()
        page.wait_for_function("!document.querySelector('#send').disabled")
        page.wait_for_timeout(300)  # the last feedback POSTs settle
        page.screenshot(path=str(tmp_path / "page.png"))
        if SHOT:
            shutil.copyfile(tmp_path / "page.png", SHOT)
        second_id = second.get_attribute("data-id")
        assert page.inner_text("#status") == ""
    log = events(logs)
    answers = {e["message_id"]: e for e in log if e.get("role") == "assistant"}
    assert set(answers) == {first_id, second_id}
    assert answers[first_id]["parent_id"] == answers[second_id]["parent_id"]  # siblings
    rows, rejected = collect_rows(logs, tmp_path)
    assert rejected == 0 and len(rows) == 2
    kinds = {
        r["interaction_id"].split(":")[1]: sorted(f["kind"] for f in r["feedback"]) for r in rows
    }
    assert kinds == {first_id: ["edit", "regenerate", "thumbs"], second_id: ["copy", "rating"]}
    assert {r["prompt"] for r in rows} == {"<b>hello</b> & welcome"}
