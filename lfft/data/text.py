"""Text repair for the clean stage: Unicode NFC, line ends and control characters.

Vectorized with Arrow compute (RE2), so a whole column is fixed in C++:

- Unicode NFC (``é`` typed as ``e`` + combining accent becomes one character, as most
  tokenizers and string comparisons expect);
- ``\\r\\n`` and lone ``\\r`` become ``\\n``;
- C0/C1 control characters other than tab and newline are removed, as is the byte-order mark
  (U+FEFF) that editors leave at the start of pasted text. Zero-width joiners and spaces stay:
  emoji sequences and some scripts need them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

_CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x{9F}\x{FEFF}]"
_LINE_END = r"\r\n?"


def fix_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Fix every string of a string array (nulls stay null)."""
    if len(arr) == 0:
        return arr
    out = pc.utf8_normalize(arr, form="NFC")
    out = pc.replace_substring_regex(out, _LINE_END, "\n")
    return pc.replace_substring_regex(out, _CONTROL, "")


def fix_text(text: str) -> str:
    """Fix one string (the same rules as :func:`fix_array`)."""
    return fix_array(pa.array([text], pa.string()))[0].as_py()


def map_list_field(
    arr: pa.Array | pa.ChunkedArray, name: str, fn: Callable[[pa.Array], pa.Array]
) -> pa.Array:
    """Apply ``fn`` to field ``name`` of a ``list<struct>`` column (e.g. ``context.content``)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    flat = arr.flatten()
    children = [flat.field(i) for i in range(flat.type.num_fields)]
    idx = flat.type.get_field_index(name)
    children[idx] = fn(children[idx])
    fields = [flat.type.field(i) for i in range(flat.type.num_fields)]
    values = pa.StructArray.from_arrays(children, fields=fields)
    offsets = pc.subtract(arr.offsets, arr.offsets[0])
    mask = arr.is_null() if arr.null_count else None
    return pa.ListArray.from_arrays(offsets, values, type=arr.type, mask=mask)


def context_strings(context: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One string per row holding every turn of a ``list<{role, content}>`` column.

    Separators are ASCII control characters, which :func:`fix_array` removes from real text, so
    two different contexts never give the same string.
    """
    if isinstance(context, pa.ChunkedArray):
        context = context.combine_chunks()
    flat = context.flatten()
    turns = pc.binary_join_element_wise(
        pc.fill_null(flat.field("role"), ""), pc.fill_null(flat.field("content"), ""), "\x1f"
    )
    offsets = pc.subtract(context.offsets, context.offsets[0])
    lists = pa.ListArray.from_arrays(offsets, turns)
    return pc.fill_null(pc.binary_join(lists, "\x1e"), "")


def join_columns(*columns: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Row-wise join of string columns with an ASCII separator (nulls as empty strings)."""
    cols = [pc.fill_null(c, "") for c in columns]
    return pc.binary_join_element_wise(*cols, "\x1d")


def remap_span(old: str, new: str, start: int, end: int) -> tuple[int, int]:
    """Map a ``[start, end)`` character span of ``old`` onto ``new`` after text edits.

    A span edge inside replaced text widens to the whole replacement, so the span keeps covering
    the same words (``call 555-0132`` marked whole stays marked as ``call <PHONE>``).
    """
    if old == new:
        return start, end
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    new_start, new_end = 0, len(new)
    for tag, i1, i2, j1, j2 in ops:
        if i1 <= start < i2:
            new_start = j1 + start - i1 if tag == "equal" else j1
        if i1 < end <= i2:
            new_end = j1 + end - i1 if tag == "equal" else j2
    return new_start, max(new_start, new_end)
