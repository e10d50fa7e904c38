"""Word-level diff of response vs edit: keep/modify spans that cover the response exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lfft.data.diff import diff_spans, spans_from_modified


def spans(response: str, edit: str) -> list[tuple[str, int]]:
    return [(response[s["start"] : s["end"]], s["label"]) for s in diff_spans(response, edit)]


def assert_covers(spans_: list[dict[str, int]], length: int) -> None:
    pos = 0
    for i, s in enumerate(spans_):
        assert s["start"] == pos < s["end"], spans_
        if i:
            assert s["label"] != spans_[i - 1]["label"], "adjacent spans share a label"
        pos = s["end"]
    assert pos == length


def test_replaced_word_is_modify_rest_keep():
    assert spans("The sky is green.", "The sky is blue.") == [
        ("The sky is ", 1),
        ("green", 0),
        (".", 1),
    ]


def test_deleted_words_are_modify():
    assert spans("Paris is, I think, the capital.", "Paris is the capital.") == [
        ("Paris is", 1),
        (", I think,", 0),
        (" the capital.", 1),
    ]


def test_pure_insertion_marks_nothing_and_identical_edit_keeps_all():
    assert spans("The capital is Paris.", "The capital of France is Paris.") == [
        ("The capital is Paris.", 1)
    ]
    assert spans("Same text.", "Same text.") == [("Same text.", 1)]
    assert diff_spans("", "new text") == []


def test_spans_from_modified_merges_overlaps_and_clips():
    out = spans_from_modified(10, [(5, 8), (2, 4), (3, 6), (9, 20)])
    assert [(s["start"], s["end"], s["label"]) for s in out] == [
        (0, 2, 1),
        (2, 8, 0),
        (8, 9, 1),
        (9, 10, 0),
    ]


words = st.lists(st.sampled_from(["a", "bb", "the", "é", "1,", ".", " ", "\n", "x y"]), max_size=30)


@settings(max_examples=200, deadline=None)
@given(words, words)
def test_spans_always_cover_the_response_exactly(a, b):
    response, edit = "".join(a), "".join(b)
    out = diff_spans(response, edit)
    assert_covers(out, len(response))
    if response == edit:
        assert all(s["label"] == 1 for s in out)
