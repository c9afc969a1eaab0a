"""What the case database says about the models: who scored which case, shadow agreement, drift.

The registry side of governance (figures, lineage, promotions) is :mod:`training.governance`;
this module answers the questions only live data can: how many live cases a version scored and
which, the full scoring history of a case, how a challenger's shadow scores compare with the
champion's (and how it would have ordered the worklist), and the weekly drift inputs. Versions
are named as the scores table stores them: ``<registered model>/<version>``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from pipeline.drift import Observation
from pipeline.priority import ScoringState, Tier, assess
from pipeline.workflow import OPEN_FOR_EXPERTS
from serving.case_service import case_facts
from serving.db.models import SCORE_ROLE_CHAMPION, SCORE_ROLE_SHADOW, Case, Photo, Score
from training.governance_compare import PairedScore, score_tier


def version_label(model_name: str, version: str) -> str:
    """How the scores table names a registered version (``Predictor.version``)."""
    return f"{model_name}/{version}"


@dataclass(frozen=True)
class CaseScore:
    """One version's opinion of one case: its latest scoring run, riskiest photo.

    ``role`` is ``champion`` (the worklist used it) or ``shadow``; ``superseded`` is true when a
    later run of the same role replaced it.
    """

    case_id: int
    model_version: str
    role: str
    p_malignant: float
    uncertainty: float
    predicted_class: str
    photos: int
    scored_at: datetime
    superseded: bool


def _latest_runs(scores: Iterable[Score]) -> dict[tuple[int, str, str], list[Score]]:
    """Scores grouped by (case, version, role), keeping only the latest run of each group."""
    runs: dict[tuple[int, str, str], dict[datetime, list[Score]]] = {}
    for score in scores:
        key = (score.case_id, score.model_version, score.role or SCORE_ROLE_CHAMPION)
        runs.setdefault(key, {}).setdefault(score.created_at, []).append(score)
    return {key: by_time[max(by_time)] for key, by_time in runs.items()}


def _case_score(run: list[Score]) -> CaseScore | None:
    """The run's riskiest photo; None when no photo was within the model's intended use (the
    modality check left every photo unscored, so the model gave the case no score)."""
    scored = [s for s in run if s.p_malignant is not None]
    if not scored:
        return None
    best = max(scored, key=lambda s: (s.p_malignant or 0.0, -s.photo_position))
    return CaseScore(
        case_id=best.case_id,
        model_version=best.model_version,
        role=best.role or SCORE_ROLE_CHAMPION,
        p_malignant=float(best.p_malignant or 0.0),
        uncertainty=float(best.uncertainty or 0.0),
        predicted_class=best.predicted_class or "",
        photos=len(run),
        scored_at=best.created_at,
        superseded=all(s.superseded for s in run),
    )


def cases_scored_by(session: Session, model_version: str) -> list[CaseScore]:
    """Every live case ``model_version`` scored (as champion or in shadow), newest first."""
    scores = session.scalars(select(Score).where(Score.model_version == model_version))
    runs = (_case_score(run) for run in _latest_runs(scores).values())
    found = [case_score for case_score in runs if case_score is not None]
    return sorted(found, key=lambda c: (c.scored_at, c.case_id, c.role), reverse=True)


def scored_counts(session: Session) -> dict[str, dict[str, int]]:
    """``{model_version: {role: distinct cases}}`` over the whole database."""
    rows = session.execute(select(Score.model_version, Score.role, Score.case_id).distinct())
    counts: dict[str, dict[str, int]] = {}
    for version, role, _ in rows:
        by_role = counts.setdefault(version, {})
        by_role[role] = by_role.get(role, 0) + 1
    return counts


def case_scoring_history(session: Session, case_id: int) -> list[dict[str, Any]] | None:
    """Every score ever given to a case's photos, oldest first; None when there is no such case."""
    case = session.get(Case, case_id)
    if case is None:
        return None
    scores = session.scalars(
        select(Score).where(Score.case_id == case_id).order_by(Score.created_at, Score.id)
    )
    return [
        {
            "at": s.created_at.isoformat(),
            "model_version": s.model_version,
            "role": s.role,
            "photo_position": s.photo_position,
            "p_malignant": s.p_malignant,
            "uncertainty": s.uncertainty,
            "predicted_class": s.predicted_class,
            "superseded": s.superseded,
            "used_by_worklist": (not s.superseded) and s.role == SCORE_ROLE_CHAMPION,
        }
        for s in scores
    ]


def latest_case_scores(session: Session, model_version: str) -> dict[int, CaseScore]:
    """Each case's latest score by ``model_version``, champion role preferred over shadow."""
    found: dict[int, CaseScore] = {}
    for case_score in cases_scored_by(session, model_version):
        current = found.get(case_score.case_id)
        if current is None or (
            current.role == SCORE_ROLE_SHADOW and case_score.role == SCORE_ROLE_CHAMPION
        ):
            found[case_score.case_id] = case_score
    return found


def paired_scores(session: Session, version_a: str, version_b: str) -> list[PairedScore]:
    """The cases both versions scored, with each one's case score, by case id."""
    a, b = latest_case_scores(session, version_a), latest_case_scores(session, version_b)
    both = sorted(a.keys() & b.keys())
    return [PairedScore(cid, a[cid].p_malignant, b[cid].p_malignant) for cid in both]


@dataclass(frozen=True)
class OrderingRow:
    """One open case: its place in the worklist now, and with the shadow version's score."""

    case_id: int
    rank_now: int
    rank_shadow: int
    tier_now: str
    tier_shadow: str
    p_now: float | None
    p_shadow: float


def would_be_ordering(
    session: Session, shadow_version: str, now: datetime, deadline_hours: float
) -> list[OrderingRow]:
    """The open cases the shadow version scored, ranked as now and as with its scores.

    Everything but the model's score and uncertainty (red flags, quality, waiting time) is kept,
    so a move in rank is the model's doing. Ordered by the rank the shadow version would give.
    """
    shadow = {
        s.case_id: s
        for s in cases_scored_by(session, shadow_version)
        if s.role == SCORE_ROLE_SHADOW and not s.superseded
    }
    if not shadow:
        return []
    cases = session.scalars(
        select(Case)
        .where(Case.id.in_(shadow), Case.status.in_([s.value for s in OPEN_FOR_EXPERTS]))
        .options(selectinload(Case.scores), selectinload(Case.photos))
    ).all()
    facts = {c.id: case_facts(c) for c in cases}
    as_now = {cid: assess(f, now, deadline_hours=deadline_hours) for cid, f in facts.items()}
    as_shadow = {
        cid: assess(
            dataclasses.replace(
                f,
                p_malignant=shadow[cid].p_malignant,
                uncertainty=shadow[cid].uncertainty,
                scoring=ScoringState.done,
            ),
            now,
            deadline_hours=deadline_hours,
        )
        for cid, f in facts.items()
    }
    order_now = sorted(as_now, key=lambda cid: as_now[cid].sort_key())
    order_shadow = sorted(as_shadow, key=lambda cid: as_shadow[cid].sort_key())
    rank_now = {cid: i + 1 for i, cid in enumerate(order_now)}
    return [
        OrderingRow(
            case_id=cid,
            rank_now=rank_now[cid],
            rank_shadow=i + 1,
            tier_now=as_now[cid].tier.value,
            tier_shadow=as_shadow[cid].tier.value,
            p_now=facts[cid].p_malignant,
            p_shadow=shadow[cid].p_malignant,
        )
        for i, cid in enumerate(order_shadow)
    ]


def drift_observations(session: Session, model_version: str) -> list[Observation]:
    """One observation per live photo: its quality findings and ``model_version``'s score of it.

    Photos the version did not score still count for the quality rates and input statistics
    (those do not depend on the model); their score is None.
    """
    photos = session.scalars(select(Photo).order_by(Photo.created_at, Photo.id)).all()
    scores: dict[int, tuple[datetime, float]] = {}
    for score in session.scalars(select(Score).where(Score.model_version == model_version)):
        if score.p_malignant is None:  # outside the intended use: no score to watch
            continue
        seen = scores.get(score.photo_id)
        if seen is None or score.created_at > seen[0]:
            scores[score.photo_id] = (score.created_at, float(score.p_malignant))
    observations = []
    for photo in photos:
        quality = photo.quality or {}
        metrics = quality.get("metrics") or {}
        luma = metrics.get("median_luma")
        brightness = float(luma) if isinstance(luma, int | float) and math.isfinite(luma) else None
        scored = scores.get(photo.id)
        observations.append(
            Observation(
                at=photo.created_at,
                p_malignant=scored[1] if scored else None,
                problems=tuple(p["code"] for p in quality.get("problems", []) if "code" in p),
                brightness=brightness,
                short_side=float(min(photo.width, photo.height)),
            )
        )
    return observations


@dataclass(frozen=True)
class LiveGroup:
    """Live cases of one skin type scored by a version: how many, and how it scored them.

    Live cases have no confirmed diagnosis yet, so this is a description (is one skin type
    scored differently?), not a performance figure.
    """

    skin_type: str
    n_cases: int
    median_score: float
    share_urgent: float


def live_cases_by_skin_type(session: Session, model_version: str) -> list[LiveGroup]:
    """The version's latest case scores grouped by the questionnaire's Fitzpatrick skin type."""
    scored = latest_case_scores(session, model_version)
    if not scored:
        return []
    cases = session.execute(select(Case.id, Case.questionnaire).where(Case.id.in_(scored)))
    groups: dict[str, list[float]] = {}
    for case_id, questionnaire in cases:
        skin = str((questionnaire or {}).get("fitzpatrick") or "not given")
        groups.setdefault(skin, []).append(scored[case_id].p_malignant)
    return [
        LiveGroup(
            skin_type=skin,
            n_cases=len(values),
            median_score=float(np.median(values)),
            share_urgent=sum(score_tier(v) is Tier.urgent for v in values) / len(values),
        )
        for skin, values in sorted(groups.items())
    ]
