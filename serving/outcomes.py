"""Outcomes: what each lesion turned out to be, and the reference diagnosis a case is judged by.

An outcome (coded diagnosis, date, source: histology, consultation or follow-up) is recorded on
a case after its report, by a reader or senior of the case's centre, one at a time from the case
page and the API or in bulk with ``dermtriage outcomes import``. The figures on real-world
performance judge each case by :func:`reference_diagnoses`, which applies
:func:`pipeline.diagnosis.reference_diagnosis` to what the database holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.diagnosis import (
    DiagnosisCode,
    OutcomeSource,
    ReferenceDiagnosis,
    reference_diagnosis,
)
from serving.db.models import Outcome, Report

# Rows per IN (...) list: far below SQLite's and PostgreSQL's bound-parameter limits, and few
# enough round trips for 10,000 cases.
_CHUNK = 2000


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def reference_diagnoses(session: Session, case_ids: Iterable[int]) -> dict[int, ReferenceDiagnosis]:
    """The reference diagnosis of each case that has one, keyed by case id.

    Reads only two narrow columns sets (the cases' outcomes and their *validated* reports' codes),
    two queries per 2,000 cases, so the real-world figures stay fast on 10,000 closed cases. A
    report that is written but not validated is not evidence; a case with neither an outcome nor
    a validated coded report (or only ``uncertain`` ones) is absent from the result.
    """
    ids = sorted(set(case_ids))
    outcomes: dict[int, list[tuple[DiagnosisCode, OutcomeSource, date]]] = {}
    report_codes: dict[int, DiagnosisCode] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(
                Outcome.case_id, Outcome.diagnosis_code, Outcome.source, Outcome.outcome_date
            ).where(Outcome.case_id.in_(chunk))
        )
        for case_id, code, source, when in rows:
            outcomes.setdefault(case_id, []).append(
                (DiagnosisCode(code), OutcomeSource(source), when)
            )
        reports = session.execute(
            select(Report.case_id, Report.diagnosis_code).where(
                Report.case_id.in_(chunk),
                Report.validated_at.is_not(None),
                Report.diagnosis_code.is_not(None),
            )
        )
        for case_id, code in reports:
            report_codes[case_id] = DiagnosisCode(code)
    result: dict[int, ReferenceDiagnosis] = {}
    for case_id in ids:
        reference = reference_diagnosis(outcomes.get(case_id, []), report_codes.get(case_id))
        if reference is not None:
            result[case_id] = reference
    return result
