"""Inputs in object storage: ``s3://``, ``gs://`` (``gcs://``) and ``az://`` URLs, read through
pyarrow's filesystems (S3, GCS and Azure Blob support ship in the pyarrow wheels: no other
library). A URL is a file, or a prefix read like a folder (every data file under it, by name).

Objects are streamed as the readers ask for them (JSON Lines and CSV sequentially, Parquet by
ranges): nothing is downloaded first. Inside lfft a URL travels as a ``Path``, which folds its
``//`` into ``/`` (``s3:/bucket/key``); :func:`is_url` and :func:`url_of` accept both spellings.

Credentials come from the environment, the way each cloud's SDK reads them, and are never
passed through lfft's own data (a URL with a password or a query string is refused, so none
can reach a file name in the output's metadata or rejects):

- S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``), ``AWS_PROFILE``
  or the shared credentials files; ``AWS_REGION``; ``AWS_ENDPOINT_URL`` (``_S3``) for an
  S3-compatible server (MinIO, moto).
- GCS: ``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's application-default credentials;
  ``STORAGE_EMULATOR_HOST`` for an emulator.
- Azure: ``AZURE_STORAGE_ACCOUNT_NAME`` plus ``AZURE_STORAGE_ACCOUNT_KEY`` or
  ``AZURE_STORAGE_SAS_TOKEN`` or a service principal (``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``,
  ``AZURE_CLIENT_SECRET``).

``LFFT_CLOUD_CREDENTIALS=default`` leaves the choice to the SDK's default chain (instance
roles, managed identities) instead of stopping when none of the above is set;
``LFFT_CLOUD_CREDENTIALS=anonymous`` reads public S3/GCS buckets unsigned.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
from pyarrow import fs as pafs

from lfft.errors import LfftError

SCHEMES = {"s3": "s3", "gs": "gs", "gcs": "gs", "az": "az"}
_URL = re.compile(r"^(s3|gs|gcs|az):/+(.*)$")
_READ_BUFFER = 1 << 20
_sizes: dict[str, int] = {}  # object sizes seen when listing (saves a request per file)


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an object-storage URL (also as a ``Path`` folded it)."""
    return _URL.match(os.fspath(path)) is not None


def url_of(path: str | os.PathLike) -> str:
    """``s3:/bucket/key`` or ``s3://bucket/key`` -> ``s3://bucket/key`` (LfftError if it holds
    credentials or options, or names no bucket)."""
    text = os.fspath(path)
    m = _URL.match(text)
    if m is None:
        raise LfftError(f"{text}: not an s3://, gs:// or az:// URL")
    scheme, rest = SCHEMES[m.group(1)], m.group(2).rstrip("/")
    bucket = rest.split("/", 1)[0]
    if "@" in bucket or "?" in rest or "#" in rest:
        shown = bucket.rsplit("@", 1)[-1].split("?", 1)[0]  # never echo a secret
        raise LfftError(
            f"{m.group(1)}://{shown}/...: credentials and options belong in environment "
            "variables, not in the URL (docs/formats.md#object-storage-s3-gs-az)"
        )
    if not bucket:
        raise LfftError(f"{text}: the URL names no bucket")
    return f"{scheme}://{rest}"


def expand(path: str | os.PathLike, is_data_file: Any) -> list[Path]:
    """The data files a URL names: the object itself, or every object under the prefix whose
    name ``is_data_file`` accepts (hidden ones left out), sorted. LfftError when there are
    none or the store cannot be read."""
    url = url_of(path)
    found = _objects(url, is_data_file)
    if not found:
        fs, key = _filesystem(url)
        bucket = key.split("/", 1)[0]
        if _call(url, fs.get_file_info, bucket).type == pafs.FileType.NotFound:
            raise LfftError(f"{url}: no bucket {bucket!r} (or no access to it)")
        raise LfftError(
            f"{url}: no log files there (looked for .jsonl, .json, .csv, .tsv, .parquet, "
            "each also .gz/.zst)"
        )
    for name, info in found:
        _sizes[name] = info.size
    return [Path(name) for name, _ in found]


def _objects(url: str, is_data_file: Any) -> list[tuple[str, Any]]:
    """``(url, FileInfo)`` of the object ``url``, or of the data files under the prefix."""
    fs, key = _filesystem(url)
    info = _call(url, fs.get_file_info, key)
    if info.type == pafs.FileType.File:
        return [(url, info)]
    if info.type != pafs.FileType.Directory:
        return []
    scheme = url.split(":", 1)[0]
    listing = _call(url, fs.get_file_info, pafs.FileSelector(key, recursive=True))
    found = []
    for item in sorted(listing, key=lambda i: i.path):
        rel = item.path[len(key) :].lstrip("/")
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if item.type == pafs.FileType.File and not hidden and is_data_file(Path(rel)):
            found.append((f"{scheme}://{item.path}", item))
    return found


def file_size(path: str | os.PathLike) -> int:
    """The size in bytes of a local file or an object."""
    if not is_url(path):
        return os.stat(path).st_size
    url = url_of(path)
    if url not in _sizes:
        fs, key = _filesystem(url)
        _sizes[url] = _call(url, fs.get_file_info, key).size or 0
    return _sizes[url]


def open_binary(path: str | os.PathLike, compression: str | None) -> BinaryIO:
    """A sequential byte stream of an object, decompressed (``gzip``/``zstd``) on the fly."""
    url = url_of(path)
    fs, key = _filesystem(url)
    stream = _call(url, fs.open_input_stream, key, compression=compression)
    return io.BufferedReader(stream, _READ_BUFFER)


def open_random(path: str | os.PathLike) -> pa.NativeFile:
    """A random-access file of an object (Parquet reads its footer first)."""
    url = url_of(path)
    fs, key = _filesystem(url)
    return _call(url, fs.open_input_file, key)


def fingerprint(path: str | os.PathLike) -> str:
    """A fingerprint of a URL's objects from their names, sizes and modification times (no
    download): enough for ``lfft pipeline`` to see that an input changed."""
    from lfft.data.readers import is_data_file  # readers imports this module

    stamp = [[name, i.size, i.mtime_ns] for name, i in _objects(url_of(path), is_data_file)]
    return hashlib.blake2b(json.dumps(stamp).encode(), digest_size=8).hexdigest()


@contextlib.contextmanager
def local_copies(files: list[Path], run: Any) -> Iterator[tuple[list[Path], Any]]:
    """``files`` with remote ones copied (streamed, still compressed) into ``run``'s temporary
    folder, and a view of ``run`` whose rejects name the URLs again. For readers that need a
    local file (the lfft-events passes size and reopen files by name, also in worker
    processes); every other format streams from the store directly."""
    names: dict[str, str] = {}
    local: list[Path] = []
    for i, path in enumerate(files):
        if not is_url(path):
            local.append(path)
            continue
        url = url_of(path)
        fs, key = _filesystem(url)
        dest = Path(run.tmp) / "remote" / str(i) / Path(key).name
        dest.parent.mkdir(parents=True)
        with _call(url, fs.open_input_stream, key, compression=None) as src, open(dest, "wb") as f:
            shutil.copyfileobj(src, f, _READ_BUFFER)
        names[str(dest)] = str(path)
        local.append(dest)
    yield local, (_Renamed(run, names) if names else run)


class _Renamed:
    """A stage run whose reject sink shows local copies under their remote names."""

    def __init__(self, run: Any, names: dict[str, str]):
        self._run, self._names = run, names
        self.sink = self

    def add(self, source: str, location: str, *rest: Any) -> None:
        name = self._names.get(source)
        if name is not None:
            source, location = name, name + location[len(source) :]
        self._run.sink.add(source, location, *rest)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._run, attr)


# --- filesystems -------------------------------------------------------------------------------


def _filesystem(url: str) -> tuple[Any, str]:
    """The filesystem of a URL's bucket (one per bucket and process) and the object key."""
    scheme, rest = url.split("://", 1)
    bucket = rest.split("/", 1)[0]
    return _connect(scheme, bucket), rest


@functools.lru_cache(maxsize=16)
def _connect(scheme: str, bucket: str) -> Any:
    mode = os.environ.get("LFFT_CLOUD_CREDENTIALS", "").strip().lower()
    try:
        maker = {"s3": _s3, "gs": _gcs, "az": _azure}[scheme]
        return maker(bucket, mode)
    except (ImportError, AttributeError) as e:
        raise LfftError(
            f"{scheme}://: this pyarrow has no {scheme} filesystem ({e}); install the pyarrow "
            "wheel from PyPI (pip install 'lfft[cloud]')"
        ) from None


def _s3(bucket: str, mode: str) -> Any:
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if mode == "anonymous":
        kwargs: dict[str, Any] = {"anonymous": True}
    elif mode == "default" or _aws_credentials(env):
        kwargs = {}
    else:
        raise LfftError(
            f"s3://{bucket}: no AWS credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or LFFT_CLOUD_CREDENTIALS=default for an "
            "instance role, =anonymous for a public bucket"
        )
    if endpoint:
        kwargs["endpoint_override"] = endpoint
    if region is None and not endpoint:
        region = _call(f"s3://{bucket}", pafs.resolve_s3_region, bucket)
    return pafs.S3FileSystem(region=region or "us-east-1", **kwargs)


def _aws_credentials(env: os._Environ | dict[str, str]) -> bool:
    if any(
        env.get(k)
        for k in (
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        )
    ):
        return True
    files = (env.get("AWS_SHARED_CREDENTIALS_FILE"), env.get("AWS_CONFIG_FILE"))
    home = Path.home() / ".aws"
    return any(Path(f).is_file() for f in (*files, home / "credentials", home / "config") if f)


def _gcs(bucket: str, mode: str) -> Any:
    env = os.environ
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator:
        scheme, _, host = emulator.rpartition("://")
        return pafs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme=scheme or "http")
    if mode == "anonymous":
        return pafs.GcsFileSystem(anonymous=True)
    adc = Path.home() / ".config" / "gcloud" / "application_default_credentials.json"
    if mode != "default" and not env.get("GOOGLE_APPLICATION_CREDENTIALS") and not adc.is_file():
        raise LfftError(
            f"gs://{bucket}: no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS (or run "
            "gcloud auth application-default login), or LFFT_CLOUD_CREDENTIALS=default / "
            "=anonymous"
        )
    return pafs.GcsFileSystem()


def _azure(container: str, mode: str) -> Any:
    env = os.environ
    account = env.get("AZURE_STORAGE_ACCOUNT_NAME")
    key, sas = env.get("AZURE_STORAGE_ACCOUNT_KEY"), env.get("AZURE_STORAGE_SAS_TOKEN")
    principal = env.get("AZURE_CLIENT_ID") or env.get("AZURE_FEDERATED_TOKEN_FILE")
    if not account or not (key or sas or principal or mode == "default"):
        raise LfftError(
            f"az://{container}: set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or "
            "AZURE_STORAGE_SAS_TOKEN, or a service principal in AZURE_CLIENT_ID, "
            "AZURE_TENANT_ID, AZURE_CLIENT_SECRET)"
        )
    return pafs.AzureFileSystem(account, account_key=key, sas_token=None if key else sas)


def _call(url: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)`` with the store's errors as one line naming the URL."""
    try:
        return fn(*args, **kwargs)
    except (OSError, pa.ArrowException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ""
        if re.search(r"ACCESS_DENIED|AccessDenied|403|Forbidden|InvalidAccessKeyId", first):
            hint = " (check the credentials in the environment)"
        raise LfftError(f"{url}: cannot read ({first}){hint}") from None
