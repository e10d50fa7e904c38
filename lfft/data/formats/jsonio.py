"""JSON records from a file, streamed: JSON Lines, one JSON array, or concatenated JSON values.

Every layout the public feedback datasets ship in, plain or ``.gz`` / ``.zst``:

- **JSON Lines** (``.jsonl``, ``.ndjson``, or any file not opening with ``[`` or a lone ``{``):
  read line by line, so memory does not grow with the file; a bad line is one reject
  (``malformed_json``, ``invalid_utf8``) and reading goes on. Location ``file:line``.
- **One JSON array** (``[ {...}, {...} ]``, e.g. LLaMA-Factory, FineGrainedRLHF, Prometheus):
  decoded element by element with ``json.JSONDecoder.raw_decode`` over a sliding text buffer,
  so memory is bounded by the largest element plus one read chunk (1 MiB), not by the file.
  Location ``file[i]`` (0-based element index).
- **Concatenated values** (pretty-printed objects one after another, e.g. the PRM800K examples):
  the same decoder, without the array brackets.

Limit of the last two layouts: JSON has no record boundary to resynchronise on, so a syntax error
inside an array ends the file at that element (one ``malformed_json`` reject says where); the
elements before it are kept. A single element larger than ``MAX_ELEMENT_CHARS`` is refused. Convert
such files to JSON Lines (``jq -c '.[]'``) to get one reject per bad record instead.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from lfft.data.readers import iter_lines, open_binary

CHUNK_BYTES = 1 << 20
MAX_ELEMENT_CHARS = 256 << 20  # one array element may not exceed this (bounded memory)
LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
_WS = " \t\r\n"
_BOM = "\ufeff"


class JsonRecord(NamedTuple):
    """One record of a JSON file: its value, or the reason it could not be decoded."""

    location: str
    value: Any  # the decoded JSON value (None when ``error`` is set)
    raw: str | None  # the record's text (for rejects)
    error: str | None = None  # reject reason: malformed_json | invalid_utf8 | ...
    detail: str | None = None


def inner_suffix(path: Path) -> str:
    """The file's data suffix without a compression suffix: ``a.jsonl.gz`` -> ``.jsonl``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    while suffixes and suffixes[-1] in (".gz", ".zst", ".zstd"):
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def layout(path: Path) -> str:
    """``lines``, ``array`` or ``values`` (concatenated), from the name and the first bytes."""
    if inner_suffix(path) in LINE_SUFFIXES:
        return "lines"
    with open_binary(path) as f:
        head = f.read(CHUNK_BYTES)
    text = head.decode("utf-8", errors="replace").lstrip(_BOM + _WS)
    if text.startswith("["):
        return "array"
    # Pretty-printed objects one after another open with a lone "{" line; anything else that
    # starts with "{" is JSON Lines (also when its first line is broken or longer than the head).
    first_line = text.split("\n", 1)[0].strip()
    return "values" if first_line == "{" else "lines"


def iter_records(path: Path) -> Iterator[JsonRecord]:
    """Stream the records of a JSON / JSON Lines file (see the module docstring)."""
    path = Path(path)
    kind = layout(path)
    if kind == "lines":
        yield from _iter_lines(path)
    else:
        yield from _iter_stream(path, array=kind == "array")


def _iter_lines(path: Path) -> Iterator[JsonRecord]:
    for lineno, raw in iter_lines(path):
        loc = f"{path}:{lineno}"
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield JsonRecord(loc, None, raw.decode("utf-8", "replace"), "invalid_utf8", str(e))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            yield JsonRecord(loc, None, text, "malformed_json", str(e))
            continue
        yield JsonRecord(loc, value, text)


class _TextBuffer:
    """A sliding window over a file's decoded text: ``text[pos:]`` is what is left to parse."""

    def __init__(self, path: Path):
        self._file = open_binary(path)
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.eof = False

    def more(self, at_least: int = CHUNK_BYTES) -> None:
        """Drop the parsed prefix and append at least ``at_least`` bytes of new text."""
        self.text = self.text[self.pos :]
        self.pos = 0
        got = []
        size = 0
        while size < at_least and not self.eof:
            chunk = self._file.read(CHUNK_BYTES)
            if not chunk:
                self.eof = True
                got.append(self._decoder.decode(b"", final=True))
                break
            size += len(chunk)
            got.append(self._decoder.decode(chunk))
        self.text += "".join(got)

    def skip(self, chars: str) -> None:
        """Advance over any of ``chars``, reading more text as needed."""
        while True:
            text, pos = self.text, self.pos
            while pos < len(text) and text[pos] in chars:
                pos += 1
            self.pos = pos
            if pos < len(text) or self.eof:
                return
            self.more()

    def close(self) -> None:
        self._file.close()


def _iter_stream(path: Path, array: bool) -> Iterator[JsonRecord]:
    decoder = json.JSONDecoder()
    buf = _TextBuffer(path)
    index = 0
    try:
        buf.more()
        if buf.text.startswith(_BOM):
            buf.pos = 1
        buf.skip(_WS)
        if array:
            buf.pos += 1  # the opening '[' (checked by layout())
        while True:
            buf.skip(_WS + "," if array else _WS)
            if buf.pos >= len(buf.text):
                if array:
                    yield _broken(path, index, "", "the array is not closed with ']'")
                return
            if array and buf.text[buf.pos] == "]":
                buf.pos += 1
                buf.skip(_WS)
                if buf.pos < len(buf.text):
                    yield _broken(path, index, buf.text[buf.pos :], "text after the closing ']'")
                return
            rec = _decode_one(decoder, buf, path, index)
            yield rec
            if rec.error is not None:
                return
            index += 1
    except UnicodeDecodeError as e:
        yield JsonRecord(f"{path}[{index}]", None, None, "invalid_utf8", f"{e}; stopped reading")
    finally:
        buf.close()


def _decode_one(decoder: json.JSONDecoder, buf: _TextBuffer, path: Path, index: int) -> JsonRecord:
    """Decode the value starting at ``buf.pos``, reading more text until it is complete."""
    while True:
        start = buf.pos
        try:
            value, end = decoder.raw_decode(buf.text, start)
        except json.JSONDecodeError as e:
            # An error before the buffer's end (other than an open string) cannot be fixed by
            # more text: the element is malformed. Otherwise the element may be cut off.
            incomplete = e.msg.startswith("Unterminated string") or e.pos + 8 >= len(buf.text)
            if buf.eof or not incomplete:
                return _broken(path, index, buf.text[start : start + 2_000], str(e))
            if len(buf.text) - start > MAX_ELEMENT_CHARS:
                return _broken(path, index, buf.text[start : start + 2_000], "element too large")
            buf.more(at_least=max(CHUNK_BYTES, len(buf.text) - start))
            continue
        if end >= len(buf.text) and not buf.eof:
            buf.more()  # a number at the very end could go on in the next chunk
            continue
        buf.pos = end
        return JsonRecord(f"{path}[{index}]", value, buf.text[start:end])


def _broken(path: Path, index: int, raw: str, why: str) -> JsonRecord:
    return JsonRecord(
        f"{path}[{index}]", None, raw[:2_000], "malformed_json", f"{why}; stopped reading the file"
    )
