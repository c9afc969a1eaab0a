"""Real-world performance pages and API: a version's figures on the centre's confirmed cases.

``/governance/versions/N/real-world`` (page) and ``/api/v1/governance/versions/N/real-world``
(JSON), for the roles that read model governance. The rows come from
:mod:`serving.governance_real_world`, the figures from :mod:`pipeline.real_world`; when the live
sensitivity interval lies below the version's registered figure the page carries a banner and
the audit trail an event (once per state of the evidence).

The figures are computed ahead of the readers: when the service starts, and again whenever the
data they rest on has changed (a background loop every ``real_world_refresh_seconds``), so a
page or API call reads a stored result, and says when it was computed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from serving.deps import CurrentUser, ModelVersion, Now, PageUser, SessionDep, SettingsDep
from serving.governance_real_world import (
    RealWorldReport,
    in_service_reports,
    record_alert,
    version_report,
    wait_for_refreshes,
)
from serving.routes.governance import _auditor_only, _dossier, _json_number, _page
from serving.users import User

logger = logging.getLogger(__name__)


def _refresh_loop(app: FastAPI, stop: threading.Event) -> None:
    """Compute the in-service versions' figures now, then whenever their data has changed."""
    settings = app.state.settings
    while True:
        runtime = getattr(app.state, "case_runtime", None)
        if runtime is not None:
            try:
                with runtime.database.session() as session:
                    in_service_reports(settings, session, now=runtime.clock())
            except Exception:  # the next turn retries; the pages compute on their own meanwhile
                logger.exception("precomputing the real-world figures failed")
        if stop.wait(settings.real_world_refresh_seconds):
            return


@asynccontextmanager
async def _precompute(app: FastAPI) -> AsyncIterator[None]:
    """Start the background loop with the service (after the case runtime: the database is
    open), stop it before the database closes."""
    stop = threading.Event()
    thread = None
    if app.state.settings.real_world_refresh_seconds > 0:
        thread = threading.Thread(
            target=_refresh_loop, args=(app, stop), name="real-world-precompute", daemon=True
        )
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30)
        wait_for_refreshes(timeout=30)


router = APIRouter(tags=["governance"], lifespan=_precompute)


def report_for(settings: Any, session: Any, user: User, version: str, now: Any) -> RealWorldReport:
    """The version's real-world report; an alert found is written to the audit trail."""
    dossier = _dossier(settings, version)  # 404 for an unknown version
    report = version_report(settings, session, version, dossier.metrics, now=now, stale_ok=True)
    record_alert(session, user, report, at=now)
    return report


@router.get("/governance/versions/{version}/real-world", response_class=HTMLResponse)
def real_world_page(
    version: ModelVersion,
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
) -> HTMLResponse:
    _auditor_only(user)
    report = report_for(settings, session, user, version, now)
    return _page(request, "governance_real_world.html", user, report=report)


@router.get("/api/v1/governance/versions/{version}/real-world")
def api_real_world(
    version: ModelVersion, user: CurrentUser, session: SessionDep, settings: SettingsDep, now: Now
) -> dict[str, Any]:
    _auditor_only(user)
    return _json_number(report_for(settings, session, user, version, now).to_dict())
