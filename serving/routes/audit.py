"""The auditor's view of the audit trail: the ``/audit`` page and ``/api/v1/audit/...`` JSON.

Read-only, and only for the auditor and admin roles (everyone else: 403). Both take the same
filters (actor, action or ``prefix*``, case, date range) and page newest first. The page shows
whether the chain is intact through the app's :class:`serving.audit.ChainMonitor`: the whole
chain at most every :data:`FULL_VERIFY_EVERY_S` (or when the auditor asks), the new events in
between, since a full walk costs about a second per 15,000 events on the 2-core machine
(docs/audit.md). ``/api/v1/audit/chain`` always walks the whole chain. Looking at the trail is
itself recorded (``audit.read``, with the filters used), so the auditors are audited too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from pipeline.workflow import Role
from serving import audit
from serving.case_texts import translator as case_translator
from serving.deps import (
    CaseIdQuery,
    CurrentUser,
    PageNumber,
    PageUser,
    SessionDep,
    SettingsDep,
    case_id_in_range,
)
from serving.routes.worklist_pages import page_lang, render
from serving.users import User

router = APIRouter(tags=["audit"])

#: Who may read the trail. Auditors exist for it; admins answer for the installation.
AUDIT_ROLES = frozenset({Role.auditor, Role.admin})
PAGE_SIZE = 50
FULL_VERIFY_EVERY_S = 300.0

TEXTS: dict[str, dict[str, str]] = {
    "audit_title": {"fr": "Journal d'audit", "en": "Audit trail"},
    "audit_intro": {
        "fr": "Chaque consultation et chaque modification d'un dossier, dans l'ordre, chaînées "
        "par empreintes SHA-256 : une modification ou une suppression se voit.",
        "en": "Every read and every change of a case, in order, chained by SHA-256 hashes: an "
        "edit or a deletion shows.",
    },
    "chain_intact": {
        "fr": "Chaîne intacte : {n} événement(s) vérifié(s).",
        "en": "Chain intact: {n} event(s) verified.",
    },
    "chain_broken": {
        "fr": "Chaîne rompue à l'événement {seq} ({reason}) : {message}",
        "en": "Chain broken at event {seq} ({reason}): {message}",
    },
    "chain_tail": {
        "fr": "Chaîne intacte : {n} nouvel(s) événement(s) vérifié(s) depuis la vérification "
        "complète du {when} UTC.",
        "en": "Chain intact: {n} new event(s) verified since the full verification at {when} UTC.",
    },
    "verify_full": {"fr": "Vérifier toute la chaîne", "en": "Verify the whole chain"},
    "chain_head": {
        "fr": "Tête de chaîne à conserver hors de la base :",
        "en": "Chain head to keep outside the database:",
    },
    "filter_actor": {"fr": "Acteur", "en": "Actor"},
    "filter_action": {"fr": "Action", "en": "Action"},
    "filter_case": {"fr": "Dossier n°", "en": "Case no."},
    "filter_from": {"fr": "Du", "en": "From"},
    "filter_to": {"fr": "Au", "en": "To"},
    "col_seq": {"fr": "N°", "en": "No."},
    "col_time": {"fr": "Date (UTC)", "en": "Time (UTC)"},
    "col_actor": {"fr": "Acteur", "en": "Actor"},
    "col_action": {"fr": "Action", "en": "Action"},
    "col_case": {"fr": "Dossier", "en": "Case"},
    "col_model": {"fr": "Modèle", "en": "Model"},
    "col_details": {"fr": "Détails", "en": "Details"},
    "col_hash": {"fr": "Empreinte", "en": "Hash"},
    "events_count": {"fr": "{n} événement(s)", "en": "{n} event(s)"},
    "no_events": {
        "fr": "Aucun événement ne correspond à ces filtres.",
        "en": "No event matches these filters.",
    },
    "nav_audit": {"fr": "Audit", "en": "Audit"},
}


def audit_translator(lang: str) -> Callable[..., str]:
    """The audit page's words first, then the case pages' (the shared layout uses those)."""
    fallback = case_translator(lang)  # type: ignore[arg-type]

    def t(key: str, **values: object) -> str:
        if key in TEXTS:
            text = TEXTS[key][lang]
            return text.format(**values) if values else text
        return fallback(key, **values)

    return t


def require_auditor(user: User) -> None:
    if user.role not in AUDIT_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "auditors and admins only")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/api/v1/audit/events")
def list_audit_events(
    user: CurrentUser,
    session: SessionDep,
    actor: str | None = None,
    action: str | None = None,
    case_id: CaseIdQuery = None,
    since: Annotated[datetime | None, Query(description="inclusive; UTC if no zone")] = None,
    until: Annotated[datetime | None, Query(description="exclusive; UTC if no zone")] = None,
    page: PageNumber = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
) -> dict[str, Any]:
    """Audit events, newest first, filtered (auditors and admins)."""
    require_auditor(user)
    filters = audit.AuditFilters(actor or None, action or None, case_id, _utc(since), _utc(until))
    result = audit.list_events(session, filters, page=page, page_size=page_size)
    audit.record(session, user, audit.AUDIT_READ, details={"via": "api", **filters.as_details()})
    return {
        "items": [audit.event_out(e) for e in result.events],
        "total": result.total,
        "page": result.page,
        "pages": result.pages,
    }


@router.get("/api/v1/audit/chain")
def verify_audit_chain(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Verify the whole chain now: intact or the first broken event, and the head to keep."""
    require_auditor(user)
    return audit.status_out(audit.verify(session))


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _case_filter(text: str) -> int | None:
    """The page's case filter: a number, else no filter. A number no case can have (0, past the
    id column's range) filters with an impossible id, so it matches nothing (and is never handed
    to the database as is: past 64 bits the driver cannot bind it)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 20 and case_id_in_range(int(text)) else 0


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    actor: str = "",
    action: str = "",
    case: str = "",
    start: str = "",
    end: str = "",
    page: PageNumber = 1,
) -> HTMLResponse:
    """The auditor's page: chain status, filters, one page of events."""
    require_auditor(user)
    lang = page_lang(request, settings)
    first_day, last_day = _day(start), _day(end)
    filters = audit.AuditFilters(
        actor_id=actor.strip() or None,
        action=action.strip() or None,
        case_id=_case_filter(case),
        since=datetime.combine(first_day, time(), UTC) if first_day else None,
        until=datetime.combine(last_day + timedelta(days=1), time(), UTC) if last_day else None,
    )
    monitor = getattr(request.app.state, "audit_monitor", None)
    if monitor is None:
        monitor = request.app.state.audit_monitor = audit.ChainMonitor(FULL_VERIFY_EVERY_S)
    chain = monitor.check(session, full=request.query_params.get("verify") == "full")
    result = audit.list_events(session, filters, page=max(1, page), page_size=PAGE_SIZE)
    audit.record(session, user, audit.AUDIT_READ, details={"via": "page", **filters.as_details()})
    selected = {"actor": actor, "action": action, "case": case, "start": start, "end": end}

    def page_url(number: int) -> str:
        query = {k: v for k, v in selected.items() if v}
        return "/audit?" + urlencode({**query, "page": number})

    return render(
        request,
        "audit.html",
        lang,
        user,
        active="audit",
        t=audit_translator(lang),
        chain=chain,
        result=result,
        selected=selected,
        page_url=page_url,
        details_text=lambda d: "" if not d else json.dumps(d, ensure_ascii=False, sort_keys=True),
    )
