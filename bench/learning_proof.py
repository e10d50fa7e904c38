"""Proof that learning from feedback works, on held-out prompts (issue 12, items 1 and 2).

Two tasks whose right answer follows a rule: 'Repeat after me: Fazuba' -> 'Fazuba', for made-up
words. Every test prompt asks for a word that never occurs in training (asserted), so a right
answer means the model learned the rule the feedback reveals, not a trained pair.

- ``rule``: NORMALIZED rows written directly, each answer with a thumbs up or down, in three
  variants: ``minority`` (per prompt 1 right answer, up, and 3 wrong ones, down: 2 refusals and
  another prompt's word), ``noisy`` (the same answers, a fifth of the thumbs flipped) and
  ``majority`` (3 right answers and 2 wrong ones per prompt, a fifth of the thumbs flipped:
  imitating the logs is right already, feedback must not spoil it). Tiny base (2 layers, width
  64), every objective from the same init.
- ``logs``: raw lfft-events logs (``bench/proof_logs.py``: wrong answers outnumber right ones
  3:1, feedback through every channel) through ``collect``, ``clean``, ``normalize``, ``split``,
  ``init`` and ``train`` with their defaults (only ``--objective`` and ``--max-steps`` given).

    .venv/bin/python bench/learning_proof.py                       # the tables of
    .venv/bin/python bench/learning_proof.py --seeds 0 1 2         # docs/learning-proof.md
    .venv/bin/python bench/learning_proof.py --task logs --seeds 0

``tests/test_learning_proof.py`` runs :func:`run_rule` and :func:`run_logs` on small settings.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proof_logs import REFUSAL, ask, make_word, right_answer, write_logs  # noqa: E402

OBJECTIVES = ("sft", "filtered", "weighted", "unlikelihood", "kto", "dpo")
VARIANTS = {  # right answers, refusals, other words per prompt; share of thumbs flipped
    "minority": (1, 2, 1, 0.0),
    "noisy": (1, 2, 1, 0.2),
    "majority": (3, 1, 1, 0.2),
}


@dataclass(frozen=True)
class RuleSettings:
    variant: str = "minority"
    train_words: int = 256  # prompts in the logs, one made-up word of 2 syllables each
    test_words: int = 64  # held-out prompts: words that never occur in training
    steps: int = 400  # every other option: lfft's defaults (tiny base, lr 1e-3, batch 16)
    seed: int = 0  # training seed and the draw of the logs
    objectives: tuple[str, ...] = OBJECTIVES


@dataclass(frozen=True)
class LogsSettings:
    sessions: int = 2000  # of bench/proof_logs.py, split 80/10/10 by session
    steps: int = 400
    seed: int = 0
    # kto as lfft runs it, then without the SFT term and with the batch-mean reference point
    objectives: tuple[str, ...] = (
        "sft",
        "filtered",
        "kto",
        "kto pref_sft=0",
        "kto kto_reference=batch",
        "kto pref_sft=0 kto_reference=batch",
    )


def make_words(n: int, rng: random.Random, taken: set[str]) -> list[str]:
    """``n`` made-up words of 2 syllables not in ``taken`` (which they join)."""
    words: list[str] = []
    while len(words) < n:
        word = make_word(rng, (2,))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def feedback_row(session: str, prompt: str, response: str, good: bool) -> dict[str, Any]:
    """One NORMALIZED row: a thumbs up (``good``) or down on ``response``."""
    from lfft.data.records import feedback_event, interaction, stable_id

    row = interaction(
        session_id=session,
        prompt=prompt,
        response=response,
        source="proof",
        feedback=[feedback_event("thumbs", value=float(good))],
    )
    row.update(
        score=float(good),
        label=int(good),
        weight=1.0,
        signal="binary",
        target=response,
        token_spans=[],
        critique=None,
        group_id=stable_id((), prompt),
    )
    return row


def rule_rows(
    words: list[str], variant: str, rng: random.Random, taken: set[str], tag: str
) -> list[dict[str, Any]]:
    """The logged answers to 'Repeat after me: "<word>"' for each word, with their thumbs
    (flipped at the variant's rate); a wrong word is a fresh one (added to ``taken``)."""
    n_right, n_refusals, n_other, flip = VARIANTS[variant]
    rows = []
    for i, word in enumerate(words):
        answers = [(word, True)] * n_right + [(REFUSAL, False)] * n_refusals
        answers += [(w, False) for w in make_words(n_other, rng, taken)]
        for j, (answer, right) in enumerate(answers):
            up = right != (rng.random() < flip)
            rows.append(feedback_row(f"{tag}-{i}-{j}", ask(word), answer, up))
    rng.shuffle(rows)
    return rows


def write_rule_splits(root: Path, s: RuleSettings) -> None:
    """``root/train.parquet`` (the logs) and ``root/test.parquet`` (held-out prompts)."""
    from lfft.data.records import to_table
    from lfft.io import write_table
    from lfft.schemas import NORMALIZED, SPLIT, make_metadata

    rng = random.Random(s.seed)
    taken: set[str] = set()
    train_words = make_words(s.train_words, rng, taken)
    test_words = make_words(s.test_words, rng, taken)
    train = rule_rows(train_words, s.variant, rng, taken, "train")
    test = rule_rows(test_words, s.variant, rng, taken, "test")
    assert_held_out(train, test)
    for split, rows in (("train", train), ("test", test)):
        table = to_table(rows, NORMALIZED)
        write_table(root / f"{split}.parquet", table, SPLIT, make_metadata("proof"))


def assert_held_out(train: list[dict[str, Any]], test: list[dict[str, Any]]) -> None:
    """No test prompt's word occurs in training: not asked by a prompt (or context turn), not
    given as an answer or a correction."""
    words = {right_answer(r["prompt"]) for r in test}
    asked = {right_answer(r["prompt"]) for r in train}
    asked |= {right_answer(c["content"]) for r in train for c in r.get("context") or []}
    given = {t for r in train for t in (r["response"], r.get("target"))}
    leaked = words & (asked | given)
    if None in words or leaked:
        raise AssertionError(f"test prompts not held out: {sorted(map(str, leaked))[:5]}")


def run_rule(s: RuleSettings = RuleSettings(), work: Path | None = None) -> dict[str, dict]:
    """Init the tiny base on the logs, train each objective from it, score each (and the base)
    on the held-out prompts."""
    from lfft.config import InitConfig
    from lfft.model.init import init

    with tempfile.TemporaryDirectory(prefix="lfft-proof-") as tmp:
        root = Path(work or tmp)
        write_rule_splits(root, s)
        init(root / "init", InitConfig(data=str(root / "train.parquet"), seed=s.seed))
        return train_and_score(root, root / "test.parquet", s.objectives, s.steps, s.seed)


def run_logs(s: LogsSettings = LogsSettings(), work: Path | None = None) -> dict[str, dict]:
    """Write the raw logs, run every data stage and ``init`` with their defaults, then train
    each objective with the defaults (only the step count given) and score it."""
    from lfft import stages
    from lfft.config import CleanConfig, CollectConfig, InitConfig, NormalizeConfig, SplitConfig
    from lfft.io import read_table

    with tempfile.TemporaryDirectory(prefix="lfft-proof-logs-") as tmp:
        root = Path(work or tmp)
        write_logs(root / "logs", s.sessions, s.seed)
        lay = stages.Layout(root)
        stages.collect([root / "logs"], lay.interactions, CollectConfig())
        stages.clean(lay.interactions, lay.clean, CleanConfig())
        stages.normalize(lay.clean, lay.normalized, NormalizeConfig())
        stages.split(lay.normalized, lay.splits, SplitConfig())
        seen = read_table(lay.train).to_pylist() + read_table(lay.val).to_pylist()
        assert_held_out(seen, read_table(lay.test).to_pylist())
        stages.init(root / "init", InitConfig(data=str(lay.train)))
        return train_and_score(root, lay.test, s.objectives, s.steps, s.seed)


def train_and_score(
    root: Path,
    test: Path,
    runs: tuple[str, ...],
    steps: int,
    seed: int,
) -> dict[str, dict]:
    """Train each run from ``root/init`` on ``root``'s splits; score it and the base. A run is
    an objective, optionally with TrainConfig fields given: ``"kto pref_sft=0"``."""
    from lfft.config import TrainConfig
    from lfft.model.train import train

    data = root / "splits" if (root / "splits").exists() else root
    results: dict[str, dict] = {"init": score(root / "init", test)}
    results["init"]["seconds"] = 0.0
    for run in runs:
        t0 = time.perf_counter()
        objective, given = parse_run(run)
        cfg = TrainConfig(
            objective=objective,
            max_steps=steps,
            eval_every=0,
            save_every=0,
            log_every=max(1, steps // 4),
            device="cpu",
            seed=seed,
            **given,
        )
        out = root / run.replace(" ", "_").replace("=", "-")
        train(root / "init", data, out, cfg)
        results[run] = score(out, test)
        results[run]["seconds"] = time.perf_counter() - t0
    return results


def parse_run(run: str) -> tuple[str, dict[str, Any]]:
    """``"kto pref_sft=0 kto_reference=batch"`` -> ``("kto", {"pref_sft": 0.0, ...})``."""
    objective, *pairs = run.split()
    if objective not in OBJECTIVES:
        raise SystemExit(f"unknown objective in run {run!r}")
    given: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            given[key] = float(value)
        except ValueError:
            given[key] = value
    return objective, given


def score(model: Path, test: Path) -> dict[str, float]:
    """``lfft evaluate --generate`` on the held-out rows: the share of distinct prompts whose
    greedy answer is exactly the rule's, the share refused, the head's AUC on the rows."""
    from lfft.config import EvaluateConfig
    from lfft.io import read_table
    from lfft.model.evaluate import evaluate
    from lfft.model.metrics import auc

    cfg = EvaluateConfig(generate=True, max_new_tokens=12, device="cpu", batch_size=64)
    result = evaluate(model, test, test.parent / f"eval-{model.name}", cfg)
    preds = read_table(result.outputs["predictions"]).to_pydict()
    pairs = zip(preds["prompt"], preds["generation"], strict=True)
    answers = {p: (g or "").strip() for p, g in pairs}
    labelled = [i for i, y in enumerate(preds["label"]) if y is not None]
    return {
        "accuracy": sum(a == right_answer(p) for p, a in answers.items()) / len(answers),
        "refusals": sum(a == REFUSAL for a in answers.values()) / len(answers),
        "head_auc": auc(
            [preds["label"][i] for i in labelled], [preds["feedback_pred"][i] for i in labelled]
        ),
        "prompts": len(answers),
    }


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| run | right answers | refusals | head AUC | seconds |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        run = "init (no training)" if name == "init" else name
        lines.append(
            f"| {run} | {r['accuracy']:.2f} | {r['refusals']:.2f} | {r['head_auc']:.3f} "
            f"| {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("rule", "logs", "all"), default="all")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--objectives",
        nargs="+",
        help=f"runs: objectives ({', '.join(OBJECTIVES)}), each optionally with TrainConfig "
        "fields, e.g. 'kto pref_sft=0' 'kto kto_reference=batch'",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest here)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    runs: list[Any] = []
    for seed in args.seeds:
        if args.task in ("rule", "all"):
            runs += [RuleSettings(variant=v, seed=seed) for v in args.variants]
        if args.task in ("logs", "all"):
            runs.append(LogsSettings(seed=seed))
    for s in runs:
        if args.objectives:
            s = replace(s, objectives=tuple(args.objectives))
        t0, c0 = time.perf_counter(), time.process_time()
        results = run_rule(s) if isinstance(s, RuleSettings) else run_logs(s)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"\n{type(s).__name__} {asdict(s)}  ({wall:.0f} s wall, {cpu:.0f} s CPU)\n")
        print(table(results), flush=True)


if __name__ == "__main__":
    main()
