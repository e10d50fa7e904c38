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


STAGES = [  # (stage, its input artifact (None: the logs), its output, takes --workers)
    ("collect", None, "interactions.parquet", True),
    ("clean", "interactions.parquet", "clean.parquet", True),
    ("normalize", "clean.parquet", "feedback.parquet", True),
    ("split", "feedback.parquet", "splits", False),
]


def run_size(sessions: int, args, pandas: bool) -> dict:
    """Synthesize (or reuse) the logs of ``sessions`` sessions and measure every step on them."""
    work: Path = args.work / f"s{sessions}"
    logs = work / "logs"
    if not logs.exists():
        synth = ["synth", "--out", str(logs), "--sessions", str(sessions), "--files", "8"]
        m = measure([*LFFT, *synth, "-q"])
        print(f"synth {sessions:,}: {m['wall']:.1f} s", file=sys.stderr)
    size_mb = sum(p.stat().st_size for p in log_files(logs)) / 2**20
    floor = measure([sys.executable, __file__, "--_floor", str(logs)])
    lines = int(floor["stdout"].strip())
    steps = [("json.loads floor", lines, floor)]
    workers: list[tuple[str, dict, dict]] = []
    for name, src, out, parallel in STAGES:
        rows = lines if src is None else count_rows(work / src)
        cmd = [*LFFT, name, str(logs) if src is None else str(work / src), "--out"]
        print(f"{name} {sessions:,} ...", file=sys.stderr)
        one = measure([*cmd, str(work / out), "-q"])
        steps.append((f"lfft {name}", rows, one))
        if args.compare_workers and parallel:
            other = work / f"w{args.compare_workers}-{out}"
            n = ["--workers", str(args.compare_workers), "-q"]
            workers.append((name, one, measure([*cmd, str(other), *n])))
            shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink()
    if pandas:
        print("pandas ...", file=sys.stderr)
        cmd = [sys.executable, __file__, "--_pandas", str(logs), str(work / "pd.parquet")]
        steps.append(("pandas script (same joins)", lines, measure(cmd)))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "sessions": sessions,
        "lines": lines,
        "mib": size_mb,
        "steps": steps,
        "workers": workers,
    }


def print_steps(run: dict) -> None:
    print(f"\n{run['sessions']:,} sessions ({run['lines']:,} lines, {run['mib']:,.0f} MiB)\n")
    print(
        "| step | rows in | wall s | CPU s | rows/s (wall) | rows/CPU s | peak RSS MiB "
        "| CPU / floor | load avg |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    floor_cpu = run["steps"][0][2]["cpu"]
    for name, rows, m in run["steps"]:
        print(
            f"| {name} | {rows:,} | {m['wall']:.1f} | {m['cpu']:.1f} | {rows / m['wall']:,.0f} "
            f"| {rows / m['cpu']:,.0f} | {m['rss']:,.0f} | {m['cpu'] / floor_cpu:.2f}x "
            f"| {m['load']:.1f} |"
        )
    wall, cpu, peak = chain(run)
    total = f"**{wall:.1f}** | **{cpu:.1f}** | | | {peak:,.0f}"
    print(f"| **lfft chain (collect→split)** | | {total} | | |")


def chain(run: dict) -> tuple[float, float, float]:
    ms = [m for name, _, m in run["steps"] if name.startswith("lfft")]
    return sum(m["wall"] for m in ms), sum(m["cpu"] for m in ms), max(m["rss"] for m in ms)


def print_sizes(runs: list[dict]) -> None:
    """Peak RSS and CPU seconds of each stage side by side, one column pair per size."""
    a, b = runs[0], runs[-1]
    sa, sb = _short(a["sessions"]), _short(b["sessions"])
    per = f"CPU s per 100k sessions at {sb}"
    print(f"\n| stage | peak RSS, {sa} | peak RSS, {sb} | CPU s, {sa} | CPU s, {sb} | {per} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    steps_b = {name: m for name, _, m in b["steps"]}
    for name, _, m in a["steps"]:
        if not name.startswith("lfft") or name not in steps_b:
            continue
        n = steps_b[name]
        print(
            f"| {name[5:]} | {m['rss']:,.0f} MiB | {n['rss']:,.0f} MiB | {m['cpu']:.1f} "
            f"| {n['cpu']:.1f} | {n['cpu'] * 100_000 / b['sessions']:.1f} |"
        )


def print_workers(runs: list[dict], n: int) -> None:
    print(
        f"\n| stage, input | 1 process: wall s / CPU s / peak RSS | {n} workers: wall s / CPU s / "
        "peak RSS | CPU added |"
    )
    print("| --- | --- | --- | ---: |")
    for run in runs:
        for name, one, many in run["workers"]:
            cells = [f"{m['wall']:.1f} / {m['cpu']:.1f} / {m['rss']:,.0f} MiB" for m in (one, many)]
            added = many["cpu"] / one["cpu"] - 1
            print(f"| {name}, {run['sessions']:,} sessions | {' | '.join(cells)} | {added:+.0%} |")


def print_targets(run: dict) -> None:
    """Issue 2's targets, on the largest input."""
    wall, cpu, peak = chain(run)
    steps = {name: m for name, _, m in run["steps"]}
    ratio = steps["lfft collect"]["cpu"] / steps["json.loads floor"]["cpu"]
    rss = max(m["rss"] for name, _, m in run["steps"] if name.startswith("lfft"))
    print(f"\n| target (issue 2), {run['sessions']:,} sessions | result | met |")
    print("| --- | --- | --- |")
    took = f"{wall:.1f} s ({cpu:.1f} s of CPU)"
    print(f"| whole chain under 3 minutes (wall) | {took} | {_yes(wall < 180)} |")
    print(f"| peak RSS under 2 GiB | {rss:,.0f} MiB | {_yes(rss < 2048)} |")
    print(f"| collect within 3x of json.loads (CPU) | {ratio:.2f}x | {_yes(ratio <= 3)} |")


def _short(n: int) -> str:
    return f"{n // 10**6}M" if n % 10**6 == 0 else f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[100_000])
    ap.add_argument("--work", type=Path, default=HERE / "out" / "data")
    ap.add_argument("--pandas", action="store_true", help="the pandas reference (smallest size)")
    ap.add_argument(
        "--compare-workers",
        type=int,
        metavar="N",
        help="also collect/clean/normalize with N workers",
    )
    ap.add_argument("--keep", action="store_true", help="keep the logs and artifacts")
    args = ap.parse_args()
    sizes = sorted(args.sessions)
    runs = [run_size(n, args, pandas=args.pandas and n == sizes[0]) for n in sizes]
    print(
        f"\n`{' '.join(['bench/data_stages.py', *sys.argv[1:]])}`: {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for run in runs:
        print_steps(run)
    if len(runs) > 1:
        print_sizes(runs)
    if args.compare_workers:
        print_workers(runs, args.compare_workers)
    print_targets(runs[-1])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_floor":
        print(json_floor(Path(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_pandas":
        pandas_reference(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
