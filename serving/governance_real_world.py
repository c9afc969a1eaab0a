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
from pipeline.priority import CaseFacts, RedFlags, ScoringState
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
from training.governance import version_dossier
from training.registry import CHALLENGER, CHAMPION, RegistryError, alias_version, open_client

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
    #: When the figures were computed, and whether newer data is being computed meanwhile
    #: (the page answers from the stored result instead of making the reader wait).
    computed_at: datetime | None = None
    refreshing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_version": self.label,
            "computed_at": None if self.computed_at is None else self.computed_at.isoformat(),
            "refreshing": self.refreshing,
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
    flags: RedFlags = dataclasses.field(default_factory=RedFlags)


_CASES, _PHOTOS, _SCORES = Case.__table__.c, Photo.__table__.c, Score.__table__.c


def _case_rows(session: Session) -> dict[int, _CaseRow]:
    """Every case's queue facts and subgroups, and its photos' kind and quality: two Core
    queries (plain rows, no ORM objects), red flags read once per case."""
    connection = session.connection()
    rows = connection.execute(
        select(
            _CASES.id,
            _CASES.centre,
            _CASES.submitted_at,
            _CASES.first_read_at,
            _CASES.status,
            _CASES.scoring_state,
            _CASES.questionnaire,
        )
    )
    cases = {}
    for case_id, *columns in rows:
        case = _CaseRow(*columns)
        case.flags = red_flags(case.questionnaire or {})
        cases[case_id] = case
    for case_id, kind, acceptable in connection.execute(
        select(_PHOTOS.case_id, _PHOTOS.kind, _PHOTOS.quality_acceptable)
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
    rows = session.connection().execute(
        select(
            _SCORES.case_id,
            _SCORES.p_malignant,
            _SCORES.uncertainty,
            _SCORES.photo_position,
            _SCORES.ood,
            _SCORES.domain_reason,
        ).where(_SCORES.superseded.is_(False), _SCORES.role != SCORE_ROLE_SHADOW)
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
    ``(p_malignant, uncertainty, role)``; cases it gave no score are absent.

    The latest run of each (case, role) is found by the database (a grouped subquery joined
    back), so only that run's rows travel and no timestamp is parsed in Python.
    """
    latest = (
        select(
            _SCORES.case_id,
            _SCORES.role,
            func.max(_SCORES.created_at).label("at"),
        )
        .where(_SCORES.model_version == label)
        .group_by(_SCORES.case_id, _SCORES.role)
        .subquery()
    )
    rows = session.connection().execute(
        select(
            _SCORES.case_id, _SCORES.role, _SCORES.p_malignant, _SCORES.uncertainty,
            _SCORES.photo_position,
        ).join(
            latest,
            (latest.c.case_id == _SCORES.case_id)
            & (latest.c.role == _SCORES.role)
            & (latest.c.at == _SCORES.created_at),
        ).where(_SCORES.model_version == label, _SCORES.p_malignant.is_not(None))
    )  # fmt: skip
    runs: dict[tuple[int, str], tuple[float, float, int]] = {}
    for case_id, role, p, u, position in rows:
        key = (case_id, role)
        best = runs.get(key)
        if best is None or (p, -position) > (best[0], -best[2]):
            runs[key] = (float(p), float(u or 0.0), position)
    result: dict[int, tuple[float, float, str]] = {}
    for (case_id, role), (p, u, _) in sorted(
        runs.items(), key=lambda item: item[0][1] == SCORE_ROLE_CHAMPION
    ):
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


class _Store:
    """The latest report of each (database, version, challenger, registered figures), with the
    fingerprint of the data it was computed from, and the refreshes running in the background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], tuple[tuple[Any, ...], RealWorldReport]] = {}
        self._running: dict[tuple[Any, ...], threading.Thread] = {}

    def get(self, key: tuple[Any, ...]) -> tuple[tuple[Any, ...], RealWorldReport] | None:
        with self._lock:
            return self._items.get(key)

    def put(
        self, key: tuple[Any, ...], fingerprint: tuple[Any, ...], value: RealWorldReport
    ) -> None:
        with self._lock:
            if key not in self._items and len(self._items) > 32:
                self._items.clear()
            self._items[key] = (fingerprint, value)

    def start(self, key: tuple[Any, ...], thread: threading.Thread) -> None:
        """Run ``thread`` as the refresh of ``key``, unless one is already running."""
        with self._lock:
            if key in self._running:
                return
            self._running[key] = thread
        thread.start()

    def done(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._running.pop(key, None)

    def join(self, timeout: float) -> bool:
        """Wait for the refreshes running now; False if one is still running after ``timeout``."""
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)


_store = _Store()


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
            red_flags=case.flags,
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
    stale_ok: bool = False,
) -> RealWorldReport:
    """The real-world figures of ``version`` (and of ``challenger`` on the same cases).

    A stored result computed from the same data (same fingerprint) is returned at once. When the
    data has changed since, ``stale_ok`` (the pages and the API) returns the stored result marked
    ``refreshing`` and recomputes it in a background thread, so no reader waits for the
    computation; without it (the ``governance check`` command, the tests) the figures are
    computed now. ``now`` is the moment the figures are computed at (``computed_at``).
    """
    label = f"{model_name}/{version}"
    engine = session.get_bind()
    key = (str(engine.url), label, challenger, tuple(sorted(registered.items())))
    fingerprint = _fingerprint(session)
    stored = _store.get(key)
    if stored is not None and stored[0] == fingerprint:
        return stored[1]
    if stored is not None and stale_ok:
        args = (model_name, version, registered, now, deadline_hours, challenger)
        _store.start(
            key,
            threading.Thread(
                target=_refresh, args=(engine, key, args), name="real-world", daemon=True
            ),
        )
        return dataclasses.replace(stored[1], refreshing=True)
    report = _compute(
        session, model_name, version, registered, now=now, deadline_hours=deadline_hours,
        challenger=challenger,
    )  # fmt: skip
    _store.put(key, fingerprint, report)
    return report


def wait_for_refreshes(timeout: float = 60.0) -> bool:
    """Wait for the background recomputations running now (tests, the service's shutdown)."""
    return _store.join(timeout)


def _refresh(engine: Any, key: tuple[Any, ...], args: tuple[Any, ...]) -> None:
    """Recompute one stored result in the background (its own session)."""
    model_name, version, registered, now, deadline_hours, challenger = args
    try:
        with Session(engine) as session:
            fingerprint = _fingerprint(session)
            report = _compute(
                session, model_name, version, registered, now=now,
                deadline_hours=deadline_hours, challenger=challenger,
            )  # fmt: skip
        _store.put(key, fingerprint, report)
    except Exception:  # a failed refresh keeps the stored result; the next look retries
        logger.exception("recomputing the real-world figures of %s failed", key[1])
    finally:
        _store.done(key)


def _compute(
    session: Session,
    model_name: str,
    version: str,
    registered: Mapping[str, float],
    *,
    now: datetime,
    deadline_hours: float,
    challenger: str | None,
) -> RealWorldReport:
    label = f"{model_name}/{version}"
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
        computed_at=now,
    )
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


def in_service_reports(
    settings: Any, session: Session, *, now: datetime, stale_ok: bool = False
) -> list[RealWorldReport]:
    """The real-world report of each version in service: the champion (with the challenger on
    the same cases) and the challenger in shadow mode. None when the registry is unreachable
    or names no such version (a fresh installation)."""
    name = settings.registered_model_name
    try:
        client = open_client(settings.tracking_uri)
        champion = alias_version(client, name, CHAMPION)
        challenger = alias_version(client, name, CHALLENGER)
        versions = [v for v in dict.fromkeys((champion, challenger)) if v is not None]
        dossiers = {v: version_dossier(client, name, v) for v in versions}
    except RegistryError:
        return []
    return [
        version_real_world(
            session,
            name,
            version,
            registered=dossiers[version].metrics,
            now=now,
            deadline_hours=settings.review_deadline_hours,
            challenger=challenger if version == champion else None,
            stale_ok=stale_ok,
        )
        for version in versions
    ]


def version_report(
    settings: Any,
    session: Session,
    version: str,
    registered: Mapping[str, float],
    *,
    now: datetime,
    stale_ok: bool = False,
) -> RealWorldReport:
    """One version's report as the pages, the PDF and the commands show it: with the
    challenger on the same cases when ``version`` is the champion."""
    name = settings.registered_model_name
    try:
        client = open_client(settings.tracking_uri)
        champion = alias_version(client, name, CHAMPION)
        challenger = alias_version(client, name, CHALLENGER)
    except RegistryError:
        champion = challenger = None
    return version_real_world(
        session,
        name,
        version,
        registered=registered,
        now=now,
        deadline_hours=settings.review_deadline_hours,
        challenger=challenger if version == champion else None,
        stale_ok=stale_ok,
    )
