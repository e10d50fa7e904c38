"""collect's peak memory on an Open WebUI feedback export joined with its chat export, against
the input size (a benchmark, not a test).

    .venv/bin/python bench/openwebui_join.py                       # 100k and 1M chats
    .venv/bin/python bench/openwebui_join.py --chats 20000 200000

Writes, per size, a chat export (one JSON array of N chats, a third with a regenerated reply)
and a feedback export (one record per rated reply, every third with its snapshot, the others
without, as newer Open WebUI versions export them), streamed to disk; then runs ``collect`` on
the folder in a fresh process that reports its peak RSS (``ru_maxrss``) and CPU seconds, and
prints a Markdown table. The records come from the test fixture builders
(``tests/owui_fixtures.py``), which follow the upstream schemas.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
from collect_memory import python  # noqa: E402
from owui_fixtures import write_export  # noqa: E402

CHILD = """
import resource, sys
from pathlib import Path
from lfft.config import CollectConfig
from lfft.data.collect import collect
result = collect([Path(sys.argv[1])], Path(sys.argv[2]), CollectConfig())
use = resource.getrusage(resource.RUSAGE_SELF)
print(use.ru_maxrss, use.ru_utime + use.ru_stime, result.rows_in, result.rows_out,
      sum(result.rejects.values()), result.extra["joined"]["openwebui"])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chats", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lfft-owui-join"))
    args = ap.parse_args()
    sizes = " ".join(map(str, args.chats))
    machine = f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    columns = ["chats", "feedback records", "records in", "MiB of exports", "rows out"]
    columns += ["rejected", "joined", "peak RSS MiB", "CPU s", "wall s", "load avg"]
    print(f"`bench/openwebui_join.py --chats {sizes}`: {machine}\n")
    print("| " + " | ".join(columns) + " |\n" + "| --- " * len(columns) + "|")
    for n in args.chats:
        folder = args.work / f"owui-{n}"
        n_fb, size = write_export(folder, n)
        out = args.work / f"i-{n}.parquet"
        t0 = time.perf_counter()
        stdout = python(["-c", CHILD, str(folder), str(out)])
        wall = time.perf_counter() - t0
        rss_kib, cpu, rows_in, rows_out, rejected, joined = stdout.split()
        print(
            f"| {n:,} | {n_fb:,} | {int(rows_in):,} | {size / 2**20:,.0f} | {int(rows_out):,} "
            f"| {int(rejected):,} | {int(joined):,} | {int(rss_kib) / 1024:,.0f} "
            f"| {float(cpu):.1f} | {wall:.1f} | {os.getloadavg()[0]:.1f} |"
        )


if __name__ == "__main__":
    main()
