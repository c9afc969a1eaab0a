"""Drift statistics checked against values worked out by hand (or in closed form)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pipeline.drift import (
    BRIGHTNESS,
    SCORE,
    SHORT_SIDE,
    Observation,
    Reference,
    compare_week,
    iso_week,
    ks_test,
    population_stability_index,
    psi_level,
    rate_test,
    weekly_drift,
)


def test_iso_weeks_start_on_monday_and_belong_to_the_iso_year() -> None:
    assert iso_week(datetime(2026, 11, 23, 0, 0, tzinfo=UTC)) == "2026-W48"  # a Monday
    assert iso_week(datetime(2026, 11, 22, 23, 59, tzinfo=UTC)) == "2026-W47"  # the Sunday before
    assert iso_week(datetime(2021, 1, 3, tzinfo=UTC)) == "2020-W53"


def test_psi_is_zero_for_the_same_distribution_and_matches_the_hand_computation() -> None:
    reference = list(range(10))
    assert population_stability_index(reference, reference) == pytest.approx(0.0)
    # Every reference value has its own decile bin (share 0.1); all current values fall in the
    # first one, the nine others are floored at 1e-4.
    expected = 0.9 * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert population_stability_index(reference, [0] * 10) == pytest.approx(expected)
    assert psi_level(0.05) == "stable"
    assert psi_level(0.2) == "moderate"
    assert psi_level(expected) == "major"


def test_psi_of_a_constant_reference_splits_below_and_from_it() -> None:
    reference = [224.0] * 50
    assert population_stability_index(reference, [224.0] * 7) == pytest.approx(0.0)
    # All current values above: shares (1e-4, 1) against (1e-4, 1): still identical bins.
    assert population_stability_index(reference, [1000.0] * 7) == pytest.approx(0.0)
    # All below: (1, 1e-4) against (1e-4, 1).
    expected = 2 * (1 - 1e-4) * math.log(1 / 1e-4)
    assert population_stability_index(reference, [100.0] * 7) == pytest.approx(expected)


def test_ks_test_of_disjoint_samples_has_the_exact_p_value() -> None:
    statistic, p_value = ks_test([1, 2, 3, 4], [5, 6, 7, 8])
    assert statistic == 1.0
    assert p_value == pytest.approx(2 / math.comb(8, 4))  # both extreme orderings of 8 values


def test_fisher_exact_rate_test_matches_the_hypergeometric_sum() -> None:
    # Table [[3, 1], [1, 3]]: P(a=3) = P(a=1) = 16/70, P(a=4) = P(a=0) = 1/70.
    assert rate_test(1, 4, 3, 4) == pytest.approx(34 / 70)
    assert rate_test(0, 100, 0, 10) == pytest.approx(1.0)
    assert math.isnan(rate_test(0, 0, 1, 4))


def _reference(rng: np.random.Generator) -> Reference:
    return Reference(
        version="3",
        n_photos=400,
        values={
            SCORE: tuple(rng.beta(2, 8, 400)),
            BRIGHTNESS: tuple(rng.normal(0.6, 0.05, 400)),
            SHORT_SIDE: (224.0,) * 400,
        },
        problem_counts={"blur": 8},
    )


def _week(start: datetime, scores, brightness, blurred: int) -> list[Observation]:
    return [
        Observation(
            at=start + timedelta(hours=i),
            p_malignant=float(s),
            problems=("blur",) if i < blurred else (),
            brightness=float(b),
            short_side=224.0,
        )
        for i, (s, b) in enumerate(zip(scores, brightness, strict=True))
    ]


def test_a_week_like_the_reference_is_not_flagged_and_a_shifted_one_is() -> None:
    rng = np.random.default_rng(7)
    reference = _reference(rng)
    monday = datetime(2026, 11, 16, 8, tzinfo=UTC)
    calm = _week(monday, rng.beta(2, 8, 60), rng.normal(0.6, 0.05, 60), blurred=1)
    shifted = _week(
        monday + timedelta(days=7), rng.beta(8, 2, 60), rng.normal(0.35, 0.05, 60), blurred=30
    )
    weeks = weekly_drift([*shifted, *calm], reference)
    assert [w.week for w in weeks] == ["2026-W47", "2026-W48"]
    first, second = weeks
    assert first.tested and first.flagged == ()
    assert {s.measure for s in second.flagged} == {SCORE, BRIGHTNESS, "blur"}
    # Bonferroni: four tests that week (score, brightness, short side, blur rate).
    assert all(s.threshold == pytest.approx(0.05 / 4) for s in second.shifts)
    score_shift = next(s for s in second.shifts if s.measure == SCORE)
    assert score_shift.effect > 0.25 and psi_level(score_shift.effect) == "major"
    blur = next(s for s in second.shifts if s.measure == "blur")
    assert blur.week_value == pytest.approx(0.5)
    assert blur.reference_value == pytest.approx(0.02)
    assert blur.effect == pytest.approx(0.48)
    assert second.problem_rates["blur"] == pytest.approx(0.5)
    assert second.n_scored == 60 and second.score_quantiles["median"] > 0.6


def test_a_week_with_too_few_photos_is_reported_but_not_tested() -> None:
    reference = _reference(np.random.default_rng(1))
    week = _week(datetime(2026, 11, 18, tzinfo=UTC), [0.99, 0.98], [0.1, 0.1], blurred=2)
    drift = compare_week("2026-W47", week, reference, min_photos=5)
    assert not drift.tested and drift.shifts == () and drift.flagged == ()
    assert drift.n_photos == 2 and drift.problem_rates["blur"] == 1.0


def test_unscored_photos_count_for_rates_but_not_for_scores() -> None:
    reference = _reference(np.random.default_rng(2))
    at = datetime(2026, 11, 18, tzinfo=UTC)
    week = [Observation(at=at, p_malignant=None, problems=("glare",)) for _ in range(6)]
    drift = compare_week("2026-W47", week, reference)
    assert drift.n_scored == 0 and drift.score_quantiles == {}
    assert {s.measure for s in drift.shifts} == {"blur", "glare"}
    glare = next(s for s in drift.shifts if s.measure == "glare")
    assert glare.flagged and glare.p_value == pytest.approx(rate_test(0, 400, 6, 6))


def test_the_reference_survives_a_round_trip_through_json_data() -> None:
    reference = _reference(np.random.default_rng(3))
    again = Reference.from_dict(reference.to_dict())
    assert again == reference
    assert again.problem_rate("blur") == pytest.approx(0.02)
