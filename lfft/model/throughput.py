"""Generation throughput: tokens generated per second, as ``lfft evaluate --generate`` and
``bench/generate_speed.py`` report it.

Tokens are the new tokens of each sequence up to and including its eos (the steps that produced
it); the padding ``generate`` appends after a finished sequence's eos is not counted. Seconds are
the wall time of the ``generate`` calls, each ending with the copy of its tokens to the host (so
a GPU's queued work is included).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Throughput:
    """Counts accumulated over the batches of one model's generation."""

    tokens: int = 0
    sequences: int = 0
    seconds: float = 0.0

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def add(self, new_tokens: list[list[int]], eos_id: int) -> None:
        """Count one batch's new tokens (``generate``'s output past the prompt, one row a
        sequence)."""
        self.sequences += len(new_tokens)
        self.tokens += sum(t.index(eos_id) + 1 if eos_id in t else len(t) for t in new_tokens)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan

    def record(self, device: torch.device, dtype: torch.dtype, batch_size: int) -> dict[str, Any]:
        """The ``metrics.json`` entry: counts, rate and the setting that produced them."""
        return {
            "tokens": self.tokens,
            "sequences": self.sequences,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
            "device": device.type,
            "dtype": str(dtype).removeprefix("torch."),
            "batch_size": batch_size,
        }


def describe(rec: dict[str, Any]) -> str:
    """One summary-table cell, e.g. ``812 tok/s (4,096 tokens, 64 seq, 5.0 s; cpu float32, batch
    16)``."""
    rate = rec["tokens_per_s"]
    rate_text = "n/a" if rate is None or not math.isfinite(rate) else f"{rate:,.0f}"
    return (
        f"{rate_text} tok/s ({rec['tokens']:,} tokens, {rec['sequences']:,} seq, "
        f"{rec['seconds']:.1f} s; {rec['device']} {rec['dtype']}, batch {rec['batch_size']})"
    )
