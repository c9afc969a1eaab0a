"""Agreement between two versions on the same cases, checked on hand-made scores."""

from __future__ import annotations

import math

import pytest

from pipeline.priority import Tier
from training.governance_compare import PairedScore, agreement, score_tier


def test_score_tiers_follow_the_priority_thresholds() -> None:
    assert score_tier(0.70) is Tier.urgent
    assert score_tier(0.6999) is Tier.high
    assert score_tier(0.40) is Tier.high
    assert score_tier(0.20) is Tier.routine
    assert score_tier(0.19) is Tier.low


def test_agreement_counts_tiers_differences_and_lists_disagreements_worst_first() -> None:
    pairs = [
        PairedScore(1, 0.10, 0.12),  # low / low, close: agree
        PairedScore(2, 0.75, 0.65),  # urgent / high: tier differs
        PairedScore(3, 0.45, 0.68),  # high / high but 0.23 apart: gap
        PairedScore(4, 0.30, 0.31),  # routine / routine: agree
    ]
    found = agreement(pairs, score_gap=0.2)
    assert found.n == 4
    assert found.same_tier_rate == pytest.approx(3 / 4)
    assert found.mean_abs_difference == pytest.approx((0.02 + 0.10 + 0.23 + 0.01) / 4)
    # Ranks of a: 1, 4, 3, 2; of b: 1, 3, 4, 2 -> d^2 = 0 + 1 + 1 + 0 -> rho = 1 - 6*2/(4*15).
    assert found.spearman == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert [d.case_id for d in found.disagreements] == [3, 2]
    worst = found.disagreements[0]
    assert (worst.tier_a, worst.tier_b) == ("high", "high")
    assert worst.difference == pytest.approx(0.23)


def test_no_pair_or_a_constant_score_gives_undefined_correlation_not_an_error() -> None:
    empty = agreement([])
    assert empty.n == 0 and math.isnan(empty.same_tier_rate) and empty.disagreements == ()
    assert empty.to_dict()["spearman"] is None
    constant = agreement([PairedScore(i, 0.5, 0.1 * i) for i in range(1, 4)])
    assert math.isnan(constant.spearman)
