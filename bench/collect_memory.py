"""collect's peak memory against its input size, with the default and a small memory budget (a
benchmark, not a test).

    .venv/bin/python bench/collect_memory.py                      # 200k and 800k sessions
    .venv/bin/python bench/collect_memory.py --sessions 200000 800000 --budgets 512 64

Synthesizes lfft-events logs (``lfft synth --files 8``) for each size, then runs ``collect``
once per size and budget (``CollectConfig.memory_budget``, MB), each in a fresh process that
reports its own peak RSS (``ru_maxrss``) and CPU seconds, and prints a Markdown table: peak RSS
should stay about flat across sizes under a small budget, and grow under the default until the
records outgrow it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import resource, sys
from pathlib import Path
from lfft.config import CollectConfig
from lfft.data.collect import collect
cfg = CollectConfig(format="events", memory_budget=float(sys.argv[3]))
result = collect([Path(sys.argv[1])], Path(sys.argv[2]), cfg)
use = resource.getrusage(resource.RUSAGE_SELF)
print(use.ru_maxrss, use.ru_utime + use.ru_stime, result.rows_in, result.rows_out,
      result.extra.get("spilled to disk", 0))
"""


def python(args: list[str]) -> str:
    """Run this interpreter on ``args`` with this tree first on the path; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[200_000, 800_000])
    ap.add_argument("--budgets", type=float, nargs="+", default=[512.0, 64.0], help="MB")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lfft-collect-memory"))
    args = ap.parse_args()
    print(
        f"`bench/collect_memory.py --sessions {' '.join(map(str, args.sessions))} --budgets "
        f"{' '.join(f'{b:g}' for b in args.budgets)}`: {platform.node()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}\n"
    )
    print("| sessions | lines | MiB of logs | budget MB | peak RSS MiB | CPU s | wall s "
          "| records spilled | load avg |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.sessions:
        logs = args.work / f"logs-{n}"
        if not logs.exists():
            synth = ["synth", "--out", str(logs), "--sessions", str(n), "--files", "8", "-q"]
            python(["-m", "lfft", *synth])
        size = sum(p.stat().st_size for p in logs.iterdir()) / 2**20
        for budget in args.budgets:
            out = args.work / f"interactions-{n}-{budget:g}.parquet"
            t0 = time.perf_counter()
            rss_kib, cpu, lines, _, spilled = python(
                ["-c", CHILD, str(logs), str(out), str(budget)]
            ).split()
            wall = time.perf_counter() - t0
            print(
                f"| {n:,} | {int(lines):,} | {size:,.0f} | {budget:g} | {int(rss_kib) / 1024:,.0f} "
                f"| {float(cpu):.1f} | {wall:.1f} | {int(spilled):,} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
            out.unlink()
            (out.parent / out.name.replace(".parquet", ".rejects.parquet")).unlink()


if __name__ == "__main__":
    main()
