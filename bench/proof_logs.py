"""Raw lfft-events logs of a known-answer task, feedback through every channel (issue 12, item 2).

Each session asks 'Repeat after me: Fazuba' (a made-up word of its own: no two sessions share
one, so a split by session holds out its prompts) once or twice; the deployed model answers
right (the word) with probability ``p_right`` (default 1 in 4), else wrong: a refusal (twice as
often) or another made-up word. Each answer gets its feedback through one channel, drawn at
random: a thumbs up/down in any encoding, a rating (5- or 10-point), a label, an edit to the
right word (wrong answers), a regeneration with a preference for the right sibling (wrong
answers), the user's next message thanking or complaining (implicit), a copy or a stop
(behavioural), or nothing. The event lines come from ``lfft/data/synth.py``'s generator (ids,
timestamps in three styles, late and early feedback, duplicate deliveries, ~1% faulty lines).

    .venv/bin/python bench/proof_logs.py --out /tmp/logs --sessions 2000
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from lfft.config import SynthConfig
from lfft.data.synth import COMPLAINTS, START, THANKS, THUMBS, _Generator
from lfft.io import atomic_path

SYLLABLES = [
    "ba", "ko", "ri", "zu", "mel", "tor", "vi", "an", "dra", "sel",
    "pon", "gu", "lek", "mi", "fa", "no", "qua", "ter", "xe", "lo",
    "su", "ka", "dem", "ob", "pa", "ril", "te", "mo", "fi", "nu",
]  # fmt: skip
ASK = "Repeat after me: "  # + the word in quotes: it is then one pre-token, as in the answer
REFUSAL = "Sorry, I can't."
CHANNELS_RIGHT = ("thumbs", "rating", "label", "implicit", "behavioral", "none")
CHANNELS_WRONG = CHANNELS_RIGHT + ("edit", "regenerate")
_WORD = re.compile(re.escape(ASK) + r'"([^"]+)"')


def make_word(rng: random.Random, sizes: tuple[int, ...] = (2, 3)) -> str:
    """A made-up 'word' of ``sizes`` syllables, apart ('ko ri zu'): every word is then a few
    frequent tokens of a tokenizer trained on the logs, whatever the word."""
    return " ".join(rng.choice(SYLLABLES) for _ in range(rng.choice(sizes)))


def ask(word: str) -> str:
    return f'{ASK}"{word}"'


def right_answer(prompt: str) -> str | None:
    """The rule: the quoted word after 'Repeat after me: ' (None if the prompt asks nothing)."""
    m = _WORD.search(prompt)
    return m.group(1) if m else None


class KnownAnswerLogs(_Generator):
    """synth's generator with sessions of the known-answer task."""

    def __init__(self, cfg: SynthConfig, p_right: float = 0.25):
        super().__init__(cfg)
        self.p_right = p_right
        self.used: set[str] = set()

    def session(self, i: int) -> tuple[list[bytes], list[bytes]]:
        rng = self.rng
        self.sid = f"sess-{i:07d}"
        self.user = f"user-{rng.randrange(self.n_users):05d}"
        self.model = "lfft-chat-1"
        self.t = START + i * 37 + rng.randrange(37)
        self.ts_style = rng.randrange(3)
        self.n_msg = 0
        self.lines, self.late, self.contents = [], [], {}
        parent = None
        if rng.random() < 0.3:
            parent = self.message(None, "system", "You are a helpful assistant.")
        reply = ""  # the user's reaction to the previous answer, opening the next prompt
        for _ in range(1 if rng.random() < 0.7 else 2):
            word = self.new_word()
            prompt = self.message(parent, "user", reply + ask(word))
            parent, reply = self.answer_with_feedback(prompt, word)
        if reply:  # the user's last word, never answered
            self.message(parent, "user", reply.strip())
        self.faults()
        self.stats["lines"] += len(self.lines) + len(self.late)
        return self.lines, self.late

    def new_word(self) -> str:
        """A word no session has used yet, as a prompt or as a wrong answer."""
        while (word := make_word(self.rng)) in self.used:
            pass
        self.used.add(word)
        return word

    def wrong(self) -> str:
        """A refusal (2 in 3) or another made-up word, which no prompt asks for."""
        return REFUSAL if self.rng.random() < 2 / 3 else self.new_word()

    def answer_with_feedback(self, prompt: str, word: str, regen: bool = True) -> tuple[str, str]:
        """One answer and its feedback; returns (the answer the conversation continues from,
        an implicit reply to open the next user message with, or '')."""
        rng = self.rng
        right = rng.random() < self.p_right
        mid = self.message(prompt, "assistant", word if right else self.wrong())
        channels = CHANNELS_RIGHT if right else CHANNELS_WRONG
        channel = rng.choice(channels if regen else channels[:-1])
        if channel == "regenerate":
            self.action(mid, "regenerate")
            second, reply = self.answer_with_feedback(prompt, word, regen=False)
            if self.contents[second] == word:  # the user prefers the right sibling
                self.emit(
                    {"event": "feedback", "kind": "preference", "message_id": second, "value": mid},
                    self.t + 5,
                )
            return second, reply
        if channel == "implicit":
            return mid, rng.choice(THANKS if right else COMPLAINTS) + " "
        self.judge(channel, mid, right, word)
        return mid, ""

    def judge(self, channel: str, mid: str, right: bool, word: str) -> None:
        """Explicit or behavioural feedback on one answer through ``channel``."""
        rng = self.rng
        if channel == "thumbs":
            up, down = rng.choice(THUMBS)
            self.fb("thumbs", mid, up if right else down)
        elif channel == "rating":
            if rng.random() < 0.6:
                self.fb("rating", mid, rng.randint(4, 5) if right else rng.randint(1, 2), scale=5)
            else:
                self.fb("rating", mid, rng.randint(8, 10) if right else rng.randint(1, 4), scale=10)
        elif channel == "label":
            good, bad = ("correct", "helpful"), ("wrong", "incorrect", "unhelpful")
            self.fb("label", mid, rng.choice(good if right else bad))
        elif channel == "edit":
            self.fb("edit", mid, word)
        elif channel == "behavioral":
            if right:
                self.action(mid, "copy")
            else:
                self.action(mid, "stop")


def write_logs(out: Path, sessions: int, seed: int = 0, p_right: float = 0.25) -> dict[str, int]:
    """``out/events-000.jsonl`` (the sessions) and ``out/events-001.jsonl`` (feedback that
    arrived late); returns the generator's counts."""
    gen = KnownAnswerLogs(SynthConfig(sessions=sessions, seed=seed), p_right)
    out.mkdir(parents=True, exist_ok=True)
    now: list[bytes] = []
    late: list[bytes] = []
    for i in range(sessions):
        lines, later = gen.session(i)
        now += lines
        late += later
    for name, lines in (("events-000.jsonl", now), ("events-001.jsonl", late)):
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    return gen.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p-right", type=float, default=0.25)
    args = parser.parse_args()
    print(write_logs(args.out, args.sessions, args.seed, args.p_right))


if __name__ == "__main__":
    main()
