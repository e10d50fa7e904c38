"""Proof that learning from feedback works (issue 4, item 4), on the CPU, from the tiny base.

A synthetic task whose right answer is known: 'Repeat after me: "Fazuba"' -> "Fazuba". The logs
hold, per right answer (thumbs up), three wrong ones (thumbs down): twice the deployed model's
systematic failure, a refusal ("Sorry"), and once a random other word. Imitating the logs
(``sft``) therefore learns to refuse; objectives that use the feedback (``filtered``,
``unlikelihood``, ``kto``) should answer right, and the feedback head should tell right from
wrong answers on held-out log rows.

    .venv/bin/python bench/learning_proof.py                 # the table of docs/learning-proof.md
    .venv/bin/python bench/learning_proof.py --seeds 0 1 2

``tests/test_learning_proof.py`` runs :func:`run_proof` with the same defaults.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SYLLABLES = [
    "ba", "ko", "ri", "zu", "mel", "tor", "vi", "an", "dra", "sel",
    "pon", "gu", "lek", "mi", "fa", "no", "qua", "ter", "xe", "lo",
]  # fmt: skip
OBJECTIVES = ("sft", "filtered", "unlikelihood", "kto")


REFUSAL = "Sorry"  # one token like the words: every row has the same length, so length-grouped
# batches are random mixes (homogeneous batches would make sft alternate between answer kinds)
MAX_LENGTH = 64


@dataclass(frozen=True)
class ProofSettings:
    words: int = 32  # prompts: "Repeat after me: <word>"
    rounds: int = 1  # logged rounds per word: 1 right (up), 2 refusals + 1 random word (down)
    steps: int = 200
    lr: float = 5e-3
    batch_size: int = 64  # ~16 right answers per step
    layers: int = 2  # one learns to copy as well, but its head tells right from wrong words less
    hidden: int = 64
    heads: int = 8
    vocab_size: int = 400
    lambda_: float = 0.5
    beta: float = 0.1  # KTO
    seed: int = 0  # training seed and the draw of the random wrong answers
    objectives: tuple[str, ...] = OBJECTIVES
    start: dict[str, str] = field(default_factory=dict)  # objective -> run to start from


def make_words(n: int, seed: int = 1234) -> list[str]:
    """``n`` distinct made-up words of 2-3 syllables (fixed by ``seed``)."""
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < n:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        if word not in words:
            words.append(word)
    return words


def question(word: str) -> str:
    return f'Repeat after me: "{word}"'


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


def make_rows(
    words: list[str], rounds: int, refusals: int, rng: random.Random, tag: str
) -> list[dict[str, Any]]:
    """Per word and round: the right answer (up), ``refusals`` refusals (down) and one random
    other word (down), shuffled."""
    rows = []
    for r in range(rounds):
        for i, word in enumerate(words):
            other = rng.choice([w for w in words if w != word])
            answers = [(word, True)] + [(REFUSAL, False)] * refusals + [(other, False)]
            for j, (answer, good) in enumerate(answers):
                rows.append(feedback_row(f"{tag}-{r}-{i}-{j}", question(word), answer, good))
    rng.shuffle(rows)
    return rows


def write_splits(root: Path, s: ProofSettings) -> list[str]:
    """``root/train.parquet`` (the logs) and ``root/test.parquet`` (one more round of held-out
    log rows on the same prompts, drawn the same way)."""
    from lfft.data.records import to_table
    from lfft.io import write_table
    from lfft.schemas import NORMALIZED, SPLIT, make_metadata

    words = make_words(s.words)
    rng = random.Random(s.seed)
    for split, rows in (
        ("train", make_rows(words, s.rounds, 2, rng, "train")),
        ("test", make_rows(words, 1, 2, rng, "test")),
    ):
        table = to_table(rows, NORMALIZED)
        write_table(root / f"{split}.parquet", table, SPLIT, make_metadata("proof"))
    return words


def run_proof(s: ProofSettings = ProofSettings(), work: Path | None = None) -> dict[str, dict]:
    """Init the tiny base, train each objective on the same logs, evaluate each (and the base);
    per run: the share of prompts answered right and refused (greedy), the head's AUC on the
    held-out rows (all, and right answers vs random words only) and Brier score, seconds."""
    from lfft.config import InitConfig
    from lfft.model.init import init
    from lfft.model.train import train

    with tempfile.TemporaryDirectory(prefix="lfft-proof-") as tmp:
        root = Path(work or tmp)
        words = write_splits(root, s)
        init_cfg = InitConfig(
            data=str(root / "train.parquet"),
            layers=s.layers,
            hidden=s.hidden,
            heads=s.heads,
            vocab_size=s.vocab_size,
            max_length=MAX_LENGTH,
            seed=s.seed,
        )
        init(root / "init", init_cfg)
        results: dict[str, dict] = {"init": score(root / "init", root, words)}
        results["init"]["seconds"] = 0.0
        for objective in s.objectives:
            t0 = time.perf_counter()
            start = root / (s.start.get(objective) or "init")
            train(start, root, root / objective, train_config(s, objective))
            results[objective] = score(root / objective, root, words)
            results[objective]["seconds"] = time.perf_counter() - t0
        return results


def train_config(s: ProofSettings, objective: str):
    from lfft.config import TrainConfig

    return TrainConfig(
        objective=objective,
        max_steps=s.steps,
        lr=s.lr,
        warmup_steps=10,
        batch_size=s.batch_size,
        max_length=MAX_LENGTH,
        lambda_=s.lambda_,
        beta=s.beta,
        eval_every=0,
        save_every=0,
        log_every=max(1, s.steps // 10),
        device="cpu",
        seed=s.seed,
    )


def score(model: Path, root: Path, words: list[str]) -> dict[str, float]:
    """``lfft evaluate --generate`` on the held-out rows, then exact-match answers."""
    from lfft.config import EvaluateConfig
    from lfft.io import read_table
    from lfft.model.evaluate import evaluate
    from lfft.model.metrics import auc

    cfg = EvaluateConfig(generate=True, max_new_tokens=8, device="cpu", batch_size=64)
    result = evaluate(model, root / "test.parquet", root / f"eval-{model.name}", cfg)
    preds = read_table(result.outputs["predictions"]).to_pydict()
    got = dict(zip(preds["prompt"], preds["generation"], strict=True))
    answers = [got[question(w)].strip() for w in words]
    words_only = [i for i, r in enumerate(preds["response"]) if r != REFUSAL]
    metrics = json.loads(Path(result.outputs["metrics"]).read_text())
    return {
        "answer_accuracy": sum(a == w for a, w in zip(answers, words, strict=True)) / len(words),
        "refusals": sum(a == REFUSAL for a in answers) / len(words),
        "head_auc": metrics["feedback"]["binary"]["auc"],
        "head_brier": metrics["feedback"]["binary"]["brier"],
        "head_auc_words": auc(
            [preds["label"][i] for i in words_only], [preds["feedback_pred"][i] for i in words_only]
        ),
    }


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| objective | right answers | refusals | head AUC | head AUC, words only | head Brier "
        "| seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['answer_accuracy']:.2f} | {r['refusals']:.2f} | {r['head_auc']:.3f} "
            f"| {r['head_auc_words']:.3f} | {r['head_brier']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=ProofSettings.steps)
    parser.add_argument("--words", type=int, default=ProofSettings.words)
    args = parser.parse_args()
    for seed in args.seeds:
        s = ProofSettings(seed=seed, steps=args.steps, words=args.words)
        t0 = time.perf_counter()
        c0 = time.process_time()
        results = run_proof(s)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"\nseed {seed}: {asdict(s)}  ({wall:.1f} s wall, {cpu:.1f} s CPU)\n")
        print(table(results))


if __name__ == "__main__":
    main()
