"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from lfft.model import metrics as M

NAN = float("nan")


def test_rankdata_averages_ties():
    assert M.rankdata([1, 2, 2, 3]).tolist() == [1, 2.5, 2.5, 4]


def test_auc_counts_ties_as_half():
    # positive/negative pairs: (.9,.1) (.9,.4) (.4,.1) win, (.4,.4) tie -> 3.5 / 4
    assert M.auc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.4]) == pytest.approx(0.875)


def test_auc_is_nan_with_one_class_and_ignores_nan_rows():
    assert math.isnan(M.auc([1, 1], [0.2, 0.3]))
    assert M.auc([1, 0, NAN], [0.9, 0.1, 0.5]) == 1.0


def test_brier():
    assert M.brier([1, 0], [0.8, 0.3]) == pytest.approx((0.04 + 0.09) / 2)


def test_ece_and_reliability_bins():
    labels, probs = [1, 0, 1, 1], [0.2, 0.3, 0.9, 0.7]
    bins = M.reliability(labels, probs, bins=2)
    assert [b["count"] for b in bins] == [2, 2]
    assert bins[0]["mean_pred"] == pytest.approx(0.25) and bins[0]["frac_pos"] == 0.5
    # (2/4)|0.5 - 0.25| + (2/4)|1 - 0.8|
    assert M.ece(labels, probs, bins=2) == pytest.approx(0.225)


def test_ece_puts_probability_one_in_the_last_bin():
    assert M.ece([1], [1.0], bins=10) == 0.0


def test_accuracy_thresholds_at_one_half():
    assert M.accuracy([1, 0, 1, 0], [0.5, 0.49, 0.2, 0.9]) == 0.5


def test_mse():
    assert M.mse([0.0, 1.0, NAN], [0.5, 0.5, 0.0]) == pytest.approx(0.25)


def test_spearman_by_hand():
    # ranks [1,2,3,4] vs [1,2,4,3]: 1 - 6 * 2 / (4 * 15)
    assert M.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert math.isnan(M.spearman([1, 2, 3], [5, 5, 5]))


def test_token_f1_scores_the_modify_class_and_skips_ignored_tokens():
    # predicted modify (p < .5): tokens 2, 4; true modify: 2, 3 -> tp 1, fp 1, fn 1
    assert M.token_f1([-1, 1, 0, 0, 1], [0.0, 0.9, 0.2, 0.7, 0.3]) == pytest.approx(0.5)


def test_preference_accuracy_pairs_within_groups():
    acc, pairs = M.preference_accuracy(
        ["a", "a", "a", "b", "b", "c"], [1, 0, 0, 1, 0, 1], [5, 3, 6, 2, 2, 9]
    )
    # a: (0>1) right, (0>2) wrong, (1,2) same truth -> no pair; b: tie -> 1/2; c: alone
    assert pairs == 3
    assert acc == pytest.approx(1.5 / 3)


def test_preference_accuracy_without_pairs():
    acc, pairs = M.preference_accuracy(["a", "b"], [1, 0], [1, 2])
    assert pairs == 0 and math.isnan(acc)


def test_perplexity_is_token_weighted():
    assert M.perplexity([2.0, 4.0], [1, 3]) == pytest.approx(math.exp(6 / 4))
    assert math.isnan(M.perplexity([], []))
