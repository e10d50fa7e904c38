"""Helpers of the serve tests: a server in a thread, the events it logged, collect on them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lfft.config import ServeConfig
from lfft.serve.server import make_server


@contextmanager
def running(logs: Path, model: Path | None = None, upstream: str | None = None, **cfg: Any):
    """A serve on 127.0.0.1 (a free port) in a thread; yields its ``http://.../v1`` URL."""
    cfg.setdefault("device", "cpu")
    cfg.setdefault("default_max_tokens", 8)
    server = make_server(ServeConfig(port=0, **cfg), logs, model, upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        server.RequestHandlerClass.service.log.close()


def events(logs: Path) -> list[dict[str, Any]]:
    """Every line of every log file, parsed (a torn line fails the test)."""
    out = []
    for path in sorted(logs.glob("*.jsonl")):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path.name}: last line has no newline"
        out.extend(json.loads(line) for line in data.splitlines())
    return out


def collect_rows(logs: Path, tmp: Path) -> tuple[list[dict[str, Any]], int]:
    """``lfft collect`` on the log folder: (interaction rows, rejected count)."""
    from lfft.config import CollectConfig
    from lfft.data.collect import collect
    from lfft.io import read_table

    out = tmp / "interactions.parquet"
    collect([logs], out, CollectConfig(implicit=False))
    rejects = tmp / "interactions.rejects.parquet"
    n_rej = read_table(rejects).num_rows if rejects.exists() else 0
    return read_table(out).to_pylist(), n_rej


@contextmanager
def client(url: str, key: str = "none") -> Iterator[Any]:
    from openai import OpenAI

    c = OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)
    try:
        yield c
    finally:
        c.close()


def post(url: str, body: Any, key: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST JSON (or raw bytes) with urllib: (status, decoded body)."""
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
