"""The whole loop, live: ``lfft online`` -> ``lfft serve`` -> a simulated user -> ``lfft online``
rounds -> serve reloads -> is the user happier? (``make loop-demo``; a demo, not a test.)

    .venv/bin/python bench/loop_demo.py [--rounds 3] [--chats 48] [--work work/loop]

1. The sample logs (``data/samples/events``) are copied into ``WORK/logs`` and one ``lfft online
   --once`` round (``data/samples/lfft.toml``) makes the first model: ``WORK/online/current``.
2. ``lfft serve --model WORK/online/current --logs WORK/logs`` starts on a free local port.
3. Each round the **simulated user** sends ``--chats`` chats through the official ``openai``
   client (prompts of the sample logs, temperature 1, ``max_tokens`` 32) and judges each answer
   by one documented preference: **it likes short answers** (at most ``--max-words`` words;
   thumbs up, else thumbs down, sent to ``/v1/feedback``). Satisfaction = the share of thumbs up.
4. ``lfft online --once`` consumes those lines, trains (``filtered``: the LM learns from the
   liked answers), gates and promotes; serve answers the next round with the new version.
   The demo's ``[online]`` settings (``--set``, default :data:`SETS`): the gate is opened
   (``gate_tolerance`` 1000: the gate set is drawn from the sample logs, whose long answers
   this user dislikes, so with the strict gate every candidate was rejected; docs/online.md
   measures both), no replay of the sample logs (``replay_ratio`` 0: with replay, their long
   answers outweighed the few new liked ones and answers grew longer), 40 steps a round.

Prints one row per round (version, satisfaction, mean words) and, with matplotlib, plots
satisfaction per round to ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
LFFT = [sys.executable, "-m", "lfft"]
# the demo's [online] settings over data/samples/lfft.toml (see the docstring)
SETS = ["online.gate_tolerance=1000", "online.replay_ratio=0", "online.max_steps=40"]


def prompts() -> list[str]:
    import gzip

    out = []
    for path in sorted((SAMPLES / "events").iterdir()):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            for line in f:
                try:  # the samples hold deliberately bad lines too
                    e = json.loads(line.decode("utf-8"))
                except ValueError:
                    continue
                if type(e) is dict and e.get("role") == "user" and type(e.get("content")) is str:
                    out.append(e["content"])
    return sorted(set(out))


def online(work: Path, logs: Path, sets: list[str]) -> None:
    cmd = [*LFFT, "online", "--once", "--logs", str(logs), "--work", str(work / "online")]
    cmd += ["--config", str(SAMPLES / "lfft.toml")]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True)


def user_round(url: str, asks: list[str], max_words: int, seed: int) -> dict:
    """One round of the simulated user: chats, judgements, feedback."""
    from openai import OpenAI

    c = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
    rng = random.Random(seed)
    liked, words, versions = 0, 0, set()
    for ask in asks:
        r = c.chat.completions.create(
            model="lfft",
            messages=[{"role": "user", "content": ask}],
            max_tokens=32,
            temperature=1.0,
            seed=rng.randrange(2**31),
            user=f"sim-{seed}",
        )
        n = len(r.choices[0].message.content.split())
        good = n <= max_words
        liked += good
        words += n
        versions.add(r.model)
        c.post(
            "/feedback",
            body={"message_id": r.id, "kind": "thumbs", "value": "up" if good else "down"},
            cast_to=object,
        )
    c.close()
    return {
        "version": ",".join(sorted(versions)),
        "satisfaction": liked / len(asks),
        "mean_words": words / len(asks),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "work" / "loop")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chats", type=int, default=48)
    ap.add_argument("--max-words", type=int, default=12)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=None,
        help=f"lfft online --set (repeatable); default {' '.join(SETS)}",
    )
    args = ap.parse_args()
    args.sets = args.sets or SETS
    work, logs = args.work, args.work / "logs"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SAMPLES / "events", logs)
    pool = prompts()
    t0 = time.time()
    online(work, logs, args.sets)
    cmd = [*LFFT, "serve", "--model", str(work / "online" / "current"), "--logs", str(logs)]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", "--device", "cpu"], stdout=subprocess.PIPE, text=True
    )
    url = proc.stdout.readline().split()[2] + "/v1"
    rows = []
    try:
        for r in range(args.rounds + 1):
            asks = random.Random(r).sample(pool, min(args.chats, len(pool)))
            rows.append({"round": r, **user_round(url, asks, args.max_words, seed=r)})
            print(json.dumps(rows[-1]), flush=True)
            if r < args.rounds:
                online(work, logs, args.sets)
    finally:
        proc.terminate()
        proc.wait()
    print(
        f"\n{args.chats} chats a round, likes answers of at most {args.max_words} words; "
        f"{time.time() - t0:.0f} s in all\n"
    )
    print("| round | version | satisfaction | mean words |")
    print("| ---: | --- | ---: | ---: |")
    for row in rows:
        sat, words = row["satisfaction"], row["mean_words"]
        print(f"| {row['round']} | {row['version']} | {sat:.2f} | {words:.1f} |")
    from lfft.online import read_history

    print("\n| online round | trained rows | promoted | nll_pos current | nll_pos candidate |")
    print("| ---: | ---: | --- | ---: | ---: |")
    for h in read_history(work / "online"):
        gate = h.get("gate") or {}
        base, cand = (gate.get(k, {}).get("nll_pos") for k in ("base", "candidate"))
        nll = " | ".join("-" if v is None else f"{v:.2f}" for v in (base, cand))
        print(f"| {h['round']} | {h.get('new_rows')} | {h.get('promoted')} | {nll} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([r["round"] for r in rows], [r["satisfaction"] for r in rows], marker="o")
        ax.set_xlabel("round (lfft online promotions in between)")
        ax.set_ylabel("simulated user's satisfaction")
        ax.set_ylim(0, 1)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
