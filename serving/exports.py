"""A case's report for other systems: the HL7 FHIR R4 DiagnosticReport, PDF embedded.

The FHIR resource itself is built by the pure :func:`pipeline.report.fhir_diagnostic_report`; this
module only reads the case's rows and the directory entries of the people who signed it. Like the
PDF, it carries the experts' answer and nothing of the model's output.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.orm import Session, object_session

from pipeline.report import Practitioner, ReportContent, fhir_diagnostic_report
from serving.auth import lookup_user
from serving.db.models import Case
from serving.i18n import translate
from serving.pdf import report_pdf
from serving.storage import BlobStore


def _practitioner(session: Session | None, user_id: str, name: str) -> Practitioner:
    user = lookup_user(session, user_id)
    return Practitioner(id=user_id, name=name, rpps=user.rpps if user else None)


def fhir_report(
    case: Case, lang: Literal["fr", "en"] = "fr", *, store: BlobStore | None = None
) -> dict[str, Any]:
    """The case's report as a FHIR R4 ``DiagnosticReport`` dict (the case must have a report)."""
    report = case.report
    if report is None:
        raise ValueError("the case has no report")
    session = object_session(case)  # the signers' RPPS come from their accounts
    content = ReportContent(
        conduct=report.conduct,
        diagnosis_code=report.diagnosis_code,
        interval=report.interval,
        diagnosis=report.diagnosis,
        text=report.text,
    )
    validator = (
        _practitioner(session, report.validated_by_id, report.validated_by_name or "")
        if report.validated_by_id
        else None
    )
    return fhir_diagnostic_report(
        case_id=case.id,
        patient_pseudonym=case.patient_pseudonym,
        submitted_at=case.submitted_at,
        issued_at=report.validated_at or report.written_at,
        content=content,
        author=_practitioner(session, report.author_id, report.author_name),
        validator=validator,
        photo_count=len(case.photos),
        pdf=report_pdf(case, lang, store=store),
        lang=lang,
        diagnosis_label=(
            translate(f"diagnosis.{report.diagnosis_code}", lang) if report.diagnosis_code else None
        ),
    )
