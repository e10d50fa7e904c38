"""The one stable 64-bit hash: the same value on every machine, process and Python version
(``hash()`` is salted per process).

Values of :func:`stable_hash64` are persisted, so it must never change: ``split`` assigns a key
to train/val/test by ``stable_hash64(f"{seed}\\x1f{key}")``, and normalize's ``group_id`` is its
digest in hex (:func:`hex64`). It also spreads rows over hash partitions (clean's duplicate
keys, normalize's preference groups). It is the first 8 bytes of blake2b of the UTF-8 text,
read as a little-endian unsigned integer.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

import numpy as np


def stable_hash64(text: str) -> int:
    """The 64-bit blake2b digest of ``text`` (UTF-8) as a little-endian unsigned integer."""
    return int.from_bytes(blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def stable_hashes(texts: Iterable[str], count: int = -1) -> np.ndarray:
    """:func:`stable_hash64` of each text, as a uint64 array (``count``: how many, if known)."""
    return np.fromiter(map(stable_hash64, texts), dtype=np.uint64, count=count)


def hex64(hashes: np.ndarray) -> list[str]:
    """Each hash as the hex of its digest's bytes (16 characters), the form ``group_id`` has."""
    return [f"{h:016x}" for h in hashes.byteswap().tolist()]
