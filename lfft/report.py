"""What a stage returns, its short rich summary (rows in/out, rejects by reason, time), and a
progress bar for long stages."""

from __future__ import annotations

import sys
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


class ProgressBar:
    """A transient progress bar on stderr, one line per task (``totals``: task name -> amount
    of work, e.g. bytes to read); nothing when stderr is not a terminal."""

    def __init__(self, stage: str, **totals: int):
        self.bar = None
        if not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn(f"{stage}: {{task.description}}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.tasks = {name: self.bar.add_task(name, total=n) for name, n in totals.items()}
        self.bar.start()

    def advance(self, task: str, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.tasks[task], n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_round(record: dict[str, Any], console: Any) -> None:
    """A short table of one round."""
    from rich.table import Table

    table = Table(title=f"lfft online: round {record['round']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    consumed = record["consumed"]
    table.add_row("lines consumed", f"{consumed['lines']:,} from {len(consumed['files'])} file(s)")
    table.add_row("interactions", f"{record['interactions']:,}")
    if "update" in record:  # incremental rounds: what the data update recomputed
        u = record["update"]
        table.add_row(
            "data update",
            f"{u['sessions_touched']:,} sessions recomputed, {u['parts_rewritten']} of "
            f"{u['parts']} parts rewritten, {u['seconds']:.2f} s",
        )
    table.add_row("new / replayed rows", f"{record['new_rows']:,} / {record['replay_rows']:,}")
    table.add_row("trained", record["version"] or f"no ({record.get('reason', '')})")
    for who in ("candidate", "base"):
        scores = record["gate"].get(who)
        if scores:
            text = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if v is not None)
            table.add_row(f"gate: {who}", text)
    table.add_row("promoted", "yes" if record["promoted"] else "no")
    table.add_row("current", str(record["current"]))
    console.print(table)
