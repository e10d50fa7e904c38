"""Both pages in a real headless browser (Debian chromium, tests/browser.py): the explain page
and evaluate's report.html of a short training on the FineGrained-RLHF sample load offline with
no console error, show every section, sort, and render 500 rows in under a second.

``LFFT_SCREENSHOTS=docs`` writes the screenshots the docs show (docs/explain-page.png,
docs/report-page.png); without it they go to the test's temporary folder.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from test_explain import fg  # noqa: F401  (the short training on the FineGrained sample)

from lfft.config import EvaluateConfig, ExplainConfig
from lfft.explain import explain
from lfft.explain.core import explain_rows, summary
from lfft.explain.html import render
from lfft.io import read_table, write_text_atomic
from lfft.model.checkpoint import load, load_model
from lfft.model.evaluate import evaluate
from lfft.report_html.evaluate import Run
from lfft.report_html.evaluate import render as render_report

EXPLAIN_SECTIONS = ("summary", "legend", "rows")
REPORT_SECTIONS = ("metrics", "training", "reliability", "distributions", "preference",
                   "generations")  # fmt: skip


def _shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("LFFT_SCREENSHOTS") or tmp_path)


def _open(page, path: Path) -> tuple[list[str], list[str]]:  # noqa: F811
    """Load ``path``; returns (console errors and page errors, URLs requested beyond the file)."""
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if r.url != path.as_uri() else None)
    page.goto(path.as_uri(), wait_until="load")
    return errors, requests


def _load_ms(page) -> float:  # noqa: F811
    return page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")


@pytest.fixture(scope="module")
def pages(fg, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    d = tmp_path_factory.mktemp("pages")
    explain(fg["final"], fg["rows"], d / "explain.html", ExplainConfig(device="cpu"),
            baseline=fg["init"])  # fmt: skip
    cfg = EvaluateConfig(device="cpu", generate=True, max_new_tokens=12)
    evaluate(fg["final"], fg["rows"], d / "eval", cfg, baseline=fg["init"])
    return {"explain": d / "explain.html", "report": d / "eval/report.html", "dir": d}


def test_explain_page_in_a_browser(fg, pages, page, tmp_path):  # noqa: F811
    errors, requests = _open(page, pages["explain"])
    assert errors == [] and requests == []
    for key in EXPLAIN_SECTIONS:
        assert page.locator(f"#{key}").is_visible()
    # the first row's tokens, drawn by the script: they spell the response, the user's modify
    # marks underlined where the labels say so, and a second line of log-prob changes
    x = explain_rows(*load(fg["final"]), read_table(fg["rows"]).to_pylist()[:1])[0]
    first = page.locator("td.cell").first
    head_line = first.locator(".tok").first
    assert head_line.locator("span").count() == len(x.tokens)
    cut = " [cut at --max-length]" if x.cut else ""
    assert head_line.inner_text().replace("\u23ce", "") == "".join(x.tokens) + cut
    assert head_line.locator("span.m").count() == sum(v == 0 for v in x.labels)
    assert first.locator(".tok").count() == 2
    score = page.locator("table.rows th", has_text="score")
    score.click()
    values = page.eval_on_selector_all(
        "table.rows tbody tr", "rows => rows.map(r => parseFloat(r.cells[2].dataset.v))"
    )
    assert len(values) == 32 and values == sorted(values)
    score.click()  # and back, descending
    values = page.eval_on_selector_all(
        "table.rows tbody tr", "rows => rows.map(r => parseFloat(r.cells[2].dataset.v))"
    )
    assert values == sorted(values, reverse=True)
    page.screenshot(path=str(_shots(tmp_path) / "explain-page.png"))


def test_report_page_in_a_browser(pages, page, tmp_path):  # noqa: F811
    errors, requests = _open(page, pages["report"])
    assert errors == [] and requests == []
    for key in REPORT_SECTIONS:
        assert page.locator(f"#{key}").is_visible()
    assert page.locator("svg").count() >= 6  # 3 curves, reliability, distribution, preference
    assert page.locator("table.gen tbody tr").count() > 0
    page.screenshot(path=str(_shots(tmp_path) / "report-page.png"), full_page=True)


def test_500_rows_load_in_under_a_second(fg, pages, page):  # noqa: F811
    """500 rows of real explanations (the sample's 32, cycled) and a report of 500 predictions."""
    rows = read_table(fg["rows"]).to_pylist()
    model, tok, head = load(fg["final"])
    xs = explain_rows(model, tok, head, rows, baseline=load_model(fg["init"]).eval())
    many = list(itertools.islice(itertools.cycle(xs), 500))
    big = pages["dir"] / "explain-500.html"
    write_text_atomic(big, render(many, summary(many), "500 rows"))
    errors, _ = _open(page, big)
    assert errors == [] and page.locator("table.rows tbody tr").count() == 500
    assert _load_ms(page) < 1000
    run = Run.load(pages["dir"] / "eval")
    run.predictions = {k: (v * 16)[:500] for k, v in run.predictions.items()}
    report = pages["dir"] / "report-500.html"
    write_text_atomic(report, render_report([run]))
    errors, _ = _open(page, report)
    assert errors == [] and _load_ms(page) < 1000
