"""The work of a training step in two source trees, counted rather than timed: a check for
refactors of the training code that a busy machine cannot blur (bench/train_throughput_ab.py
times the same runs, and on a shared 2-core machine its rates swing by more than a refactor's
cost).

    .venv/bin/python bench/train_work_ab.py --base /tmp/base-tree
    .venv/bin/python bench/train_work_ab.py --base . --new-env KEY=VALUE  # one tree, two settings

The lfft runs of ``bench/train_throughput.py`` (same GPT-2, data and settings; ``--steps``,
``--warmup``, ... pass through to it), each in its own process per tree and measure, over the
optimizer steps after ``--warmup``: aten ops per step (torch.profiler), Python function calls
per step (cProfile), and in the cProfile run the minor page faults, user and system CPU seconds
per step and the peak RSS. Op and call counts are deterministic; page faults nearly so, CPU
seconds are not. Useful tokens are printed for both trees: equal counts mean the same batches.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNS = ["lfft sft", "lfft sft packed", "lfft sft+F", "lfft kto"]
MEASURES = ("ops", "calls")


class Probe:
    """The step clock's interface (``add``, ``result``) for ``run_lfft``: starts a profiler after
    optimizer step ``warmup`` and stops it after the last one."""

    def __init__(self, measure: str, warmup: int, steps: int):
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.warmup, self.steps, self.done = warmup, steps, 0
        self.prof = cProfile.Profile() if measure == "calls" else torch.profiler.profile()
        self.usage: list[resource.struct_rusage] = []
        register_optimizer_step_post_hook(self._step)

    def add(self, tokens: int, positions: int) -> None:  # lfft counts its own tokens
        pass

    def _step(self, optimizer, args, kwargs) -> None:
        self.done += 1
        python = isinstance(self.prof, cProfile.Profile)
        if self.done == self.warmup:
            self.usage.append(resource.getrusage(resource.RUSAGE_SELF))
            if python:
                self.prof.enable()
            else:
                self.prof.start()
        elif self.done == self.steps:
            if python:
                self.prof.disable()
            else:
                self.prof.stop()
            self.usage.append(resource.getrusage(resource.RUSAGE_SELF))

    def result(self) -> dict:
        n = self.steps - self.warmup
        (a, b), out = self.usage, {"steps": self.done}
        if isinstance(self.prof, cProfile.Profile):
            stats = pstats.Stats(self.prof).stats
            out["calls"] = sum(v[1] for v in stats.values()) / n
            out["by_function"] = {}
            for k, v in stats.items():
                where = _where(k)
                out["by_function"][where] = out["by_function"].get(where, 0) + v[1] / n
            out["faults"] = (b.ru_minflt - a.ru_minflt) / n
            out["user"], out["sys"] = (b.ru_utime - a.ru_utime) / n, (b.ru_stime - a.ru_stime) / n
            out["peak_mb"] = b.ru_maxrss / 1024
        else:
            events = self.prof.key_averages()
            out["ops"] = sum(e.count for e in events if e.key.startswith("aten::")) / n
            out["by_function"] = {e.key: e.count / n for e in events}
        return out


def _where(key: tuple) -> str:
    """A cProfile function key as ``file:name``, the same in both trees: paths from the package
    (``lfft/...``, ``torch/...``), no line numbers (edits move them)."""
    path, _, name = key
    if "/lfft/" in path:
        path = "lfft/" + path.split("/lfft/", 1)[1]
    name = re.sub(r" at 0x[0-9a-f]+", "", name)  # a builtin's type object: its address
    return f"{path.split('site-packages/')[-1]}:{name}"


def child(name: str, measure: str, work: Path, passed: list[str]) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    import train_throughput

    args = train_throughput.parser().parse_args(passed)
    torch.set_num_threads(args.threads)
    probe = Probe(measure, args.warmup, args.steps)
    result = train_throughput.run_lfft(name, work, args, probe)
    print("RESULT " + json.dumps(result))


def run_child(tree: Path, name: str, measure: str, work: Path, env: dict, passed: list[str]):
    cmd = [sys.executable, __file__, "--child", name, "--measure", measure, "--work", str(work)]
    env = {**os.environ, **env, "PYTHONPATH": str(tree)}
    proc = subprocess.run([*cmd, *passed], capture_output=True, text=True, env=env, cwd=tree)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise SystemExit(f"{tree} {name} ({measure}): failed\n{proc.stderr[-3000:]}")
    return json.loads(line[-1][7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, help="the other source tree (old code)")
    p.add_argument("--new", type=Path, default=ROOT, help="the tree under test (default: this)")
    p.add_argument("--new-env", action="append", default=[], help="KEY=VALUE for new's runs only")
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated runs")
    p.add_argument("--top", type=int, default=8, help="how many differing functions to list")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--measure", choices=MEASURES, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args, passed = p.parse_known_args()  # the rest goes to train_throughput.py
    if args.child:
        return child(args.child, args.measure, args.work, passed)
    if args.base is None:
        p.error("--base is required")
    trees = {"base": (args.base.resolve(), {}), "new": (args.new.resolve(), {})}
    trees["new"][1].update(kv.split("=", 1) for kv in args.new_env)
    names = args.runs.split(",")
    got: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="lfft-work-") as tmp:
        sys.path.insert(0, str(HERE))
        from train_setup import prepare
        from train_throughput import DATA

        prepare(Path(tmp), DATA)
        for name in names:
            for which, (tree, env) in trees.items():
                ops = run_child(tree, name, "ops", Path(tmp), env, passed)
                calls = run_child(tree, name, "calls", Path(tmp), env, passed)
                got[(name, which)] = {"ops_by": ops.pop("by_function"), **ops, **calls}
                print(f"{name} {which}: done", file=sys.stderr, flush=True)
    report(names, got, args.top)


def report(names: list[str], got: dict, top: int) -> None:
    cols = [("aten ops", "ops", "{:,.0f}"), ("Python calls", "calls", "{:,.0f}")]
    cols += [("page faults", "faults", "{:,.0f}"), ("user CPU s", "user", "{:.3f}")]
    cols += [("sys CPU s", "sys", "{:.3f}"), ("peak RSS MiB", "peak_mb", "{:,.0f}")]
    cols += [("useful tokens", "tokens", "{:,}")]
    print("\nper optimizer step (base / new); useful tokens: of all timed steps\n")
    print("| run | " + " | ".join(c[0] for c in cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    for name in names:
        base, new = got[(name, "base")], got[(name, "new")]
        cells = [f"{f.format(base[k])} / {f.format(new[k])}" for _, k, f in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name in names:
        for key, what in (("ops_by", "profiler event"), ("by_function", "Python function")):
            a, b = got[(name, "base")][key], got[(name, "new")][key]
            diff = {k: b.get(k, 0) - a.get(k, 0) for k in a.keys() | b.keys()}
            diff = {k: d for k, d in diff.items() if d}
            if not diff:
                print(f"\n{name}: every {what} count equal")
                continue
            total = sum(diff.values())
            print(f"\n{name}: {what} counts per step that differ (new - base: {total:+,.1f}):")
            for k in sorted(diff, key=lambda k: -abs(diff[k]))[:top]:
                print(f"  {diff[k]:+8.1f}  {k}")


if __name__ == "__main__":
    main()
