"""lfft serve under load (loopback only): 200 concurrent chats, and ``kill -9`` in the middle."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_fixtures import events, post, running

from lfft.data.events import EventError, parse_line

pytestmark = pytest.mark.slow
N = 200


def _chat(url: str, i: int) -> str | None:
    """One chat (every third streamed); the answer's id, or None when the server was gone."""
    body = {
        "messages": [{"role": "user", "content": f"question {i % 50}"}],
        "max_tokens": 4,
        "user": f"u{i % 7}",
    }
    try:
        if i % 3:
            status, out = post(url + "/chat/completions", body)
            return out["id"] if status == 200 else None
        return _stream(url, body)
    except (OSError, http.client.HTTPException):  # the kill can cut a response in half
        return None


def _stream(url: str, body: dict) -> str | None:
    import urllib.request

    req = urllib.request.Request(
        url + "/chat/completions",
        json.dumps({**body, "stream": True}).encode(),
        {"Content-Type": "application/json"},
    )
    mid, done = None, False
    with urllib.request.urlopen(req, timeout=120) as r:
        for line in r:
            if line.startswith(b"data: {"):
                mid = json.loads(line[6:])["id"]
            done = done or line.strip() == b"data: [DONE]"
    return mid if done else None


def _all_lines_parse(logs: Path) -> int:
    n = 0
    for path in sorted(logs.glob("*.jsonl")):
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path.name}: torn last line"
        for k, line in enumerate(data.splitlines(keepends=True)):
            try:
                parse_line(line, 0, k)
            except EventError as e:
                raise AssertionError(f"{path.name}:{k + 1}: {e.reason} {e.detail}") from None
            n += 1
    return n


def test_200_concurrent_chats_each_answer_logged_once(tmp_path, model_tiny_ckpt):
    logs = tmp_path / "logs"
    with running(logs, model_tiny_ckpt, rotate_mb=0.01) as url, ThreadPoolExecutor(N) as pool:
        ids = list(pool.map(lambda i: _chat(url, i), range(N)))
    assert None not in ids and len(set(ids)) == N
    logged = [e["message_id"] for e in events(logs) if e.get("role") == "assistant"]
    assert sorted(logged) == sorted(ids)  # every answer exactly once
    assert len(list(logs.glob("*.jsonl"))) > 1  # rotated (10 KB files) with no line lost
    assert _all_lines_parse(logs) == len(events(logs))


def _start(logs: Path, model: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "lfft", "serve", "--model", str(model), "--logs", str(logs)]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", "--device", "cpu", "--default-max-tokens", "4"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    line = proc.stdout.readline()  # "serving on http://127.0.0.1:PORT (...)"
    assert line.startswith("serving on "), line
    return proc, line.split()[2] + "/v1"


def test_kill_9_under_load_leaves_a_log_that_parses(tmp_path, model_tiny_ckpt):
    logs = tmp_path / "logs"
    proc, url = _start(logs, model_tiny_ckpt)
    with ThreadPoolExecutor(N) as pool:
        futures = [pool.submit(_chat, url, i) for i in range(N)]
        while sum(f.done() for f in futures) < N // 4:  # killed mid-load
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        answered = [i for i in (f.result() for f in futures) if i]
    assert N // 4 <= len(answered) < N
    proc, url = _start(logs, model_tiny_ckpt)  # restart on the same log folder
    try:
        assert _chat(url, 1) is not None
    finally:
        proc.terminate()
        proc.wait()
    assert _all_lines_parse(logs) > len(answered)
    logged = [e["message_id"] for e in events(logs) if e.get("role") == "assistant"]
    assert len(set(logged)) == len(logged) and set(answered) <= set(logged)
