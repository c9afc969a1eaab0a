"""Property-based tests of the priority policy, over cases Hypothesis makes up.

``tests/pipeline/test_priority.py`` checks the policy on chosen examples; these check the promises
that must hold for *every* case: more risk, more waiting or one more red flag never lowers a case;
not knowing (no score, a failed score, a bad photo) never ranks a case below what the model would
have said for a low risk; the order is a pure function of the cases.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.priority import (
    RED_FLAG_CAP,
    RED_FLAG_POINTS,
    RISK_WEIGHT,
    TIER_THRESHOLDS,
    UNCERTAINTY_WEIGHT,
    UNKNOWN_RISK,
    WAITING_WEIGHT,
    CaseFacts,
    Priority,
    RedFlags,
    ScoringState,
    Tier,
    assess,
    rank,
)

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True)

unit = st.floats(0.0, 1.0, allow_nan=False)
hours = st.floats(0.0, 24 * 14, allow_nan=False)
red_flags = st.builds(RedFlags, **{name: st.booleans() for name in RED_FLAG_POINTS})


@st.composite
def cases(draw: st.DrawFn, case_id: int | None = None) -> CaseFacts:
    state = draw(st.sampled_from(list(ScoringState)))
    scored = state is ScoringState.done
    submitted = T0 + timedelta(hours=draw(hours))
    read_after = draw(st.none() | hours)
    return CaseFacts(
        case_id=case_id if case_id is not None else draw(st.integers(1, 10_000)),
        submitted_at=submitted,
        scoring=state,
        p_malignant=draw(unit) if scored else None,
        uncertainty=draw(unit) if scored else None,
        quality_ok=draw(st.booleans()),
        red_flags=draw(red_flags),
        first_read_at=None if read_after is None else submitted + timedelta(hours=read_after),
    )


scored_cases = cases().filter(lambda c: c.scoring is ScoringState.done)


def now_for(case: CaseFacts, extra: float) -> datetime:
    return case.submitted_at + timedelta(hours=extra)


def not_below(a: Priority, b: Priority) -> bool:
    """``a`` ranks at least as high as ``b`` (tier first, then score)."""
    return (a.tier.rank, -a.score) <= (b.tier.rank, -b.score)


@SETTINGS
@given(case=scored_cases, extra=hours, higher=unit)
def test_more_risk_never_lowers_a_case(case: CaseFacts, extra: float, higher: float) -> None:
    assert case.p_malignant is not None
    riskier = replace(case, p_malignant=max(case.p_malignant, higher))
    now = now_for(case, extra)
    assert not_below(assess(riskier, now), assess(case, now))


@SETTINGS
@given(case=cases(), extra=hours, later=hours)
def test_waiting_longer_never_lowers_a_case(case: CaseFacts, extra: float, later: float) -> None:
    now = now_for(case, extra)
    assert not_below(assess(case, now + timedelta(hours=later)), assess(case, now))


@SETTINGS
@given(case=cases(), extra=hours, flag=st.sampled_from(list(RED_FLAG_POINTS)))
def test_one_more_red_flag_never_lowers_a_case(case: CaseFacts, extra: float, flag: str) -> None:
    flagged = replace(case, red_flags=replace(case.red_flags, **{flag: True}))
    now = now_for(case, extra)
    assert not_below(assess(flagged, now), assess(case, now))


@SETTINGS
@given(case=scored_cases, extra=hours, unknown=st.sampled_from(["pending", "failed", "bad_photo"]))
def test_not_knowing_never_ranks_a_case_below_its_low_risk_score(
    case: CaseFacts, extra: float, unknown: str
) -> None:
    """The same case, but unscored, failed or with a bad photo, is never below its own low-risk
    scored self: ignorance is not read as reassurance."""
    assert case.p_malignant is not None
    low = replace(case, p_malignant=min(case.p_malignant, UNKNOWN_RISK - 1e-9), quality_ok=True)
    if unknown == "bad_photo":
        doubtful = replace(low, quality_ok=False)
    else:
        doubtful = replace(low, scoring=ScoringState(unknown), p_malignant=None, uncertainty=None)
    now = now_for(case, extra)
    assessed = assess(doubtful, now)
    assert assessed.flagged
    assert not_below(assessed, assess(low, now))


@SETTINGS
@given(flagged=cases(), other=cases(), extra=hours)
def test_a_flagged_case_is_never_below_an_unflagged_routine_or_low_one(
    flagged: CaseFacts, other: CaseFacts, extra: float
) -> None:
    now = max(flagged.submitted_at, other.submitted_at) + timedelta(hours=extra)
    a, b = assess(flagged, now), assess(other, now)
    if a.flagged and not b.flagged and b.tier in (Tier.routine, Tier.low):
        assert a.tier.rank < b.tier.rank
        assert rank([flagged, other], now)[0].case_id == flagged.case_id or (
            flagged.case_id == other.case_id
        )


@SETTINGS
@given(case=cases(), extra=hours)
def test_score_and_tier_stay_within_the_policy(case: CaseFacts, extra: float) -> None:
    now = now_for(case, extra)
    result = assess(case, now)
    top = RISK_WEIGHT + UNCERTAINTY_WEIGHT + RED_FLAG_CAP + WAITING_WEIGHT
    assert 0.0 <= result.score <= top
    by_score = next((tier for tier, at in TIER_THRESHOLDS if result.score >= at), Tier.low)
    assert result.tier.rank <= by_score.rank  # floors may only raise the tier
    if result.flagged:
        assert result.tier in (Tier.urgent, Tier.high)
    assert result.reasons and result.reason_text("fr") and result.reason_text("en")


@SETTINGS
@given(
    facts=st.lists(cases(), min_size=1, max_size=12, unique_by=lambda c: c.case_id),
    extra=hours,
    seed=st.randoms(use_true_random=False),
)
def test_the_order_is_a_pure_function_of_the_cases(
    facts: list[CaseFacts], extra: float, seed: object
) -> None:
    now = max(c.submitted_at for c in facts) + timedelta(hours=extra)
    first = rank(facts, now)
    shuffled = list(facts)
    seed.shuffle(shuffled)  # type: ignore[attr-defined]
    assert [p.case_id for p in rank(shuffled, now)] == [p.case_id for p in first]
    assert rank(facts, now) == first  # and the same again: no hidden state, no clock
    keys = [p.sort_key() for p in first]
    assert keys == sorted(keys)
