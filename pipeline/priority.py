"""The worklist priority policy: which case a dermatologist should read next, and why.

One explicit, pure policy combines four things into a *tier* and a *score* per case:

1. **Risk**: the calibrated malignant probability ``p`` of the case (the highest of its photos),
   worth ``100 * p`` points.
2. **Model uncertainty** ``u`` in [0, 1] (normalised predictive entropy): ``15 * u`` points,
   since an unsure model is more likely to be wrong either way and deserves an earlier human look.
3. **Clinical red flags** from the questionnaire (points, capped at :data:`RED_FLAG_CAP` in total):
   recent change in size, colour or shape (10 each), bleeding (10), personal history of skin cancer
   (10), family history of skin cancer (5), immunosuppression (10). Itching alone is not a red flag.
4. **Waiting time** ``w`` against the first-reading deadline ``D`` (48 h by default):
   ``25 * min(w / D, 1)`` points, so an old low-risk case rises before it breaches the deadline.
   Waiting stops counting once the case has had its first reading.

Tiers, from the score: ``urgent`` (>= 70), ``high`` (>= 40), ``routine`` (>= 20), else ``low``.

Safety rules, which can only raise a case, never lower it:

- A case with **no usable score** (scoring pending or failed) is *flagged for a human look*. Its
  unknown risk is taken as ``p = 0.5`` and ``u = 1`` (maximal ignorance), and its tier is at least
  ``high``. It is never ranked as if it were benign.
- A case whose **photos failed the quality checks** is flagged likewise: a score computed on a bad
  photo may not lower it, so its risk is ``max(p, 0.5)``, its uncertainty 1, its tier at least
  ``high``.
- A case still unread past the deadline is at least ``high``.
- A case whose scored photo is **far from every training photo** (the modality check's
  out-of-distribution flag) is flagged like a failed quality check: the score is kept on show but
  may not lower the case.

A case with **no photo within the model's intended use** (the modality check found only
clinical photos, or pictures that are not of a lesion) has no malignancy score by design: it is
labelled "AI not applicable" (with the reason), not flagged as a failure, and ordered by its red
flags and waiting time on top of the same unknown risk as an unscored case (``p = 0.5``,
``u = 1``), so it is never ranked as if it were benign. Among such cases, red flags then waiting
decide the order.

Ordering is deterministic: tier, then score (higher first, compared at 1e-6), then the earlier
submission, then the case id. Each case carries human-readable reasons, in French or English,
e.g. "p(malignant) 0.83, changed in size, waiting 30 h".

Pure: the caller passes ``now``; nothing here reads a clock, a database or the environment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

Lang = Literal["fr", "en"]

DEFAULT_DEADLINE_HOURS = 48.0
RISK_WEIGHT = 100.0
UNCERTAINTY_WEIGHT = 15.0
WAITING_WEIGHT = 25.0
RED_FLAG_CAP = 40.0
UNKNOWN_RISK = 0.5
UNCERTAIN_REASON_AT = 0.5
DEADLINE_SOON_HOURS = 12.0

RED_FLAG_POINTS: dict[str, float] = {
    "changed_size": 10.0,
    "changed_colour": 10.0,
    "changed_shape": 10.0,
    "bleeding": 10.0,
    "personal_history": 10.0,
    "family_history": 5.0,
    "immunosuppression": 10.0,
}


class Tier(StrEnum):
    """Priority tiers; the declaration order is the reading order."""

    urgent = "urgent"
    high = "high"
    routine = "routine"
    low = "low"

    @property
    def rank(self) -> int:
        return list(Tier).index(self)


TIER_THRESHOLDS: tuple[tuple[Tier, float], ...] = (
    (Tier.urgent, 70.0),
    (Tier.high, 40.0),
    (Tier.routine, 20.0),
)

TIER_LABELS: dict[Lang, dict[Tier, str]] = {
    "fr": {Tier.urgent: "Urgent", Tier.high: "Élevée", Tier.routine: "Standard", Tier.low: "Basse"},
    "en": {Tier.urgent: "Urgent", Tier.high: "High", Tier.routine: "Routine", Tier.low: "Low"},
}


class ScoringState(StrEnum):
    """Where the automatic score of a case stands."""

    pending = "pending"
    done = "done"
    failed = "failed"


@dataclass(frozen=True)
class RedFlags:
    """The questionnaire answers that raise the priority of a case."""

    changed_size: bool = False
    changed_colour: bool = False
    changed_shape: bool = False
    bleeding: bool = False
    personal_history: bool = False
    family_history: bool = False
    immunosuppression: bool = False

    def active(self) -> list[str]:
        """Names of the flags that are set, in a fixed order."""
        return [name for name in RED_FLAG_POINTS if getattr(self, name)]


@dataclass(frozen=True)
class CaseFacts:
    """What the policy needs to know about one case.

    ``p_malignant`` and ``uncertainty`` are ``None`` until the case is scored. ``quality_ok`` is
    ``False`` when any photo failed the quality checks. ``first_read_at`` is when an expert first
    opened the review (``None`` while unread). ``ai_not_applicable`` is the reason code
    (``clinical_photo``, ``not_a_skin_photo``) when scoring ran and no photo was within the
    model's intended use; ``ood`` is True when a scored photo lies far from the training photos.
    """

    case_id: int
    submitted_at: datetime
    scoring: ScoringState
    p_malignant: float | None = None
    uncertainty: float | None = None
    quality_ok: bool = True
    red_flags: RedFlags = field(default_factory=RedFlags)
    first_read_at: datetime | None = None
    ai_not_applicable: str | None = None
    ood: bool = False


@dataclass(frozen=True)
class Reason:
    """One reason for a case's place: a stable code plus the numbers its sentence needs."""

    code: str
    value: float | None = None

    def text(self, lang: Lang = "fr") -> str:
        template = REASON_TEXTS[lang][self.code]
        if self.value is None:
            return template
        return template.format(value=self.value)


REASON_TEXTS: dict[Lang, dict[str, str]] = {
    "fr": {
        "p_malignant": "p(malin) {value:.2f}",
        "uncertain": "modèle incertain ({value:.2f})",
        "not_scored": "pas encore scoré : à regarder",
        "scoring_failed": "score impossible : à regarder",
        "quality_failed": "qualité photo insuffisante : à regarder",
        "ai_not_applicable": "IA non applicable : photo clinique, le modèle lit des images "
        "dermoscopiques",
        "ai_not_applicable_other": "IA non applicable : pas une photo dermoscopique de lésion",
        "ood": "photo inhabituelle pour le modèle : à regarder",
        "changed_size": "taille modifiée",
        "changed_colour": "couleur modifiée",
        "changed_shape": "forme modifiée",
        "bleeding": "saignement",
        "personal_history": "antécédent personnel de cancer cutané",
        "family_history": "antécédent familial de cancer cutané",
        "immunosuppression": "immunodépression",
        "waiting": "attente {value:.0f} h",
        "deadline_soon": "échéance dans {value:.0f} h",
        "overdue": "délai dépassé de {value:.0f} h",
    },
    "en": {
        "p_malignant": "p(malignant) {value:.2f}",
        "uncertain": "model uncertain ({value:.2f})",
        "not_scored": "not yet scored: needs a look",
        "scoring_failed": "could not be scored: needs a look",
        "quality_failed": "photo quality insufficient: needs a look",
        "ai_not_applicable": "AI not applicable: clinical photo, the model reads dermoscopic "
        "images",
        "ai_not_applicable_other": "AI not applicable: not a dermoscopic photo of a lesion",
        "ood": "photo unusual for the model: needs a look",
        "changed_size": "changed in size",
        "changed_colour": "changed in colour",
        "changed_shape": "changed in shape",
        "bleeding": "bleeding",
        "personal_history": "personal history of skin cancer",
        "family_history": "family history of skin cancer",
        "immunosuppression": "immunosuppressed",
        "waiting": "waiting {value:.0f} h",
        "deadline_soon": "deadline in {value:.0f} h",
        "overdue": "overdue by {value:.0f} h",
    },
}


@dataclass(frozen=True)
class Priority:
    """A case's place in the worklist: tier, score, safety flag and the reasons behind them."""

    case_id: int
    tier: Tier
    score: float
    flagged: bool
    reasons: tuple[Reason, ...]
    waiting_hours: float
    hours_to_deadline: float
    submitted_at: datetime

    def sort_key(self) -> tuple[int, float, datetime, int]:
        """Tier first, then score (descending, 1e-6 resolution), then oldest, then id."""
        return (self.tier.rank, -round(self.score, 6), self.submitted_at, self.case_id)

    def reason_text(self, lang: Lang = "fr") -> str:
        """The reasons as one line, e.g. ``p(malignant) 0.83, changed in size, waiting 30 h``."""
        return ", ".join(reason.text(lang) for reason in self.reasons)

    def tier_label(self, lang: Lang = "fr") -> str:
        return TIER_LABELS[lang][self.tier]


def _tier_for(score: float) -> Tier:
    for tier, threshold in TIER_THRESHOLDS:
        if score >= threshold:
            return tier
    return Tier.low


def _at_least(tier: Tier, floor: Tier) -> Tier:
    return tier if tier.rank <= floor.rank else floor


def _check_unit(name: str, value: float | None) -> None:
    if value is not None and not (0.0 <= value <= 1.0 and math.isfinite(value)):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def _base(facts: CaseFacts) -> tuple[float, bool, list[Reason]]:
    """The part of a case's score that does not depend on time: risk, uncertainty and red-flag
    points, whether the case is flagged for a human look, and the reasons so far."""
    _check_unit("p_malignant", facts.p_malignant)
    _check_unit("uncertainty", facts.uncertainty)
    reasons: list[Reason] = []
    flagged = False
    scored = facts.scoring is ScoringState.done and facts.p_malignant is not None
    not_applicable = (
        facts.scoring is ScoringState.done and not scored and facts.ai_not_applicable is not None
    )
    if scored:
        assert facts.p_malignant is not None
        p = facts.p_malignant
        u = facts.uncertainty if facts.uncertainty is not None else 1.0
        reasons.append(Reason("p_malignant", p))
    elif not_applicable:
        # By design, not a failure: unknown risk, ordered by red flags and waiting below.
        p, u = UNKNOWN_RISK, 1.0
        code = "ai_not_applicable" if facts.ai_not_applicable == "clinical_photo" else None
        reasons.append(Reason(code or "ai_not_applicable_other"))
    else:
        p, u = UNKNOWN_RISK, 1.0
        flagged = True
        code = "scoring_failed" if facts.scoring is ScoringState.failed else "not_scored"
        reasons.append(Reason(code))
    if not facts.quality_ok:
        flagged = True
        p, u = max(p, UNKNOWN_RISK), 1.0
        reasons.append(Reason("quality_failed"))
    if scored and facts.ood:
        flagged = True
        p, u = max(p, UNKNOWN_RISK), 1.0
        reasons.append(Reason("ood"))
    if scored and facts.uncertainty is not None and facts.uncertainty >= UNCERTAIN_REASON_AT:
        reasons.append(Reason("uncertain", facts.uncertainty))

    flags = facts.red_flags.active()
    red_points = min(RED_FLAG_CAP, sum(RED_FLAG_POINTS[name] for name in flags))
    reasons.extend(Reason(name) for name in flags)
    return RISK_WEIGHT * p + UNCERTAINTY_WEIGHT * u + red_points, flagged, reasons


def base_points(facts: CaseFacts) -> tuple[float, bool]:
    """(points before waiting, flagged): what stays fixed while the case waits.

    The score at any later moment is these points plus ``WAITING_WEIGHT * min(w / D, 1)``, and a
    flagged or overdue case is at least ``high``; replaying a queue (``pipeline.real_world``)
    needs only this and the arrival time of each case, instead of re-assessing every case at
    every moment.
    """
    points, flagged, _ = _base(facts)
    return points, flagged


def assess(
    facts: CaseFacts, now: datetime, *, deadline_hours: float = DEFAULT_DEADLINE_HOURS
) -> Priority:
    """Apply the policy (see the module docstring) to one case at time ``now``."""
    if deadline_hours <= 0:
        raise ValueError("deadline_hours must be positive")
    points, flagged, reasons = _base(facts)

    read_at = facts.first_read_at
    waited_until = read_at if read_at is not None else now
    waiting = max(0.0, (waited_until - facts.submitted_at).total_seconds() / 3600.0)
    to_deadline = deadline_hours - waiting
    reasons.append(Reason("waiting", waiting))
    unread = read_at is None
    if unread and to_deadline <= 0:
        reasons.append(Reason("overdue", -to_deadline))
    elif unread and to_deadline <= DEADLINE_SOON_HOURS:
        reasons.append(Reason("deadline_soon", to_deadline))

    score = points + WAITING_WEIGHT * min(waiting / deadline_hours, 1.0)
    tier = _tier_for(score)
    if flagged or (unread and to_deadline <= 0):
        tier = _at_least(tier, Tier.high)

    return Priority(
        case_id=facts.case_id,
        tier=tier,
        score=score,
        flagged=flagged,
        reasons=tuple(reasons),
        waiting_hours=waiting,
        hours_to_deadline=to_deadline,
        submitted_at=facts.submitted_at,
    )


def rank(
    cases: Iterable[CaseFacts],
    now: datetime,
    *,
    deadline_hours: float = DEFAULT_DEADLINE_HOURS,
) -> list[Priority]:
    """Every case assessed at ``now`` and put in reading order (see :meth:`Priority.sort_key`)."""
    assessed = [assess(c, now, deadline_hours=deadline_hours) for c in cases]
    return sorted(assessed, key=Priority.sort_key)


def tier_counts(priorities: Sequence[Priority]) -> dict[Tier, int]:
    """How many cases sit in each tier (all tiers present, zero included)."""
    counts = dict.fromkeys(Tier, 0)
    for priority in priorities:
        counts[priority.tier] += 1
    return counts
