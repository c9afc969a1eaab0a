"""The web pages of the case workflow: sign-in, experts' worklist and case page, GP requests,
activity statistics.

Server-rendered (Jinja2), French by default (``?lang=en`` switches and is remembered). Forms post
to these routes, which call :mod:`serving.case_service` like the JSON API does, then redirect
(post/redirect/get) so a reload never re-submits; a form with errors is rendered again with the
values kept and each faulty field marked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, object_session

from models.network import MALIGNANT_CLASSES
from pipeline.access import Permission, can
from pipeline.diagnosis import SNOMED_CT, DiagnosisCode, OutcomeSource
from pipeline.priority import TIER_LABELS, Tier
from pipeline.quality_messages import MESSAGES as QUALITY_MESSAGES
from pipeline.questionnaire import (
    BodySite,
    Duration,
    Fitzpatrick,
    QuestionnaireError,
    Sex,
    from_form,
    label,
    parse_questionnaire,
)
from pipeline.report import CONDUCT_LABELS, Conduct, ReportError, conduct_sentence, parse_report
from pipeline.workflow import (
    ACTION_LABELS,
    ANSWER_VISIBLE,
    OPEN_FOR_EXPERTS,
    ROLE_LABELS,
    Action,
    Role,
    Status,
    available_actions,
)
from serving import audit
from serving import case_service as svc
from serving.auth import lookup_user
from serving.case_texts import Lang, translator
from serving.db.models import Case, Event
from serving.deps import (
    LANG_COOKIE,
    CaseId,
    Now,
    PageUser,
    Runtime,
    SessionDep,
    SettingsDep,
    csrf_expected,
)
from serving.i18n import is_supported, negotiate
from serving.i18n import translate as i18n_translate
from serving.outcomes import OutcomeError, parse_outcome
from serving.settings import Settings
from serving.users import User

logger = logging.getLogger(__name__)

router = APIRouter(tags=["pages"], include_in_schema=False)

PACKAGE_DIR = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")
COOKIE_MAX_AGE = 365 * 24 * 3600

NOTICES = {
    "fr": {"sent": "Demande envoyée : elle apparaît déjà dans la file des dermatologues.",
           "saved": "Enregistré.", "answered": "Réponse envoyée au dermatologue."},
    "en": {"sent": "Request sent: it is already in the dermatologists' worklist.",
           "saved": "Saved.", "answered": "Answer sent to the dermatologist."},
}  # fmt: skip


def page_lang(request: Request, settings: Settings) -> Lang:
    return negotiate(
        query=request.query_params.get("lang"),
        cookie=request.cookies.get(LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
        default=settings.language,
    )


def home_for(user: User | None) -> str:
    """Where a user lands after signing in: the page their role works from."""
    if user is None:
        return "/login"
    if user.role is Role.requester:
        return "/gp/requests"
    if user.role is Role.data_scientist:  # model work: the registry's versions come first
        return "/governance"
    if can(user, Permission.read_worklist):
        return "/worklist"
    return "/stats"


def _initials(name: str) -> str:
    parts = [p for p in name.replace("Dr ", "").replace("Pr ", "").split() if p]
    return "".join(p[0] for p in parts[:2]).upper()


def _when_formatter(lang: Lang) -> Callable[[datetime | None], str]:
    pattern = "%d/%m/%Y %H:%M" if lang == "fr" else "%Y-%m-%d %H:%M"

    def when(moment: datetime | None) -> str:
        return "-" if moment is None else moment.strftime(pattern)

    return when


def render(
    request: Request,
    template: str,
    lang: Lang,
    user: User | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a case page with the helpers every one of them uses."""

    def event_label(event: Event) -> str:
        try:
            text = ACTION_LABELS[lang][Action(event.action)]
        except ValueError:
            text = translator(lang)(f"ev_{event.action}")
        actor = lookup_user(object_session(event), event.actor_id)
        who = actor.name if actor else "DermTriage"
        return f"{text} · {who}"

    helpers = {
        "lang": lang,
        "user": user,
        "t": translator(lang),
        "when": _when_formatter(lang),
        "home_url": home_for(user),
        "initials": _initials,
        "role_label": lambda role: ROLE_LABELS[lang][Role(role)],
        "status_label": lambda s: _status_label(s, lang),
        "tier_label": lambda tier: TIER_LABELS[lang][Tier(tier)],
        "answer_label": lambda field, value: label(field, value, lang),
        "conduct_label": lambda c: CONDUCT_LABELS[lang][Conduct(c)],
        "diagnosis_codes": list(DiagnosisCode),
        "outcome_sources": list(OutcomeSource),
        "diagnosis_label": lambda code: i18n_translate(f"diagnosis.{code}", lang),
        "diagnosis_snomed": lambda code: SNOMED_CT[DiagnosisCode(code)][0],
        "outcome_source_label": lambda s: i18n_translate(f"outcome_source.{s}", lang),
        "conduct_text": lambda c, n: conduct_sentence(Conduct(c), n, lang),
        "quality_message": lambda code: QUALITY_MESSAGES.get(code, {}).get(lang, code),
        "event_label": event_label,
        "malignant_classes": MALIGNANT_CLASSES,
        "csrf_token": csrf_expected(request),
        "can": lambda permission, case=None: (
            user is not None and can(user, Permission(permission), case)
        ),
    }
    response = templates.TemplateResponse(
        request, template, {**helpers, **context}, status_code=status_code
    )
    chosen = request.query_params.get("lang")
    if is_supported(chosen) and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(
            LANG_COOKIE, str(chosen), max_age=COOKIE_MAX_AGE, samesite="lax", httponly=True
        )
    return response


def _status_label(value: str | Status, lang: Lang) -> str:
    from pipeline.workflow import STATUS_LABELS

    return STATUS_LABELS[lang][Status(value)]


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _require(user: User, permission: Permission) -> None:
    """403 unless the user's role holds ``permission`` (pipeline.access decides)."""
    if not can(user, permission):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {user.role.value} may not see this")


def _expert_only(user: User) -> None:
    """The experts' pages (worklist, case page): experts, and auditors to read."""
    _require(user, Permission.read_worklist)


def _requester_only(user: User) -> None:
    _require(user, Permission.submit_case)


def _case_or_404(session: Session, case_id: int, user: User, *, lock: bool = False) -> Case:
    try:
        return svc.get_case(session, case_id, user, for_update=lock)
    except svc.CaseNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case") from exc


# --- the experts' worklist and case page -----------------------------------------------------


@router.get("/worklist", response_class=HTMLResponse)
def worklist_page(
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    priority: str = "",
    requester: str = "",
    page: int = 1,
) -> HTMLResponse:
    _expert_only(user)
    lang = page_lang(request, settings)
    chosen_status = request.query_params.get("status", "")
    if chosen_status == "all":
        statuses: tuple[Status, ...] = tuple(Status)
    elif chosen_status in Status.__members__:
        statuses = (Status(chosen_status),)
    else:
        chosen_status = ""
        statuses = svc.WorklistFilters().statuses
    tiers = (Tier(priority),) if priority in Tier.__members__ else ()
    result = svc.worklist(
        session,
        user,
        now,
        deadline_hours=settings.review_deadline_hours,
        filters=svc.WorklistFilters(statuses, tiers, requester or None),
        page=max(1, page),
        page_size=settings.worklist_page_size,
    )
    shown = [row.case for row in result.rows]
    audit.record_listing(session, user, audit.WORKLIST_READ, shown, via="page")
    selected = {"status": chosen_status, "priority": priority, "requester": requester}

    def page_url(number: int) -> str:
        query = {k: v for k, v in selected.items() if v}
        return "/worklist?" + urlencode({**query, "page": number})

    return render(
        request,
        "worklist.html",
        lang,
        user,
        active="worklist",
        page=result,
        selected=selected,
        statuses=[s for s in Status if s in OPEN_FOR_EXPERTS or s in ANSWER_VISIBLE],
        tiers=list(Tier),
        requesters=svc.requesters(session, user),
        deadline_hours=settings.review_deadline_hours,
        page_url=page_url,
    )


def _case_page(
    request: Request,
    user: User,
    session: Session,
    settings: Settings,
    now: datetime,
    case: Case,
    *,
    errors: dict[str, str] | None = None,
    report_values: dict[str, Any] | None = None,
    outcome_errors: dict[str, str] | None = None,
    outcome_values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = page_lang(request, settings)
    if report_values is None:
        report = case.report
        report_values = (
            {"conduct": report.conduct, "interval": report.interval,
             "diagnosis_code": report.diagnosis_code,
             "diagnosis": report.diagnosis, "text": report.text}
            if report else {}
        )  # fmt: skip
    notice = NOTICES[lang].get(request.query_params.get("done", ""))
    return render(
        request,
        "case.html",
        lang,
        user,
        status_code=status_code,
        active="worklist",
        case=case,
        priority=svc.priority_of(case, now, settings.review_deadline_hours),
        requester=svc.requester_identity(session, case),
        photo_scores={s.photo_id: s for s in case.current_scores},
        actions=[a.value for a in available_actions(Status(case.status), user.role)],
        conducts=list(Conduct),
        report_values=report_values,
        errors=errors or {},
        outcome_errors=outcome_errors or {},
        outcome_values=outcome_values or {},
        may_record_outcome=(
            user.role in (Role.first_reader, Role.senior)
            and Status(case.status) in svc.OUTCOME_STATUSES
            and can(user, Permission.change_case, case)
        ),
        notice=notice,
    )


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    case_id: CaseId,
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
) -> HTMLResponse:
    if user.role is Role.requester:
        _case_or_404(session, case_id, user)  # someone else's case: 404, not a redirect
        return redirect(f"/gp/requests/{case_id}")  # type: ignore[return-value]
    _expert_only(user)
    case = _case_or_404(session, case_id, user)
    audit.record(session, user, audit.CASE_READ, case_id=case.id, details={"via": "page"})
    return _case_page(request, user, session, settings, now, case)


def _case_action(
    session: Session, case_id: int, user: User, act: Callable[[Case], object], back: str
) -> RedirectResponse:
    """Apply one workflow step from a form; refusals come back as HTTP errors."""
    case = _case_or_404(session, case_id, user, lock=True)
    try:
        act(case)
    except svc.ForbiddenError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except svc.ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from exc
    except svc.InvalidRequestError:
        return redirect(back)
    return redirect(back + "?done=saved")


@router.post("/cases/{case_id}/review")
def review_form(case_id: CaseId, user: PageUser, session: SessionDep, now: Now) -> Response:
    return _case_action(
        session, case_id, user, lambda c: svc.start_review(session, c, user, now),
        f"/cases/{case_id}",
    )  # fmt: skip


@router.post("/cases/{case_id}/info-request")
def info_request_form(
    case_id: CaseId, body: Annotated[str, Form()], user: PageUser, session: SessionDep, now: Now
) -> Response:
    return _case_action(
        session, case_id, user, lambda c: svc.request_info(session, c, user, body, now),
        f"/cases/{case_id}",
    )  # fmt: skip


@router.post("/cases/{case_id}/message")
def message_form(
    case_id: CaseId, body: Annotated[str, Form()], user: PageUser, session: SessionDep, now: Now
) -> Response:
    back = f"/cases/{case_id}" if user.is_expert else f"/gp/requests/{case_id}"
    return _case_action(
        session, case_id, user, lambda c: svc.add_message(session, c, user, body, now), back
    )


@router.post("/cases/{case_id}/report", response_model=None)
def report_form(
    case_id: CaseId,
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    conduct: Annotated[str, Form()] = "",
    interval: Annotated[str, Form()] = "",
    diagnosis_code: Annotated[str, Form()] = "",
    diagnosis: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
) -> Response:
    _expert_only(user)  # a refused report shows the experts' case page: never to a requester
    lang = page_lang(request, settings)
    values = {"conduct": conduct, "interval": interval, "diagnosis_code": diagnosis_code,
              "diagnosis": diagnosis, "text": text}  # fmt: skip
    try:
        content = parse_report(values, lang)
    except ReportError as exc:
        case = _case_or_404(session, case_id, user)
        return _case_page(
            request, user, session, settings, now, case,
            errors=exc.errors, report_values=values, status_code=422,
        )  # fmt: skip
    return _case_action(
        session, case_id, user, lambda c: svc.write_report(session, c, user, content, now),
        f"/cases/{case_id}",
    )  # fmt: skip


@router.post("/cases/{case_id}/outcomes", response_model=None)
def outcome_form(
    case_id: CaseId,
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    diagnosis_code: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    outcome_date: Annotated[str, Form()] = "",
) -> Response:
    """A reader or senior records what the lesion turned out to be (faulty fields: the page
    again, values kept and each fault marked)."""
    _expert_only(user)
    lang = page_lang(request, settings)
    values = {"diagnosis_code": diagnosis_code, "source": source, "outcome_date": outcome_date}
    try:
        entry = parse_outcome(values, today=now.date(), lang=lang)
    except OutcomeError as exc:
        case = _case_or_404(session, case_id, user)
        return _case_page(
            request, user, session, settings, now, case,
            outcome_errors=exc.errors, outcome_values=values, status_code=422,
        )  # fmt: skip
    return _case_action(
        session, case_id, user,
        lambda c: svc.record_outcome(
            session, c, user, entry.code, entry.source, entry.outcome_date, now
        ),
        f"/cases/{case_id}",
    )  # fmt: skip


@router.post("/cases/{case_id}/validate")
def validate_form(
    case_id: CaseId,
    user: PageUser,
    session: SessionDep,
    now: Now,
    revision: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Validates the revision the senior read on the page (a newer one is refused: 409)."""
    return _case_action(
        session, case_id, user, lambda c: svc.validate(session, c, user, now, revision=revision),
        f"/cases/{case_id}",
    )  # fmt: skip


@router.post("/cases/{case_id}/revision")
def revision_form(
    case_id: CaseId, body: Annotated[str, Form()], user: PageUser, session: SessionDep, now: Now
) -> Response:
    return _case_action(
        session, case_id, user, lambda c: svc.return_for_revision(session, c, user, body, now),
        f"/cases/{case_id}",
    )  # fmt: skip


# --- the GP's pages --------------------------------------------------------------------------


@router.get("/gp/requests", response_class=HTMLResponse)
def my_requests_page(
    request: Request, user: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    _requester_only(user)
    lang = page_lang(request, settings)
    cases = svc.my_requests(session, user)
    audit.record_listing(session, user, audit.REQUESTS_READ, cases, via="page")
    return render(
        request,
        "gp_requests.html",
        lang,
        user,
        active="my_requests",
        cases=cases,
        notice=NOTICES[lang].get(request.query_params.get("done", "")),
    )


def _new_request_page(
    request: Request,
    user: User,
    lang: Lang,
    *,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    t = translator(lang)
    return render(
        request,
        "gp_new_request.html",
        lang,
        user,
        status_code=status_code,
        active="new_request",
        values=values,
        errors=errors,
        sexes=list(Sex),
        phototypes=list(Fitzpatrick),
        body_sites=list(BodySite),
        durations=list(Duration),
        quality_texts={
            "checking": t("checking_photo"),
            "good": t("photo_good"),
            "retake": t("photo_retake"),
            "submitting": t("submitting"),
        },
    )


@router.get("/gp/requests/new", response_class=HTMLResponse)
def new_request_page(request: Request, user: PageUser, settings: SettingsDep) -> HTMLResponse:
    """The GP's form; who sends it is shown read-only from the account, never asked."""
    _requester_only(user)
    return _new_request_page(request, user, page_lang(request, settings), values={}, errors={})


PHOTO_FIELDS = (("photo_close_up", "close_up"), ("photo_dermoscopy", "dermoscopy"),
                ("photo_wide", "wide"), ("photo_extra", "close_up"))  # fmt: skip


@router.post("/gp/requests/new", response_model=None)
async def submit_request_form(
    request: Request, user: PageUser, runtime: Runtime, settings: SettingsDep
) -> Response:
    """The GP's form: questionnaire + photos, created whole or shown again with its errors."""
    _requester_only(user)
    lang = page_lang(request, settings)
    form = await request.form(max_files=8, max_fields=60, max_part_size=settings.max_upload_bytes)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    uploads: list[svc.PhotoUpload] = []
    slots: list[str] = []  # the form field each upload came from, to place its error
    for name, kind in PHOTO_FIELDS:
        for item in form.getlist(name):
            if isinstance(item, str) or not item.filename:
                continue
            data = await item.read(settings.max_upload_bytes + 1)
            uploads.append(svc.PhotoUpload(data, kind))
            slots.append(name)

    def create() -> int:
        questionnaire = parse_questionnaire(from_form(fields), lang)
        with runtime.database.session() as session:
            case = svc.create_case(
                session, runtime.store, user, questionnaire, uploads, now=runtime.clock(),
                max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
                lang=lang,
            )  # fmt: skip
            return case.id

    try:
        await run_in_threadpool(create)
    except (QuestionnaireError, svc.InvalidRequestError) as exc:
        errors = dict(exc.errors)
        for key in [k for k in errors if k.startswith("photos.")]:
            errors[slots[int(key.split(".")[1])]] = errors.pop(key)
        if not uploads:
            errors["photo_close_up"] = errors.pop("photos", "") or translator(lang)("form_errors")
        return _new_request_page(request, user, lang, values=fields, errors=errors, status_code=422)
    runtime.worker.wake()
    return redirect("/gp/requests?done=sent")


def _steps(case: Case, lang: Lang) -> list[dict[str, str]]:
    t = translator(lang)
    order = [
        ("step_sent", {Status.submitted, Status.scored}),
        ("step_reading", {Status.in_review, Status.info_requested, Status.answered}),
        ("step_report", {Status.report_written}),
        ("step_answer", {Status.validated, Status.closed}),
    ]
    current = next(i for i, (_, states) in enumerate(order) if Status(case.status) in states)
    return [
        {"label": t(key), "state": "done" if i < current else ("current" if i == current else "")}
        for i, (key, _) in enumerate(order)
    ]


@router.get("/gp/requests/{case_id}", response_class=HTMLResponse)
def request_page(
    case_id: CaseId, request: Request, user: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    if user.is_expert:
        _case_or_404(session, case_id, user)  # another centre's case: 404, not a redirect
        return redirect(f"/cases/{case_id}")  # type: ignore[return-value]
    _requester_only(user)
    lang = page_lang(request, settings)
    case = _case_or_404(session, case_id, user)
    audit.record(session, user, audit.CASE_READ, case_id=case.id, details={"via": "page"})
    return render(
        request,
        "gp_request.html",
        lang,
        user,
        active="my_requests",
        case=case,
        requester=svc.requester_identity(session, case),
        steps=_steps(case, lang),
        answer_visible=Status(case.status) in ANSWER_VISIBLE and case.report is not None,
        notice=NOTICES[lang].get(request.query_params.get("done", "")),
    )


@router.post("/gp/requests/{case_id}/answer")
def answer_form(
    case_id: CaseId, body: Annotated[str, Form()], user: PageUser, session: SessionDep, now: Now
) -> Response:
    case = _case_or_404(session, case_id, user, lock=True)
    try:
        svc.answer(session, case, user, body, now)
    except svc.ForbiddenError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except svc.ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from exc
    except svc.InvalidRequestError:
        return redirect(f"/gp/requests/{case_id}")
    return redirect(f"/gp/requests/{case_id}?done=answered")


@router.post("/gp/requests/{case_id}/message")
def gp_message_form(
    case_id: CaseId, body: Annotated[str, Form()], user: PageUser, session: SessionDep, now: Now
) -> Response:
    return _case_action(
        session, case_id, user, lambda c: svc.add_message(session, c, user, body, now),
        f"/gp/requests/{case_id}",
    )  # fmt: skip


@router.post("/gp/requests/{case_id}/close")
def close_form(case_id: CaseId, user: PageUser, session: SessionDep, now: Now) -> Response:
    return _case_action(
        session, case_id, user, lambda c: svc.close(session, c, user, now),
        f"/gp/requests/{case_id}",
    )  # fmt: skip


# --- activity statistics ---------------------------------------------------------------------


@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request, user: PageUser, session: SessionDep, settings: SettingsDep, now: Now
) -> HTMLResponse:
    from serving.stats import activity_chart_svg, activity_stats, stats_centre

    _require(user, Permission.read_stats)
    lang = page_lang(request, settings)
    stats = activity_stats(
        session, now, deadline_hours=settings.review_deadline_hours, centre=stats_centre(user)
    )

    def hours(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} h".replace(".", "," if lang == "fr" else ".")

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.0f} %"

    return render(
        request,
        "stats.html",
        lang,
        user,
        active="stats",
        stats=stats,
        chart=activity_chart_svg(stats, lang),
        tiers=list(Tier),
        hours=hours,
        percent=percent,
    )
