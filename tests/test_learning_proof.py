"""Learning from feedback, measured on prompts never trained on (docs/learning-proof.md).

Runs ``bench/learning_proof.py`` (CPU, tiny base, lfft's defaults). The task's right answer
follows a rule, 'Repeat after me: "ko ri"' -> 'ko ri', and every test prompt asks for a word that
occurs nowhere in training, so a right answer means the model learned the rule the feedback
reveals. The thresholds sit below what ``bench/learning_proof.py`` printed for seed 0 (the docs'
tables), with the margins over ``sft`` the claim is about.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("model_one_thread")  # as bench/learning_proof.py runs

BENCH = Path(__file__).resolve().parents[1] / "bench" / "learning_proof.py"
FEEDBACK_OBJECTIVES = ("filtered", "weighted", "unlikelihood", "kto", "dpo")


def _proof_module():
    spec = importlib.util.spec_from_file_location("learning_proof", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_test_prompts_are_held_out_and_a_leak_is_caught(tmp_path: Path):
    proof = _proof_module()
    rng, taken = random.Random(0), set()
    train_words = proof.make_words(64, rng, taken)
    test_words = proof.make_words(16, rng, taken)
    train = proof.rule_rows(train_words, "minority", rng, taken, "train")
    test = proof.rule_rows(test_words, "minority", rng, taken, "test")
    proof.assert_held_out(train, test)
    assert {proof.right_answer(r["prompt"]) for r in test} == set(test_words)
    leak = dict(train[0], response=test_words[3])  # a test word given as an answer
    with pytest.raises(AssertionError, match="not held out"):
        proof.assert_held_out([*train, leak], test)


@pytest.mark.slow
def test_every_feedback_objective_learns_the_rule_sft_does_not(tmp_path: Path):
    """Logs: per prompt one right answer (thumbs up), three wrong (down): imitating them means
    refusing. Every objective that uses the feedback answers held-out prompts right."""
    proof = _proof_module()
    results = proof.run_rule(proof.RuleSettings(variant="minority"), work=tmp_path)
    print("\n" + proof.table(results))
    sft = results["sft"]
    assert sft["refusals"] >= 0.9, sft  # it learned what the logs say most often
    for name in FEEDBACK_OBJECTIVES:
        r = results[name]
        assert r["accuracy"] >= sft["accuracy"] + 0.7, (name, r, sft)
        assert r["refusals"] <= 0.05, (name, r)
    for name in ("sft", *FEEDBACK_OBJECTIVES):
        assert results[name]["head_auc"] > 0.8, (name, results[name])  # untrained: ~0.5


@pytest.mark.slow
def test_kto_learns_from_imbalanced_raw_logs_through_every_stage(tmp_path: Path):
    """Raw lfft-events logs, wrong answers 3:1, feedback through every channel, collected,
    cleaned, normalized, split and trained with lfft's defaults: KTO answers held-out prompts
    right (issue 12's target: >= 0.9)."""
    proof = _proof_module()
    settings = proof.LogsSettings(objectives=("sft", "kto"))
    results = proof.run_logs(settings, work=tmp_path)
    print("\n" + proof.table(results))
    assert results["sft"]["refusals"] >= 0.9, results["sft"]
    assert results["kto"]["accuracy"] >= 0.9, results["kto"]
    assert results["kto"]["prompts"] >= 200, results["kto"]  # held-out sessions' prompts
