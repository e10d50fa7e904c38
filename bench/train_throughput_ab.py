"""Training throughput of two source trees, interleaved: each run of ``bench/train_throughput.py``
on the base tree and on this one back to back (the order swapped every round), so that a shared
machine's load falls on both alike. A benchmark for refactors of the training code.

    .venv/bin/python bench/train_throughput_ab.py --base /tmp/base-tree --rounds 2

Both trees train the same GPT-2 (4 layers, width 64) on the same data with the same settings (those
of ``train_throughput.py``: ``--steps``, ``--batch-size``, ...); the lfft under test is chosen by
``PYTHONPATH``. ``--bench`` picks the ``train_throughput.py`` that is run (it finds its data
relative to its own folder); ``--new`` puts another tree than this one under test. Prints useful
tokens per CPU second per run and round and the new/base ratio of the best of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ["lfft sft", "lfft sft packed", "lfft sft+F", "lfft kto", "bare loop"]


def child(bench: Path, tree: Path, name: str, work: Path, passed: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(bench), "--only", name, "--work", str(work), *passed]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise SystemExit(f"{tree.name} {name}: failed\n{proc.stderr[-3000:]}")
    result = json.loads(line[-1][7:])
    return result["tokens"] / result["cpu"]  # per CPU second: a shared machine disturbs it less


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, type=Path, help="the other source tree (old code)")
    p.add_argument("--new", type=Path, default=ROOT, help="the tree under test (default: this)")
    p.add_argument("--bench", type=Path, default=ROOT / "bench" / "train_throughput.py")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated runs")
    args, passed = p.parse_known_args()  # the rest goes to train_throughput.py
    trees = {"base": args.base.resolve(), "new": args.new.resolve()}
    names = args.runs.split(",")
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="lfft-ab-") as tmp:
        work = Path(tmp)
        bench = runpy.run_path(str(args.bench))
        bench["prepare"](work, bench["DATA"])  # the data and the GPT-2 checkpoint
        for r in range(args.rounds):
            for name in names:
                order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
                for which in order:
                    rate = child(args.bench, trees[which], name, work, passed)
                    rates.setdefault((name, which), []).append(rate)
                    print(
                        f"[{r + 1}/{args.rounds}] {name} {which}: {rate:,.0f} tok/CPU s", flush=True
                    )
    print("\n| run | base tok/CPU s (rounds) | new tok/CPU s (rounds) | new / base (best) |")
    print("| --- | --- | --- | ---: |")
    for name in names:
        base, new = rates[(name, "base")], rates[(name, "new")]
        fmt = ", ".join
        print(
            f"| {name} | {fmt(f'{x:,.0f}' for x in base)} | {fmt(f'{x:,.0f}' for x in new)} "
            f"| {max(new) / max(base):.3f} |"
        )


if __name__ == "__main__":
    main()
