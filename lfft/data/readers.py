"""Opening raw log inputs: files and folders, plain, gzip or zstd, line by line.

``expand_inputs`` turns the command line's files and folders into a sorted list of data files;
``open_binary`` opens one (decompressing ``.gz`` / ``.zst`` on the fly, zstd through pyarrow so no
extra dependency); ``iter_lines`` yields ``(line_number, bytes)`` with 1-based numbers, the
newline stripped, so every reject can say ``file:line``; ``iter_line_blocks`` yields the raw lines
in lists, for loops where a generator step per line would show.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from lfft.data import remote
from lfft.errors import LfftError

# File name endings a folder is searched for (each also with .gz or .zst).
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
COMPRESSED = (".gz", ".zst", ".zstd")
_READ_BUFFER = 1 << 20


def is_data_file(path: Path) -> bool:
    """Whether a file in a folder looks like log data (by name; hidden files never do)."""
    name = path.name.lower()
    if name.startswith((".", "_")):
        return False
    for comp in COMPRESSED:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    return name.endswith(DATA_SUFFIXES)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, folders expanded (recursively, sorted) to their data files.

    Raises :class:`LfftError` for a path that does not exist or a folder without data files.
    """
    files: list[Path] = []
    for path in map(Path, inputs):
        if remote.is_url(path):  # s3:// gs:// az:// (lfft.data.remote)
            files.extend(remote.expand(path, is_data_file))
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and is_data_file(p)
                and not any(s.startswith(".") for s in p.relative_to(path).parts)
            )
            if not found:
                raise LfftError(
                    f"{path}: folder holds no log files (looked for {', '.join(DATA_SUFFIXES)}, "
                    "optionally .gz/.zst)"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise LfftError(f"{path}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def compression(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    return None


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing gzip/zstd by its name."""
    comp = compression(path)
    if remote.is_url(path):  # s3:// gs:// az:// (lfft.data.remote)
        return remote.open_binary(path, comp)
    try:
        if comp == "gzip":
            return gzip.open(path, "rb")
        if comp == "zstd":
            stream = pa.CompressedInputStream(pa.OSFile(os.fspath(path)), "zstd")
            return io.BufferedReader(stream, _READ_BUFFER)
        return open(path, "rb", buffering=_READ_BUFFER)
    except OSError as e:
        raise LfftError(f"{path}: cannot open ({e.strerror or e})") from None


READ_ERRORS = (OSError, EOFError, zlib.error, pa.ArrowInvalid)  # a corrupt or truncated stream


def iter_line_blocks(path: Path, block_bytes: int = _READ_BUFFER) -> Iterator[list[bytes]]:
    """Yield the lines of ``path`` in lists of about ``block_bytes``, each line as read (with
    its ``\n`` or ``\r\n``, see :func:`strip_eol`): the fast path for a loop over millions of
    lines. A corrupt compressed stream is an :class:`LfftError` naming the file."""
    n = 0
    with open_binary(path) as f:
        while True:
            try:
                block = f.readlines(block_bytes)
            except READ_ERRORS as e:
                raise LfftError(
                    f"{path}: unreadable after line {n} ({e}); the file is truncated or corrupt"
                ) from None
            if not block:
                return
            n += len(block)
            yield block


def strip_eol(line: bytes) -> bytes:
    """``line`` without its ending ``\n`` or ``\r\n``."""
    if line.endswith(b"\n"):
        return line[:-2] if line.endswith(b"\r\n") else line[:-1]
    return line


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, line)`` for every line of ``path`` (1-based, newline stripped).

    A final line without a newline is still a line; a trailing newline does not start one.
    A corrupt compressed stream is an :class:`LfftError` naming the file and line.
    """
    n = 0
    for block in iter_line_blocks(path):
        for line in block:
            n += 1
            yield n, strip_eol(line)
