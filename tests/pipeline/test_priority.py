"""The worklist priority policy, written as its specification."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.priority import (
    CaseFacts,
    RedFlags,
    ScoringState,
    Tier,
    assess,
    rank,
    tier_counts,
)

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def case(
    case_id: int = 1,
    *,
    p: float | None = 0.1,
    u: float | None = 0.2,
    waited_h: float = 0.0,
    scoring: ScoringState = ScoringState.done,
    quality_ok: bool = True,
    read_after_h: float | None = None,
    **flags: bool,
) -> CaseFacts:
    submitted = NOW - timedelta(hours=waited_h)
    return CaseFacts(
        case_id=case_id,
        submitted_at=submitted,
        scoring=scoring,
        p_malignant=p,
        uncertainty=u,
        quality_ok=quality_ok,
        red_flags=RedFlags(**flags),
        first_read_at=None if read_after_h is None else submitted + timedelta(hours=read_after_h),
    )


class TestRisk:
    def test_a_more_likely_malignant_case_is_read_first(self) -> None:
        ordered = rank([case(1, p=0.2), case(2, p=0.83), case(3, p=0.5)], NOW)
        assert [p.case_id for p in ordered] == [2, 3, 1]

    def test_high_probability_alone_makes_a_case_urgent(self) -> None:
        assert assess(case(p=0.83, u=0.1), NOW).tier is Tier.urgent

    def test_a_clearly_benign_fresh_case_is_low(self) -> None:
        assert assess(case(p=0.03, u=0.05), NOW).tier is Tier.low

    def test_an_uncertain_model_raises_the_case_and_says_so(self) -> None:
        sure = assess(case(p=0.3, u=0.1), NOW)
        unsure = assess(case(p=0.3, u=0.9), NOW)
        assert unsure.score > sure.score
        assert "model uncertain (0.90)" in unsure.reason_text("en")
        assert "uncertain" not in sure.reason_text("en")

    def test_probabilities_outside_unit_interval_are_refused(self) -> None:
        with pytest.raises(ValueError, match="p_malignant"):
            assess(case(p=1.2), NOW)
        with pytest.raises(ValueError, match="uncertainty"):
            assess(case(u=float("nan")), NOW)


class TestRedFlags:
    @pytest.mark.parametrize(
        ("flag", "en"),
        [
            ("changed_size", "changed in size"),
            ("changed_colour", "changed in colour"),
            ("changed_shape", "changed in shape"),
            ("bleeding", "bleeding"),
            ("personal_history", "personal history of skin cancer"),
            ("family_history", "family history of skin cancer"),
            ("immunosuppression", "immunosuppressed"),
        ],
    )
    def test_each_red_flag_raises_the_case_and_is_named(self, flag: str, en: str) -> None:
        plain = assess(case(p=0.2), NOW)
        flagged = assess(case(p=0.2, **{flag: True}), NOW)
        assert flagged.score > plain.score
        assert en in flagged.reason_text("en")

    def test_red_flags_are_capped_so_they_cannot_outweigh_a_high_risk_score(self) -> None:
        everything = dict.fromkeys(
            [
                "changed_size",
                "changed_colour",
                "changed_shape",
                "bleeding",
                "personal_history",
                "family_history",
                "immunosuppression",
            ],
            True,
        )
        benign_but_alarming = assess(case(1, p=0.05, u=0.1, **everything), NOW)
        melanoma_like = assess(case(2, p=0.95, u=0.1), NOW)
        assert benign_but_alarming.score < melanoma_like.score

    def test_a_moderate_risk_that_changed_and_bleeds_becomes_urgent(self) -> None:
        assert assess(case(p=0.5, u=0.2), NOW).tier is Tier.high
        assert assess(case(p=0.5, u=0.2, changed_size=True, bleeding=True), NOW).tier is Tier.urgent


class TestWaiting:
    def test_the_example_sentence_of_the_specification(self) -> None:
        priority = assess(case(p=0.83, u=0.2, waited_h=30, changed_size=True), NOW)
        assert priority.reason_text("en") == "p(malignant) 0.83, changed in size, waiting 30 h"
        assert priority.reason_text("fr") == "p(malin) 0.83, taille modifiée, attente 30 h"

    def test_an_old_case_rises_above_a_fresh_one_of_equal_risk(self) -> None:
        ordered = rank([case(1, p=0.2, waited_h=1), case(2, p=0.2, waited_h=40)], NOW)
        assert [p.case_id for p in ordered] == [2, 1]

    def test_the_deadline_approaching_is_announced(self) -> None:
        priority = assess(case(p=0.1, waited_h=40), NOW)
        assert "deadline in 8 h" in priority.reason_text("en")
        assert priority.hours_to_deadline == pytest.approx(8)

    def test_an_unread_case_past_the_deadline_is_at_least_high(self) -> None:
        priority = assess(case(p=0.02, u=0.05, waited_h=53), NOW)
        assert priority.tier is Tier.high
        assert "overdue by 5 h" in priority.reason_text("en")

    def test_the_deadline_is_a_parameter(self) -> None:
        assert assess(case(p=0.02, waited_h=30), NOW, deadline_hours=24).tier is Tier.high
        assert assess(case(p=0.02, waited_h=30), NOW, deadline_hours=48).tier is not Tier.high

    def test_waiting_stops_counting_at_the_first_reading(self) -> None:
        read = assess(case(p=0.02, waited_h=100, read_after_h=10), NOW)
        assert read.waiting_hours == pytest.approx(10)
        assert "overdue" not in read.reason_text("en")
        assert read.tier is Tier.low


class TestSafety:
    def test_an_unscored_case_is_flagged_and_never_ranked_below_a_scored_benign_one(
        self,
    ) -> None:
        pending = assess(case(1, p=None, u=None, scoring=ScoringState.pending), NOW)
        benign = assess(case(2, p=0.05), NOW)
        assert pending.flagged
        assert pending.tier.rank <= Tier.high.rank
        assert pending.sort_key() < benign.sort_key()
        assert pending.reason_text("en").startswith("not yet scored: needs a look")

    def test_a_scoring_failure_is_flagged_with_its_own_reason(self) -> None:
        failed = assess(case(p=None, u=None, scoring=ScoringState.failed), NOW)
        assert failed.flagged and failed.tier.rank <= Tier.high.rank
        assert "could not be scored" in failed.reason_text("en")
        assert "score impossible" in failed.reason_text("fr")

    def test_a_bad_photo_cannot_lower_a_case_with_its_low_score(self) -> None:
        good_photo = assess(case(1, p=0.05, u=0.1, quality_ok=True), NOW)
        bad_photo = assess(case(2, p=0.05, u=0.1, quality_ok=False), NOW)
        assert bad_photo.flagged and not good_photo.flagged
        assert bad_photo.tier.rank <= Tier.high.rank
        assert bad_photo.score > good_photo.score
        assert "photo quality insufficient" in bad_photo.reason_text("en")

    def test_a_bad_photo_with_a_high_score_stays_urgent(self) -> None:
        assert assess(case(p=0.9, u=0.1, quality_ok=False), NOW).tier is Tier.urgent

    def test_a_high_risk_scored_case_still_comes_before_an_unscored_one(self) -> None:
        ordered = rank(
            [case(1, p=None, u=None, scoring=ScoringState.pending), case(2, p=0.9, u=0.1)],
            NOW,
        )
        assert [p.case_id for p in ordered] == [2, 1]


class TestOrdering:
    def test_ordering_is_deterministic_whatever_the_input_order(self) -> None:
        cases = [
            case(i, p=p, u=u, waited_h=w)
            for i, (p, u, w) in enumerate(
                itertools.product([0.1, 0.5, 0.9], [0.1, 0.8], [0, 20, 50]), start=1
            )
        ]
        expected = [p.case_id for p in rank(cases, NOW)]
        rng = random.Random(7)
        for _ in range(5):
            shuffled = cases[:]
            rng.shuffle(shuffled)
            assert [p.case_id for p in rank(shuffled, NOW)] == expected

    def test_ties_go_to_the_earlier_submission_then_the_smaller_id(self) -> None:
        same_time = [case(5, p=0.3), case(3, p=0.3)]
        assert [p.case_id for p in rank(same_time, NOW)] == [3, 5]
        # Both read 5 h after submission: same waiting, same score; the older one goes first.
        older = case(9, p=0.3, waited_h=20, read_after_h=5)
        newer = case(1, p=0.3, waited_h=10, read_after_h=5)
        assert assess(older, NOW).score == assess(newer, NOW).score
        assert [p.case_id for p in rank([newer, older], NOW)] == [9, 1]

    def test_the_tier_outranks_the_score(self) -> None:
        overdue_benign = case(1, p=0.02, u=0.05, waited_h=60)  # high by the deadline rule
        routine = case(2, p=0.3, u=0.1)
        ordered = rank([routine, overdue_benign], NOW)
        assert ordered[0].score < ordered[1].score
        assert [(p.case_id, p.tier) for p in ordered] == [(1, Tier.high), (2, Tier.routine)]

    def test_tier_counts_cover_every_tier(self) -> None:
        counts = tier_counts(rank([case(1, p=0.9), case(2, p=0.02)], NOW))
        assert counts == {Tier.urgent: 1, Tier.high: 0, Tier.routine: 0, Tier.low: 1}
