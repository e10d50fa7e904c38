"""Benchmark the data stages (a benchmark, not a test).

    .venv/bin/python bench/data_stages.py --sessions 1000000          # the issue's target run
    .venv/bin/python bench/data_stages.py --sessions 100000 --pandas  # with the pandas reference

Synthesizes lfft-events logs, then measures, each in its own process (peak RSS is that process's
``ru_maxrss``): the floor (a bare ``json.loads`` of every line), ``collect``, ``clean``,
``normalize`` and ``split`` through the ``lfft`` CLI, and optionally a straightforward pandas
script doing the same joins (what a user would write instead). Prints a Markdown table to paste
into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LFFT = [sys.executable, "-m", "lfft"]


def measure(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB) via /usr/bin/time."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, check=False
    )
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return secs, rss_kb / 1024


def _open(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        import pyarrow as pa

        return pa.CompressedInputStream(str(path), "zstd")
    return open(path, "rb")


def log_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".jsonl" in p.name)


def json_floor(folder: Path) -> int:
    """The floor: parse every line with json.loads and do nothing else."""
    n = 0
    for path in log_files(folder):
        with _open(path) as f:
            for line in f:
                try:  # noqa: SIM105 (a with-block per line would slow the floor down)
                    json.loads(line)
                except ValueError:
                    pass
                n += 1
    return n


def pandas_reference(folder: Path, out: Path) -> int:
    """What a user would write with pandas: load all events, join feedback and prompts."""
    import pandas as pd

    records = []
    for path in log_files(folder):
        with _open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    df = pd.DataFrame.from_records([r for r in records if isinstance(r, dict)])
    del records
    if "id" in df:
        df = pd.concat([df[df["id"].isna()], df[df["id"].notna()].drop_duplicates("id")])
    msgs = df[df["event"] == "message"].drop_duplicates(["session_id", "message_id"])
    fb = df[df["event"].isin(["feedback", "action"])]
    asst = msgs[msgs["role"] == "assistant"]
    parents = msgs[["session_id", "message_id", "content", "role"]].rename(
        columns={"message_id": "parent_id", "content": "prompt", "role": "parent_role"}
    )
    rows = asst.merge(parents, on=["session_id", "parent_id"], how="inner")
    rows = rows[rows["parent_role"] == "user"]
    fb = fb.assign(fb=fb[["kind", "value"]].astype(str).agg(":".join, axis=1))
    grouped = fb.groupby(["session_id", "message_id"])["fb"].agg(list).reset_index()
    rows = rows.merge(grouped, on=["session_id", "message_id"], how="left")
    rows = rows[["session_id", "message_id", "prompt", "content", "fb"]]
    rows["fb"] = rows["fb"].map(lambda v: v if isinstance(v, list) else [])
    rows.to_parquet(out)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=HERE / "out" / "data")
    ap.add_argument("--pandas", action="store_true", help="also run the pandas reference")
    ap.add_argument("--keep", action="store_true", help="keep the synthesized logs")
    args = ap.parse_args()

    work: Path = args.work / f"s{args.sessions}"
    logs = work / "logs"
    if not logs.exists():
        t, _ = measure(
            [
                *LFFT,
                "synth",
                "--out",
                str(logs),
                "--sessions",
                str(args.sessions),
                "--files",
                "8",
                "-q",
            ]
        )
        print(f"synth: {t:.1f} s", file=sys.stderr)
    lines = json_floor(logs)
    size_mb = sum(p.stat().st_size for p in log_files(logs)) / 2**20

    results = []
    t, rss = measure([sys.executable, __file__, "--_floor", str(logs)])
    results.append(("json.loads floor", lines, t, rss))
    # (stage, its input artifact (None: the logs), its arguments)
    stages = [
        ("collect", None, [str(logs), "--out", str(work / "interactions.parquet")]),
        (
            "clean",
            "interactions",
            [str(work / "interactions.parquet"), "--out", str(work / "clean.parquet")],
        ),
        (
            "normalize",
            "clean",
            [str(work / "clean.parquet"), "--out", str(work / "feedback.parquet")],
        ),
        ("split", "feedback", [str(work / "feedback.parquet"), "--out", str(work / "splits")]),
    ]
    import pyarrow.parquet as pq

    for name, src, rest in stages:
        rows = lines if src is None else pq.ParquetFile(work / f"{src}.parquet").metadata.num_rows
        t, rss = measure([*LFFT, name, *rest, "-q"])
        results.append((f"lfft {name}", rows, t, rss))
    chain = sum(r[2] for r in results if r[0].startswith("lfft"))
    if args.pandas:
        t, rss = measure(
            [sys.executable, __file__, "--_pandas", str(logs), str(work / "pd.parquet")]
        )
        results.append(("pandas script (same joins)", lines, t, rss))

    floor_t = results[0][2]
    print(
        f"\n`{' '.join(sys.argv)}` — {args.sessions:,} sessions, {lines:,} lines, "
        f"{size_mb:.0f} MiB of logs; {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}\n"
    )
    print("| step | rows in | seconds | rows/s | peak RSS MiB | vs json.loads floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, rows, t, rss in results:
        rate = f"{rows / t:,.0f}" if rows else "—"
        print(f"| {name} | {rows or 0:,} | {t:.1f} | {rate} | {rss:,.0f} | {t / floor_t:.2f}x |")
    print(f"| **lfft chain (collect→split)** | | **{chain:.1f}** | | | |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_floor":
        json_floor(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_pandas":
        pandas_reference(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
