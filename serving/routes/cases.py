"""JSON API for cases: ``/api/v1/cases`` (submit, worklist, detail, workflow, report exports).

Thin on purpose: each route parses its input, calls one function of :mod:`serving.case_service`
and shapes the answer. Errors map the same way everywhere: 401 nobody signed in, 403 the role may
not do this, 404 no such case (or not yours), 409 the case is not in a state for this
(``{"code", "message"}``), 422 invalid input with field-level ``errors``.

This router also contributes the case runtime's lifespan (migrations, photo store, scoring
worker) to the application.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pipeline.access import Permission, can
from pipeline.priority import Priority, Tier
from pipeline.questionnaire import QuestionnaireError, parse_questionnaire
from pipeline.report import ReportError, parse_report
from pipeline.workflow import ANSWER_VISIBLE, Role, Status, available_actions
from serving import audit, idempotency
from serving import case_service as svc
from serving.db.models import Case
from serving.deps import (
    CaseId,
    CurrentUser,
    Lang,
    Now,
    PageNumber,
    PhotoId,
    Runtime,
    SessionDep,
    SettingsDep,
    StoreDep,
    require,
)
from serving.i18n import translate
from serving.outcomes import OutcomeError, parse_outcome
from serving.runtime import case_runtime
from serving.storage import BlobNotFoundError
from serving.uploads import TooManyFilesError, UploadError, read_case_form
from serving.users import User

router = APIRouter(tags=["cases"], lifespan=case_runtime)

T = TypeVar("T")


@contextmanager
def http_errors() -> Iterator[None]:
    """Translate the case service's refusals into HTTP answers."""
    try:
        yield
    except svc.CaseNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case") from exc
    except svc.ForbiddenError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except svc.ConflictError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"code": exc.code, "message": exc.message}
        ) from exc
    except (svc.InvalidRequestError, QuestionnaireError, ReportError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, {"errors": exc.errors}) from exc


def guarded(call: Callable[[], T]) -> T:
    with http_errors():
        return call()


# --- shapes ----------------------------------------------------------------------------------


class TextIn(BaseModel):
    body: str = Field(max_length=svc.MESSAGE_MAX_CHARS + 1000)


class ValidationIn(BaseModel):
    revision: int | None = Field(default=None, ge=1, le=2**31 - 1)


class ReportIn(BaseModel):
    conduct: str
    # Required (a code of pipeline.diagnosis.DiagnosisCode): optional here only so that a client
    # written before coded diagnoses gets a 422 naming the field, in the page's language.
    diagnosis_code: str | None = None
    interval: int | None = None
    diagnosis: str = ""
    text: str


class OutcomeIn(BaseModel):
    diagnosis_code: str
    source: str
    outcome_date: str = Field(max_length=10)


def priority_out(priority: Priority, lang: str) -> dict[str, Any]:
    return {
        "tier": priority.tier.value,
        "score": round(priority.score, 3),
        "flagged": priority.flagged,
        "reasons": [r.code for r in priority.reasons],
        "reason_text": priority.reason_text(lang),  # type: ignore[arg-type]
        "waiting_hours": round(priority.waiting_hours, 2),
        "hours_to_deadline": round(priority.hours_to_deadline, 2),
    }


def score_out(case: Case) -> dict[str, Any] | None:
    best = case.case_score
    if best is None:
        return None
    return {
        "p_malignant": best.p_malignant,
        "uncertainty": best.uncertainty,
        "predicted_class": best.predicted_class,
        "model_version": best.model_version,
        "photo_id": best.photo_id,
        "scored_at": case.scored_at.isoformat() if case.scored_at else None,
    }


def sees_triage(user: User) -> bool:
    """Whether ``user`` may see the model's output (score, probabilities, uncertainty, version,
    saliency) and the priority computed from it: experts and auditors, never the requester."""
    return can(user, Permission.read_triage)


def case_summary(case: Case, user: User, priority: Priority | None, lang: str) -> dict[str, Any]:
    """A case as the worklist and the GP's list show it; triage data only for who may see it."""
    triage = sees_triage(user)
    return {
        "id": case.id,
        "status": case.status,
        "submitted_at": case.submitted_at.isoformat(),
        "patient_pseudonym": case.patient_pseudonym,
        "requester": {"id": case.requester_id, "name": case.requester_name},
        "scoring_state": case.scoring_state,
        "score": score_out(case) if triage else None,
        "priority": priority_out(priority, lang) if priority and triage else None,
        "photos": [
            {
                "id": p.id,
                "kind": p.kind,
                "thumbnail_url": f"/api/v1/cases/{case.id}/photos/{p.id}/thumbnail",
            }
            for p in case.photos
        ],
    }


def diagnosis_label(code: str | None, lang: str) -> str | None:
    """A coded diagnosis in words (``None`` for a report written before codes existed)."""
    return translate(f"diagnosis.{code}", lang) if code else None  # type: ignore[arg-type]


def outcomes_out(case: Case, lang: str) -> list[dict[str, Any]]:
    """What the lesion turned out to be, oldest first, as recorded."""
    return [
        {
            "id": o.id,
            "diagnosis_code": o.diagnosis_code,
            "diagnosis_label": diagnosis_label(o.diagnosis_code, lang),
            "source": o.source,
            "source_label": translate(f"outcome_source.{o.source}", lang),  # type: ignore[arg-type]
            "outcome_date": o.outcome_date.isoformat(),
            "recorded_by": o.recorded_by_name,
            "recorded_at": o.recorded_at.isoformat(),
        }
        for o in case.outcomes
    ]


def report_out(case: Case, user: User, lang: str = "fr") -> dict[str, Any] | None:
    report = case.report
    if report is None:
        return None
    if user.role is Role.requester and Status(case.status) not in ANSWER_VISIBLE:
        return None
    return {
        "conduct": report.conduct,
        "interval": report.interval,
        "diagnosis": report.diagnosis,
        "diagnosis_code": report.diagnosis_code,
        "diagnosis_label": diagnosis_label(report.diagnosis_code, lang),
        "text": report.text,
        "author": report.author_name,
        "revision": report.revision,
        "written_at": report.written_at.isoformat(),
        "validated_by": report.validated_by_name,
        "validated_at": report.validated_at.isoformat() if report.validated_at else None,
    }


def case_detail(case: Case, user: User, priority: Priority | None, lang: str) -> dict[str, Any]:
    out = case_summary(case, user, priority, lang)
    triage = sees_triage(user)
    by_photo = {s.photo_id: s for s in case.current_scores}
    out.update(
        questionnaire=case.questionnaire,
        reuse_consent=case.reuse_consent,
        first_read_at=case.first_read_at.isoformat() if case.first_read_at else None,
        actions=[a.value for a in available_actions(Status(case.status), user.role)],
        photos=[
            {
                "id": p.id,
                "position": p.position,
                "kind": p.kind,
                "width": p.width,
                "height": p.height,
                "url": f"/api/v1/cases/{case.id}/photos/{p.id}",
                "thumbnail_url": f"/api/v1/cases/{case.id}/photos/{p.id}/thumbnail",
                "quality": p.quality,
                "score": (
                    {
                        "p_malignant": by_photo[p.id].p_malignant,
                        "uncertainty": by_photo[p.id].uncertainty,
                        "probabilities": by_photo[p.id].probabilities,
                        "model_version": by_photo[p.id].model_version,
                        # The modality check: dermoscopic photos are scored, others say why not.
                        "domain": by_photo[p.id].domain,
                        "not_applicable_reason": by_photo[p.id].domain_reason,
                        "ood": by_photo[p.id].ood,
                        "saliency_url": f"/api/v1/cases/{case.id}/photos/{p.id}/saliency"
                        if by_photo[p.id].saliency_sha256
                        else None,
                    }
                    if p.id in by_photo and triage
                    else None
                ),
            }
            for p in case.photos
        ],
        messages=[
            {
                "id": m.id,
                "kind": m.kind,
                "author": m.author_name,
                "author_role": m.author_role,
                "body": m.body,
                "created_at": m.created_at.isoformat(),
            }
            for m in case.messages
        ],
        report=report_out(case, user, lang),
        outcomes=outcomes_out(case, lang),
    )
    return out


# --- routes ----------------------------------------------------------------------------------


#: The submission's body, declared by hand: the route parses it as a stream (serving.uploads).
SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["questionnaire", "photos"],
                    "properties": {
                        "questionnaire": {
                            "type": "string",
                            "description": "the questionnaire, as JSON",
                        },
                        "photos": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": svc.MAX_PHOTOS,
                            "description": "1 to 5 photos (JPEG, PNG or HEIC)",
                        },
                        "photo_kinds": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(svc.PHOTO_KINDS)},
                        },
                    },
                }
            }
        },
    }
}


def upload_refusal(exc: UploadError) -> JSONResponse:
    return JSONResponse(
        {"detail": {"code": exc.code, "message": exc.message}}, status_code=exc.status
    )


@router.post(
    "/api/v1/cases",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=SUBMIT_BODY,
    response_model=None,
)
async def submit_case(
    request: Request,
    response: Response,
    user: CurrentUser,
    settings: SettingsDep,
    runtime: Runtime,
    lang: Lang,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            pattern=idempotency.KEY_PATTERN,
            description="the same token on every retry of one submission: one case is created",
        ),
    ] = None,
) -> dict[str, Any] | JSONResponse:
    """Submit a request: questionnaire + 1-5 photos; created whole or not at all.

    The 201 answer comes after the rows are committed and the photos fsync'ed. A retry with the
    same ``Idempotency-Key`` gets the same case (``Idempotent-Replayed: true``).
    """
    try:
        form = await read_case_form(
            request,
            max_file_bytes=settings.max_upload_bytes,
            max_files=settings.max_files_per_request,
        )
    except TooManyFilesError:
        errors = {"photos": svc.photo_count_text(lang)}
        return JSONResponse(
            {"detail": {"code": "too_many_files", "errors": errors}},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    except UploadError as exc:
        return upload_refusal(exc)
    now = runtime.clock()

    def submit() -> idempotency.Submission:
        try:
            data = json.loads(form.first("questionnaire") or "")
        except json.JSONDecodeError as exc:
            raise svc.InvalidRequestError({"questionnaire": "invalid JSON"}) from exc
        if not isinstance(data, dict):
            raise svc.InvalidRequestError({"questionnaire": "a JSON object is expected"})
        parsed = parse_questionnaire(data, lang)
        kinds = form.fields.get("photo_kinds", [])
        photos = [upload for upload in form.files if upload.field == "photos"]
        if len(photos) != len(form.files):
            raise svc.InvalidRequestError({"photos": "send the files in the 'photos' field"})
        uploads = [
            svc.PhotoUpload(f.data, kinds[i] if i < len(kinds) and kinds[i] else "close_up")
            for i, f in enumerate(photos)
        ]
        return idempotency.submit_once(
            runtime.database, runtime.store, user, parsed, data, uploads,
            key=idempotency_key, now=now, max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels, lang=lang,
        )  # fmt: skip

    try:
        with http_errors():
            submission = await run_in_threadpool(submit)
    except idempotency.IdempotencyMismatchError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, {"code": exc.code, "message": str(exc)}
        ) from exc
    if submission.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        runtime.worker.wake()

    def answer() -> dict[str, Any]:
        with runtime.database.session() as session:
            case = svc.get_case(session, submission.case_id, user)
            priority = svc.priority_of(case, now, settings.review_deadline_hours)
            return case_detail(case, user, priority, lang)

    return await run_in_threadpool(answer)


@router.get("/api/v1/cases")
def list_cases(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    priority: Annotated[list[Tier] | None, Query()] = None,
    requester: str | None = None,
    page: PageNumber = 1,
    page_size: Annotated[int | None, Query(ge=1, le=200)] = None,
) -> dict[str, Any]:
    """Experts: the worklist in priority order. Requesters: their own requests, newest first."""
    with http_errors():
        if user.role is Role.requester:
            cases = svc.my_requests(session, user)
            audit.record_listing(session, user, audit.REQUESTS_READ, cases, via="api")
            return {
                "items": [case_summary(c, user, None, lang) for c in cases],
                "total": len(cases),
                "page": 1,
                "pages": 1,
            }
        filters = svc.WorklistFilters(
            statuses=tuple(status_) if status_ else svc.WorklistFilters().statuses,
            tiers=tuple(priority or ()),
            requester_id=requester or None,
        )
        result = svc.worklist(
            session,
            user,
            now,
            deadline_hours=settings.review_deadline_hours,
            filters=filters,
            page=page,
            page_size=page_size or settings.worklist_page_size,
        )
    shown = [r.case for r in result.rows]
    audit.record_listing(session, user, audit.WORKLIST_READ, shown, via="api")
    return {
        "items": [case_summary(r.case, user, r.priority, lang) for r in result.rows],
        "total": result.total,
        "page": result.page,
        "pages": result.pages,
        "tier_counts": {t.value: n for t, n in result.tier_counts.items()},
    }


@router.get("/api/v1/cases/{case_id}")
def read_case(
    case_id: CaseId,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    with http_errors():
        case = svc.get_case(session, case_id, user)
    audit.record(session, user, audit.CASE_READ, case_id=case.id, details={"via": "api"})
    priority = svc.priority_of(case, now, settings.review_deadline_hours)
    return case_detail(case, user, priority, lang)


def _blob(data: bytes, mime: str) -> Response:
    return Response(
        data,
        media_type=mime,
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


def _photo(session: Any, case_id: int, photo_id: int, user: User) -> Any:
    case = guarded(lambda: svc.get_case(session, case_id, user))
    for photo in case.photos:
        if photo.id == photo_id:
            return case, photo
    raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo")


@router.get("/api/v1/cases/{case_id}/photos/{photo_id}")
def read_photo(
    case_id: CaseId, photo_id: PhotoId, user: CurrentUser, session: SessionDep, store: StoreDep
) -> Response:
    _, photo = _photo(session, case_id, photo_id, user)
    audit.record(session, user, audit.PHOTO_READ, case_id=case_id, details={"photo_id": photo_id})
    return _blob(store.get(photo.sha256), photo.mime)


@router.get("/api/v1/cases/{case_id}/photos/{photo_id}/thumbnail")
def read_thumbnail(
    case_id: CaseId, photo_id: PhotoId, user: CurrentUser, session: SessionDep, store: StoreDep
) -> Response:
    _, photo = _photo(session, case_id, photo_id, user)
    details = {"photo_id": photo_id, "thumbnail": True}
    audit.record(session, user, audit.PHOTO_READ, case_id=case_id, details=details)
    return _blob(store.get(photo.thumbnail_sha256), "image/jpeg")


@router.get("/api/v1/cases/{case_id}/photos/{photo_id}/saliency")
def read_saliency(
    case_id: CaseId, photo_id: PhotoId, user: CurrentUser, session: SessionDep, store: StoreDep
) -> Response:
    """The Grad-CAM overlay of the photo's current score (experts of the case's centre,
    auditors; not the requester, who never sees the model's output)."""
    if not sees_triage(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "experts only")
    case, photo = _photo(session, case_id, photo_id, user)
    score = next((s for s in case.current_scores if s.photo_id == photo.id), None)
    if score is None or score.saliency_sha256 is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not scored yet")
    audit.record(
        session, user, audit.SALIENCY_READ, case_id=case_id,
        model_version=score.model_version, details={"photo_id": photo_id},
    )  # fmt: skip
    try:
        return _blob(store.get(score.saliency_sha256), "image/jpeg")
    except BlobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "overlay missing") from exc


def _act(
    session: Any,
    case_id: int,
    user: User,
    settings: Any,
    now: Any,
    lang: str,
    action: Callable[[Case], object],
) -> dict[str, Any]:
    with http_errors():
        case = svc.get_case(session, case_id, user, for_update=True)
        action(case)
        session.flush()
    session.refresh(case)
    priority = svc.priority_of(case, now, settings.review_deadline_hours)
    return case_detail(case, user, priority, lang)


@router.post("/api/v1/cases/{case_id}/review")
def start_review(
    case_id: CaseId,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    """An expert opens the review (first reading)."""
    return _act(
        session, case_id, user, settings, now, lang,
        lambda c: svc.start_review(session, c, user, now),
    )  # fmt: skip


@router.post("/api/v1/cases/{case_id}/messages", status_code=status.HTTP_201_CREATED)
def post_message(
    case_id: CaseId,
    payload: TextIn,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    return _act(
        session, case_id, user, settings, now, lang,
        lambda c: svc.add_message(session, c, user, payload.body, now, lang),
    )  # fmt: skip


@router.post("/api/v1/cases/{case_id}/info-requests", status_code=status.HTTP_201_CREATED)
def post_info_request(
    case_id: CaseId,
    payload: TextIn,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    """The expert asks the requester a question; the case waits for the answer."""
    return _act(
        session, case_id, user, settings, now, lang,
        lambda c: svc.request_info(session, c, user, payload.body, now, lang),
    )  # fmt: skip


@router.post("/api/v1/cases/{case_id}/answers", status_code=status.HTTP_201_CREATED)
def post_answer(
    case_id: CaseId,
    payload: TextIn,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    """The requester answers the expert's question."""
    return _act(
        session, case_id, user, settings, now, lang,
        lambda c: svc.answer(session, c, user, payload.body, now, lang),
    )  # fmt: skip


@router.put("/api/v1/cases/{case_id}/report")
def put_report(
    case_id: CaseId,
    payload: ReportIn,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    """Write or revise the report (conduct + delay + text) before a senior validates it."""

    def write(case: Case) -> None:
        content = parse_report(payload.model_dump(), lang)
        svc.write_report(session, case, user, content, now)

    return _act(session, case_id, user, settings, now, lang, write)


@router.post("/api/v1/cases/{case_id}/report/validation")
def validate_report(
    case_id: CaseId,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
    payload: ValidationIn | None = None,
) -> dict[str, Any]:
    """A senior, not the author, validates the report; the requester can then read it.

    The body may name the report ``revision`` the senior read; if the report changed since, the
    answer is 409 ``report_changed`` and nothing is validated.
    """
    revision = payload.revision if payload is not None else None
    return _act(
        session, case_id, user, settings, now, lang,
        lambda c: svc.validate(session, c, user, now, revision=revision),
    )  # fmt: skip


@router.post("/api/v1/cases/{case_id}/report/revision")
def return_report(
    case_id: CaseId,
    payload: TextIn,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    """A senior sends the report back to the reader with a reason."""
    return _act(
        session, case_id, user, settings, now, lang,
        lambda c: svc.return_for_revision(session, c, user, payload.body, now, lang),
    )  # fmt: skip


@router.post("/api/v1/cases/{case_id}/outcomes", status_code=status.HTTP_201_CREATED)
def post_outcome(
    case_id: CaseId,
    payload: OutcomeIn,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    """A reader or senior of the case's centre records what the lesion turned out to be
    (coded diagnosis, date, source), once the report is validated; answers the case."""

    def record(case: Case) -> None:
        try:
            entry = parse_outcome(payload.model_dump(), today=now.date(), lang=lang)  # type: ignore[arg-type]
        except OutcomeError as exc:
            raise svc.InvalidRequestError(exc.errors) from exc
        svc.record_outcome(session, case, user, entry.code, entry.source, entry.outcome_date, now)

    return _act(session, case_id, user, settings, now, lang, record)


@router.post("/api/v1/cases/{case_id}/close")
def close_case(
    case_id: CaseId,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    lang: Lang,
) -> dict[str, Any]:
    return _act(
        session, case_id, user, settings, now, lang,
        lambda c: svc.close(session, c, user, now),
    )  # fmt: skip


@router.get("/api/v1/cases/{case_id}/events")
def read_events(case_id: CaseId, user: CurrentUser, session: SessionDep) -> list[dict[str, Any]]:
    """Who did what, and when, on this case (experts of its centre, auditors)."""
    if user.role is Role.requester:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "experts only")
    case = guarded(lambda: svc.get_case(session, case_id, user))
    audit.record(session, user, audit.CASE_HISTORY_READ, case_id=case.id)
    return [
        {
            "at": e.at.isoformat(),
            "actor": e.actor_id,
            "role": e.actor_role,
            "action": e.action,
            "from": e.from_status,
            "to": e.to_status,
            "detail": e.detail,
        }
        for e in case.events
    ]


def _visible_report(session: Any, case_id: int, user: User) -> Case:
    case = guarded(lambda: svc.get_case(session, case_id, user))
    if case.report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no report yet")
    if user.role is Role.requester and Status(case.status) not in ANSWER_VISIBLE:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no validated report yet")
    return case


@router.get("/api/v1/cases/{case_id}/report.pdf")
def report_pdf(
    case_id: CaseId, user: CurrentUser, session: SessionDep, store: StoreDep, lang: Lang
) -> Response:
    """The report as a PDF (the requester gets it once a senior has validated it)."""
    from serving.pdf import report_pdf as render

    case = _visible_report(session, case_id, user)
    audit.record(session, user, audit.CASE_EXPORT, case_id=case.id, details={"format": "pdf"})
    return Response(
        render(case, lang, store=store),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="dermtriage-case-{case.id}.pdf"'},
    )


@router.get("/api/v1/cases/{case_id}/report.fhir.json")
def report_fhir(
    case_id: CaseId, user: CurrentUser, session: SessionDep, store: StoreDep, lang: Lang
) -> JSONResponse:
    """The report as an HL7 FHIR R4 DiagnosticReport, with the PDF embedded."""
    from serving.exports import fhir_report

    case = _visible_report(session, case_id, user)
    audit.record(session, user, audit.CASE_EXPORT, case_id=case.id, details={"format": "fhir"})
    return JSONResponse(fhir_report(case, lang, store=store), media_type="application/fhir+json")


@router.get("/api/v1/stats")
def read_stats(user: CurrentUser, session: SessionDep, settings: SettingsDep, now: Now) -> Any:
    """Activity statistics: requests per week, time to first reading, conduct shares. Scoped like
    the worklist: an expert's own centre; every centre for auditors, data scientists, admins."""
    from serving.stats import activity_stats, stats_centre

    require(Permission.read_stats, user)
    return activity_stats(
        session, now, deadline_hours=settings.review_deadline_hours, centre=stats_centre(user)
    ).to_dict()
