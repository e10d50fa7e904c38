"""The rows a round trains, validates and gates on, read from the online data.

:func:`train_rows` gives the train split with each row's digest (stored with each part by
incremental rounds, so selecting new rows hashes none); :func:`capped` takes a validation set
that stays the same rows as the split grows; :func:`newest` the newest test rows for a
refreshed gate.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lfft.hashing import stable_hashes
from lfft.io import read_table
from lfft.online_parts import PartStore
from lfft.online_versions import OnlineLayout, row_digests
from lfft.schemas import SPLIT


def train_rows(layout: OnlineLayout) -> tuple[pa.Table, list[str]]:
    """The train split and the digest of each row (:func:`row_digests`): stored with each part
    by incremental rounds, computed here after full ones."""
    store = PartStore(layout)
    if not store.exists():
        table = read_table(layout.train, schema=SPLIT)
        return table, row_digests(table)
    manifest = store.load()
    digests = store.read_all("digests", manifest).column("digest").to_pylist()
    return store.read_all("train", manifest), digests


def capped(table: pa.Table, max_rows: int | None) -> pa.Table:
    """At most ``max_rows`` rows of ``table``: those whose ``interaction_id`` hashes lowest, so
    the same rows stay in as the table grows (a validation set comparable round to round)."""
    if max_rows is None or table.num_rows <= max_rows:
        return table
    hashes = stable_hashes(table.column("interaction_id").to_pylist(), table.num_rows)
    keep = np.sort(np.argsort(hashes, kind="stable")[:max_rows])
    return table.take(pa.array(keep))


def newest(table: pa.Table, max_rows: int | None) -> pa.Table:
    """The ``max_rows`` newest rows of ``table`` (by ``ts``; rows without one last)."""
    if max_rows is None or table.num_rows <= max_rows:
        return table
    keys = [("ts", "descending", "at_end"), ("interaction_id", "ascending", "at_end")]
    order = pc.sort_indices(table, sort_keys=keys)
    return table.take(order[:max_rows])
