"""The priority policy for cases the AI may not score (no dermoscopic photo), and for scored
photos the modality check found unusual: specification by example."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pipeline.priority import CaseFacts, RedFlags, ScoringState, Tier, assess, rank

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def clinical_only(case_id: int = 1, *, waited_h: float = 1.0, **flags: bool) -> CaseFacts:
    """Scoring ran, but every photo was a clinical photo: no score, by design."""
    return CaseFacts(
        case_id=case_id,
        submitted_at=NOW - timedelta(hours=waited_h),
        scoring=ScoringState.done,
        red_flags=RedFlags(**flags),
        ai_not_applicable="clinical_photo",
    )


def scored(case_id: int, p: float, *, waited_h: float = 1.0, u: float = 0.1) -> CaseFacts:
    return CaseFacts(
        case_id=case_id,
        submitted_at=NOW - timedelta(hours=waited_h),
        scoring=ScoringState.done,
        p_malignant=p,
        uncertainty=u,
    )


def test_it_is_labelled_ai_not_applicable_in_both_languages() -> None:
    priority = assess(clinical_only(), NOW)
    assert priority.reasons[0].code == "ai_not_applicable"
    assert priority.reason_text("en").startswith(
        "AI not applicable: clinical photo, the model reads dermoscopic images"
    )
    assert priority.reason_text("fr").startswith(
        "IA non applicable : photo clinique, le modèle lit des images dermoscopiques"
    )


def test_it_is_neither_a_failed_nor_a_pending_score() -> None:
    priority = assess(clinical_only(), NOW)
    codes = {r.code for r in priority.reasons}
    assert not codes & {"scoring_failed", "not_scored", "p_malignant"}
    assert not priority.flagged  # not a failure that needs a look for its own sake
    failed = assess(replace(clinical_only(), scoring=ScoringState.failed), NOW)
    assert failed.reasons[0].code == "scoring_failed" and failed.flagged


def test_it_is_never_ranked_as_if_benign() -> None:
    ordered = rank([scored(1, 0.05), clinical_only(2), scored(3, 0.25)], NOW)
    assert [p.case_id for p in ordered] == [2, 3, 1]
    assert assess(clinical_only(), NOW).tier.rank <= Tier.high.rank


def test_red_flags_put_it_before_one_without() -> None:
    calm = clinical_only(1, waited_h=5.0)
    alarming = clinical_only(2, waited_h=1.0, changed_size=True, bleeding=True)
    ordered = rank([calm, alarming], NOW)
    assert [p.case_id for p in ordered] == [2, 1]
    assert ordered[0].score - ordered[1].score > 15  # 20 points of red flags, 4 h less waiting
    assert ordered[0].tier is Tier.urgent and ordered[1].tier is Tier.high
    assert "changed in size" in ordered[0].reason_text("en")


def test_without_red_flags_the_longer_wait_goes_first() -> None:
    ordered = rank([clinical_only(1, waited_h=2.0), clinical_only(2, waited_h=30.0)], NOW)
    assert [p.case_id for p in ordered] == [2, 1]


def test_a_photo_that_is_not_a_lesion_has_its_own_words() -> None:
    priority = assess(replace(clinical_only(), ai_not_applicable="not_a_skin_photo"), NOW)
    assert priority.reasons[0].code == "ai_not_applicable_other"
    assert "clinical" not in priority.reason_text("en")


def test_an_unusual_dermoscopic_photo_is_flagged_and_its_low_score_cannot_lower_the_case() -> None:
    usual = assess(scored(1, 0.05), NOW)
    unusual = assess(replace(scored(1, 0.05), ood=True), NOW)
    assert unusual.flagged and not usual.flagged
    assert "ood" in {r.code for r in unusual.reasons}
    assert unusual.tier.rank <= Tier.high.rank < usual.tier.rank
    assert unusual.reason_text("en").startswith("p(malignant) 0.05")  # the score stays on show
