"""Model governance for auditors: read-only pages and JSON API (auditor and admin roles).

Pages under ``/governance`` and the same data under ``/api/v1/governance``: every registered
version with its figures, a version's dossier (subgroups with warnings, plots, lineage, promotion
history, the live cases it scored) and its audit report PDF, two versions side by side with the
cases they disagree on, shadow-mode agreement and would-be ordering, a case's scoring history,
and weekly drift against the training reference. The registry is read through
:mod:`training.governance`, the case database through :mod:`serving.governance_service`; this
module only checks the role and renders. Nothing here changes anything.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

import mlflow
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from pipeline.access import Permission, can
from pipeline.drift import DEFAULT_ALPHA, MEASURE_LABELS, Reference, psi_level, weekly_drift
from pipeline.workflow import Role
from serving import audit
from serving.deps import (
    CaseId,
    CurrentUser,
    ModelVersion,
    ModelVersionQuery,
    Now,
    OptionalModelVersionQuery,
    PageUser,
    SessionDep,
    SettingsDep,
)
from serving.governance_charts import drift_chart_svg
from serving.governance_pdf import audit_report_pdf
from serving.governance_real_world import in_service_reports, record_alert, version_report
from serving.governance_service import (
    case_scoring_history,
    cases_scored_by,
    drift_observations,
    live_cases_by_skin_type,
    paired_scores,
    scored_counts,
    version_label,
    would_be_ordering,
)
from serving.routes.worklist_pages import page_lang, render
from serving.settings import Settings
from serving.users import User
from training.governance import (
    PLOT_ARTIFACTS,
    artifact_bytes,
    compare_metrics,
    version_dossier,
    versions_overview,
)
from training.governance_compare import agreement
from training.governance_reference import load_reference
from training.registry import CHALLENGER, CHAMPION, RegistryError, alias_version, open_client

logger = logging.getLogger(__name__)

router = APIRouter(tags=["governance"])

GOVERNANCE_ROLES = frozenset({Role.auditor, Role.admin})
#: Audit actions of the governance reads that touch one case or leave the service as a file.
CASE_SCORES_READ = "governance.case_scores.read"
REPORT_EXPORT = "governance.report.export"


def _auditor_only(user: User) -> None:
    """Governance is model data: auditors, admins and data scientists (``pipeline.access``,
    ``read_models``: no patient identity is shown here); everyone else gets 403."""
    if not can(user, Permission.read_models):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "auditors, admins and data scientists only")


def _client(settings: Settings) -> mlflow.MlflowClient:
    return open_client(settings.tracking_uri)


def _dossier(settings: Settings, version: str):  # -> VersionDossier
    try:
        return version_dossier(_client(settings), settings.registered_model_name, version)
    except RegistryError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


def _overview(settings: Settings, session: SessionDep) -> dict[str, Any]:
    name = settings.registered_model_name
    client = _client(settings)
    try:
        versions = versions_overview(client, name)
        champion = alias_version(client, name, CHAMPION)
        challenger = alias_version(client, name, CHALLENGER)
    except RegistryError:
        versions, champion, challenger = [], None, None
    counts = scored_counts(session)
    for row in versions:
        row["live_cases"] = counts.get(version_label(name, row["version"]), {})
    return {
        "model_name": name,
        "champion": champion,
        "challenger": challenger,
        "versions": versions,
    }


def _shadow(
    settings: Settings, session: SessionDep, champion: str, challenger: str, now: datetime
) -> dict[str, Any]:
    name = settings.registered_model_name
    champion_label = version_label(name, champion)
    challenger_label = version_label(name, challenger)
    found = agreement(paired_scores(session, champion_label, challenger_label))
    ordering = would_be_ordering(session, challenger_label, now, settings.review_deadline_hours)
    return {
        "champion": champion,
        "challenger": challenger,
        "agreement": found.to_dict(),
        "ordering": [row.__dict__ for row in ordering],
    }


def _comparison(settings: Settings, session: SessionDep, a: str, b: str) -> dict[str, Any]:
    first, second = _dossier(settings, a), _dossier(settings, b)
    name = settings.registered_model_name
    found = agreement(paired_scores(session, version_label(name, a), version_label(name, b)))
    return {
        "a": a,
        "b": b,
        "metrics": [m.__dict__ for m in compare_metrics(first, second)],
        "agreement": found.to_dict(),
        "dossiers": {a: first, b: second},
    }


def _drift(settings: Settings, session: SessionDep, version: str | None) -> dict[str, Any]:
    name = settings.registered_model_name
    client = _client(settings)
    try:
        version = version or alias_version(client, name, CHAMPION)
        reference = (
            load_reference(client, name, version, settings.shipped_model_dir) if version else None
        )
    except RegistryError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    observations = drift_observations(session, version_label(name, version)) if version else []
    weeks = weekly_drift(
        observations, reference or Reference(version=str(version), n_photos=0, values={})
    )
    return {"version": version, "reference": reference, "weeks": weeks, "alpha": DEFAULT_ALPHA}


def _case_history(
    session: SessionDep, user: User, case_id: int, now: datetime, *, via: str
) -> list[dict[str, Any]]:
    """A case's scoring history, its reading recorded in the audit trail (404 if no case)."""
    history = case_scoring_history(session, case_id)
    if history is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no case {case_id}")
    audit.record(session, user, CASE_SCORES_READ, case_id=case_id, details={"via": via}, at=now)
    return history


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_number(v) for v in value]
    return value


def _page(request: Request, template: str, user: User, **context: Any) -> HTMLResponse:
    """A governance page in the product's shell: the same header, navigation, language switch
    (French by default, the choice remembered) and sign-out as every other page."""
    lang = page_lang(request, request.app.state.settings)
    return render(
        request, template, lang, user, psi_level=psi_level, labels=MEASURE_LABELS, **context
    )


# --- pages -----------------------------------------------------------------------------------


@router.get("/governance", response_class=HTMLResponse)
def governance_home(
    request: Request, user: PageUser, session: SessionDep, settings: SettingsDep, now: Now
) -> HTMLResponse:
    _auditor_only(user)
    overview = _overview(settings, session)
    shadow = None
    if overview["champion"] and overview["challenger"]:
        shadow = _shadow(settings, session, overview["champion"], overview["challenger"], now)
    # The versions in service whose live sensitivity fell below their registered figure: a
    # banner here, so the alert is seen without opening each version's real-world page.
    alerts = [r for r in in_service_reports(settings, session, now=now, stale_ok=True) if r.alert]
    for report in alerts:
        record_alert(session, user, report, at=now)
    return _page(
        request, "governance_versions.html", user, overview=overview, shadow=shadow, alerts=alerts
    )


@router.get("/governance/versions/{version}", response_class=HTMLResponse)
def version_page(
    version: ModelVersion,
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    _auditor_only(user)
    dossier = _dossier(settings, version)
    label = version_label(settings.registered_model_name, version)
    cases = cases_scored_by(session, label)
    skin = live_cases_by_skin_type(session, label)
    return _page(
        request, "governance_version.html", user, dossier=dossier, cases=cases, skin_types=skin
    )


@router.get("/governance/versions/{version}/plots/{plot}.png")
def version_plot(
    version: ModelVersion, plot: str, user: PageUser, settings: SettingsDep
) -> Response:
    _auditor_only(user)
    dossier = _dossier(settings, version)
    if plot not in PLOT_ARTIFACTS or plot not in dossier.plots or not dossier.run_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {plot} plot for version {version}")
    data = artifact_bytes(_client(settings), dossier.run_id, dossier.plots[plot])
    if data is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the {plot} plot cannot be read")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/governance/versions/{version}/report.pdf")
def version_report_pdf(
    version: ModelVersion, user: PageUser, session: SessionDep, settings: SettingsDep, now: Now
) -> Response:
    _auditor_only(user)
    dossier = _dossier(settings, version)
    client = _client(settings)
    plots = {}
    for plot in ("roc", "calibration"):
        if plot in dossier.plots and dossier.run_id:
            data = artifact_bytes(client, dossier.run_id, dossier.plots[plot])
            if data is not None:
                plots[plot] = data
    label = version_label(settings.registered_model_name, version)
    live = scored_counts(session).get(label, {})
    real_world = version_report(settings, session, version, dossier.metrics, now=now, stale_ok=True)
    pdf = audit_report_pdf(
        dossier, plots=plots, live_cases=live, generated=now, real_world=real_world
    )
    details = {"bytes": len(pdf)}
    audit.record(session, user, REPORT_EXPORT, model_version=label, details=details, at=now)
    filename = f"audit-{settings.registered_model_name}-v{version}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/governance/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    a: ModelVersionQuery,
    b: ModelVersionQuery,
) -> HTMLResponse:
    _auditor_only(user)
    return _page(
        request, "governance_compare.html", user, comparison=_comparison(settings, session, a, b)
    )


@router.get("/governance/cases/{case_id}", response_class=HTMLResponse)
def case_history_page(
    case_id: CaseId, request: Request, user: PageUser, session: SessionDep, now: Now
) -> HTMLResponse:
    _auditor_only(user)
    history = _case_history(session, user, case_id, now, via="page")
    return _page(request, "governance_case.html", user, case_id=case_id, history=history)


@router.get("/governance/drift", response_class=HTMLResponse)
def drift_page(
    request: Request,
    user: PageUser,
    session: SessionDep,
    settings: SettingsDep,
    version: OptionalModelVersionQuery = None,
) -> HTMLResponse:
    _auditor_only(user)
    drift = _drift(settings, session, version)
    chart = drift_chart_svg(drift["weeks"], drift["reference"])
    return _page(request, "governance_drift.html", user, drift=drift, chart=chart)


# --- JSON API --------------------------------------------------------------------------------

API = "/api/v1/governance"


@router.get(f"{API}/versions")
def api_versions(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    _auditor_only(user)
    return _overview(settings, session)


@router.get(f"{API}/versions/{{version}}")
def api_version(
    version: ModelVersion, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    _auditor_only(user)
    dossier = _dossier(settings, version)
    label = version_label(settings.registered_model_name, version)
    data = dossier.to_dict()
    data["live_cases"] = scored_counts(session).get(label, {})
    data["live_by_skin_type"] = [g.__dict__ for g in live_cases_by_skin_type(session, label)]
    return data


@router.get(f"{API}/versions/{{version}}/cases")
def api_version_cases(
    version: ModelVersion, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    _auditor_only(user)
    _dossier(settings, version)  # 404 for an unknown version
    cases = cases_scored_by(session, version_label(settings.registered_model_name, version))
    rows = [{**c.__dict__, "scored_at": c.scored_at.isoformat()} for c in cases]
    return {"version": version, "n_cases": len({c.case_id for c in cases}), "cases": rows}


@router.get(f"{API}/compare")
def api_compare(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    a: ModelVersionQuery,
    b: ModelVersionQuery,
) -> dict[str, Any]:
    _auditor_only(user)
    comparison = _comparison(settings, session, a, b)
    comparison.pop("dossiers")
    return _json_number(comparison)


@router.get(f"{API}/shadow")
def api_shadow(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, now: Now
) -> dict[str, Any]:
    _auditor_only(user)
    overview = _overview(settings, session)
    if not (overview["champion"] and overview["challenger"]):
        return {"champion": overview["champion"], "challenger": overview["challenger"]}
    shadow = _shadow(settings, session, overview["champion"], overview["challenger"], now)
    return _json_number(shadow)


@router.get(f"{API}/cases/{{case_id}}/scores")
def api_case_scores(
    case_id: CaseId, user: CurrentUser, session: SessionDep, now: Now
) -> dict[str, Any]:
    _auditor_only(user)
    history = _case_history(session, user, case_id, now, via="api")
    return {"case_id": case_id, "scores": history}


@router.get(f"{API}/drift")
def api_drift(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    version: OptionalModelVersionQuery = None,
) -> dict[str, Any]:
    _auditor_only(user)
    drift = _drift(settings, session, version)
    reference = drift["reference"]
    return _json_number(
        {
            "version": drift["version"],
            "alpha": drift["alpha"],
            "reference": None
            if reference is None
            else {
                "source": reference.source,
                "n_photos": reference.n_photos,
                "problem_counts": reference.problem_counts,
            },
            "weeks": [w.to_dict() for w in drift["weeks"]],
        }
    )
