"""What ``lfft online`` has consumed: files, their identity, and byte offsets of complete lines.

The state file ``WORK/state.json`` is rewritten atomically (temporary file + rename) and is the
commit point of a round: lines are first copied to ``WORK/consumed/rNNNN.jsonl``, then the state
that moves the offsets past them is written. A kill before the state write leaves the offsets where
they were, so the same lines are consumed again (the stale part file is overwritten); a kill after
it leaves the part and the offsets in agreement. Each line is consumed exactly once.

File identity. A file is known by its path (relative to the logs folder), its device and inode,
and a hash of its first ``min(offset, 4 KiB)`` bytes. A file whose head no longer matches, or
that is shorter than its offset, was truncated or replaced: it is read again from byte 0. A path
never seen before whose device+inode and head match a known file is that file renamed (log
rotation by rename): it continues at the known offset. Only complete lines (ending in ``\\n``)
are consumed; a partial last line waits for the next round.

Compressed files (``.gz``, ``.zst``) cannot be appended to line by line: they are consumed whole,
once they decompress without error (a file still being written fails and waits); later changes
to them are ignored. A compressed file whose decompressed start matches a plain file that has
vanished since the last round is that file rotated and compressed: only the lines past the
plain file's offset are consumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lfft.data.readers import compression, open_binary
from lfft.errors import LfftError
from lfft.io import atomic_path, write_json_atomic

STATE_VERSION = 1
HEAD_BYTES = 4096
LOG_MARKS = (".jsonl", ".ndjson")
_CHUNK = 1 << 20


@dataclass
class FileState:
    """One log file: identity and how far it has been consumed."""

    dev: int
    inode: int
    offset: int = 0  # bytes consumed (always just after a "\n", or the size of a whole file)
    head: str = ""  # hash of the first head_len bytes
    head_len: int = 0
    lines: int = 0  # lines consumed so far
    compressed: bool = False


@dataclass
class State:
    """``round``: the last round whose lines are committed to the consumed log; ``completed``:
    the last round fully processed (a round with ``round > completed`` is finished first)."""

    round: int = 0
    completed: int = 0
    files: dict[str, FileState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "round": self.round,
            "completed": self.completed,
            "files": {k: asdict(v) for k, v in sorted(self.files.items())},
        }


def load_state(path: str | os.PathLike) -> State:
    """Read ``state.json`` (an empty state if there is none)."""
    import json

    path = Path(path)
    if not path.exists():
        return State()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {k: FileState(**v) for k, v in data.get("files", {}).items()}
        return State(data["round"], data["completed"], files)
    except (ValueError, KeyError, TypeError) as e:
        raise LfftError(
            f"{path}: unreadable online state ({e}); restore it or start anew"
        ) from None


def save_state(path: str | os.PathLike, state: State) -> None:
    """Write ``state.json`` atomically."""
    write_json_atomic(path, state.to_json())


@dataclass
class Consumed:
    """What one scan found: the new state of every file, and line/byte counts per file."""

    files: dict[str, FileState]
    lines: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    waiting: list[str] = field(default_factory=list)  # compressed files not complete yet

    @property
    def total_lines(self) -> int:
        return sum(self.lines.values())


def log_files(logs: Path) -> list[Path]:
    """The log files under ``logs`` (recursively): names containing ``.jsonl`` or ``.ndjson``
    (so rotated ``app.jsonl.1`` and ``app.jsonl.2.gz`` count), skipping hidden and
    ``_``-prefixed names (writers' temporary files)."""
    if not logs.is_dir():
        raise LfftError(f"{logs}: no such folder (the --logs folder new logs arrive in)")
    found = []
    for path in logs.rglob("*"):
        if any(p.startswith((".", "_")) for p in path.relative_to(logs).parts):
            continue
        if path.is_file() and any(s in path.name for s in LOG_MARKS):
            found.append(path)
    return sorted(found)


def consume(logs: Path, known: dict[str, FileState], part: Path) -> Consumed:
    """Copy every complete line not consumed yet from ``logs`` into ``part`` (atomically);
    return the files' new state. ``known`` is not modified; nothing is committed here.

    Plain files are read first, so that a compressed file can be recognised as a rotated copy
    of a plain file that has vanished (its decompressed head matches): it then continues at
    that file's offset instead of consuming its lines twice.
    """
    result = Consumed({})
    by_inode = {(f.dev, f.inode): name for name, f in known.items()}
    matched: set[str] = set()
    paths = sorted(log_files(logs), key=lambda p: (_is_compressed(p), p))
    with atomic_path(part) as tmp, open(tmp, "wb") as out:
        for path in paths:
            name = path.relative_to(logs).as_posix()
            st = path.stat()
            prev_name, prev = _identify(path, name, st, known, by_inode)
            if prev_name is not None:
                matched.add(prev_name)
            if not _is_compressed(path):
                result.files[name] = _consume_plain(path, st, prev, out, result, name)
            elif prev is not None and prev.compressed:
                result.files[name] = prev
            else:
                unmatched = {k: v for k, v in known.items() if k not in matched}
                state = _consume_compressed(path, st, unmatched, out, result, name)
                if state is not None:
                    result.files[name] = state
    return result


def _identify(
    path: Path,
    name: str,
    st: os.stat_result,
    known: dict[str, FileState],
    by_inode: dict[tuple[int, int], str],
) -> tuple[str | None, FileState | None]:
    """The known state of this file and its known name: the same path whose head still matches
    (the inode may differ: a copy tool that replaces the file), or a file with the same
    device+inode and head under another name (renamed). ``(None, None)`` when it is new or was
    truncated or rewritten."""
    prev = known.get(name)
    if prev is not None and _same_head(path, st, prev):
        return name, prev
    other = by_inode.get((st.st_dev, st.st_ino))
    if other is not None and other != name and _same_head(path, st, known[other]):
        return other, known[other]
    return None, None


def _same_head(path: Path, st: os.stat_result, prev: FileState) -> bool:
    if not prev.compressed and st.st_size < prev.offset:
        return False
    return _head_hash(path, prev.head_len) == prev.head


def _consume_plain(
    path: Path,
    st: os.stat_result,
    prev: FileState | None,
    out: BinaryIO,
    result: Consumed,
    name: str,
) -> FileState:
    start = prev.offset if prev else 0
    with open(path, "rb") as f:
        end = _last_newline_end(f, start, st.st_size)
        f.seek(start)
        n_lines = _copy_range(f, out, end - start)
    _count(result, name, n_lines, end - start)
    head_len = min(end, HEAD_BYTES)
    return FileState(
        dev=st.st_dev,
        inode=st.st_ino,
        offset=end,
        head=_head_hash(path, head_len),
        head_len=head_len,
        lines=(prev.lines if prev else 0) + n_lines,
    )


def _consume_compressed(
    path: Path,
    st: os.stat_result,
    vanished: dict[str, FileState],
    out: BinaryIO,
    result: Consumed,
    name: str,
) -> FileState | None:
    try:
        data = _decompress(path)
    except (EOFError, OSError, ValueError, zlib.error, LfftError):
        result.waiting.append(name)
        return None
    skip = 0
    for prev in vanished.values():
        if prev.compressed or prev.offset > len(data):
            continue
        if _hash(data[: prev.head_len]) == prev.head:
            skip = max(skip, prev.offset)
    data = data[skip:]
    if data and not data.endswith(b"\n"):
        data += b"\n"
    out.write(data)
    n_lines = data.count(b"\n")
    _count(result, name, n_lines, len(data))
    head_len = min(st.st_size, HEAD_BYTES)
    head = _head_hash(path, head_len)
    return FileState(st.st_dev, st.st_ino, st.st_size, head, head_len, n_lines, True)


def _count(result: Consumed, name: str, lines: int, size: int) -> None:
    if lines:
        result.lines[name] = lines
        result.bytes += size


def _is_compressed(path: Path) -> bool:
    return compression(path) is not None


def _decompress(path: Path) -> bytes:
    with open_binary(path) as f:
        return f.read()


def _last_newline_end(f: BinaryIO, start: int, size: int) -> int:
    """The offset just after the last ``\\n`` in ``[start, size)``, or ``start`` if none."""
    pos = size
    while pos > start:
        lo = max(start, pos - _CHUNK)
        f.seek(lo)
        chunk = f.read(pos - lo)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        pos = lo
    return start


def _copy_range(src: BinaryIO, dst: BinaryIO, length: int) -> int:
    lines = 0
    while length > 0:
        chunk = src.read(min(_CHUNK, length))
        if not chunk:
            break
        dst.write(chunk)
        lines += chunk.count(b"\n")
        length -= len(chunk)
    return lines


def _head_hash(path: Path, n: int) -> str:
    if not n:
        return _hash(b"")
    with open(path, "rb") as f:
        return _hash(f.read(n))


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@contextlib.contextmanager
def lock(root: Path) -> Iterator[None]:
    """One ``lfft online`` per work folder: a ``flock`` on ``root/.lock``, released by the
    kernel when the process dies (a crash leaves no stale lock)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LfftError(f"{root}: another lfft online is running on it") from None
        yield
