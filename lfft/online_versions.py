"""What ``lfft online`` keeps between rounds: its folder layout, the promotion gate, the
checkpoint versions and ``current``, the rows each version learned from, and the history."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lfft.config import OnlineConfig
from lfft.errors import LfftError
from lfft.io import ArtifactWriter, read_table, write_text_atomic
from lfft.schemas import make_metadata
from lfft.stages import Layout

INIT_VERSION = "v0000"
SEEN = pa.schema([("digest", pa.string())])


@dataclass(frozen=True)
class OnlineLayout(Layout):
    """The pipeline layout plus what ``lfft online`` keeps."""

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def consumed(self) -> Path:
        return self.root / "consumed"

    @property
    def gate(self) -> Path:
        return self.root / "gate.parquet"

    @property
    def rounds(self) -> Path:
        return self.root / "rounds"

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def history(self) -> Path:
        return self.root / "history.jsonl"

    def part(self, n: int) -> Path:
        return self.consumed / f"r{n:04d}.jsonl"

    def round_dir(self, n: int) -> Path:
        return self.rounds / f"r{n:04d}"


# --- gate ---------------------------------------------------------------------------------


def gate_metrics(predictions: Path) -> dict[str, float | None]:
    """Gate metrics from ``predictions.parquet`` (all lower is better):

    - ``nll_pos``: mean NLL per token of the responses rated good (label 1), or of every row
      when none is labelled: the model should keep assigning high likelihood to good answers;
    - ``nll``: mean NLL of every row;
    - ``brier``: mean squared error of the feedback head on labelled rows.
    """
    t = read_table(predictions, columns=["nll", "feedback_pred", "label"])
    nll = t.column("nll")
    labelled = pc.is_valid(t.column("label"))
    pos = pc.and_(labelled, pc.equal(t.column("label"), 1))
    err = pc.subtract(t.column("feedback_pred"), pc.cast(t.column("label"), pa.float64()))
    nll_pos = pc.mean(pc.filter(nll, pos)).as_py() if pc.any(pos).as_py() else None
    return {
        "nll_pos": nll_pos if nll_pos is not None else pc.mean(nll).as_py(),
        "nll": pc.mean(nll).as_py(),
        "brier": pc.mean(pc.filter(pc.multiply(err, err), labelled)).as_py(),
    }


def gate_failures(
    candidate: dict[str, float | None], base: dict[str, float | None], cfg: OnlineConfig
) -> list[str]:
    """The gate metrics on which the candidate is worse than the base beyond the tolerance
    (``cand > base * (1 + tolerance)``); a metric missing on either side is not checked."""
    unknown = [m for m in cfg.gate_metrics if m not in candidate]
    if unknown:
        raise LfftError(
            f"[online] gate_metrics: unknown {', '.join(unknown)}; known: {', '.join(candidate)}"
        )
    failed = []
    for m in cfg.gate_metrics:
        c, b = candidate[m], base[m]
        if c is None or b is None:
            continue
        if c > b + abs(b) * cfg.gate_tolerance + 1e-12:
            failed.append(m)
    return failed


# --- versions, current, seen rows, history --------------------------------------------------


def read_current(layout: OnlineLayout) -> str | None:
    """The version ``current`` points at (``None`` before the first model)."""
    try:
        return Path(os.readlink(layout.current)).name
    except FileNotFoundError:
        return None


def set_current(layout: OnlineLayout, version: str) -> None:
    """Replace the ``current`` symlink atomically (rename over it) with one to ``version``."""
    tmp = layout.root / f".current.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(Path("versions") / version, tmp)
    os.replace(tmp, layout.current)


def prune_versions(layout: OnlineLayout, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions (never ``current``); returns the deleted."""
    if keep <= 0 or not layout.versions.exists():
        return []
    names = sorted(p.name for p in layout.versions.glob("v[0-9]*") if p.is_dir())
    current = read_current(layout)
    gone = [n for n in names[:-keep] if n != current]
    for name in gone:
        shutil.rmtree(layout.versions / name)
    return gone


def row_digests(table: pa.Table) -> list[str]:
    """A digest per row of what training learns from: id, target, signal and feedback (so a row
    whose feedback changed counts as new)."""
    cols = ["interaction_id", "target", "score", "label", "weight", "feedback"]
    out = []
    for batch in table.select(cols).to_batches(max_chunksize=4096):
        for row in batch.to_pylist():
            blob = json.dumps(row, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
            out.append(hashlib.blake2b(blob, digest_size=12).hexdigest())
    return out


def read_seen(layout: OnlineLayout, version: str) -> set[str]:
    """Digests of the rows ``version`` has learned from (empty for the initial checkpoint)."""
    if version == INIT_VERSION:
        return set()
    path = layout.round_dir(int(version[1:])) / "seen.parquet"
    return set(read_table(path).column("digest").to_pylist())


def write_seen(path: Path, seen: set[str]) -> None:
    with ArtifactWriter(path, SEEN, make_metadata("online-seen")) as w:
        w.write(pa.table({"digest": sorted(seen)}, schema=SEEN))


def _append_history(layout: OnlineLayout, record: dict[str, Any]) -> None:
    """Append one JSON line (atomic rewrite; a round already recorded is not added twice)."""
    lines = (
        layout.history.read_text(encoding="utf-8").splitlines() if layout.history.exists() else []
    )
    if "round" in record:
        for line in lines:
            if json.loads(line).get("round") == record["round"]:
                return
    lines.append(json.dumps(record, sort_keys=True, default=str))
    write_text_atomic(layout.history, "\n".join(lines) + "\n")


def read_history(work: str | Path) -> list[dict[str, Any]]:
    path = OnlineLayout(Path(work)).history
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
