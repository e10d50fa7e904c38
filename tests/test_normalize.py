"""``lfft normalize``: one case per feedback mapping, conflicts, pairs, partitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lfft.config import NormalizeConfig
from lfft.data.normalize import normalize, normalize_table
from lfft.data.records import feedback_event, interaction, to_table
from lfft.data.rejects import count_reasons
from lfft.errors import ConfigError
from lfft.io import read_meta, read_table, rejects_path, write_table
from lfft.schemas import CLEAN, NORMALIZED, make_metadata

T1 = datetime(2024, 1, 1, tzinfo=UTC)
T2 = datetime(2024, 1, 2, tzinfo=UTC)
COLUMNS = ("score", "label", "weight", "signal", "target", "token_spans", "critique", "group_id")


def row(iid: str = "x", *events, prompt="Q?", response="The sky is green.", session="s", **kw):
    return interaction(
        interaction_id=iid,
        session_id=session,
        prompt=prompt,
        response=response,
        source="t",
        feedback=list(events),
        **kw,
    )


def fb(kind: str, **kw):
    return feedback_event(kind, **kw)


def norm(rows, cfg: NormalizeConfig | None = None):
    table, notes = normalize_table(to_table(rows), cfg or NormalizeConfig())
    out = {r["interaction_id"]: {c: r[c] for c in COLUMNS} for r in table.to_pylist()}
    return out, count_reasons(notes)  # ignored events by reason


def one(*events, cfg: NormalizeConfig | None = None, **kw):
    out, ignored = norm([row("x", *events, **kw)], cfg)
    return out["x"], ignored


@pytest.mark.parametrize(
    ("event", "score", "label", "signal"),
    [
        (fb("thumbs", value=1), 1.0, 1, "binary"),
        (fb("thumbs", value=0), 0.0, 0, "binary"),
        (fb("thumbs", value=-1), 0.0, 0, "binary"),
        (fb("rating", value=4, scale=5), 0.75, 1, "scalar"),
        (fb("rating", value=3), 0.5, 1, "scalar"),  # default scale 5
        (fb("rating", value=1, scale=10), 0.0, 0, "scalar"),
        (fb("rating", value=10, scale=10), 1.0, 1, "scalar"),
        (fb("label", text="helpful"), 1.0, 1, "binary"),
        (fb("label", text="Off-Topic"), 0.0, 0, "binary"),
        (fb("label", text="quality", value=0.8), 0.8, 1, "scalar"),
        (fb("label", text="toxicity", value=0.8), 0.2, 0, "scalar"),
        (fb("rank", value=0, scale=3), 1.0, 1, "pairwise"),
        (fb("rank", value=2, scale=3), 0.0, 0, "pairwise"),
        (fb("emoji", text="+1", value=3), 1.0, 1, "scalar"),
    ],
)
def test_explicit_mappings(event, score, label, signal):
    out, ignored = one(event)
    assert out["score"] == pytest.approx(score)
    assert (out["label"], out["signal"], out["weight"]) == (label, signal, 1.0)
    assert not ignored


def test_emoji_counts_give_the_positive_share():
    out, _ = one(fb("emoji", text="+1", value=3), fb("emoji", text="-1", value=1))
    assert out["score"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("event", "score", "weight"),
    [
        (fb("copy", origin="behavioral"), 1.0, 0.2),
        (fb("share", origin="behavioral"), 1.0, 0.2),
        (fb("regenerate", origin="behavioral"), 0.0, 0.2),
        (fb("stop", origin="behavioral"), 0.0, 0.2),
        (fb("dwell_ms", origin="behavioral", value=30_000), 1.0, 0.2),
        (fb("dwell_ms", origin="behavioral", value=500), 0.0, 0.2),
        (fb("thanks", origin="implicit"), 1.0, 0.3),
        (fb("rephrase", origin="implicit"), 0.0, 0.3),
        (fb("complaint", origin="implicit"), 0.0, 0.3),
    ],
)
def test_implicit_and_behavioral_mappings_have_lower_weight(event, score, weight):
    out, _ = one(event)
    assert out["score"] == score and out["signal"] == "binary"
    assert out["weight"] == pytest.approx(weight)


def test_neutral_dwell_and_comment_only_give_no_signal():
    out, _ = one(fb("dwell_ms", origin="behavioral", value=5_000), fb("comment", text="Meh."))
    assert (out["score"], out["label"], out["signal"], out["weight"]) == (None, None, "none", 1.0)
    assert out["critique"] == "Meh."


def test_no_feedback_is_kept_without_signal():
    out, _ = one()
    assert out["signal"] == "none" and out["score"] is None and out["label"] is None
    assert out["target"] == "The sky is green." and out["token_spans"] == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (fb("rating", value=6, scale=5), "invalid_rating"),
        (fb("rating", value=0, scale=5), "invalid_rating"),
        (fb("rating", value=float("nan")), "invalid_rating"),
        (fb("thumbs", value=0.5), "invalid_thumbs"),
        (fb("label", text="humor"), "unknown_label"),
        (fb("label", text="quality", value=3.0), "invalid_label_value"),
        (fb("rank", value=5, scale=3), "invalid_rank"),
        (fb("span", start=3, end=999, text="x"), "span_out_of_range"),
        (fb("edit", text=""), "empty_edit"),
        (fb("teleport"), "unknown_kind"),
    ],
)
def test_invalid_events_are_ignored_and_counted(event, reason):
    out, ignored = one(event)
    assert out["signal"] == "none"
    assert ignored == {reason: 1}


def test_edit_becomes_target_with_token_spans():
    out, _ = one(fb("edit", text="The sky is blue."), fb("comment", text="Wrong colour."))
    assert out["target"] == "The sky is blue."
    assert out["signal"] == "token" and out["score"] == 0.0 and out["label"] == 0
    spans = [("The sky is green."[s["start"] : s["end"]], s["label"]) for s in out["token_spans"]]
    assert spans == [("The sky is ", 1), ("green", 0), (".", 1)]
    assert out["critique"] == "Wrong colour."


def test_newest_edit_wins():
    out, _ = one(fb("edit", text="Old fix.", ts=T2), fb("edit", text="The sky is blue.", ts=T1))
    assert out["target"] == "Old fix."


def test_span_feedback_marks_modify_and_rest_keep():
    out, _ = one(fb("span", start=11, end=16, text="factual"))
    assert out["signal"] == "token" and out["label"] == 0
    assert [(s["start"], s["end"], s["label"]) for s in out["token_spans"]] == [
        (0, 11, 1),
        (11, 16, 0),
        (16, 17, 1),
    ]
    assert out["target"] == "The sky is green."


def test_judgement_beats_the_edit_score_but_signal_stays_token():
    out, _ = one(fb("edit", text="The sky is blue."), fb("thumbs", value=1))
    assert out["score"] == 1.0 and out["signal"] == "token"


def test_explicit_beats_implicit_beats_behavioral():
    out, _ = one(
        fb("thumbs", value=0), fb("thanks", origin="implicit"), fb("copy", origin="behavioral")
    )
    assert (out["score"], out["weight"]) == (0.0, 1.0)
    out, _ = one(fb("rephrase", origin="implicit"), fb("copy", origin="behavioral"))
    assert out["score"] == 0.0 and out["weight"] == pytest.approx(0.3)


def test_conflict_latest_wins_mean_averages():
    events = (fb("thumbs", value=1, ts=T1), fb("rating", value=1, scale=5, ts=T2))
    out, _ = one(*events)
    assert out["score"] == 0.0 and out["signal"] == "scalar"  # the newer rating wins
    out, _ = one(*events, cfg=NormalizeConfig(conflict="mean"))
    assert out["score"] == 0.5
    out, _ = one(fb("thumbs", value=1), fb("rating", value=1, scale=5))  # no times: averaged
    assert out["score"] == 0.5


def test_preference_with_ref_marks_chosen_and_rejected_in_one_group():
    rows = [
        row("a", fb("preference", ref="b"), response="Blue."),
        row("b", response="Green."),
        row("c", prompt="Other?", response="Other."),
    ]
    out, _ = norm(rows)
    assert (out["a"]["score"], out["a"]["signal"]) == (1.0, "pairwise")
    assert (out["b"]["score"], out["b"]["label"], out["b"]["signal"]) == (0.0, 0, "pairwise")
    assert out["a"]["group_id"] == out["b"]["group_id"] != out["c"]["group_id"]
    assert out["c"]["signal"] == "none"


def test_preference_without_ref_rejects_every_sibling_of_its_session():
    rows = [
        row("a", fb("preference"), response="A."),
        row("b", response="B."),
        row("c", response="C."),
        row("d", response="D.", session="other"),  # same group, other session: untouched
    ]
    out, _ = norm(rows)
    assert out["a"]["score"] == 1.0
    assert out["b"]["score"] == out["c"]["score"] == 0.0
    assert out["d"]["signal"] == "none"


def test_preference_ref_outside_the_group_is_ignored_and_counted():
    rows = [row("a", fb("preference", ref="c")), row("c", prompt="Other?")]
    out, ignored = norm(rows)
    assert out["c"]["signal"] == "none"
    assert ignored == {"preference_ref_not_found": 1}


def test_group_id_follows_context_and_prompt():
    ctx = [{"role": "system", "content": "Be brief."}]
    rows = [row("a", session="s1"), row("b", session="s2"), row("c", context=ctx)]
    out, _ = norm(rows)
    assert out["a"]["group_id"] == out["b"]["group_id"] != out["c"]["group_id"]


def test_config_overrides_in_one_place():
    cfg = NormalizeConfig(label_scores={"verbose": 1.0}, kind_scores={"copy": 0.0})
    out, _ = one(fb("label", text="verbose"), cfg=cfg)
    assert out["score"] == 1.0
    out, _ = one(fb("copy", origin="behavioral"), cfg=cfg)
    assert out["score"] == 0.0
    with pytest.raises(ConfigError, match="conflict"):
        one(cfg=NormalizeConfig(conflict="vote"))


def write_clean(path: Path, rows) -> Path:
    write_table(path, to_table(rows), CLEAN, make_metadata("clean"))
    return path


def test_runner_partitions_by_group_and_matches_the_pure_core(tmp_path):
    rows = []
    for g in range(12):
        rows.append(row(f"a{g}", fb("preference"), prompt=f"Q{g}?", response="A."))
        rows.append(row(f"b{g}", prompt=f"Q{g}?", response="B."))
        rows.append(row(f"c{g}", fb("thumbs", value=g % 2), prompt=f"P{g}?"))
    src = write_clean(tmp_path / "clean.parquet", rows)
    out = tmp_path / "feedback.parquet"
    result = normalize(src, out, NormalizeConfig(partition_rows=5, batch_rows=7))
    assert result.rows_in == result.rows_out == len(rows) and not result.rejects
    assert result.extra["signals"] == {"binary": 12, "pairwise": 24}
    got = {r["interaction_id"]: {c: r[c] for c in COLUMNS} for r in read_table(out).to_pylist()}
    expected, _ = norm(rows)
    assert got == expected
    assert read_meta(out)["counts"]["rows"] == len(rows)
    assert read_table(rejects_path(out)).num_rows == 0
    assert read_table(out, schema=NORMALIZED).num_rows == len(rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clean.parquet",
        "feedback.parquet",
        "feedback.rejects.parquet",
    ]


def test_kinds_are_averaged_before_mixing_and_absent_defects_give_no_score():
    labels = [fb("label", text=name, value=0.0) for name in ("spam", "pii", "hate_speech")]
    out, _ = one(*labels)
    assert out["signal"] == "none"  # "not spam" says nothing about quality
    events = [
        fb("rank", value=2, scale=3),
        fb("label", text="quality", value=0.2),
        fb("label", text="helpfulness", value=0.4),
        fb("label", text="toxicity", value=0.0),
        fb("label", text="spam", value=0.0),
    ]
    out, _ = one(*events)
    assert out["score"] == pytest.approx((0.0 + 0.3) / 2) and out["label"] == 0
