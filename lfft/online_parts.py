"""The partitioned data state of ``lfft online``: parts of whole sessions, one manifest.

Every data artifact of an online work folder (interactions, clean, feedback, the three splits
and the rejects of collect, clean and split) is a folder of part files, and a *part* holds whole
sessions: their raw lines (``state/lines/``), their rows in every artifact, their rejects. Each
stage is a function of one session's lines (collect joins a session; clean merges duplicates
within a session; normalize pairs a preference with siblings of its session; split hashes a
key per row), so the rows of a set of sessions depend on those sessions' lines only. A round
recomputes the sessions its new lines touch into a new part and takes them out of the parts
that held them (:mod:`lfft.online_data`); other parts are not read.

Files are ``{part}.{gen}.parquet`` (``gen``: the round that wrote the file; a round that takes
sessions out of a part rewrites only the kinds that held rows of them), and
``state/manifest.json`` lists the live ones: it is replaced atomically, the commit point. A file
not listed (from a round killed before its commit, or replaced by it) is deleted by
:meth:`PartStore.tidy` before a round reads anything, so a killed round leaves nothing behind.
``state/sessions.{gen}.parquet`` maps every session to its part.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lfft.data.rejects import count_reasons
from lfft.io import read_table, rejects_path, write_json_atomic, write_table
from lfft.schemas import CLEAN, INTERACTIONS, NORMALIZED, REJECTS, SPLIT, make_metadata
from lfft.stages import Layout

# a session's raw lines, as consumed: ``round`` is the consumed part (``consumed/rNNNN.jsonl``)
# and ``line`` the line number in it; a line no session claims (it did not parse) has a null
# session and stays in the part of the round that read it
LINES = pa.schema(
    [
        pa.field("session_id", pa.string()),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("raw", pa.binary(), nullable=False),
    ]
)
DIGESTS = pa.schema([pa.field("session_id", pa.string()), pa.field("digest", pa.string())])
INDEX = pa.schema([pa.field("session_id", pa.string()), pa.field("part", pa.string())])
ROW_KINDS = ("interactions", "clean", "feedback", "train", "val", "test", "digests")
REJECT_KINDS = {"collect": "collect_rejects", "clean": "clean_rejects", "split": "split_rejects"}
MANIFEST_VERSION = 1


def kinds(layout: Layout) -> dict[str, tuple[Path, pa.Schema]]:
    """Every kind of file a part has: its folder and schema."""
    state = layout.root / "state"
    return {
        "lines": (state / "lines", LINES),
        "interactions": (layout.interactions, INTERACTIONS),
        "collect_rejects": (rejects_path(layout.interactions), REJECTS),
        "clean": (layout.clean, CLEAN),
        "clean_rejects": (rejects_path(layout.clean), REJECTS),
        "feedback": (layout.normalized, NORMALIZED),
        "train": (layout.train, SPLIT),
        "val": (layout.val, SPLIT),
        "test": (layout.test, SPLIT),
        "split_rejects": (rejects_path(layout.splits), REJECTS),
        "digests": (state / "digests", DIGESTS),
    }


@dataclass
class Manifest:
    """What the parts hold: ``round`` is the last round whose lines they contain; ``parts``
    maps a part to the round that wrote each of its files (``files``: kind -> round) and its
    counts (:func:`part_counts`)."""

    round: int = 0
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    index_gen: int | None = None
    last: dict[str, Any] = field(default_factory=dict)  # what the last update did

    def totals(self) -> dict[str, Any]:
        """Rows of every kind and rejects by reason of every stage, over all parts."""
        rows: Counter = Counter()
        rejects: dict[str, Counter] = {stage: Counter() for stage in REJECT_KINDS}
        for info in self.parts.values():
            rows.update(info["rows"])
            for stage, reasons in info["rejects"].items():
                rejects[stage].update(reasons)
        return {"rows": dict(rows), "rejects": {k: dict(v) for k, v in rejects.items()}}


def part_counts(
    tables: dict[str, pa.Table], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A part's manifest counts: rows of each kind, rejects by reason per stage, the sessions
    it holds and the bytes of its raw lines; kinds not in ``tables`` keep ``previous``'s."""
    rows = dict(previous["rows"]) if previous else {}
    rejects = dict(previous["rejects"]) if previous else {}
    for kind, table in tables.items():
        rows[kind] = table.num_rows
    for stage, kind in REJECT_KINDS.items():
        if kind in tables:
            rejects[stage] = dict(count_reasons(tables[kind]))
    counts = {"rows": rows, "rejects": rejects}
    if "lines" in tables:
        lines = tables["lines"]
        counts["sessions"] = len(pc.unique(lines.column("session_id")).drop_null())
        counts["bytes"] = int(pc.sum(pc.binary_length(lines.column("raw"))).as_py() or 0)
    else:
        counts.update(sessions=previous["sessions"], bytes=previous["bytes"])
    return counts


class PartStore:
    """The part files of a work folder and their manifest."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.kinds = kinds(layout)
        self.state = layout.root / "state"
        self.manifest_path = self.state / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def load(self) -> Manifest:
        if not self.exists():
            return Manifest()
        obj = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        return Manifest(obj["round"], obj["parts"], obj.get("index_gen"), obj.get("last", {}))

    def commit(self, manifest: Manifest) -> None:
        """Make ``manifest`` the state (atomic), then delete the files it no longer lists."""
        obj = {
            "version": MANIFEST_VERSION,
            "round": manifest.round,
            "parts": manifest.parts,
            "index_gen": manifest.index_gen,
            "last": manifest.last,
        }
        write_json_atomic(self.manifest_path, obj)
        self.tidy(manifest)

    def tidy(self, manifest: Manifest) -> None:
        """Delete every part file and index the manifest does not list, and temporaries."""
        for kind, (folder, _) in self.kinds.items():
            listed = {self.path(kind, p, i["files"][kind]).name for p, i in manifest.parts.items()}
            for path in folder.iterdir() if folder.is_dir() else ():
                if path.name not in listed:
                    _remove(path)
        index = self.index_path(manifest.index_gen)
        for pattern in ("sessions.*", ".sessions.*", ".spill-*", ".manifest.json.*"):
            for path in self.state.glob(pattern) if self.state.is_dir() else ():
                if path != index:
                    _remove(path)

    def reset(self) -> None:
        """Remove the parts, the index, the manifest and any single-file artifacts in their
        place (a work folder switching between incremental and full rounds)."""
        for folder, _ in self.kinds.values():
            _remove(folder)
        _remove(self.state)

    # --- files ------------------------------------------------------------------------------

    def path(self, kind: str, part: str, gen: int) -> Path:
        return self.kinds[kind][0] / f"{part}.{gen}.parquet"

    def index_path(self, gen: int | None) -> Path:
        return self.state / f"sessions.{gen}.parquet"

    def file(self, kind: str, part: str, manifest: Manifest) -> Path:
        return self.path(kind, part, manifest.parts[part]["files"][kind])

    def read(
        self, kind: str, part: str, manifest: Manifest, columns: list[str] | None = None
    ) -> pa.Table:
        return read_table(self.file(kind, part, manifest), columns)

    def read_all(self, kind: str, manifest: Manifest) -> pa.Table:
        """One kind over every part, parts in name order (the same order for every kind)."""
        schema = self.kinds[kind][1]
        tables = [self.read(kind, part, manifest) for part in sorted(manifest.parts)]
        return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()

    def write(
        self, part: str, gen: int, tables: dict[str, pa.Table], previous: dict | None = None
    ) -> dict[str, Any]:
        """Write a part's kinds in ``tables`` (each file atomic; a new part needs every kind,
        a changed one those that changed, the others staying as in ``previous``); returns the
        part's manifest entry."""
        meta = make_metadata("online-part", part=part, gen=gen)
        files = dict(previous["files"]) if previous else {}
        for kind, table in tables.items():
            write_table(self.path(kind, part, gen), table, self.kinds[kind][1], meta)
            files[kind] = gen
        return {"files": files, **part_counts(tables, previous)}

    def read_index(self, manifest: Manifest) -> pa.Table:
        if manifest.index_gen is None:
            return INDEX.empty_table()
        return pq.read_table(self.index_path(manifest.index_gen))

    def write_index(self, index: pa.Table, gen: int) -> None:
        write_table(self.index_path(gen), index, INDEX, make_metadata("online-index"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
