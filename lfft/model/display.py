"""The live training display: a rich progress bar with step, losses, tokens/s and ETA.

On a terminal it redraws in place; otherwise (CI, pipes, notebooks' captured output) it prints
one plain line per logged step, so logs stay readable.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainDisplay:
    """``with TrainDisplay(total) as d: d.advance(step); d.log(row)``."""

    def __init__(self, total: int, start: int = 0, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.total = total
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, status="")

    def __enter__(self) -> TrainDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def advance(self, step: int) -> None:
        if self.live:
            self.progress.update(self.task, completed=step)

    def log(self, row: dict[str, Any]) -> None:
        """Show a metrics row (train or val)."""
        text = _status(row)
        if row["split"] == "val":
            self.console.print(f"step {row['step']:>6}  val  {text}", highlight=False)
        elif self.live:
            self.progress.update(self.task, completed=row["step"], status=text)
        else:
            self.console.print(f"step {row['step']:>6}/{self.total}  {text}", highlight=False)


def _status(row: dict[str, Any]) -> str:
    parts = [f"loss {row['loss']:.4f}"]
    if row.get("fb_loss") is not None:
        parts.append(f"lm {row['lm_loss']:.4f} fb {row['fb_loss']:.4f}")
    if row.get("tokens_per_s"):
        parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
    if row.get("lr") is not None:
        parts.append(f"lr {row['lr']:.2e}")
    return "  ".join(parts)
