"""Word-level diff of a response against the user's edit -> keep/modify character spans.

The response is cut into tokens (words, single punctuation marks, whitespace runs) and aligned
with the edit's tokens by :class:`difflib.SequenceMatcher`. Response tokens that the edit
replaced or deleted are *modify* (label 0); everything else is *keep* (label 1). Text the user
only inserted has no characters in the response, so it marks nothing (the row's ``target``
still carries it).

Spans are character offsets ``[start, end)`` of the response, sorted, non-overlapping, adjacent
spans never share a label, and together they cover the response exactly: tokenizer-independent
labels that the model stages project onto tokens with offset mappings.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

KEEP, MODIFY = 1, 0
_TOKEN = re.compile(r"\w+|[^\w\s]|\s+")


def tokens(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every word, punctuation mark and whitespace run of ``text``."""
    return [m.span() for m in _TOKEN.finditer(text)]


def diff_spans(response: str, edit: str) -> list[dict[str, int]]:
    """Keep/modify spans over ``response``: what the ``edit`` kept and what it changed.

    >>> spans = diff_spans("The sky is green.", "The sky is blue.")
    >>> [(s["start"], s["end"], s["label"]) for s in spans]
    [(0, 11, 1), (11, 16, 0), (16, 17, 1)]
    """
    a, b = tokens(response), tokens(edit)
    a_text, b_text = [response[s:e] for s, e in a], [edit[s:e] for s, e in b]
    # Edits are usually local: align only what lies between the common prefix and suffix.
    head = 0
    while head < min(len(a), len(b)) and a_text[head] == b_text[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a_text[-1 - tail] == b_text[-1 - tail]:
        tail += 1
    matcher = difflib.SequenceMatcher(
        None, a_text[head : len(a) - tail], b_text[head : len(b) - tail], autojunk=False
    )
    modified = [
        (a[head + i1][0], a[head + i2 - 1][1])
        for tag, i1, i2, _, _ in matcher.get_opcodes()
        if tag in ("replace", "delete")
    ]
    return spans_from_modified(len(response), modified)


def spans_from_modified(length: int, modified: Iterable[tuple[int, int]]) -> list[dict[str, int]]:
    """Cover ``[0, length)`` with spans: the (merged) ``modified`` ranges 0, the rest 1."""
    spans: list[dict[str, int]] = []
    pos = 0
    for start, end in sorted((max(0, s), min(length, e)) for s, e in modified):
        if end <= start:
            continue
        if spans and spans[-1]["label"] == MODIFY and start <= spans[-1]["end"]:
            spans[-1]["end"] = max(spans[-1]["end"], end)
            pos = max(pos, end)
            continue
        if start > pos:
            spans.append({"start": pos, "end": start, "label": KEEP})
        start = max(start, pos)
        if end > start:
            spans.append({"start": start, "end": end, "label": MODIFY})
            pos = end
    if pos < length:
        spans.append({"start": pos, "end": length, "label": KEEP})
    return spans
