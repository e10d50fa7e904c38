"""``lfft synth``: realistic synthetic lfft-events logs, for trying lfft and for benchmarks.

    lfft synth --out logs/ --sessions 1000 --files 4 --seed 0

Sessions are multi-turn conversations (system prompts, several users and models) with every event
kind: regenerated answers with preferences, thumbs in every encoding, ratings on 5 and 10 point
scales, labels, comments, edits, behavioural actions with dwell times, and user replies that thank,
complain or rephrase (implicit feedback). Events arrive out of order: some feedback precedes its
message, some lands in a later file, and some deliveries are duplicated. About ``fault_rate`` of
the lines are faulty in every way ``collect`` rejects, and some texts carry personal data
(emails, phone numbers, card numbers, IPs, tokens in URLs) and odd Unicode for ``clean``.

Output is deterministic by seed and streamed: sessions are written as they are generated, file
``k`` holding the ``k``-th slice of sessions in time, each file written atomically.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from lfft.config import SynthConfig
from lfft.data.synth_text import (
    BODIES,
    CLOSERS,
    COMMENTS,
    COMPLAINTS,
    FOLLOW_UPS,
    LABELS,
    MODELS,
    ODD_TEXT,
    OPENERS,
    PII,
    QUESTIONS,
    REPHRASES,
    SUBJECTS,
    SYSTEMS,
    THANKS,
    THUMBS,
)
from lfft.errors import ConfigError
from lfft.io import atomic_path
from lfft.report import StageResult

START = 1_714_521_600  # 2024-05-01T00:00:00Z: the first session starts here
SESSION_GAP = 37  # mean seconds between session starts
_FLUSH = 4096  # lines buffered per file before a write
_SUFFIX = {"none": ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}


def synth(out_dir: Path, cfg: SynthConfig) -> StageResult:
    """Write ``cfg.sessions`` synthetic sessions as lfft-events files under ``out_dir``."""
    t0 = time.perf_counter()
    _check(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"events-{k:03d}{_SUFFIX[cfg.compress]}" for k in range(cfg.files)]
    gen = _Generator(cfg)
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(out_dir / name)) for name in names]
        sinks = [_Sink(_open(tmp, cfg.compress)) for tmp in tmps]
        try:
            for i in range(cfg.sessions):
                k = i * cfg.files // max(cfg.sessions, 1)
                now, late = gen.session(i)
                sinks[k].extend(now)
                if late:
                    sinks[min(cfg.files - 1, k + 1 + gen.rng.randrange(2))].extend(late)
        finally:
            for s in sinks:
                s.close()
    _remove_stale(out_dir, set(names))
    stats = gen.stats
    return StageResult(
        stage="synth",
        rows_out=stats["lines"],
        seconds=time.perf_counter() - t0,
        outputs={"logs": out_dir},
        extra={
            "sessions": cfg.sessions,
            "files": len(names),
            "bytes": sum(s.bytes for s in sinks),
            **{k: v for k, v in stats.items() if k != "lines"},
        },
    )


def _check(cfg: SynthConfig) -> None:
    if cfg.sessions < 0:
        raise ConfigError(f"synth: sessions must be >= 0, got {cfg.sessions}")
    if cfg.files < 1:
        raise ConfigError(f"synth: files must be >= 1, got {cfg.files}")
    if not 0 <= cfg.fault_rate <= 0.5:
        raise ConfigError(f"synth: fault_rate must be in [0, 0.5], got {cfg.fault_rate}")
    if cfg.compress not in _SUFFIX:
        raise ConfigError(f"synth: compress must be none, gzip or zstd, got {cfg.compress!r}")


def _open(path: Path, compress: str) -> BinaryIO:
    if compress == "gzip":
        return gzip.open(path, "wb", compresslevel=3)
    if compress == "zstd":
        return pa.CompressedOutputStream(str(path), "zstd")
    return open(path, "wb")


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Drop ``events-*`` files of an earlier run with more files (they would be read too)."""
    for p in out_dir.glob("events-*.jsonl*"):
        if p.name not in keep and p.is_file():
            p.unlink()


class _Sink:
    """Buffered line writer."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.buf: list[bytes] = []
        self.bytes = 0

    def extend(self, lines: list[bytes]) -> None:
        self.buf.extend(lines)
        if len(self.buf) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            data = b"\n".join(self.buf) + b"\n"
            self.f.write(data)
            self.bytes += len(data)
            self.buf = []

    def close(self) -> None:
        self.flush()
        self.f.close()


_dumps: Callable[[dict], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _Random(random.Random):
    """``choice``/``randrange``/``randint`` from ``random()`` alone: several times faster than
    the stdlib's, and the same sequence on every Python version."""

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None) -> int:  # type: ignore[override]
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def randint(self, a: int, b: int) -> int:
        return self.randrange(a, b + 1)


class _Generator:
    """Makes one session's lines at a time from one seeded random stream."""

    def __init__(self, cfg: SynthConfig):
        self.cfg = cfg
        self.rng = _Random(cfg.seed)
        self.n_users = max(5, cfg.sessions // 4)
        self.stats = dict.fromkeys(
            ("lines", "faulty", "duplicates", "late_feedback", "early_feedback"), 0
        )

    # -- one session ----------------------------------------------------------------------------

    def session(self, i: int) -> tuple[list[bytes], list[bytes]]:
        """(lines for this session's file, lines arriving late in a later file)."""
        rng = self.rng
        self.sid = f"sess-{i:07d}"
        self.user = f"user-{rng.randrange(self.n_users):05d}"
        self.model = rng.choice(MODELS)
        self.t = START + i * SESSION_GAP + rng.randrange(SESSION_GAP)
        self.ts_style = rng.randrange(3)
        self.n_msg = 0
        self.lines: list[bytes] = []
        self.late: list[bytes] = []
        self.contents: dict[str, str] = {}
        parent = None
        if rng.random() < 0.5:
            parent = self.message(None, "system", rng.choice(SYSTEMS))
        subject = rng.choice(SUBJECTS)
        question = self.question(subject)
        for turn in range(1 + min(4, int(rng.expovariate(0.8)))):
            user_msg = self.message(parent, "user", question)
            answer = self.answer(user_msg, subject)
            parent, subject, question = answer, *self.next_turn(subject, question, turn)
        if rng.random() < 0.25:  # the user's last word: thanks or a complaint, never answered
            last = rng.choice(THANKS if rng.random() < 0.7 else COMPLAINTS)
            self.message(parent, "user", last)
        self.faults()
        self.stats["lines"] += len(self.lines) + len(self.late)
        return self.lines, self.late

    def question(self, subject: str) -> str:
        rng = self.rng
        q = rng.choice(QUESTIONS).format(s=subject)
        if rng.random() < 0.06:
            q = f"{q} By the way, {self.pii()}."
        if rng.random() < 0.02:
            q = f"{q} ({rng.choice(ODD_TEXT)})"
        return q

    def pii(self) -> str:
        rng = self.rng
        return rng.choice(PII).format(
            u=self.user.replace("-", "."),
            n=rng.randrange(10_000),
            a=rng.randrange(256),
            b=rng.randrange(1, 255),
        )

    def next_turn(self, subject: str, question: str, turn: int) -> tuple[str, str]:
        """The next user message after an answer: a rephrase, thanks, complaint or follow-up."""
        rng = self.rng
        r = rng.random()
        if r < 0.12:
            return subject, rng.choice(REPHRASES).format(q=question, s=subject)
        if r < 0.24:
            return subject, rng.choice(THANKS) + " " + rng.choice(FOLLOW_UPS).format(s=subject)
        if r < 0.32:
            return subject, rng.choice(COMPLAINTS) + " " + question
        new = rng.choice(SUBJECTS)
        return new, rng.choice(FOLLOW_UPS + QUESTIONS).format(s=new)

    def answer(self, prompt_id: str, subject: str) -> str:
        """One assistant answer (sometimes regenerated), with its feedback; returns the answer
        the conversation continues from."""
        rng = self.rng
        first = self.message(prompt_id, "assistant", self.response(subject))
        self.feedback(first)
        if rng.random() >= 0.1:
            return first
        self.action(first, "regenerate")
        second = self.message(prompt_id, "assistant", self.response(subject))
        self.feedback(second)
        if rng.random() < 0.7:
            chosen, other = (second, first) if rng.random() < 0.75 else (first, second)
            value = None if rng.random() < 0.15 else other
            self.emit(
                {"event": "feedback", "kind": "preference", "message_id": chosen, "value": value},
                self.t + 5,
            )
        return second

    def response(self, subject: str) -> str:
        rng = self.rng
        parts = [rng.choice(OPENERS)]
        for _ in range(1 + rng.randrange(3)):
            parts.append(rng.choice(BODIES).format(s=subject, S=subject[0].upper() + subject[1:]))
        parts.append(rng.choice(CLOSERS))
        if rng.random() < 0.01:
            parts.append(rng.choice(ODD_TEXT))
        return " ".join(p for p in parts if p)

    def feedback(self, mid: str) -> None:
        """Explicit and behavioural feedback on one answer, each with its own probability."""
        rng = self.rng
        if rng.random() < 0.3:
            up, down = rng.choice(THUMBS)
            self.fb("thumbs", mid, up if rng.random() < 0.65 else down)
        if rng.random() < 0.15:
            if rng.random() < 0.6:
                self.fb(
                    "rating", mid, rng.randint(1, 5), **({} if rng.random() < 0.5 else {"scale": 5})
                )
            else:
                self.fb("rating", mid, rng.randint(1, 10), scale=10)
        if rng.random() < 0.08:
            self.fb("label", mid, rng.choice(LABELS))
        if rng.random() < 0.06:
            self.fb("comment", mid, rng.choice(COMMENTS))
        if rng.random() < 0.04:
            self.fb("edit", mid, self.edit(mid))
        for kind, p in (("copy", 0.1), ("click", 0.03), ("share", 0.02), ("stop", 0.02)):
            if rng.random() < p:
                self.action(mid, kind)
        if rng.random() < 0.2:
            self.action(mid, "dwell_ms", rng.randrange(500, 120_000))

    def edit(self, mid: str) -> str:
        text = self.contents[mid]
        words = text.split()
        k = self.rng.randrange(len(words))
        words[k] = self.rng.choice(["clearly", "roughly", "precisely", "[fixed]", "actually"])
        return " ".join(words) + " (edited)"

    def fb(self, kind: str, mid: str, value, **extra) -> None:
        self.emit(
            {"event": "feedback", "kind": kind, "message_id": mid, "value": value, **extra},
            self.t + self.rng.randrange(2, 30),
        )

    def action(self, mid: str, kind: str, value=None) -> None:
        event = {"event": "action", "kind": kind, "message_id": mid}
        if value is not None:
            event["value"] = value
        self.emit(event, self.t + self.rng.randrange(1, 60))

    # -- lines ----------------------------------------------------------------------------------

    def message(self, parent: str | None, role: str, content: str) -> str:
        self.n_msg += 1
        mid = f"m{self.n_msg}"
        self.contents[mid] = content
        self.t += self.rng.randrange(2, 40)
        event = {
            "event": "message",
            "message_id": mid,
            "parent_id": parent,
            "role": role,
            "content": content,
        }
        if role == "user":
            event["user_id"] = self.user
        elif role == "assistant":
            event["model"] = self.model
        self.emit(event, self.t)
        return mid

    def emit(self, event: dict, ts: int) -> None:
        """Serialize one event into this session's lines (or a later file, or before its
        message), sometimes delivered twice."""
        rng = self.rng
        event["session_id"] = self.sid
        event["ts"] = self.fmt_ts(ts)
        if rng.random() < 0.5:
            event["id"] = f"{self.sid}-e{len(self.lines) + len(self.late)}"
        line = _dumps(event).encode()
        is_fb = event["event"] != "message"
        r = rng.random()
        if is_fb and r < 0.08:
            event["ts"] = self.fmt_ts(ts + rng.randrange(3600, 7 * 86400))
            line = _dumps(event).encode()
            self.late.append(line)
            self.stats["late_feedback"] += 1
        elif is_fb and r < 0.12 and self.lines:
            self.lines.insert(rng.randrange(len(self.lines)), line)
            self.stats["early_feedback"] += 1
        else:
            self.lines.append(line)
        if rng.random() < 0.008:
            self.lines.append(line)  # the same delivery twice, byte for byte
            self.stats["duplicates"] += 1

    def fmt_ts(self, t: int):
        if self.ts_style == 0:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.ts_style == 1:
            return t
        return t * 1000 + self.rng.randrange(1000)

    # -- faults ---------------------------------------------------------------------------------

    def faults(self) -> None:
        """Add about ``fault_rate`` faulty lines per line, of every kind collect rejects."""
        rng = self.rng
        n = len(self.lines) + len(self.late)
        expected = self.cfg.fault_rate * n
        k = int(expected) + (rng.random() < expected - int(expected))
        for j in range(k):
            self.n_fault = j
            line = rng.choice(FAULTS)(self)
            self.lines.insert(rng.randrange(len(self.lines) + 1), line)
        self.stats["faulty"] += k

    def _valid_line(self) -> bytes:
        return self.rng.choice(self.lines) if self.lines else b'{"event":"message"}'

    def _event(self, **fields) -> bytes:
        """A faulty event with an id of its own (two faults are never one duplicated event)."""
        event = {"session_id": self.sid, "ts": self.fmt_ts(self.t), **fields}
        event["id"] = f"{self.sid}-fault{self.n_fault}"
        return _dumps(event).encode("utf-8", "surrogateescape")

    def _assistant(self) -> str:
        return f"m{self.rng.randrange(1, self.n_msg + 1)}"


FAULTS: list[Callable[[_Generator], bytes]] = [
    lambda g: g._valid_line()[: g.rng.randrange(1, 40)],  # truncated: malformed JSON
    lambda g: g._event(
        event="message", message_id="mx", parent_id="m1", role="user", content="caf\udce9"
    ),  # not UTF-8 (a lone byte 0xe9)
    lambda g: g._event(event="heartbeat"),  # unknown event
    lambda g: g._event(event="feedback", kind="emoji", message_id=g._assistant(), value=":)"),
    lambda g: g._event(event="action", kind="hover", message_id=g._assistant()),
    lambda g: g._event(event="feedback", kind="rating", message_id=g._assistant(), value="five"),
    lambda g: g._event(event="feedback", kind="thumbs", message_id=g._assistant(), value="maybe"),
    lambda g: g._event(event="feedback", kind="thumbs", message_id="m999", value="up"),  # orphan
    lambda g: _dumps(
        {"event": "feedback", "kind": "thumbs", "message_id": "m1", "value": "up"}
    ).encode(),  # missing session_id
    lambda g: g._event(
        event="message", message_id="mt", parent_id="m1", role="tool", content="{}"
    ),  # unknown role
    lambda g: g._event(
        event="message", message_id="mc", parent_id="m1", role="user", content=42
    ),  # wrong type
    lambda g: g._event(
        event="message",
        message_id=f"mlost{g.n_fault}",
        parent_id="gone",
        role="assistant",
        content="An answer to a question that never arrived.",
    ),  # missing parent
    lambda g: g._event(
        event="feedback", kind="rating", message_id=g._assistant(), value=4, ts="yesterday"
    ),  # bad timestamp
    lambda g: b"[1, 2, 3]",  # JSON, but not an object
]
