"""Benchmark incremental online rounds (a benchmark, not a test).

    .venv/bin/python bench/online_rounds.py --sessions 100000 1000000      # the issue's table
    .venv/bin/python bench/online_rounds.py --sessions 100000 --latency    # + time to promotion

For each size: synthesize that many sessions (8 files), consume them as round 1 and build the
partitioned state (:func:`lfft.online_data.update`, the bootstrap), run the batch stages
(collect, clean, normalize, split through the CLI) over the same consumed log, then a few rounds
of ``--new`` new sessions each (fresh ids); the next-to-last round adds ``--late`` thumbs on
sessions of the round before it (late feedback as it usually comes), the last one on random
sessions of the whole history (the worst case: every part holds some). Every step runs in its
own process under ``/usr/bin/time``: wall and CPU seconds, peak RSS. A round's cost is its
consume plus data update, as ``lfft online --once`` pays it (interpreter start-up and imports
included). Training is not part of it.

``--latency``: a ``lfft online --interval 1`` process with the tiny model on a work folder of
the first size; once it idles, one new session (3 lines) is appended and the script times how
long until ``history.jsonl`` records a promoted round that consumed it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from data_stages import LFFT, STAGES, measure  # noqa: E402

TINY = """
[init]
preset = "tiny"
[train]
batch_size = 8
max_length = 128
[online]
max_steps = 5
gate_max_rows = 200
gate_tolerance = 1000.0
"""


def update_round(logs: Path, work: Path) -> None:
    """One round's data work, as ``lfft online`` does it: consume, then update the parts."""
    from lfft import online, online_data
    from lfft.config import OnlineConfig
    from lfft.online_state import load_state
    from lfft.online_versions import OnlineLayout

    layout = OnlineLayout(work)
    cfg = OnlineConfig()
    cfgs = online.online_stage_configs(layout, cfg, None)
    n = load_state(layout.state).round + 1
    if not online.consume_round(logs, layout, n):
        sys.exit("nothing new to consume")
    info = online_data.update(layout, n, cfgs, cfg.part_mb)
    print(json.dumps(info["update"]))


def new_sessions(logs: Path, r: int, n: int, late: list[str], tmp: Path) -> None:
    """A log file of ``n`` new sessions (synth, ids made unique to round ``r``), plus a thumbs
    up on the second message of each session in ``late``."""
    out = tmp / f"new{r}"
    subprocess.run(
        [*LFFT, "synth", "--out", str(out), "--sessions", str(n), "--files", "1"]
        + ["--seed", str(r), "-q"],
        check=True,
    )
    data = b"".join(p.read_bytes() for p in sorted(out.glob("*.jsonl")))
    data = data.replace(b'"sess-', f'"r{r}-'.encode())
    for i, sid in enumerate(late):
        event = {"event": "feedback", "session_id": sid, "message_id": "m2"}
        event.update(kind="thumbs", value="up", ts=1_900_000_000 + i)
        data += json.dumps(event).encode() + b"\n"
    (logs / f"zz-round{r:03d}.jsonl").write_bytes(data)
    shutil.rmtree(out)


def run_size(sessions: int, args) -> dict:
    base = args.work / f"s{sessions}"
    shutil.rmtree(base, ignore_errors=True)
    logs, work, batch = base / "logs", base / "work", base / "batch"
    synth = ["synth", "--out", str(logs), "--sessions", str(sessions), "--files", "8", "-q"]
    measure([*LFFT, *synth])
    print(f"{sessions:,}: bootstrap ...", file=sys.stderr)
    rows = [("bootstrap: round 1 consumes every session", _round(logs, work))]
    print(f"{sessions:,}: batch stages ...", file=sys.stderr)
    total = {"wall": 0.0, "cpu": 0.0, "rss": 0.0}
    for name, src, out, _ in STAGES:
        source = work / "consumed" if src is None else batch / src
        m = measure([*LFFT, name, str(source), "--out", str(batch / out), "-q"])
        total = {k: total[k] + m[k] if k != "rss" else max(total[k], m[k]) for k in total}
    rng = random.Random(0)
    for r in range(2, args.rounds + 2):
        late, what = [], f"round {r}: {args.new:,} new sessions"
        if r == args.rounds:  # late feedback on the previous round's sessions (the usual case)
            late = [f"r{r - 1}-{i:07d}" for i in rng.sample(range(args.new), args.late)]
            what += f" + {args.late} late thumbs on round {r - 1}'s sessions"
        elif r == args.rounds + 1:  # on random sessions of the whole history (the worst case)
            late = [f"sess-{i:07d}" for i in rng.sample(range(sessions), args.late)]
            what += f" + {args.late} late thumbs on random old sessions"
        new_sessions(logs, r, args.new, late, base)
        print(f"{sessions:,}: {what} ...", file=sys.stderr)
        rows.append((what, _round(logs, work)))
    if not args.keep and not args.latency:
        shutil.rmtree(base, ignore_errors=True)
    return {"sessions": sessions, "batch": total, "rows": rows, "base": base}


def _round(logs: Path, work: Path) -> dict:
    m = measure([sys.executable, __file__, "--_round", str(logs), str(work)])
    m["update"] = json.loads(m["stdout"].strip().splitlines()[-1])
    return m


def latency(run: dict, args) -> float:
    """Seconds from appending a new session to the history's record of its promotion."""
    base = run["base"]
    logs, work, config = base / "logs", base / "live", base / "lfft.toml"
    config.write_text(TINY)
    cmd = [*LFFT, "online", "--logs", str(logs), "--work", str(work), "--config", str(config)]
    proc = subprocess.Popen([*cmd, "--interval", "1"], stdout=subprocess.DEVNULL)
    try:
        history = work / "history.jsonl"
        _wait(lambda: history.exists() and len(_records(history)) >= 1, 7200)  # round 1: all
        time.sleep(2)  # idle: no round in progress
        before = len(_records(history))
        sid, ts = "latency-1", 1_950_000_000
        lines = [
            {"event": "message", "session_id": sid, "message_id": "u", "role": "user"},
            {"event": "message", "session_id": sid, "message_id": "a", "role": "assistant"},
            {"event": "feedback", "session_id": sid, "message_id": "a", "kind": "thumbs"},
        ]
        lines[0].update(content="How far is the moon?", ts=ts)
        lines[1].update(content="About 384,000 km.", parent_id="u", ts=ts + 1)
        lines[2].update(value="up", ts=ts + 2)
        t0 = time.perf_counter()
        (logs / "zz-latency.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        _wait(lambda: any(r.get("promoted") for r in _records(history)[before:]), 3600)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()


def _records(history: Path) -> list[dict]:
    return [json.loads(line) for line in history.read_text().splitlines() if line]


def _wait(done, limit: float) -> None:
    t0 = time.perf_counter()
    while not done():
        if time.perf_counter() - t0 > limit:
            sys.exit("timed out waiting for lfft online")
        time.sleep(0.05)


def print_run(run: dict) -> None:
    b = run["batch"]
    print(f"\n{run['sessions']:,} sessions consumed before the rounds\n")
    print(
        "| step | new lines | sessions touched | parts rewritten / new / merged | parts | "
        "wall s | CPU s | peak RSS MiB | CPU / batch | load |"
    )
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| batch stages over the consumed log (collect→split) | | | | | {b['wall']:.1f} | "
        f"{b['cpu']:.1f} | {b['rss']:,.0f} | 1.00 | |"
    )
    for what, m in run["rows"]:
        u = m["update"]
        parts = f"{u['parts_rewritten']} / {u['parts_new']} / {u['parts_merged']}"
        print(
            f"| {what} | {u['lines_new']:,} | {u['sessions_touched']:,} | {parts} | "
            f"{u['parts']} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['rss']:,.0f} | "
            f"{m['cpu'] / b['cpu']:.3f} | {m['load']:.1f} |"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_round":
        update_round(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[100_000])
    p.add_argument("--rounds", type=int, default=3, help="rounds after the bootstrap")
    p.add_argument("--new", type=int, default=1000, help="new sessions per round")
    p.add_argument("--late", type=int, default=100, help="late thumbs in the last two rounds")
    p.add_argument("--latency", action="store_true", help="time to promotion (first size)")
    p.add_argument("--work", type=Path, default=Path("/tmp/lfft-online-bench"))
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    print(f"machine: {platform.platform()}, {platform.python_version()}, 2026 run", flush=True)
    runs = [run_size(n, args) for n in args.sessions]
    for run in runs:
        print_run(run)
    if args.latency:
        seconds = latency(runs[0], args)
        print(
            f"\ntime to first promotion: {seconds:.1f} s from appending a new session to the "
            f"history's promoted record ({runs[0]['sessions']:,} sessions consumed, "
            "`--interval 1`, tiny model, 5 steps)"
        )
        if not args.keep:
            shutil.rmtree(runs[0]["base"], ignore_errors=True)


if __name__ == "__main__":
    main()
