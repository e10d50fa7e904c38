"""What a stage returns, and its short rich summary (rows in/out, rejects by reason, time)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageResult:
    """The outcome of one stage; ``rows_in == rows_out + sum(rejects.values())`` for data stages
    (collect counts input lines as ``rows_in``)."""

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rejects: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rejects": dict(self.rejects),
            "seconds": round(self.seconds, 3),
            "outputs": {k: str(v) for k, v in self.outputs.items()},
            "extra": self.extra,
            "skipped": self.skipped,
        }


def print_summary(result: StageResult, console=None) -> None:
    """Print a stage's summary table to the terminal (stderr-free, plain when not a TTY)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    title = f"lfft {result.stage}" + (" (skipped: up to date)" if result.skipped else "")
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("rows in", f"{result.rows_in:,}")
    table.add_row("rows out", f"{result.rows_out:,}")
    total_rej = sum(result.rejects.values())
    table.add_row("rejected", f"{total_rej:,}")
    for reason, n in sorted(result.rejects.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"  {reason}", f"{n:,}")
    for key, value in result.extra.items():
        table.add_row(key, _fmt(value))
    for key, path in result.outputs.items():
        table.add_row(f"→ {key}", str(path))
    table.add_row("time", f"{result.seconds:.2f} s")
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)
