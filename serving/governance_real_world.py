"""Gathering the rows behind a version's real-world figures; the figures are pipeline.real_world's.

For one registered version this reads, in a handful of narrow column queries (no ORM objects, so
10,000 closed cases stay well under a second): every case's arrival, first reading, centre and
questionnaire answers, the worklist's current scores, the photos' quality and kind, the version's
own scores, and each case's reference diagnosis (:func:`serving.outcomes.reference_diagnoses`).
It turns them into :class:`pipeline.real_world.QueueEntry` and ``LabelledCase`` rows, and hands
them to :func:`pipeline.real_world.real_world`; with the challenger's shadow scores on the same
cases, and the alert against the version's registered sensitivity.

Results are kept per version until the data they were computed from changes (a new outcome,
validated report, score or first reading changes the fingerprint), so a second look is instant.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.diagnosis import is_malignant
from pipeline.priority import CaseFacts, ScoringState
from pipeline.real_world import (
    LabelledCase,
    QueueEntry,
    RealWorld,
    SensitivityAlert,
    age_band,
    queue_timings,
    real_world,
    real_world_figures,
    sensitivity_alert,
)
from pipeline.workflow import OPEN_FOR_EXPERTS
from serving import audit
from serving.case_service import red_flags
from serving.db.models import (
    SCORE_ROLE_CHAMPION,
    SCORE_ROLE_SHADOW,
    AuditEvent,
    Case,
    Outcome,
    Photo,
    Report,
    Score,
)
from serving.outcomes import reference_diagnoses

logger = logging.getLogger(__name__)

#: Audit action written when a version's live sensitivity interval falls below its registered one.
ALERT_ACTION = "governance.real_world.alert"
_OPEN = {status.value for status in OPEN_FOR_EXPERTS}


@dataclass(frozen=True)
class RealWorldReport:
    """A version's real-world figures, the challenger's on the same cases, and the alert."""

    version: str
    label: str
    figures: RealWorld
    registered: Mapping[str, float]
    alert: SensitivityAlert | None
    sources: Mapping[str, int]
    challenger: str | None = None
    challenger_figures: Any = None  # pipeline.real_world.Figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_version": self.label,
            **self.figures.to_dict(),
            "reference_sources": dict(self.sources),
            "registered": dict(self.registered),
            "alert": None if self.alert is None else self.alert.to_dict(),
            "challenger": None
            if self.challenger is None
            else {"version": self.challenger, **self.challenger_figures.to_dict()},
        }


@dataclass
class _CaseRow:
    centre: str
    submitted_at: datetime
    first_read_at: datetime | None
    status: str
    scoring_state: str
    questionnaire: dict[str, Any]
    kinds: set[str] = dataclasses.field(default_factory=set)
    quality_ok: bool = True


def _case_rows(session: Session) -> dict[int, _CaseRow]:
    rows = session.execute(
        select(
            Case.id,
            Case.centre,
            Case.submitted_at,
            Case.first_read_at,
            Case.status,
            Case.scoring_state,
            Case.questionnaire,
        )
    )
    cases = {row[0]: _CaseRow(*row[1:]) for row in rows}
    for case_id, kind, acceptable in session.execute(
        select(Photo.case_id, Photo.kind, Photo.quality_acceptable)
    ):
        case = cases.get(case_id)
        if case is not None:
            case.kinds.add(kind)
            if acceptable is False:
                case.quality_ok = False
    return cases


def _photo_domain(kinds: set[str]) -> str:
    return next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else "unknown")


def _worklist_scores(session: Session) -> dict[int, tuple[float | None, float | None, bool, str]]:
    """Per case, what the worklist reads (its current champion scores): riskiest applicable
    photo's (p, uncertainty), any out-of-distribution flag, the first not-applicable reason."""
    found: dict[int, list[tuple[float | None, float | None, int, bool, str | None]]] = {}
    rows = session.execute(
        select(
            Score.case_id,
            Score.p_malignant,
            Score.uncertainty,
            Score.photo_position,
            Score.ood,
            Score.domain_reason,
        ).where(Score.superseded.is_(False), Score.role != SCORE_ROLE_SHADOW)
    )
    for case_id, p, u, position, ood, reason in rows:
        found.setdefault(case_id, []).append((p, u, position, bool(ood), reason))
    result = {}
    for case_id, scores in found.items():
        applicable = [s for s in scores if s[0] is not None]
        reason = next((s[4] for s in scores if s[4]), "") if not applicable else ""
        if applicable:
            best = max(applicable, key=lambda s: (s[0] or 0.0, -s[2]))
            result[case_id] = (best[0], best[1], any(s[3] for s in applicable), reason)
        else:
            result[case_id] = (None, None, False, reason)
    return result


def _version_scores(session: Session, label: str) -> dict[int, tuple[float, float, str]]:
    """Per case, the version's case score from its latest run (champion role preferred):
    ``(p_malignant, uncertainty, role)``; cases it gave no score are absent."""
    runs: dict[tuple[int, str], tuple[datetime, list[tuple[float, float, int]]]] = {}
    rows = session.execute(
        select(
            Score.case_id,
            Score.role,
            Score.created_at,
            Score.p_malignant,
            Score.uncertainty,
            Score.photo_position,
        ).where(Score.model_version == label)
    )
    for case_id, role, at, p, u, position in rows:
        key = (case_id, role or SCORE_ROLE_CHAMPION)
        seen = runs.get(key)
        if seen is None or at > seen[0]:
            runs[key] = (at, [])
            seen = runs[key]
        if at == seen[0] and p is not None:
            seen[1].append((float(p), float(u or 0.0), position))
    result: dict[int, tuple[float, float, str]] = {}
    for (case_id, role), (_, scores) in sorted(
        runs.items(), key=lambda item: item[0][1] == SCORE_ROLE_CHAMPION
    ):
        if scores:
            p, u, _ = max(scores, key=lambda s: (s[0], -s[2]))
            result[case_id] = (p, u, role)  # champion rows sort last and win
    return result


def _fingerprint(session: Session) -> tuple[Any, ...]:
    """What the figures depend on, cheaply: any new outcome, validation, score or reading
    changes it."""
    return (
        session.execute(select(func.count(Outcome.id), func.max(Outcome.id))).one(),
        session.execute(select(func.count(Report.id), func.max(Report.validated_at))).one(),
        session.execute(select(func.count(Score.id), func.max(Score.id))).one(),
        session.execute(
            select(func.count(Case.id), func.max(Case.id), func.max(Case.first_read_at))
        ).one(),
    )


class _Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], RealWorldReport] = {}

    def get(self, key: tuple[Any, ...]) -> RealWorldReport | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[Any, ...], value: RealWorldReport) -> None:
        with self._lock:
            if len(self._items) > 32:
                self._items.clear()
            self._items[key] = value


_cache = _Cache()


def _labelled(
    scores: Mapping[int, tuple[float, float, str]],
    cases: Mapping[int, _CaseRow],
    references: Mapping[int, Any],
) -> list[LabelledCase]:
    labelled = []
    for case_id, (p, _, _) in scores.items():
        reference = references.get(case_id)
        malignant = None if reference is None else is_malignant(reference.code)
        case = cases.get(case_id)
        if malignant is None or case is None:
            continue
        answers = case.questionnaire or {}
        groups = {
            "phototype": str(answers.get("fitzpatrick") or "unknown"),
            "body_site": str(answers.get("body_site") or "unknown"),
            "age_band": age_band(answers.get("age")),
            "photo_domain": _photo_domain(case.kinds),
            "centre": case.centre,
        }
        labelled.append(LabelledCase(case_id, malignant, p, groups))
    return labelled


def _queue(
    cases: Mapping[int, _CaseRow],
    worklist: Mapping[int, tuple[float | None, float | None, bool, str]],
    override: Mapping[int, tuple[float, float, str]] | None = None,
) -> list[QueueEntry]:
    """Every case that stood in a queue (read, or still open), as the policy saw it; with
    ``override`` (a shadow version's scores) in place of the worklist's where it has one."""
    entries = []
    for case_id, case in cases.items():
        if case.first_read_at is None and case.status not in _OPEN:
            continue
        p, u, ood, reason = worklist.get(case_id, (None, None, False, ""))
        state = ScoringState(case.scoring_state)
        if override is not None and case_id in override:
            p, u = override[case_id][0], override[case_id][1]
            state = ScoringState.done
        facts = CaseFacts(
            case_id=case_id,
            submitted_at=case.submitted_at,
            scoring=state,
            p_malignant=p,
            uncertainty=u,
            quality_ok=case.quality_ok,
            red_flags=red_flags(case.questionnaire or {}),
            first_read_at=case.first_read_at,
            ai_not_applicable=reason or None,
            ood=ood,
        )
        entries.append(QueueEntry.from_facts(facts, case.centre))
    return entries


def version_real_world(
    session: Session,
    model_name: str,
    version: str,
    *,
    registered: Mapping[str, float],
    now: datetime,
    deadline_hours: float,
    challenger: str | None = None,
) -> RealWorldReport:
    """The real-world figures of ``version`` (and of ``challenger`` on the same cases)."""
    label = f"{model_name}/{version}"
    database = str(session.get_bind().url)
    key = (database, label, challenger, tuple(sorted(registered.items())), _fingerprint(session))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    cases = _case_rows(session)
    worklist = _worklist_scores(session)
    scores = _version_scores(session, label)
    references = reference_diagnoses(session, scores.keys())
    labelled = _labelled(scores, cases, references)
    shadow_only = {cid for cid, (_, _, role) in scores.items() if role == SCORE_ROLE_SHADOW}
    # A version that only shadowed a case did not order it: its own scores replace the
    # worklist's in the replay, and the real waits say nothing about it.
    queue = _queue(cases, worklist, {cid: scores[cid] for cid in shadow_only})
    cancers = [c.case_id for c in labelled if c.malignant]
    timings = queue_timings(queue, cancers, now=now, deadline_hours=deadline_hours)
    for case_id in shadow_only & timings.keys():
        timings[case_id] = dataclasses.replace(
            timings[case_id], hours_to_first_reading=None, hours_fcfs=None
        )
    figures = real_world(labelled, timings)
    sources: dict[str, int] = {}
    for case in labelled:
        source = references[case.case_id].source
        sources[source] = sources.get(source, 0) + 1
    challenger_figures = None
    if challenger is not None and challenger != version:
        shadow = _version_scores(session, f"{model_name}/{challenger}")
        same = {c.case_id for c in labelled} & shadow.keys()
        both = [
            dataclasses.replace(c, p_malignant=shadow[c.case_id][0])
            for c in labelled
            if c.case_id in same
        ]
        shadow_queue = _queue(cases, worklist, shadow)
        shadow_timings = queue_timings(
            shadow_queue,
            [c.case_id for c in both if c.malignant],
            now=now,
            deadline_hours=deadline_hours,
        )
        shadow_timings = {
            cid: dataclasses.replace(t, hours_to_first_reading=None, hours_fcfs=None)
            for cid, t in shadow_timings.items()
        }
        challenger_figures = real_world_figures(both, shadow_timings)
    report = RealWorldReport(
        version=version,
        label=label,
        figures=figures,
        registered=dict(registered),
        alert=sensitivity_alert(figures.overall, registered),
        sources=sources,
        challenger=challenger if challenger_figures is not None else None,
        challenger_figures=challenger_figures,
    )
    _cache.put(key, report)
    return report


def record_alert(session: Session, actor: Any, report: RealWorldReport, *, at: datetime) -> bool:
    """Write the alert to the audit trail once per state of the evidence (the number of
    confirmed cases it rests on); True when an event was written."""
    if report.alert is None:
        return False
    details = {
        "registered_metric": report.alert.registered_metric,
        "registered": round(report.alert.registered, 6),
        "sensitivity": round(report.alert.live.value or 0.0, 6),
        "high": round(report.alert.live.high or 0.0, 6),
        "n_malignant": report.alert.live.n,
        "n_cases": report.figures.overall.n_cases,
    }
    last = session.scalar(
        select(AuditEvent.details)
        .where(AuditEvent.action == ALERT_ACTION, AuditEvent.model_version == report.label)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    if last is not None and last.get("n_cases") == details["n_cases"]:
        return False
    audit.record(session, actor, ALERT_ACTION, model_version=report.label, details=details, at=at)
    logger.warning(
        "%s: live sensitivity %.3f (95%% up to %.3f) below the registered %s %.3f",
        report.label,
        details["sensitivity"],
        details["high"],
        details["registered_metric"],
        details["registered"],
    )
    return True
