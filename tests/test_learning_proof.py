"""Issue 4, item 4: learning from feedback beats imitating the logs (see docs/learning-proof.md).

Runs ``bench/learning_proof.py``'s :func:`run_proof` (CPU, tiny base): the logs answer each
"Repeat after me" prompt right once (thumbs up) and wrong three times (two refusals and a random
word, thumbs down). ``sft`` learns to refuse; ``filtered``, ``unlikelihood`` and ``kto`` learn to
answer right; the feedback head separates right from wrong answers on held-out rows.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "learning_proof.py"


def _proof_module():
    spec = importlib.util.spec_from_file_location("learning_proof", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_learning_from_feedback_beats_imitating_the_logs(tmp_path: Path):
    proof = _proof_module()
    results = proof.run_proof(proof.ProofSettings(), work=tmp_path)
    print("\n" + proof.table(results))
    # thresholds from docs/learning-proof.md (3 seeds): right answers 1.00 after filtered,
    # unlikelihood and kto, 0.00 after sft (which refuses); head AUC >= 0.87, words only >= 0.61
    sft = results["sft"]
    assert sft["refusals"] >= 0.9, sft  # imitating the logs learns their majority answer
    for name in ("filtered", "unlikelihood", "kto"):
        r = results[name]
        assert r["answer_accuracy"] >= 0.8, (name, r)
        assert r["answer_accuracy"] >= 2 * sft["answer_accuracy"] + 0.5, (name, r, sft)
        assert r["refusals"] <= 0.05, (name, r)
    for name in ("sft", "filtered", "unlikelihood", "kto"):
        r = results[name]
        assert r["head_auc"] > 0.85, (name, r)  # right vs every wrong answer
        assert r["head_auc_words"] > 0.6, (name, r)  # right vs a random other word
