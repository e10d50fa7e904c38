"""Each loss against values computed by hand on tiny tensors (as torchtune's loss tests do)."""

from __future__ import annotations

import math

import pytest
import torch

from lfft.model.losses import sequence_logps
from lfft.model.losses.dpo import dpo_loss
from lfft.model.losses.feedback import bce_loss, mse_loss, token_loss
from lfft.model.losses.filtered import filtered_loss
from lfft.model.losses.kto import kto_loss
from lfft.model.losses.sft import sft_loss
from lfft.model.losses.unlikelihood import unlikelihood_loss
from lfft.model.losses.weighted import weighted_loss

NAN = float("nan")
L = math.log


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture
def logps() -> tuple[torch.Tensor, torch.Tensor]:
    """Row 0 answers with p = 0.5 then 0.25; row 1 with p = 0.8 (its last position is padding)."""
    lp = torch.tensor([[0.0, L(0.5), L(0.25)], [0.0, L(0.8), 0.0]], requires_grad=True)
    mask = torch.tensor([[False, True, True], [False, True, False]])
    return lp, mask


def close(t: torch.Tensor, expected: float) -> bool:
    return math.isclose(float(torch.as_tensor(t).detach()), expected, rel_tol=1e-5, abs_tol=1e-6)


def test_sequence_logps_sums_masked_tokens_only():
    lp = torch.tensor([[-1.0, -2.0, float("-inf")], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[True, True, False], [False, True, True]])
    assert sequence_logps(lp, mask).tolist() == [-3.0, -1.0]


def test_sft_is_the_token_mean_nll(logps):
    lp, mask = logps
    assert close(sft_loss(lp, mask), (L(2) + L(4) + L(1.25)) / 3)


def test_sft_row_weights_scale_each_rows_tokens(logps):
    lp, mask = logps
    expected = (L(2) + L(4) + 3 * L(1.25)) / (2 + 3)
    assert close(sft_loss(lp, mask, torch.tensor([1.0, 3.0])), expected)


def test_filtered_learns_only_kept_rows(logps):
    lp, mask = logps
    assert close(filtered_loss(lp, mask, torch.tensor([False, True])), L(1.25))


def test_weighted_uses_score_times_weight_and_nan_score_counts_zero(logps):
    lp, mask = logps
    loss = weighted_loss(lp, mask, torch.tensor([0.5, NAN]), torch.tensor([2.0, 1.0]))
    assert close(loss, (L(2) + L(4)) / 2)


def test_unlikelihood_pushes_down_negative_rows(logps):
    lp, mask = logps
    # row 1 is labelled bad: -log(1 - 0.8) = log 5
    loss = unlikelihood_loss(lp, mask, torch.tensor([1.0, 0.0]), torch.ones(2))
    assert close(loss, (L(2) + L(4) + L(5)) / 3)
    half = unlikelihood_loss(lp, mask, torch.tensor([1.0, 0.0]), torch.ones(2), alpha=0.5)
    assert close(half, (L(2) + L(4) + 0.5 * L(5)) / 3)


def test_unlikelihood_excludes_nan_labels_and_clamps_p(logps):
    lp, mask = logps
    only_nan_row0 = unlikelihood_loss(lp, mask, torch.tensor([NAN, 0.0]), torch.tensor([1.0, 2.0]))
    assert close(only_nan_row0, L(5))
    certain = torch.zeros(1, 2, requires_grad=True)  # p = 1 exactly
    loss = unlikelihood_loss(
        certain, torch.ones(1, 2, dtype=torch.bool), torch.zeros(1), torch.ones(1)
    )
    assert close(loss, -math.log(1e-6))
    loss.backward()
    assert torch.isfinite(certain.grad).all()


def test_kto_matches_hand_computation_with_batch_reference_point():
    policy = torch.tensor([-1.0, -3.0, -9.0])
    ref = torch.tensor([-3.0, -3.5, -1.0])
    label = torch.tensor([1.0, 0.0, NAN])  # the unlabelled row must not move the reference point
    # ratios 2.0 and 0.5 -> kl = 1.25
    loss, stats = kto_loss(policy, ref, label, beta=0.1)
    expected = ((1 - sig(0.1 * (2.0 - 1.25))) + (1 - sig(0.1 * (1.25 - 0.5)))) / 2
    assert close(loss, expected)
    assert close(stats["kl"], 1.25)
    assert close(stats["reward_desirable"], 0.2)
    assert close(stats["reward_undesirable"], 0.05)


def test_kto_reference_point_is_clamped_at_zero_and_weights_apply():
    policy = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.5, -1.0])  # ratios 0.5, -1.0 -> mean -0.25 -> kl 0
    loss, stats = kto_loss(
        policy,
        ref,
        torch.tensor([1.0, 0.0]),
        beta=0.1,
        desirable_weight=2.0,
        undesirable_weight=0.5,
    )
    expected = (2.0 * (1 - sig(0.05)) + 0.5 * (1 - sig(0.1))) / 2
    assert close(loss, expected)
    assert float(stats["kl"]) == 0.0


def test_kto_given_kl_is_used():
    loss, _ = kto_loss(
        torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0]), torch.tensor([1.0, 0.0]), kl=0.3
    )
    assert close(loss, ((1 - sig(0.1 * 0.2)) + (1 - sig(0.1 * 1.3))) / 2)


def test_dpo_is_minus_logsigmoid_of_the_reward_margin():
    loss, stats = dpo_loss(
        torch.tensor([-1.0, -4.0]),  # policy chosen
        torch.tensor([-2.0, -3.0]),  # policy rejected
        torch.tensor([-1.5, -4.0]),  # reference chosen
        torch.tensor([-1.5, -4.0]),  # reference rejected
        beta=0.1,
        weight=torch.tensor([1.0, 3.0]),
    )
    # pair 0: 0.1 * (0.5 - (-0.5)) = 0.1; pair 1: 0.1 * (0 - 1) = -0.1
    expected = (-math.log(sig(0.1)) - 3 * math.log(sig(-0.1))) / 4
    assert close(loss, expected)
    assert close(stats["reward_accuracy"], 0.5)
    assert close(stats["reward_margin"], 0.0)


def test_bce_weighted_and_nan_targets_excluded():
    logits = torch.tensor([0.0, 2.0, 1.0])
    loss = bce_loss(logits, torch.tensor([1.0, 0.0, NAN]), torch.tensor([1.0, 3.0, 1.0]))
    assert close(loss, (L(2) + 3 * L(1 + math.exp(2))) / 4)


def test_mse_compares_sigmoid_with_the_score():
    logits = torch.tensor([0.0, 2.0, -1.0])
    loss = mse_loss(logits, torch.tensor([0.2, 1.0, NAN]), torch.tensor([1.0, 0.5, 1.0]))
    expected = ((0.5 - 0.2) ** 2 + 0.5 * (sig(2.0) - 1.0) ** 2) / 1.5
    assert close(loss, expected)


def test_token_loss_ignores_minus_one_and_weights_rows():
    logits = torch.tensor([[5.0, 0.0, 1.0], [-1.0, 9.0, 9.0]])
    labels = torch.tensor([[-1.0, 1.0, 0.0], [1.0, -1.0, -1.0]])
    loss = token_loss(logits, labels, torch.tensor([1.0, 2.0]))
    # BCE(0, keep) = log 2; BCE(1, modify) = log(1 + e); BCE(-1, keep) = log(1 + e)
    expected = (L(2) + L(1 + math.e) + 2 * L(1 + math.e)) / (1 + 1 + 2)
    assert close(loss, expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda lp, m: sft_loss(lp, m, torch.zeros(2)),
        lambda lp, m: filtered_loss(lp, m, torch.tensor([False, False])),
        lambda lp, m: weighted_loss(lp, m, torch.tensor([NAN, NAN]), torch.ones(2)),
        lambda lp, m: unlikelihood_loss(lp, m, torch.tensor([NAN, NAN]), torch.ones(2)),
        lambda lp, m: kto_loss(sequence_logps(lp, m), torch.zeros(2), torch.tensor([NAN, NAN]))[0],
        lambda lp, m: bce_loss(lp[:, 1], torch.tensor([NAN, NAN]), torch.ones(2)),
        lambda lp, m: token_loss(lp, torch.full_like(lp, -1.0), torch.ones(2)),
    ],
    ids=["sft", "filtered", "weighted", "unlikelihood", "kto", "bce", "token"],
)
def test_nothing_taking_part_gives_zero_with_a_graph(logps, make):
    lp, mask = logps
    loss = make(lp, mask)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(lp.grad, torch.zeros_like(lp))


def test_dpo_without_pairs_is_zero():
    empty = torch.zeros(0, requires_grad=True)
    loss, stats = dpo_loss(empty, empty, empty.detach(), empty.detach())
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert math.isnan(float(stats["reward_accuracy"]))


def test_masked_positions_never_leak_into_gradients(logps):
    lp, mask = logps
    sft_loss(lp, mask).backward()
    assert lp.grad[0, 0] == 0 and lp.grad[1, 2] == 0
    assert close(lp.grad[0, 1], -1 / 3)


def test_kto_mismatched_pairs_pair_each_prompt_with_the_previous_response():
    from lfft.model.batching import Example
    from lfft.model.objectives import mismatched

    rows = [Example([1, 2, 10, 11], 2, 0, 1.0), Example([3, 20], 1, 1, 0.0)]
    rows.append(Example([4, 5, 6, 30, 31, 32], 3, 2, 1.0))
    pairs = mismatched(rows, [2, 0, 1])  # the micro-batch's order
    assert [p.ids for p in pairs] == [[4, 5, 6, 20], [1, 2, 30, 31, 32], [3, 10, 11]]
    assert [p.prompt_len for p in pairs] == [3, 2, 1]  # each row's own prompt
    assert all(len(p) <= max(len(r) for r in rows) for p in pairs)  # within max_length


def test_kto_reference_point_is_the_clamped_mean_log_ratio_of_the_pairs():
    from lfft.model.objectives import kto_reference_point

    mask = torch.tensor([[False, True, True], [False, True, False]])
    policy = torch.tensor([[0.0, -1.0, -1.0], [0.0, -1.0, 9.0]])
    ref = torch.tensor([[0.0, -2.0, -2.0], [0.0, -3.0, 0.0]])
    assert close(kto_reference_point(policy, ref, mask), (2.0 + 2.0) / 2)
    assert close(kto_reference_point(ref, policy, mask), 0.0)  # clamped at 0
