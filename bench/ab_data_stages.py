"""Compare the data stages of two checkouts: equal artifacts row by row, and CPU time (a benchmark,
not a test).

    git worktree add /tmp/base 453c36b
    .venv/bin/python bench/ab_data_stages.py --base /tmp/base --sessions 100000 --runs 3

Synthesizes lfft-events logs once (``lfft synth --files 8``), then runs ``collect``, ``clean``,
``normalize``, ``split`` and ``export`` (every format) through the CLI of each checkout
(``PYTHONPATH`` pointing at it), each side on its own chain of artifacts, interleaved run by run
(base, this tree, then this tree, base, ...) so that both see the same load. Every run is
measured under ``/usr/bin/time``: CPU seconds (user + sys) and peak RSS. Then every artifact and
rejects file of the two chains is compared row by row, in order, with its ``lfft`` metadata
(input paths and fingerprints aside: they hash the config of every stage upstream, so a new
config key changes them; config keys one side lacks are listed), and the exports byte by
byte. Prints a Markdown table of medians and the verdict; exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXPORTS = ("trl-sft", "trl-kto", "trl-dpo", "jsonl")
# (stage, its input (None: the logs), its output, extra arguments)
STAGES = [
    ("collect", None, "interactions.parquet", []),
    ("clean", "interactions.parquet", "clean.parquet", []),
    ("normalize", "clean.parquet", "feedback.parquet", []),
    ("split", "feedback.parquet", "splits", []),
] + [("export", "feedback.parquet", f"{fmt}.jsonl", ["--format", fmt]) for fmt in EXPORTS]
ARTIFACTS = [
    "interactions.parquet",
    "interactions.rejects.parquet",
    "clean.parquet",
    "clean.rejects.parquet",
    "feedback.parquet",
    "feedback.rejects.parquet",
    *(f"splits/{name}.parquet" for name in ("train", "val", "test", "rejects")),
]


def run(tree: Path, args: list[str]) -> tuple[float, float]:
    """``lfft ARGS`` with ``tree`` on PYTHONPATH: (CPU seconds, peak RSS MiB)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = ["/usr/bin/time", "-f", "%M %U %S", sys.executable, "-m", "lfft", *args]
    # in the tree: ``-m`` puts the working folder first on sys.path, before PYTHONPATH
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed ({tree}): lfft {' '.join(args)}\n{proc.stderr[-2000:]}")
    rss_kb, user, sys_s = proc.stderr.strip().splitlines()[-1].split()
    return float(user) + float(sys_s), int(rss_kb) / 1024


def same_artifact(work: Path, name: str) -> list[str]:
    """Differences between the two sides' artifact ``name``: rows (in order), schema, metadata
    (a reject's ``source``, the input's path, is compared relative to its side's folder)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lfft.schemas import decode_metadata

    problems = []
    a, b = work / "base" / name, work / "this" / name
    ta, tb = pq.read_table(a), pq.read_table(b)
    if "source" in ta.column_names and "reason" in ta.column_names:  # a rejects file
        for side in ("base", "this"):
            prefix = f"{work / side}/"
            t = ta if side == "base" else tb
            rel = pc.replace_substring(t.column("source"), prefix, "")
            t = t.set_column(t.schema.get_field_index("source"), "source", rel)
            ta, tb = (t, tb) if side == "base" else (ta, t)
    if not ta.schema.equals(tb.schema):
        problems.append("schema differs")
    elif not ta.equals(tb):
        rows = min(ta.num_rows, tb.num_rows)
        first = next((i for i in range(rows) if ta.slice(i, 1) != tb.slice(i, 1)), rows)
        problems.append(f"rows differ ({ta.num_rows:,} vs {tb.num_rows:,}; first at row {first})")
    ma, mb = (decode_metadata(pq.read_metadata(p).metadata) for p in (a, b))
    for meta in (ma, mb):
        # hashes of the input paths and of every config upstream (a new key changes them)
        meta.pop("fingerprint", None)
        meta.pop("inputs", None)
    ca, cb = ma.pop("config", {}), mb.pop("config", {})
    if ma != mb:
        problems.append(f"metadata differs: {ma} vs {mb}")
    if {k: v for k, v in ca.items() if k in cb} != {k: v for k, v in cb.items() if k in ca}:
        problems.append("config differs")
    added = sorted(set(cb) - set(ca))
    if added:
        problems.append(f"(config keys only in this tree: {', '.join(added)})")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="checkout of the code to compare")
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs of each stage")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lfft-ab"))
    ap.add_argument(
        "--stages",
        nargs="+",
        choices=list(dict.fromkeys(stage for stage, *_ in STAGES)),
        help="only these stages (and their artifacts); their inputs must be in --work",
    )
    args = ap.parse_args()
    stages = [s for s in STAGES if args.stages is None or s[0] in args.stages]
    trees = {"base": args.base.resolve(), "this": ROOT}
    logs = args.work / f"logs-{args.sessions}"
    if not logs.exists():
        synth = ["synth", "--out", str(logs), "--sessions", str(args.sessions), "--files", "8"]
        run(ROOT, [*synth, "-q"])
    cpu: dict[tuple[str, str], list[float]] = {}
    rss: dict[tuple[str, str], list[float]] = {}
    for stage, src, out, extra in stages:
        label = f"{stage} {extra[-1]}" if extra else stage
        print(f"{label} ...", file=sys.stderr)
        for r in range(args.runs):
            for side in ("base", "this") if r % 2 == 0 else ("this", "base"):
                work = args.work / side
                source = logs if src is None else work / src
                argv = [stage, str(source), "--out", str(work / out), *extra, "-q"]
                c, m = run(trees[side], argv)
                cpu.setdefault((label, side), []).append(c)
                rss.setdefault((label, side), []).append(m)

    load = os.getloadavg()[0]
    print(f"\n`bench/ab_data_stages.py {' '.join(sys.argv[1:])}`: base {trees['base']}, this "
          f"tree {ROOT}; {platform.node()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; medians of {args.runs} interleaved runs, load "
          f"{load:.1f} at the end\n")  # fmt: skip
    print("| stage | base CPU s | this CPU s | change | base peak RSS MiB | this peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    labels = list(dict.fromkeys(label for label, _ in cpu))
    for label in labels:
        b, t = (statistics.median(cpu[(label, s)]) for s in ("base", "this"))
        mb, mt = (statistics.median(rss[(label, s)]) for s in ("base", "this"))
        change = f"{100 * (t / b - 1):+.1f}%"
        print(f"| {label} | {b:.2f} | {t:.2f} | {change} | {mb:,.0f} | {mt:,.0f} |")

    sys.path.insert(0, str(ROOT))
    bad = 0
    print()
    written = {out.split("/")[0] for _, _, out, _ in stages}
    for name in ARTIFACTS:
        if name.split("/")[0].replace(".rejects", "") not in written:
            continue
        problems = same_artifact(args.work, name)
        bad += any(not p.startswith("(") for p in problems)
        print(f"{name}: {'; '.join(problems) or 'equal'}")
    for fmt in EXPORTS if any(stage == "export" for stage, *_ in stages) else ():
        a, b = (args.work / side / f"{fmt}.jsonl" for side in ("base", "this"))
        equal = filecmp.cmp(a, b, shallow=False)
        bad += not equal
        print(f"{fmt}.jsonl: {'equal' if equal else 'DIFFERS'}")
    print("verdict:", "all artifacts equal" if not bad else f"{bad} artifacts differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
