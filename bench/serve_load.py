"""Throughput of ``lfft serve``'s built-in backend at 1, 8 and 32 concurrent clients (a benchmark,
not a test).

    .venv/bin/python bench/serve_load.py                # CPU: the table of docs/benchmarks.md
    .venv/bin/python bench/serve_load.py --device cuda  # on a GPU

The model is the tiny one of bench/train_throughput.py (a 3.5M-parameter GPT-2: 4 layers,
width 64, the GPT-2 tokenizer; bench/train_setup.py), untrained, so every answer runs to
``--max-tokens`` unless it samples the end token. ``lfft serve`` runs in its own process on
127.0.0.1 with its defaults (``--concurrency 4``, ``--threads 0``: cores / 4, at least 1);
``--threads N`` passes another. Each client is a thread sending non-streaming chat requests
(prompts of the LLaMA-Factory KTO demo cut to 300 characters, temperature 1) one after another until
``--requests`` are done in all. Tokens/s counts the completion tokens the server reports
(``usage``). Latency is per request, from send to the last byte.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from train_setup import prepare, rows_from_demo  # noqa: E402

DATA = ROOT / "data" / "samples" / "formats" / "llamafactory-kto-en-demo" / "kto_en_demo.json"


def start(ckpt: Path, logs: Path, device: str, threads: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "lfft", "serve", "--model", str(ckpt), "--logs", str(logs)]
    cmd += ["--port", "0", "--device", device, "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving on "):
        raise SystemExit(f"serve did not start: {line!r}")
    return proc, line.split()[2] + "/v1/chat/completions"


def level(url: str, prompts: list[str], clients: int, total: int, max_tokens: int) -> dict:
    lat: list[float] = []
    tokens = [0]
    lock = threading.Lock()
    todo = iter(range(total))

    def client() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            body = {
                "messages": [{"role": "user", "content": prompts[i % len(prompts)]}],
                "max_tokens": max_tokens,
                "temperature": 1.0,
            }
            req = urllib.request.Request(
                url, json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=600) as r:
                out = json.load(r)
            with lock:
                lat.append(time.perf_counter() - t0)
                tokens[0] += out["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "clients": clients,
        "requests": len(lat),
        "wall_s": wall,
        "req_s": len(lat) / wall,
        "tok_s": tokens[0] / wall,
        "tok_per_req": tokens[0] / len(lat),
        "p50_ms": 1000 * statistics.median(lat),
        "p95_ms": 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=64, help="requests per level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="serve --threads (0: its default)")
    args = ap.parse_args()
    prompts = [r["prompt"][:300] for r in rows_from_demo(DATA)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, DATA)
        proc, url = start(work / "init", work / "logs", args.device, args.threads)
        try:
            level(url, prompts, 2, 4, args.max_tokens)  # warm-up
            rows = [
                level(url, prompts, int(c), args.requests, args.max_tokens)
                for c in args.clients.split(",")
            ]
        finally:
            proc.terminate()
            proc.wait()
    cpus = os.cpu_count()
    print(
        f"{platform.processor() or platform.machine()}, {cpus} cores, device {args.device}, ",
        end="",
    )
    print(f"serve --threads {args.threads}, max_tokens {args.max_tokens}, ", end="")
    print(f"{args.requests} requests per level, --concurrency 4\n")
    print("| clients | requests | req/s | completion tokens/s | tokens/request | p50 ms | p95 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['clients']} | {r['requests']} | {r['req_s']:.1f} | {r['tok_s']:.0f} | "
            f"{r['tok_per_req']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
