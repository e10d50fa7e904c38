"""Benchmark the data stages (a benchmark, not a test).

    .venv/bin/python bench/data_stages.py --sessions 1000000          # the issue's target run
    .venv/bin/python bench/data_stages.py --sessions 100000 --pandas  # with the pandas reference

Synthesizes lfft-events logs (8 files), then measures, each in its own process under
``/usr/bin/time``: the floor (a bare ``json.loads`` of every line), ``collect``, ``clean``,
``normalize`` and ``split`` through the ``lfft`` CLI, and optionally a straightforward pandas
script doing the same joins (what a user would write instead). For each it reports wall seconds,
CPU seconds (user + sys, children included: the fair measure on a shared machine), rows/s, peak
RSS (the largest process: ``ru_maxrss``) and the load average around it, and prints a Markdown
table to paste into ``docs/benchmarks.md``.
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
ROOT = HERE.parent
LFFT = [sys.executable, "-m", "lfft"]
sys.path.insert(0, str(ROOT))  # the floor and pandas subprocesses read logs with lfft's reader


def measure(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd``: wall and CPU seconds, peak RSS (MiB), 1-minute load average before/after."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", *cmd], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    rss_kb, user, sys_s = proc.stderr.strip().splitlines()[-1].split()
    return {
        "wall": wall,
        "cpu": float(user) + float(sys_s),
        "rss": int(rss_kb) / 1024,
        "load": (load0 + os.getloadavg()[0]) / 2,
        "stdout": proc.stdout,
    }


def log_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".jsonl" in p.name)


def _open(path: Path):
    """Plain, .gz or .zst (through lfft's reader: pyarrow's zstd stream, buffered)."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith((".zst", ".zstd")):
        from lfft.data.readers import open_binary  # imports pyarrow: only when needed

        return open_binary(path)
    return open(path, "rb")


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
    fb = fb.assign(fb=fb["kind"].map(str) + ":" + fb["value"].map(str))
    grouped = fb.groupby(["session_id", "message_id"])["fb"].agg(list).reset_index()
    rows = rows.merge(grouped, on=["session_id", "message_id"], how="left")
    rows = rows[["session_id", "message_id", "prompt", "content", "fb"]]
    rows["fb"] = rows["fb"].map(lambda v: v if isinstance(v, list) else [])
    rows.to_parquet(out)
    return len(rows)


def count_rows(path: Path) -> int:
    from lfft.io import count_rows as count

    return count(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=HERE / "out" / "data")
    ap.add_argument("--pandas", action="store_true", help="also run the pandas reference")
    ap.add_argument("--workers", type=int, help="--workers for collect, clean and normalize")
    ap.add_argument("--keep", action="store_true", help="keep the logs and artifacts")
    args = ap.parse_args()

    work: Path = args.work / f"s{args.sessions}"
    logs = work / "logs"
    if not logs.exists():
        synth = ["synth", "--out", str(logs), "--sessions", str(args.sessions), "--files", "8"]
        m = measure([*LFFT, *synth, "-q"])
        print(f"synth: {m['wall']:.1f} s", file=sys.stderr)
    size_mb = sum(p.stat().st_size for p in log_files(logs)) / 2**20

    floor = measure([sys.executable, __file__, "--_floor", str(logs)])
    lines = int(floor["stdout"].strip())
    results = [("json.loads floor", lines, floor)]
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    # (stage, its input artifact (None: the logs), its output, extra arguments)
    stages = [
        ("collect", None, "interactions.parquet", workers),
        ("clean", "interactions.parquet", "clean.parquet", workers),
        ("normalize", "clean.parquet", "feedback.parquet", workers),
        ("split", "feedback.parquet", "splits", []),
    ]
    for name, src, out, extra in stages:
        rows = lines if src is None else count_rows(work / src)
        source = str(logs) if src is None else str(work / src)
        print(f"{name} ...", file=sys.stderr)
        cmd = [*LFFT, name, source, "--out", str(work / out), *extra, "-q"]
        results.append((f"lfft {name}", rows, measure(cmd)))
    chain = [m for name, _, m in results if name.startswith("lfft")]
    if args.pandas:
        print("pandas ...", file=sys.stderr)
        cmd = [sys.executable, __file__, "--_pandas", str(logs), str(work / "pd.parquet")]
        results.append(("pandas script (same joins)", lines, measure(cmd)))

    print(
        f"\n`{' '.join(['bench/data_stages.py', *sys.argv[1:]])}`: {args.sessions:,} sessions, "
        f"{lines:,} lines, {size_mb:,.0f} MiB of logs; {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}\n"
    )
    print(
        "| step | rows in | wall s | CPU s | rows/s | peak RSS MiB | wall / floor | CPU / floor "
        "| load avg |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rows, m in results:
        ratios = f"{m['wall'] / floor['wall']:.2f}x | {m['cpu'] / floor['cpu']:.2f}x"
        print(
            f"| {name} | {rows:,} | {m['wall']:.1f} | {m['cpu']:.1f} | {rows / m['wall']:,.0f} "
            f"| {m['rss']:,.0f} | {ratios} | {m['load']:.1f} |"
        )
    wall, cpu = sum(m["wall"] for m in chain), sum(m["cpu"] for m in chain)
    peak = max(m["rss"] for m in chain)
    total = f"**{wall:.1f}** | **{cpu:.1f}** | | {peak:,.0f}"
    print(f"| **lfft chain (collect→split)** | | {total} | | | |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_floor":
        print(json_floor(Path(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_pandas":
        pandas_reference(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
