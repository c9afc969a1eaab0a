"""What can be done to a case, in one place: the API and the pages both call these functions.

Each function takes an open SQLAlchemy session, the acting :class:`~serving.users.User` and the
current time, applies the pure rules of ``pipeline.workflow`` / ``pipeline.priority``, writes the
rows and records an :class:`~serving.db.Event` (who, what, when) for every change. The caller's
session commits or rolls back the whole unit of work, so a request is applied whole or not at all.

Who may see or touch which case is :func:`pipeline.access.can`'s answer, asked here in
:func:`get_case` (a case the user may not read answers "not found", so its existence is not
disclosed), :func:`_may_change` (read-only users such as auditors get :class:`ForbiddenError`) and
:func:`worklist` (experts see their centre's cases). See docs/access.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from pipeline.access import Permission, can, sees_every_centre
from pipeline.diagnosis import DiagnosisCode, OutcomeSource
from pipeline.intake import IntakeError
from pipeline.priority import CaseFacts, Priority, RedFlags, ScoringState, Tier, assess
from pipeline.questionnaire import Questionnaire
from pipeline.report import Conduct, ReportContent
from pipeline.workflow import (
    OPEN_FOR_EXPERTS,
    READ,
    Action,
    Role,
    Status,
    TransitionError,
    transition,
)
from serving import audit
from serving.auth import lookup_user
from serving.db.models import Case, Event, Message, Outcome, Photo, Report
from serving.storage import PhotoStore, write_for_session
from serving.users import User

logger = logging.getLogger(__name__)

Lang = Literal["fr", "en"]
Clock = Callable[[], datetime]

MAX_PHOTOS = 5
PHOTO_KINDS = ("close_up", "dermoscopy", "wide")
MESSAGE_MAX_CHARS = 4000


class CaseNotFoundError(LookupError):
    """No such case, or not one this user may see."""


class ForbiddenError(PermissionError):
    """The user's role may not do this."""


class InvalidRequestError(ValueError):
    """The request is refused as a whole; ``errors`` maps field -> message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class ConflictError(Exception):
    """The case is not in a state where this can be done (``code`` from the workflow)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PhotoUpload:
    data: bytes
    kind: str = "close_up"


_TEXT = {
    "photo_count": {
        "fr": "Joignez de 1 à 5 photos.",
        "en": "Attach 1 to 5 photos.",
    },
    "photo_kind": {
        "fr": "Type de photo inconnu.",
        "en": "Unknown photo type.",
    },
    "message_empty": {"fr": "Le message est vide.", "en": "The message is empty."},
    "message_long": {
        "fr": "Message trop long (4000 caractères au plus).",
        "en": "Message too long (at most 4000 characters).",
    },
    "no_rpps": {
        "fr": "Votre compte n'a pas de numéro RPPS : demandez à l'administrateur de DermTriage "
        "de le renseigner.",
        "en": "Your account has no RPPS number: ask the DermTriage administrator to add it.",
    },
}


def photo_count_text(lang: Lang) -> str:
    """The refusal of a case with no photo or too many (also said while an upload streams)."""
    return _TEXT["photo_count"][lang]


def _record(
    session: Session,
    case: Case,
    user: User,
    action: str,
    now: datetime,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        case=case,
        at=now,
        actor_id=user.id,
        actor_role=user.role.value,
        action=action,
        from_status=from_status,
        to_status=to_status,
        detail=detail,
    )
    session.add(event)
    session.flush()  # a new case gets its id, which the audit event names
    details = audit.change_details(from_status, to_status, detail)
    audit.record(session, user, f"case.{action}", case_id=case.id, details=details, at=now)
    return event


def _may_change(user: User, case: Case) -> None:
    """Refuse any change to ``case`` by someone who may not change it (checked on every change,
    whatever route it comes from; the system role is the scoring worker's)."""
    if user.role is not Role.system and not can(user, Permission.change_case, case):
        raise ForbiddenError(f"a {user.role.value} may not change this case")


CONCURRENT_CHANGE = "concurrent_change"


def _claim(session: Session, case: Case) -> None:
    """Take the case for this unit of work: one compare-and-set on its ``version``, or 409.

    Every human action checks its rules against the case as it was read, then calls this before
    writing anything. ``UPDATE cases SET version = v + 1 WHERE id = ? AND version = v`` matches
    no row if anyone changed the case since it was read (or is changing it now: the database
    holds the loser's update until the winner commits, then the version no longer matches). So
    of two people acting at once exactly one succeeds, on SQLite (no row locks) as on PostgreSQL,
    and the rules the winner checked still held when it wrote. On SQLite the update also takes
    the database's write lock for the rest of the unit of work.
    """
    seen = case.version
    claimed = session.execute(
        update(Case)
        .where(Case.id == case.id, Case.version == seen)
        .values(version=seen + 1)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise ConflictError(
            CONCURRENT_CHANGE,
            "the case was changed by someone else meanwhile: reload it and try again",
        )
    set_committed_value(case, "version", seen + 1)


def advance_status(session: Session, case: Case, expected: Status, to: Status) -> bool:
    """Move ``case`` from ``expected`` to ``to`` only if it is still ``expected`` (for the scoring
    worker, which acts on no one's reading of the case): one conditional update, which also
    bumps ``version`` so a person acting on the case as it was gets 409 rather than writing over
    the change. False, with ``case`` reloaded, when someone moved the case first."""
    moved = session.execute(
        update(Case)
        .where(Case.id == case.id, Case.status == expected.value)
        .values(status=to.value, version=Case.version + 1)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(case, ["status", "version"])
        return False
    session.refresh(case, ["status", "version"])
    return True


def _move(
    session: Session, case: Case, action: Action, user: User, now: datetime, **kw: Any
) -> None:
    """Apply a workflow transition to ``case`` and record it; map refusals to our errors."""
    _may_change(user, case)
    before = Status(case.status)
    report_author = case.report.author_id if case.report is not None else None
    try:
        after = transition(
            before, action, user.role, actor_id=user.id, report_author_id=report_author
        )
    except TransitionError as exc:
        if exc.code == "forbidden_role":
            raise ForbiddenError(exc.message) from exc
        raise ConflictError(exc.code, exc.message) from exc
    _claim(session, case)
    case.status = after.value
    case.updated_at = now
    if after in READ and case.first_read_at is None:
        case.first_read_at = now
    if after is Status.closed:
        case.closed_at = now
    _record(
        session,
        case,
        user,
        action.value,
        now,
        from_status=before.value,
        to_status=after.value,
        **kw,
    )


def _require_role(user: User, roles: Sequence[Role], what: str) -> None:
    if user.role not in roles:
        raise ForbiddenError(f"a {user.role.value} may not {what}")


def _message_body(body: str, lang: Lang) -> str:
    text = (body or "").strip()
    if not text:
        raise InvalidRequestError({"body": _TEXT["message_empty"][lang]})
    if len(text) > MESSAGE_MAX_CHARS:
        raise InvalidRequestError({"body": _TEXT["message_long"][lang]})
    return text


def create_case(
    session: Session,
    store: PhotoStore,
    user: User,
    questionnaire: Questionnaire,
    photos: Sequence[PhotoUpload],
    *,
    now: datetime,
    max_bytes: int,
    max_pixels: int,
    lang: Lang = "fr",
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
) -> Case:
    """A new case, ``submitted`` and queued for scoring; every photo is checked before any row.

    Every photo is sanitised and its quality assessed in memory first, so a refused request
    writes nothing. Then the files are written durably (before the caller commits the rows), and
    if the unit of work does not commit they are removed again unless some row names them (see
    :func:`serving.storage.write_for_session`). A photo that fails quality is still accepted (the
    GP was warned on the form); the case is then flagged for a human look. ``idempotency_key``
    (unique per requester) and ``request_sha256`` let a retried upload find this case.

    Who requests is ``user``'s account, never the request: the case keeps the account's name and
    practice as they are at submission; its RPPS number (a professional's for life) is read from
    the account when shown (:func:`requester_identity`). An account without one may not submit.
    """
    _require_role(user, (Role.requester,), "submit a request")
    if not user.centre:
        raise ForbiddenError("this account has no resource centre to send cases to")
    if not user.rpps:
        raise InvalidRequestError({"requester": _TEXT["no_rpps"][lang]})
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise InvalidRequestError({"photos": _TEXT["photo_count"][lang]})
    from models.segmenter import segment
    from pipeline.quality import assess_bytes
    from pipeline.quality_blur import shipped_blur_model_version

    errors: dict[str, str] = {}
    prepared = []
    for index, upload in enumerate(photos):
        if upload.kind not in PHOTO_KINDS:
            errors[f"photos.{index}"] = _TEXT["photo_kind"][lang]
            continue
        try:
            prepared.append(store.prepare(upload.data, max_bytes=max_bytes, max_pixels=max_pixels))
        except IntakeError as exc:
            errors[f"photos.{index}"] = exc.text(lang)
    if errors:
        raise InvalidRequestError(errors)
    qualities = [
        assess_bytes(
            upload.data,
            lang=lang,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            lesion_segmenter=segment,
        )
        for upload in photos
    ]
    stored = write_for_session(session, store, prepared)
    # Which fitted part of the checks judged these photos, kept with each verdict for audit.
    quality_checks = {"blur_model": shipped_blur_model_version()}

    case = Case(
        status=Status.submitted.value,
        submitted_at=now,
        updated_at=now,
        requester_id=user.id,
        requester_name=user.name,
        requester_organisation=user.organisation,
        centre=user.centre,
        patient_pseudonym=questionnaire.patient_pseudonym,
        questionnaire=questionnaire.model_dump(mode="json", exclude={"reuse_consent"}),
        reuse_consent=questionnaire.reuse_consent,
        scoring_state=ScoringState.pending.value,
        scoring_attempts=0,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
    )
    session.add(case)
    for position, (upload, photo, quality) in enumerate(
        zip(photos, stored, qualities, strict=True)
    ):
        case.photos.append(
            Photo(
                position=position,
                kind=upload.kind,
                sha256=photo.sha256,
                mime=photo.mime,
                width=photo.width,
                height=photo.height,
                size_bytes=photo.size_bytes,
                thumbnail_sha256=photo.thumbnail_sha256,
                quality={
                    **quality.to_dict(with_outline=True),
                    "checks": {**quality_checks, **quality.checks},
                },
                quality_acceptable=bool(quality.acceptable),
                created_at=now,
            )
        )
    _record(
        session,
        case,
        user,
        "submit",
        now,
        to_status=Status.submitted.value,
        detail={"photos": len(stored)},
    )
    session.flush()
    audit.record_photo_quality(session, user, case, at=now)
    logger.info("case %s submitted with %d photo(s)", case.id, len(stored))
    return case


def _case_query() -> Any:
    return select(Case).options(
        selectinload(Case.photos),
        selectinload(Case.scores),
        selectinload(Case.report),
    )


def get_case(session: Session, case_id: int, user: User, *, for_update: bool = False) -> Case:
    """The case, if this user may see it; else :class:`CaseNotFoundError`."""
    query = _case_query().where(Case.id == case_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Case)
    case = session.scalars(query).one_or_none()
    if case is None or not can_see(user, case):
        raise CaseNotFoundError(case_id)
    return case


def can_see(user: User, case: Case) -> bool:
    return can(user, Permission.read_case, case)


@dataclass(frozen=True)
class RequesterIdentity:
    """Who sent a case, as its pages show it: so the answer reaches the right professional."""

    name: str
    organisation: str
    rpps: str | None
    email: str | None
    phone: str | None


def requester_identity(session: Session, case: Case) -> RequesterIdentity:
    """The requester of ``case``: name and practice as the case stored them at submission, RPPS
    number and contact details from the requester's account (disabled ones too).

    Cases sent before identities came from accounts keep what they stored: the ``requester``
    section their questionnaire carried.
    """
    stored = case.questionnaire.get("requester")
    if isinstance(stored, dict):
        return RequesterIdentity(
            name=str(stored.get("name") or case.requester_name),
            organisation=str(stored.get("organisation") or case.requester_organisation),
            rpps=stored.get("rpps"),
            email=stored.get("email"),
            phone=stored.get("phone"),
        )
    account = lookup_user(session, case.requester_id)
    return RequesterIdentity(
        name=case.requester_name,
        organisation=case.requester_organisation,
        rpps=account.rpps if account else None,
        email=account.email if account else None,
        phone=account.phone if account else None,
    )


def start_review(session: Session, case: Case, user: User, now: datetime) -> None:
    _move(session, case, Action.start_review, user, now)


def add_message(
    session: Session, case: Case, user: User, body: str, now: datetime, lang: Lang = "fr"
) -> Message:
    """A plain message on the case, from the requester or an expert, while the case is open."""
    _require_role(user, (Role.requester, Role.first_reader, Role.senior), "write messages")
    _may_change(user, case)
    text = _message_body(body, lang)
    if case.status == Status.closed.value:
        raise ConflictError("bad_state", "the case is closed")
    _claim(session, case)
    return _add_message(session, case, user, "message", text, now)


def _add_message(
    session: Session, case: Case, user: User, kind: str, text: str, now: datetime
) -> Message:
    message = Message(
        case=case,
        kind=kind,
        author_id=user.id,
        author_name=user.name,
        author_role=user.role.value,
        body=text,
        created_at=now,
    )
    session.add(message)
    case.updated_at = now
    if kind == "message":
        _record(session, case, user, "message", now, detail={"chars": len(text)})
    return message


def request_info(
    session: Session, case: Case, user: User, body: str, now: datetime, lang: Lang = "fr"
) -> Message:
    """The expert's question to the requester; the case waits for the answer."""
    text = _message_body(body, lang)
    _move(session, case, Action.request_info, user, now)
    return _add_message(session, case, user, "info_request", text, now)


def answer(
    session: Session, case: Case, user: User, body: str, now: datetime, lang: Lang = "fr"
) -> Message:
    """The requester's answer to the expert's question."""
    text = _message_body(body, lang)
    _move(session, case, Action.answer, user, now)
    return _add_message(session, case, user, "answer", text, now)


def write_report(
    session: Session, case: Case, user: User, content: ReportContent, now: datetime
) -> Report:
    """Write (or revise, before validation) the report; the case awaits a senior's validation."""
    code = content.diagnosis_code.value if content.diagnosis_code is not None else None
    detail = {"conduct": content.conduct.value, "diagnosis_code": code}
    _move(session, case, Action.write_report, user, now, detail=detail)
    report = case.report
    if report is None:
        report = Report(case=case, revision=1)
        session.add(report)
    else:
        report.revision += 1
    report.conduct = content.conduct.value
    report.interval = content.interval
    report.diagnosis = content.diagnosis
    report.diagnosis_code = code
    report.text = content.text
    report.author_id = user.id
    report.author_name = user.name
    report.written_at = now
    return report


# An outcome says what the lesion turned out to be, so it follows the experts' answer: once the
# report is validated (the case may be closed since).
OUTCOME_STATUSES = frozenset({Status.validated, Status.closed})
OUTCOME_ACTION = "outcome"


def record_outcome(
    session: Session,
    case: Case,
    user: User,
    code: DiagnosisCode,
    source: OutcomeSource,
    outcome_date: date,
    now: datetime,
) -> Outcome:
    """A reader or senior of the case's centre records what the lesion turned out to be.

    Outcomes accumulate (a consultation, then the histology); none replaces another, and the
    figures pick the strongest (:func:`pipeline.diagnosis.reference_diagnosis`). Recorded in the
    case's history and the audit trail like every change; the case's status does not move.
    """
    _may_change(user, case)
    _require_role(user, (Role.first_reader, Role.senior), "record an outcome")
    if Status(case.status) not in OUTCOME_STATUSES:
        raise ConflictError(
            "outcome_before_report", "an outcome is recorded once the report is validated"
        )
    if outcome_date > now.date():
        raise InvalidRequestError({"outcome_date": "the outcome's date is in the future"})
    outcome = Outcome(
        case=case,
        diagnosis_code=DiagnosisCode(code).value,
        source=OutcomeSource(source).value,
        outcome_date=outcome_date,
        recorded_by_id=user.id,
        recorded_by_name=user.name,
        recorded_at=now,
    )
    session.add(outcome)
    session.flush()
    detail = {
        "outcome_id": outcome.id,
        "diagnosis_code": outcome.diagnosis_code,
        "source": outcome.source,
        "outcome_date": outcome_date.isoformat(),
    }
    _record(session, case, user, OUTCOME_ACTION, now, detail=detail)
    return outcome


def return_for_revision(
    session: Session, case: Case, user: User, body: str, now: datetime, lang: Lang = "fr"
) -> None:
    """A senior sends the report back to the reader, saying why (kept as a message)."""
    text = _message_body(body, lang)
    _move(session, case, Action.return_for_revision, user, now)
    _add_message(session, case, user, "revision", text, now)


def validate(
    session: Session,
    case: Case,
    user: User,
    now: datetime,
    *,
    revision: int | None = None,
) -> None:
    """A senior other than the author validates the report; the requester can now read it.

    ``revision`` is the report revision the senior read (the case page sends it): if the report
    was rewritten since, this request validates nothing, so no one validates text they have not
    read. Without it, the revision current in this unit of work is the one validated.
    """
    if revision is not None and (case.report is None or case.report.revision != revision):
        raise ConflictError(
            "report_changed",
            "the report was changed after you read it: read the new version before validating",
        )
    read = {"revision": case.report.revision} if case.report is not None else None
    _move(session, case, Action.validate, user, now, detail=read)
    assert case.report is not None  # report_written implies a report
    case.report.validated_by_id = user.id
    case.report.validated_by_name = user.name
    case.report.validated_at = now


def close(session: Session, case: Case, user: User, now: datetime) -> None:
    if user.role is Role.requester and case.requester_id != user.id:
        raise CaseNotFoundError(case.id)
    _move(session, case, Action.close, user, now)


# --- priority and the worklist ---------------------------------------------------------------


def red_flags(questionnaire: dict[str, Any]) -> RedFlags:
    return RedFlags(
        changed_size=bool(questionnaire.get("changed_size")),
        changed_colour=bool(questionnaire.get("changed_colour")),
        changed_shape=bool(questionnaire.get("changed_shape")),
        bleeding=bool(questionnaire.get("bleeding")),
        personal_history=bool(questionnaire.get("personal_history_skin_cancer")),
        family_history=bool(questionnaire.get("family_history_skin_cancer")),
        immunosuppression=bool(questionnaire.get("immunosuppression")),
    )


def case_facts(case: Case) -> CaseFacts:
    """What the priority policy needs, read from a loaded case."""
    score = case.case_score
    state = ScoringState(case.scoring_state)
    return CaseFacts(
        case_id=case.id,
        submitted_at=case.submitted_at,
        scoring=state,
        p_malignant=score.p_malignant if score is not None else None,
        uncertainty=score.uncertainty if score is not None else None,
        quality_ok=case.quality_ok,
        red_flags=red_flags(case.questionnaire),
        first_read_at=case.first_read_at,
        ai_not_applicable=case.ai_not_applicable_reason,
        ood=any(s.ood for s in case.applicable_scores),
    )


def priority_of(case: Case, now: datetime, deadline_hours: float) -> Priority:
    return assess(case_facts(case), now, deadline_hours=deadline_hours)


@dataclass(frozen=True)
class WorklistFilters:
    statuses: tuple[Status, ...] = tuple(sorted(OPEN_FOR_EXPERTS, key=list(Status).index))
    tiers: tuple[Tier, ...] = ()
    requester_id: str | None = None


@dataclass(frozen=True)
class WorklistRow:
    case: Case
    priority: Priority


@dataclass(frozen=True)
class WorklistPage:
    rows: list[WorklistRow]
    total: int
    page: int
    page_size: int
    tier_counts: dict[Tier, int]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


def worklist(
    session: Session,
    user: User,
    now: datetime,
    *,
    deadline_hours: float,
    filters: WorklistFilters | None = None,
    page: int = 1,
    page_size: int = 25,
) -> WorklistPage:
    """The experts' worklist: cases matching ``filters`` in priority order, one page of it.

    Priority depends on the time (waiting counts), so it is computed at ``now`` for every matching
    case, then sorted and sliced; a resource centre's open cases number in the hundreds, which
    this handles in milliseconds.
    """
    if not can(user, Permission.read_worklist):
        raise ForbiddenError(f"a {user.role.value} may not see the worklist")
    filters = filters or WorklistFilters()
    query = _case_query()
    if not sees_every_centre(user):
        query = query.where(Case.centre == user.centre)
    if filters.statuses:
        query = query.where(Case.status.in_([s.value for s in filters.statuses]))
    if filters.requester_id:
        query = query.where(Case.requester_id == filters.requester_id)
    cases = list(session.scalars(query))
    ranked = sorted(
        (WorklistRow(c, priority_of(c, now, deadline_hours)) for c in cases),
        key=lambda row: row.priority.sort_key(),
    )
    counts = dict.fromkeys(Tier, 0)
    for row in ranked:
        counts[row.priority.tier] += 1
    if filters.tiers:
        ranked = [row for row in ranked if row.priority.tier in filters.tiers]
    page = max(1, page)
    start = (page - 1) * page_size
    return WorklistPage(
        rows=ranked[start : start + page_size],
        total=len(ranked),
        page=page,
        page_size=page_size,
        tier_counts=counts,
    )


def my_requests(session: Session, user: User) -> list[Case]:
    """The requester's own cases, newest first."""
    _require_role(user, (Role.requester,), "list their requests")
    query = _case_query().where(Case.requester_id == user.id).order_by(Case.submitted_at.desc())
    return list(session.scalars(query))


def requesters(session: Session, user: User | None = None) -> list[tuple[str, str]]:
    """(id, name) of every requester who has sent a case (to ``user``'s centre when given, as
    the worklist shows), for the worklist filter."""
    query = select(Case.requester_id, Case.requester_name).distinct().order_by(Case.requester_name)
    if user is not None and not sees_every_centre(user):
        query = query.where(Case.centre == user.centre)
    rows = session.execute(query)
    seen: dict[str, str] = {}
    for requester_id, name in rows:
        seen.setdefault(requester_id, name)
    return list(seen.items())


def leads_to_consultation(report: Report | None) -> bool | None:
    if report is None or report.validated_at is None:
        return None
    return Conduct(report.conduct).leads_to_consultation


def hours_between(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    return (end - start) / timedelta(hours=1)
