"""Implicit feedback: what the user's next message says about the response before it.

The one place the rules live. Each rule reads the user's reply to a response (and, for
``rephrase``, the prompt that response answered) and may yield a signal ``(kind, value)``:

- ``complaint`` (value 0): the reply says the answer was wrong or useless ("that's wrong",
  "doesn't work", "not what I asked"), anywhere in a short reply;
- ``rephrase`` (value 0): the reply asks the same question again: it starts with a rephrase
  marker ("I mean", "let me rephrase"), or its content words overlap the prompt's by at least
  ``min_similarity`` (Jaccard over lower-cased words minus stop words);
- ``thanks`` (value 1): a short reply that starts by thanking or approving ("thanks", "perfect").

Rules are tried in ``order`` and the first match wins, so "thanks, but that's wrong" is a
complaint. They are conservative on purpose (a missed signal costs little, a wrong one teaches
the model the wrong thing), and ``normalize`` gives implicit signals a lower weight than explicit
ones. A TOML file (``CollectConfig.implicit_rules``) overrides any key of :data:`DEFAULT_RULES`,
table by table; ``docs/collect.md`` shows the format. Patterns are Python regular expressions,
matched case-insensitively.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfft.config import read_toml
from lfft.errors import ConfigError

DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "complaint": {
        "value": 0.0,
        "max_chars": 300,
        # patterns are only tried on replies holding one of these (lower-case substrings): a
        # cheap filter, as searching every position of every reply is slow
        "requires": [
            "wrong",
            "incorrect",
            "not",
            "n't",
            "n\u2019t",
            "nt ",
            "useless",
            "nonsense",
            "sense",
            "misunderstood",
            "bad",
        ],
        "patterns": [
            r"\b(that['’]?s|that is|this is|it['’]?s|it is|you['’]?re|you are)\s+"
            r"(so\s+|just\s+|completely\s+|totally\s+|all\s+)?"
            r"(wrong|incorrect|not (right|correct|true|accurate|helpful))\b",
            r"\b(doesn['’]?t|does not|didn['’]?t|did not|won['’]?t|will not)\s+"
            r"(work|help|answer|compile|run)",
            r"\bnot what i (asked|meant|wanted|need)",
            r"\b(wrong|incorrect|bad|useless) (answer|response|reply)\b",
            r"\b(useless|nonsense|makes no sense|you misunderstood)\b",
            r"^\W*(no|nope)[,.!]+\s*(that['’]?s|it['’]?s|this is)\s+(wrong|not)\b",
        ],
    },
    "rephrase": {
        "value": 0.0,
        "max_chars": 1000,
        "min_similarity": 0.7,  # Jaccard of content words, reply vs prompt
        "min_words": 2,  # content words both sides need for the similarity test
        "patterns": [
            r"^\W*(i mean|i meant|no,? i meant|what i mean is|what i meant was|let me rephrase"
            r"|to rephrase|in other words|rephrasing)\b",
        ],
    },
    "thanks": {
        "value": 1.0,
        "max_chars": 120,
        "patterns": [
            r"^\W*(thanks|thank you|thank u|thx|ty|tysm|cheers|much appreciated|many thanks)\b",
            r"^\W*(great|perfect|awesome|excellent|brilliant|nice|amazing)\W*(thanks|thank you"
            r"|that (helps|helped|worked|works)|exactly|$)",
            r"^\W*(that|this|it) (helps|helped|worked|works)( perfectly| great)?\b",
        ],
    },
}
DEFAULT_ORDER = ("complaint", "rephrase", "thanks")

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "i",
        "you",
        "he",
        "she",
        "it",
        "we",
        "they",
        "me",
        "my",
        "your",
        "our",
        "their",
        "this",
        "that",
        "these",
        "those",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "about",
        "as",
        "into",
        "and",
        "or",
        "but",
        "if",
        "so",
        "not",
        "no",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "how",
        "why",
        "when",
        "where",
        "there",
        "here",
        "please",
        "pls",
        "tell",
        "explain",
        "give",
        "show",
        "let",
        "us",
        "just",
        "some",
        "any",
        "also",
        "then",
        "than",
        "too",
        "very",
        "really",
        "know",
        "want",
        "need",
        "like",
        "get",
    ]
)
_WORD = re.compile(r"\w{2,}")
_RULE_KEYS = {"value", "max_chars", "patterns", "requires", "min_similarity", "min_words"}


@dataclass(frozen=True)
class Rule:
    kind: str
    value: float
    max_chars: int
    pattern: re.Pattern | None  # the rule's patterns as one alternation
    requires: re.Pattern | None = None  # try the pattern only if the lower-cased reply holds one
    min_similarity: float | None = None
    min_words: int = 2


class ImplicitRules:
    """Callable ``(prompt, reply) -> (kind, value) | None`` built from a rules table."""

    def __init__(self, table: dict[str, dict[str, Any]], order: tuple[str, ...] = DEFAULT_ORDER):
        self.rules = [_build_rule(kind, table[kind]) for kind in order if kind in table]
        # what the patterns say depends on the reply alone, and replies repeat ("thanks!")
        self._matches = functools.lru_cache(maxsize=8192)(self._match)

    def __call__(self, prompt: str, reply: str) -> tuple[str, float] | None:
        for rule, hit in zip(self.rules, self._matches(reply), strict=True):
            if hit or (
                hit is not None
                and rule.min_similarity is not None
                and similarity(prompt, reply, rule.min_words) >= rule.min_similarity
            ):
                return rule.kind, rule.value
        return None

    def _match(self, reply: str) -> tuple[bool | None, ...]:
        """Per rule: whether its pattern matches ``reply`` (None: the reply is too long)."""
        low = None  # the reply lower-cased, for the ``requires`` filters
        hits: list[bool | None] = []
        for rule in self.rules:
            if len(reply) > rule.max_chars:
                hits.append(None)
                continue
            pattern = rule.pattern
            if pattern is not None and rule.requires is not None:
                if low is None:
                    low = reply.lower()
                if rule.requires.search(low) is None:
                    pattern = None
            hits.append(pattern is not None and pattern.search(reply) is not None)
        return tuple(hits)


@functools.lru_cache(maxsize=4096)
def content_words(text: str) -> frozenset[str]:
    """Lower-cased words of two or more characters, minus stop words.

    Cached: a user's reply to one response is usually the prompt of the next.
    """
    return frozenset(_WORD.findall(text.lower())).difference(STOP_WORDS)


def similarity(a: str, b: str, min_words: int = 2) -> float:
    """Jaccard overlap of the content words of ``a`` and ``b`` (0 when either has too few)."""
    wb = content_words(b)  # the reply: often too short, and then ``a`` is not even split
    if len(wb) < min_words:
        return 0.0
    wa = content_words(a)
    if len(wa) < min_words:
        return 0.0
    common = len(wa & wb)
    return common / (len(wa) + len(wb) - common)


def load_rules(path: str | Path | None = None) -> ImplicitRules:
    """The default rules, with any table/key of the TOML file at ``path`` overriding them.

    The file may also set a top-level ``order = ["complaint", "rephrase", "thanks"]`` (drop a
    kind from it to switch that rule off).
    """
    table = {kind: dict(rule) for kind, rule in DEFAULT_RULES.items()}
    order = DEFAULT_ORDER
    if path is None:
        return ImplicitRules(table, order)
    path = Path(path)
    data = read_toml(path, "implicit rules file")
    if "order" in data:
        order = data.pop("order")
        if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
            raise ConfigError(f"{path}: 'order' must be a list of rule names")
        order = tuple(order)
    for kind, rule in data.items():
        if not isinstance(rule, dict):
            raise ConfigError(f"{path}: [{kind}] must be a table")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            known = ", ".join(sorted(_RULE_KEYS))
            raise ConfigError(
                f"{path} [{kind}]: unknown key(s) {', '.join(sorted(unknown))}; known: {known}"
            )
        table.setdefault(kind, {"value": 0.0, "max_chars": 1000, "patterns": []}).update(rule)
    missing = [k for k in order if k not in table]
    if missing:
        raise ConfigError(f"{path}: 'order' names rule(s) without a table: {', '.join(missing)}")
    try:
        return ImplicitRules(table, order)
    except (re.error, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: bad rule ({e})") from None


def _build_rule(kind: str, rule: dict[str, Any]) -> Rule:
    patterns = rule.get("patterns", [])
    if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"[{kind}] patterns must be a list of strings")
    sim = rule.get("min_similarity")
    requires = rule.get("requires", [])
    if isinstance(requires, str) or not all(isinstance(w, str) for w in requires):
        raise TypeError(f"[{kind}] requires must be a list of strings")
    return Rule(
        kind=kind,
        value=float(rule.get("value", 0.0)),
        max_chars=int(rule.get("max_chars", 1000)),
        pattern=re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
        if patterns
        else None,
        min_similarity=None if sim is None else float(sim),
        min_words=int(rule.get("min_words", 2)),
        # matched against the lower-cased reply: much faster than a case-insensitive search
        requires=re.compile("|".join(re.escape(str(w).lower()) for w in requires))
        if requires
        else None,
    )
