"""Training parity: the same runs on two source trees must give bit-identical results (a check
for refactors of the training code, not a benchmark).

    .venv/bin/python bench/train_parity.py --base /tmp/base-tree     # base tree vs this one
    .venv/bin/python bench/train_parity.py --base /tmp/base-tree --only sft,kto-fb

Each tree trains the same runs on the CPU (the tiny 2-layer model and toy splits of the test
suite, fixed seeds): sft, kto and dpo without and with the feedback head (lambda 0.5), LoRA,
packing, early stopping, one process and 2-process gloo DDP / FSDP2 (``--nproc 2``), and a run
that this tree trains killed (SIGKILL) after a step checkpoint and resumed, the base tree
straight. Then, for every run, the files of the final
folder and of every step checkpoint must match: every tensor (weights, head, optimizer, scheduler
and RNG states) ``torch.equal``, every metrics row and ``lfft.json`` equal except wall-clock
fields. Prints one line per run and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMING = {"tokens_per_s", "mem_mb", "elapsed_s", "train_seconds"}  # wall clock: may differ
COMMON = dict(max_steps=6, batch_size=6, lr=3e-3, warmup_steps=1, log_every=1, eval_every=2)
COMMON.update(save_every=2, seed=3, device="cpu", grad_accum=2)
NONE = {"feedback_loss": "none"}
FB = {"lambda_": 0.5}
# name: (processes, settings); processes 2 = `lfft train --nproc 2` (gloo), "fsdp" adds --fsdp
RUNS: dict[str, tuple[int | str, dict]] = {
    "sft": (1, {"objective": "sft", **NONE}),
    "sft-fb": (1, {"objective": "sft", **FB}),
    "kto": (1, {"objective": "kto", **NONE}),
    "kto-fb": (1, {"objective": "kto", **FB}),
    "dpo": (1, {"objective": "dpo", **NONE}),
    "dpo-fb": (1, {"objective": "dpo", **FB}),
    "kto-fb-lora": (1, {"objective": "kto", "lora": True, **FB}),
    "dpo-fb-packed": (1, {"objective": "dpo", "packing": "on", **FB}),
    "sft-fb-early-stop": (1, {"lr": 1e-9, "eval_every": 1, "patience": 2, "max_steps": 20}),
    "ddp-sft": (2, {"objective": "sft", "grad_accum": 1, **NONE}),
    "ddp-sft-fb": (2, {"objective": "sft", "grad_accum": 1, **FB}),
    "ddp-kto": (2, {"objective": "kto", "grad_accum": 1, **NONE}),
    "ddp-kto-fb": (2, {"objective": "kto", "grad_accum": 1, **FB}),
    "ddp-dpo": (2, {"objective": "dpo", "grad_accum": 1, **NONE}),
    "ddp-dpo-fb": (2, {"objective": "dpo", "grad_accum": 1, **FB}),
    "ddp-kto-fb-lora": (2, {"objective": "kto", "grad_accum": 1, "lora": True, **FB}),
    "fsdp-sft": (2, {"objective": "sft", "grad_accum": 1, "fsdp": True, **NONE}),
    "fsdp-sft-fb": (2, {"objective": "sft", "grad_accum": 1, "fsdp": True, **FB}),
    "fsdp-kto-fb": (2, {"objective": "kto", "grad_accum": 1, "fsdp": True, **FB}),
    "fsdp-dpo-fb": (2, {"objective": "dpo", "grad_accum": 1, "fsdp": True, **FB}),
    "resumed-kto-fb": (1, {"objective": "kto", "max_steps": 40, "save_every": 4, **FB}),
}
KILL_AT = 12  # "resumed-*": SIGKILL once this step checkpoint exists, then --resume
# An intended difference from trees before 41bca88 (e.g. 453c36b): their FSDP saves with the head
# trained drew random numbers on rank 0 after the RNG state was recorded, so the torch RNG state
# of the step checkpoints after the first save differs; weights, losses and all else do not.
INTENDED = ("fsdp-", "-fb", "trainer_state.pt: /rng/torch")


def prepare(work: Path) -> None:
    """The toy splits and the tiny starting checkpoint of the test suite (tests/conftest.py)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # conftest imports tests/browser.py
    from lfft.config import InitConfig
    from lfft.model.init import init
    from tests.conftest import make_model_rows, write_model_split

    splits = work / "splits"
    for name, n, seed in (("train", 20, 0), ("val", 6, 1), ("test", 6, 2)):
        write_model_split(splits / f"{name}.parquet", make_model_rows(n, seed=seed))
    data = str(splits / "train.parquet")
    init(work / "init", InitConfig(data=data, layers=2, hidden=32, heads=4, vocab_size=400))


def _cli_flags(settings: dict) -> list[str]:
    flags = []
    for key, value in settings.items():
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is True:
            flags.append(flag)
        else:
            flags += [flag, str(value)]
    return flags


def train_all(tree: Path, work: Path, names: list[str], reuse: bool = False) -> None:
    """Every run with the lfft of ``tree`` (each in a fresh process) into ``work/<tree>/<run>``;
    ``reuse``: keep the runs that are there already."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    for name in names:
        procs, settings = RUNS[name]
        out = work / tree.name / name
        if reuse and (out / "lfft.json").exists():
            continue
        settings = {**COMMON, **settings}
        cmd = [sys.executable, "-m", "lfft", "train", "-m", str(work / "init")]
        cmd += ["-d", str(work / "splits"), "-o", str(out), "-q", *_cli_flags(settings)]
        if procs == 2:
            cmd += ["--nproc", "2"]
        start = time.perf_counter()
        if name.startswith("resumed-") and tree == ROOT:  # the base tree runs it straight
            _kill_and_resume(cmd, out, env, tree)
        else:
            _run(cmd, env, tree)
        print(f"  {tree.name}: {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def _run(cmd: list[str], env: dict, tree: Path) -> None:
    """Run in ``tree`` (``python -m`` puts the working folder first on the import path)."""
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def _kill_and_resume(cmd: list[str], out: Path, env: dict, tree: Path) -> None:
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, cwd=tree, stdout=quiet, stderr=quiet)
    mark = out / "checkpoints" / f"step-{KILL_AT}" / "trainer_state.json"
    while proc.poll() is None and not mark.exists():
        time.sleep(0.005)
    if proc.poll() is not None:
        raise SystemExit(f"{out.name}: finished before it could be killed; raise max_steps")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "lfft.json").exists():
        raise SystemExit(f"{out.name}: completed before the kill landed")
    _run([*cmd, "--resume"], env, tree)


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two training output folders (final model and step checkpoints)."""
    diffs = _compare_folder(a, b)
    for sub in sorted(p.relative_to(a) for p in (a / "checkpoints").glob("*") if p.is_dir()):
        diffs += [f"{sub}: {d}" for d in _compare_folder(a / sub, b / sub)]
    return diffs


def _compare_folder(a: Path, b: Path) -> list[str]:
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import load_file

    files_a = sorted(p.name for p in a.iterdir() if p.is_file())
    files_b = sorted(p.name for p in b.iterdir() if p.is_file()) if b.is_dir() else []
    if files_a != files_b:
        return [f"files {files_a} != {files_b}"]
    diffs = []
    for name in files_a:
        fa, fb = a / name, b / name
        if name.endswith(".safetensors"):
            diffs += [f"{name}: {d}" for d in _tensor_diffs(load_file(fa), load_file(fb))]
        elif name.endswith(".pt"):
            ta = torch.load(fa, weights_only=True)
            diffs += [f"{name}: {d}" for d in _tensor_diffs(ta, torch.load(fb, weights_only=True))]
        elif name.endswith(".parquet"):
            rows_a, rows_b = (pq.read_table(f).to_pylist() for f in (fa, fb))
            if _untimed(rows_a) != _untimed(rows_b):
                diffs.append(f"{name}: rows differ")
        elif name in ("lfft.json", "trainer_state.json"):
            ja, jb = (json.loads(f.read_text()) for f in (fa, fb))
            if _untimed(ja) != _untimed(jb):
                diffs.append(f"{name}: {_first_json_diff(_untimed(ja), _untimed(jb))}")
        elif fa.read_bytes() != fb.read_bytes():
            diffs.append(f"{name}: bytes differ")
    return diffs


def _tensor_diffs(x, y, path: str = "") -> list[str]:
    import torch

    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        same = isinstance(y, torch.Tensor) and isinstance(x, torch.Tensor)
        same = same and x.dtype == y.dtype and x.shape == y.shape
        if same and x.is_floating_point():  # bit-exact, NaN where the other has NaN
            nan = torch.isnan(x)
            same = torch.equal(nan, torch.isnan(y)) and torch.equal(x[~nan], y[~nan])
        elif same:
            same = torch.equal(x, y)
        return [] if same else [path or "tensor"]
    if isinstance(x, dict) and isinstance(y, dict):
        if x.keys() != y.keys():
            return [f"{path}: keys {sorted(map(str, x))} != {sorted(map(str, y))}"]
        return [d for k in x for d in _tensor_diffs(x[k], y[k], f"{path}/{k}")]
    if isinstance(x, list | tuple) and isinstance(y, list | tuple) and len(x) == len(y):
        return [
            d
            for i, (u, v) in enumerate(zip(x, y, strict=True))
            for d in _tensor_diffs(u, v, f"{path}/{i}")
        ]
    return [] if x == y else [f"{path}: {x!r} != {y!r}"]


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _first_json_diff(x, y, path: str = "") -> str:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                return _first_json_diff(x.get(k), y.get(k), f"{path}.{k}")
    return f"{path}: {x!r} != {y!r}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, type=Path, help="the other source tree (old code)")
    p.add_argument("--only", help="comma-separated subset of the runs")
    p.add_argument("--work", type=Path, help="keep the outputs here (default: a temporary folder)")
    p.add_argument("--reuse-base", action="store_true", help="keep the base runs found in --work")
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(RUNS)
    with tempfile.TemporaryDirectory(prefix="lfft-parity-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "init").exists():
            prepare(work)
        trees = [args.base.resolve(), ROOT]
        if trees[0].name == trees[1].name:
            raise SystemExit("--base: give the other tree a folder name different from this one")
        train_all(trees[0], work, names, reuse=args.reuse_base)
        train_all(trees[1], work, names)
        failed = 0
        for name in names:
            diffs = compare(work / trees[0].name / name, work / trees[1].name / name)
            prefix, suffix, what = INTENDED
            intended = name.startswith(prefix) and name.endswith(suffix)
            if intended and diffs and all(d.endswith(what) for d in diffs):
                print(f"{name}: identical but the torch RNG state after an FSDP save (intended)")
                continue
            failed += bool(diffs)
            print(f"{name}: {'identical' if not diffs else 'DIFFERENT: ' + '; '.join(diffs[:5])}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
