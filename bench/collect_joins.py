"""collect's time and peak memory on multi-file exports that must be joined: Langfuse
(observations + scores) and LangSmith (runs + feedback), at two sizes (a benchmark, not a test).

    .venv/bin/python bench/collect_joins.py                        # 250k and 1M records each
    .venv/bin/python bench/collect_joins.py --records 100000 --formats langsmith

Builds each export with the fixture builders of ``tests/export_fixtures.py`` (the upstream
schemas, field for field), in 8 files per role like a blob-storage export's windows, 1% of the
observations / runs exported twice (an overlapping window, a newer ``updated_at``/``end_time``),
then runs ``collect`` once per export in a fresh process that reports its own peak RSS
(``ru_maxrss``) and CPU seconds, and prints a Markdown table. A trace holds 4 records:

- Langfuse: a SPAN, two GENERATIONs under it (turn 1 and turn 2 of a session), one score on
  the trace (NUMERIC 1..5 or BOOLEAN by trace) -> 2 rows;
- LangSmith: a root chain run (thread id in its metadata), two chat model runs (LangChain
  serialized messages and generations), one feedback on the root (``user_score`` 0/1) -> 2 rows.

Peak RSS should stay about flat from 1/4 of the size to the full size: the join holds one chunk
of records (pass 1) and one hash partition (pass 2) at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from collect_memory import python  # noqa: E402 (beside this file)
from export_fixtures import (  # noqa: E402 (tests/ on the path first)
    chat,
    lc_generation,
    lc_serialized,
    lf_observation,
    lf_score,
    ls_feedback,
    ls_run,
)

FILES = 8  # per role
CHILD = """
import resource, sys
from pathlib import Path
from lfft.config import CollectConfig
from lfft.data.collect import collect
cfg = CollectConfig(memory_budget=float(sys.argv[3]))
result = collect([Path(sys.argv[1])], Path(sys.argv[2]), cfg)
use = resource.getrusage(resource.RUSAGE_SELF)
print(use.ru_maxrss, use.ru_utime + use.ru_stime, result.rows_in, result.rows_out,
      sum(result.rejects.values()))
"""
QUESTION = "How do I {} a {} in Python without {}? Please show an example."
WORDS = ("sort", "parse", "merge", "stream", "cache", "index", "dict", "file", "list", "loop")


def question(i: int) -> str:
    return QUESTION.format(WORDS[i % 10], WORDS[(i // 10) % 10], WORDS[(i // 100) % 10])


def answer(i: int) -> str:
    return f"Use the standard library: example {i}.\n\n```python\nresult = sorted(data)\n```"


def langfuse_traces(t: int) -> tuple[list[dict], list[dict]]:
    """One trace's observations and score (see the module docstring)."""
    tid, sid, start = f"trace-{t:08d}", f"session-{t // 3:08d}", "2024-05-01 10:00:00.000"
    q1, a1, q2, a2 = question(t), answer(t), question(t + 1), answer(t + 1)
    obs = [
        lf_observation(f"span-{t}", tid, "SPAN", session_id=sid, start=start),
        lf_observation(
            f"gen-{t}-1",
            tid,
            messages=chat(q1, system="You are a helpful assistant."),
            output={"role": "assistant", "content": a1},
            parent=f"span-{t}",
            session_id=sid,
            start=start,
        ),
        lf_observation(
            f"gen-{t}-2",
            tid,
            messages=chat(q1, a1, q2, system="You are a helpful assistant."),
            output={"role": "assistant", "content": a2},
            parent=f"span-{t}",
            session_id=sid,
            start="2024-05-01 10:00:30.000",
        ),
    ]
    if t % 2:
        score = lf_score(f"score-{t}", tid, "user-feedback", "BOOLEAN", t % 4 == 1)
    else:
        score = lf_score(f"score-{t}", tid, "quality", "NUMERIC", 1 + t % 5, comment="ok")
    return obs, [score]


def langsmith_traces(t: int) -> tuple[list[dict], list[dict]]:
    """One trace's runs and feedback (see the module docstring)."""
    tid = f"00000000-0000-4000-8000-{t:012d}"
    system = lc_serialized("SystemMessage", "You are a helpful assistant.")
    q1, a1, q2, a2 = question(t), answer(t), question(t + 1), answer(t + 1)
    turns = [
        [system, lc_serialized("HumanMessage", q1)],
        [system, lc_serialized("HumanMessage", q1), lc_serialized("AIMessage", a1)]
        + [lc_serialized("HumanMessage", q2)],
    ]
    runs = [ls_run(tid, tid, "chain", metadata={"thread_id": f"thread-{t // 3}"})]
    for k, (msgs, reply) in enumerate(zip(turns, (a1, a2), strict=True)):
        runs.append(
            ls_run(
                f"{tid[:-12]}{t + 10**11 * (k + 1):012d}",
                tid,
                parent=tid,
                inputs={"messages": [msgs]},
                outputs={"generations": [[lc_generation(reply)]], "llm_output": None},
                metadata={"thread_id": f"thread-{t // 3}", "ls_model_name": "gpt-4o-mini"},
            )
        )
    return runs, [ls_feedback(f"fb-{t}", tid, "user_score", t % 3 != 0, trace_id=tid)]


# format -> (traces, folder of main records, of feedback, the field and value of a newer copy)
BUILDERS = {
    "langfuse": (
        langfuse_traces,
        "proj-1/observations_v2",
        "proj-1/scores",
        {"updated_at": "2024-05-02 10:00:00.000"},
    ),
    "langsmith": (
        langsmith_traces,
        "runs",
        "feedback",
        {"end_time": "2024-05-02T10:00:00.000000+00:00"},
    ),
}


def build(fmt: str, records: int, folder: Path) -> int:
    """Write an export of about ``records`` records (4 per trace, 1% of traces' main records
    exported twice), a line at a time; returns the exact number of records."""
    traces_of, main_dir, feedback_dir, newer = BUILDERS[fmt]
    n_traces, written = records // 4, 0
    per_file = -(-n_traces // FILES)
    for f in range(FILES):
        paths = [
            folder / sub / f"2024-05-01T{f:02d}-00-00.jsonl" for sub in (main_dir, feedback_dir)
        ]
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(paths[0], "w", encoding="utf-8") as mains, open(paths[1], "w") as feedback:
            for t in range(f * per_file, min(n_traces, (f + 1) * per_file)):
                main, fb = traces_of(t)
                if t % 100 == 7:  # re-exported by the next window, updated later
                    main.append(dict(main[-1], **newer))
                mains.writelines(json.dumps(r) + "\n" for r in main)
                feedback.writelines(json.dumps(r) + "\n" for r in fb)
                written += len(main) + len(fb)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--formats", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    ap.add_argument("--budget", type=float, default=512.0, help="collect's memory_budget, MB")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lfft-collect-joins"))
    ap.add_argument("--build", nargs=3, metavar=("FORMAT", "RECORDS", "FOLDER"), help="internal")
    args = ap.parse_args()
    if args.build:
        fmt, n, folder = args.build
        print(build(fmt, int(n), Path(folder)))
        return
    print(
        f"`bench/collect_joins.py --records {' '.join(map(str, args.records))} --formats "
        f"{' '.join(args.formats)} --budget {args.budget:g}`: {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}\n"
    )
    print("| format | records | MiB of files | peak RSS MiB | CPU s | wall s | rows out "
          "| rejected | load avg |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for fmt in args.formats:
        for n in args.records:
            folder = args.work / f"{fmt}-{n}"
            count_file = folder / ".records"
            if not count_file.exists():  # in a child: this process's memory stays small,
                # and a child's ru_maxrss starts at its parent's (Linux keeps it across exec)
                built = python([__file__, "--build", fmt, str(n), str(folder)])
                count_file.write_text(built.strip())
            size = sum(p.stat().st_size for p in folder.rglob("*.jsonl")) / 2**20
            out = args.work / f"out-{fmt}-{n}" / "interactions.parquet"
            t0 = time.perf_counter()
            fields = python(["-c", CHILD, str(folder), str(out), str(args.budget)]).split()
            wall = time.perf_counter() - t0
            rss_kib, cpu, rows_in, rows_out, rejected = fields
            assert int(rows_in) == int(count_file.read_text()), "every record is counted"
            print(
                f"| {fmt} | {int(rows_in):,} | {size:,.0f} | {int(rss_kib) / 1024:,.0f} "
                f"| {float(cpu):.1f} | {wall:.1f} | {int(rows_out):,} | {int(rejected):,} "
                f"| {os.getloadavg()[0]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
