"""The capture log: lfft-events lines appended whole, in files ``lfft online --logs`` reads.

Each event is one ``os.write`` of one complete line to a file opened with ``O_APPEND``: the
kernel appends it at the end in one piece, so concurrent writers never interleave and a crash
(even ``kill -9``) leaves no torn line; at worst a line is missing, never half-written.
Rotation starts a *new* file (``serve-YYYYmmddTHHMMSS-PID-N.jsonl``) when the current one is
larger than ``rotate_bytes`` or older than ``rotate_seconds``; nothing is renamed, so ``lfft
online`` sees plain new files (docs/online.md, "What is consumed").

Conversation identity (:mod:`lfft.serve.convo`) needs to know every message logged so far:
:func:`replay` reads the log folder back at start-up.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lfft.data.events import EventError, parse_event

PREFIX = "serve-"


def new_id(prefix: str) -> str:
    """A random id (``prefix`` + 24 hex digits): message, session and event ids."""
    return prefix + uuid.uuid4().hex[:24]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventLog:
    """Appends events (dicts) as lines to ``folder``; thread-safe, one write per line."""

    def __init__(self, folder: Path, rotate_bytes: int = 64 << 20, rotate_seconds: float = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._opened = 0.0
        self._n = 0
        self.path: Path | None = None

    def _open(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._n += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.path = self.folder / f"{PREFIX}{stamp}-{os.getpid()}-{self._n}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = os.fstat(self._fd).st_size
        self._opened = time.monotonic()

    def _due(self, extra: int) -> bool:
        if self._fd is None:
            return True
        if self._size and self._size + extra > self.rotate_bytes:
            return True
        return bool(self.rotate_seconds) and time.monotonic() - self._opened > self.rotate_seconds

    def append(self, events: list[dict[str, Any]]) -> None:
        """Write each event as one line (each line one ``os.write``)."""
        lines = [(json.dumps(e, ensure_ascii=False) + "\n").encode("utf-8") for e in events]
        with self._lock:
            for line in lines:
                if self._due(len(line)):
                    self._open()
                assert self._fd is not None
                written = os.write(self._fd, line)
                if written != len(line):  # only on a full disk: say so rather than tear a line
                    raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
                self._size += written

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def replay(folder: Path) -> Iterator[dict[str, Any]]:
    """Every valid message event of the log files under ``folder`` (for the identity index);
    lines that do not parse are skipped here (collect reports them)."""
    from lfft.online_state import LOG_MARKS

    if not folder.exists():
        return
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or not any(m in path.name for m in LOG_MARKS):
            continue
        if path.name.endswith((".gz", ".zst")):
            continue  # rotated and compressed by an outside tool: its messages are old
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    continue
                try:
                    obj = json.loads(line)
                    if type(obj) is dict and obj.get("event") == "message":
                        parse_event(obj, 0, 0)
                        yield obj
                except (ValueError, EventError):
                    continue
