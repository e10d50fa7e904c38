"""Reading and writing artifacts: atomic writes, streaming readers, metadata, fingerprints.

An artifact is a Parquet file or a folder of ``*.parquet`` part files; every reader accepts both.
Writers go to a temporary name in the same folder and rename at the end, so a killed stage never
leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lfft.errors import LfftError
from lfft.schemas import conform, decode_metadata, encode_metadata, validate

DEFAULT_BATCH_ROWS = 16_384


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` if the block succeeds.

    Works for files and folders. On error the temporary is removed and ``final`` is untouched.
    A folder replacing a folder takes three renames (POSIX cannot swap two folders in one):
    the new one to ``.{name}.new`` (complete from then on), the old one aside, the new one in;
    :func:`recover_swap` finishes a swap a kill interrupted, and runs first here.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_swap(final)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            new, old = _swap_names(final)
            tmp.rename(new)
            final.rename(old)
            new.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def recover_swap(final: str | os.PathLike) -> None:
    """Finish a folder swap of :func:`atomic_path` that a kill interrupted: a complete new
    folder (``.{name}.new``) goes in, and the old one, set aside, goes."""
    final = Path(final)
    new, old = _swap_names(final)
    if new.is_dir():
        if final.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        new.rename(final)
    elif old.is_dir() and not final.exists():  # set aside by the code before ``.new`` existed
        old.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _swap_names(final: Path) -> tuple[Path, Path]:
    return final.with_name(f".{final.name}.new"), final.with_name(f".{final.name}.old")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class ClosingWriter:
    """Context-manager protocol of the writers: ``close()`` on success, ``abort(exc)`` on error.

    A writer has a ``path``, a ``meta`` block, the ``rows`` written so far, and writes to a
    temporary beside ``path`` (:meth:`_begin`) that replaces it when the writer closes.
    """

    def _begin(self, path: str | os.PathLike, meta: Mapping[str, Any] | None) -> Path:
        """Start writing ``path`` atomically; returns the temporary path to write to."""
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.rows = 0
        self._cm = atomic_path(self.path)
        self._tmp = self._cm.__enter__()
        return self._tmp

    def close(self) -> None:
        """Finish the temporary (``self._out``, a file or writer) and move it onto ``path``."""
        self._out.close()
        self._cm.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the temporary; ``path`` stays as it was."""
        with contextlib.suppress(Exception):
            self._out.close()
        self._discard(exc)

    def _discard(self, exc: BaseException | None) -> None:
        """Leave the ``atomic_path`` block (``self._cm``) with an error: the temporary goes."""
        with contextlib.suppress(BaseException):
            err = exc or RuntimeError("aborted")
            self._cm.__exit__(type(err), err, err.__traceback__)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc)


class ArtifactWriter(ClosingWriter):
    """Stream record batches into one Parquet artifact, atomically, with ``lfft`` metadata.

    >>> with ArtifactWriter(path, schemas.NORMALIZED, meta) as w:   # doctest: +SKIP
    ...     w.write(batch)
    ...     w.meta["counts"]["rows"] = w.rows

    The metadata block (``meta``) may be updated until the writer closes.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, meta: Mapping[str, Any]):
        self.schema = schema
        tmp = self._begin(path, meta)
        self._out = pq.ParquetWriter(tmp, schema, compression="zstd")

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        if data.num_rows == 0:
            return
        table = conform(data, self.schema)
        self._out.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self.meta.setdefault("counts", {}).setdefault("rows", self.rows)
        self.meta["fingerprint"] = _hash_json(
            {k: self.meta.get(k) for k in ("stage", "config", "inputs", "counts")}
        )
        self._out.add_key_value_metadata(encode_metadata(self.meta))
        super().close()


class JsonLinesWriter(ClosingWriter):
    """Stream lines of JSON into a text file, atomically (the same protocol as the Parquet
    writers: ``write`` / ``rows`` / ``meta`` / ``close`` / ``abort``; ``meta`` is not stored)."""

    def __init__(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None):
        tmp = self._begin(path, meta)
        self._out = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed in close/abort)

    def write(self, lines: list[str]) -> None:
        """Write JSON texts, one a line (without their ``\\n``)."""
        if lines:
            self._out.write("\n".join(lines) + "\n")
            self.rows += len(lines)


def write_table(
    path: str | os.PathLike, table: pa.Table, schema: pa.Schema, meta: Mapping[str, Any]
) -> None:
    """Write a whole table as one artifact (atomic, with metadata)."""
    with ArtifactWriter(path, schema, meta) as w:
        w.write(table)


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of an artifact: the file itself, or a folder's ``*.parquet`` parts
    (not the folder's own ``rejects.parquet``, see :func:`rejects_path`)."""
    path = Path(path)
    if path.is_dir():
        rejects = rejects_path(path)
        parts = sorted(
            p for p in path.glob("*.parquet") if not p.name.startswith(".") and p != rejects
        )
        if not parts:
            raise LfftError(f"{path}: folder holds no .parquet files")
        return parts
    if not path.exists():
        raise LfftError(f"{path}: no such file")
    return [path]


def _parquet(path: Path) -> pq.ParquetFile:
    try:
        # pre_buffer (pyarrow's default) would hold every column chunk read so far: memory
        # would grow with the file instead of staying at one batch
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise LfftError(f"{path}: not a readable Parquet file ({e})") from None


def read_schema(path: str | os.PathLike) -> pa.Schema:
    return _parquet(artifact_files(path)[0]).schema_arrow


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``lfft`` metadata block of an artifact ({} if absent). Folders: the first part's."""
    return decode_metadata(_parquet(artifact_files(path)[0]).metadata.metadata)


def count_rows(path: str | os.PathLike) -> int:
    return sum(_parquet(p).metadata.num_rows for p in artifact_files(path))


def iter_batches(
    path: str | os.PathLike,
    columns: list[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    schema: pa.Schema | None = None,
    what: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream an artifact's record batches (bounded memory), validating ``schema`` if given."""
    for part in artifact_files(path):
        pf = _parquet(part)
        if schema is not None:
            validate(pf.schema_arrow, schema, what or str(part))
        yield from pf.iter_batches(batch_size=batch_rows, columns=columns)


def read_table(
    path: str | os.PathLike,
    columns: list[str] | None = None,
    schema: pa.Schema | None = None,
    what: str | None = None,
) -> pa.Table:
    """Read a whole artifact (file or folder) into memory, validating ``schema`` if given."""
    tables = []
    for part in artifact_files(path):
        pf = _parquet(part)
        if schema is not None:
            validate(pf.schema_arrow, schema, what or str(part))
        tables.append(pf.read(columns=columns))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if schema is not None and columns is None:
        table = conform(table, schema)
    return table


def rejects_path(out: str | os.PathLike) -> Path:
    """Where a data stage writes its rejects: ``clean.parquet`` -> ``clean.rejects.parquet``."""
    out = Path(out)
    if out.suffix == ".parquet":
        return out.with_name(out.stem + ".rejects.parquet")
    return out / "rejects.parquet"


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: str | os.PathLike) -> str:
    """A short content fingerprint of an input.

    Artifacts and checkpoints use the fingerprint recorded in their metadata (cheap and exact:
    it hashes their producer's config and inputs); other files are hashed by content; folders
    combine their files' fingerprints.
    """
    from lfft.data import remote  # s3:// gs:// az://: names, sizes and times of the objects

    if remote.is_url(path):
        return remote.fingerprint(path)
    path = Path(path)
    if path.is_file() and path.suffix == ".parquet":
        meta = read_meta(path)
        if "fingerprint" in meta:
            return meta["fingerprint"]
        return file_digest(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        from lfft.model.checkpoint import INFO_FILE  # the checkpoint layout (imports no torch)

        info = path / INFO_FILE
        if info.exists():
            data = json.loads(info.read_text())
            if "fingerprint" in data:
                return data["fingerprint"]
        parts = {
            str(p.relative_to(path)): fingerprint(p)
            for p in sorted(path.rglob("*"))
            if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts)
        }
        return _hash_json(parts)
    raise LfftError(f"{path}: no such file or folder")


def fingerprints(paths: list[str | os.PathLike]) -> dict[str, str]:
    return {str(p): fingerprint(p) for p in paths}
