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
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
from collect_memory import python  # noqa: E402
from owui_fixtures import chat_model, feedback, message  # noqa: E402

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


def write_export(folder: Path, chats: int, seed: int = 0) -> tuple[int, int]:
    """Write the two exports of ``chats`` chats; returns (feedback records, bytes written)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n_fb = 0
    with (
        open(folder / "chat-export-1.json", "w") as cf,
        open(folder / "feedback-history-export-1.json", "w") as ff,
    ):
        cf.write("[")
        ff.write("[")
        for c in range(chats):
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            regen = c % 3 == 0
            ids = ["a1", "a2"] if regen else ["a1"]
            msgs = [message("u1", None, "user", f"What is {a} plus {b}?", ids)]
            msgs.append(message("a1", "u1", "assistant", f"{a} plus {b} is {a + b + regen}."))
            if regen:
                msgs.append(message("a2", "u1", "assistant", f"{a} plus {b} is {a + b}."))
            chat = chat_model(f"chat-{c:07d}", msgs, current=ids[-1], user_id=f"u{c % 97}")
            cf.write(("," if c else "") + json.dumps(chat))
            for mid, rating in [("a1", -1), ("a2", 1)] if regen else [("a1", 1)]:
                rec = feedback(f"fb-{n_fb}", chat, mid, rating, details=8 if rating > 0 else 3)
                if n_fb % 3:
                    rec["snapshot"] = None
                ff.write(("," if n_fb else "") + json.dumps(rec))
                n_fb += 1
        cf.write("]")
        ff.write("]")
    size = sum(p.stat().st_size for p in folder.iterdir())
    return n_fb, size


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
