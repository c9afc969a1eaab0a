"""Outcomes: what each lesion turned out to be, and the reference diagnosis a case is judged by.

An outcome (coded diagnosis, date, source: histology, consultation or follow-up) is recorded on
a case after its report, by a reader or senior of the case's centre, one at a time from the case
page and the API or in bulk with ``dermtriage outcomes import``. The figures on real-world
performance judge each case by :func:`reference_diagnoses`, which applies
:func:`pipeline.diagnosis.reference_diagnosis` to what the database holds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.access import Permission, can
from pipeline.diagnosis import (
    SNOMED_CT,
    DiagnosisCode,
    OutcomeSource,
    ReferenceDiagnosis,
    reference_diagnosis,
)
from pipeline.workflow import Role, Status
from serving import case_service as svc
from serving.db.models import Case, Outcome, Report
from serving.users import User

Lang = Literal["fr", "en"]

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


# --- one outcome from a form, the API or a CSV row --------------------------------------------


@dataclass(frozen=True)
class OutcomeEntry:
    """A validated outcome, before it is attached to a case."""

    code: DiagnosisCode
    source: OutcomeSource
    outcome_date: date


class OutcomeError(ValueError):
    """An outcome that cannot be recorded; ``errors`` maps field -> message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


_MESSAGES: dict[str, dict[str, str]] = {
    "diagnosis_code": {
        "fr": "Diagnostic inconnu : un code de la liste ({codes}) ou son code SNOMED CT.",
        "en": "Unknown diagnosis: a code from the list ({codes}) or its SNOMED CT code.",
    },
    "source": {
        "fr": "Source inconnue : histology, consultation ou follow_up.",
        "en": "Unknown source: histology, consultation or follow_up.",
    },
    "outcome_date": {
        "fr": "Date invalide : AAAA-MM-JJ ou JJ/MM/AAAA.",
        "en": "Invalid date: YYYY-MM-DD or DD/MM/YYYY.",
    },
    "future": {
        "fr": "La date est dans le futur.",
        "en": "The date is in the future.",
    },
}

_BY_SNOMED = {concept: code for code, (concept, _) in SNOMED_CT.items()}


def _message(key: str, lang: Lang) -> str:
    return _MESSAGES[key][lang].format(codes=", ".join(c.value for c in DiagnosisCode))


def _diagnosis(text: str) -> DiagnosisCode | None:
    value = text.strip().lower()
    if value in DiagnosisCode._value2member_map_:
        return DiagnosisCode(value)
    return _BY_SNOMED.get(value)


def _source(text: str) -> OutcomeSource | None:
    value = text.strip().lower().replace("-", "_").replace(" ", "_")
    return OutcomeSource(value) if value in OutcomeSource._value2member_map_ else None


def _date(text: str) -> date | None:
    value = text.strip()
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    return None


def parse_outcome(data: Mapping[str, Any], *, today: date, lang: Lang = "fr") -> OutcomeEntry:
    """Check one outcome's fields: ``diagnosis_code``, ``source``, ``outcome_date``.

    The diagnosis is a code of :class:`~pipeline.diagnosis.DiagnosisCode` (any case) or its
    SNOMED CT concept id, as a laboratory system may send; the date is ISO (``2026-03-14``) or
    French (``14/03/2026``) and not after ``today``. Every faulty field is reported at once.
    """
    errors: dict[str, str] = {}
    code = _diagnosis(str(data.get("diagnosis_code") or ""))
    if code is None:
        errors["diagnosis_code"] = _message("diagnosis_code", lang)
    source = _source(str(data.get("source") or ""))
    if source is None:
        errors["source"] = _message("source", lang)
    raw_date = data.get("outcome_date")
    when = raw_date if isinstance(raw_date, date) else _date(str(raw_date or ""))
    if when is None:
        errors["outcome_date"] = _message("outcome_date", lang)
    elif when > today:
        errors["outcome_date"] = _message("future", lang)
    if errors:
        raise OutcomeError(errors)
    assert code is not None and source is not None and when is not None
    return OutcomeEntry(code=code, source=source, outcome_date=when)


# --- bulk import: ``dermtriage outcomes import FILE.csv`` -------------------------------------

CASE_COLUMNS = ("case", "case_id", "pseudonym", "patient_pseudonym")
COLUMNS = {
    "case": CASE_COLUMNS,
    "diagnosis_code": ("diagnosis", "diagnosis_code"),
    "source": ("source",),
    "outcome_date": ("date", "outcome_date"),
}


@dataclass(frozen=True)
class ImportResult:
    """What an import did: outcomes recorded, rows already on record (skipped), bad rows."""

    recorded: int
    already_recorded: int
    errors: list[tuple[int, str]]


class OutcomeImportError(ValueError):
    """The file has bad rows: ``errors`` lists ``(line, message)``; nothing was imported."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(errors)} bad row(s)")
        self.errors = errors


def _header(fields: Sequence[str] | None) -> dict[str, str]:
    """Our field -> the file's column, or OutcomeImportError naming what is missing."""
    names = {name.strip().lower(): name for name in fields or []}
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for ours, aliases in COLUMNS.items():
        found = next((names[a] for a in aliases if a in names), None)
        if found is None:
            missing.append(" or ".join(aliases))
        else:
            mapping[ours] = found
    if missing:
        raise OutcomeImportError([(1, f"missing column(s): {'; '.join(missing)}")])
    return mapping


def _cases_by_reference(session: Session, refs: set[str]) -> dict[str, list[Case]]:
    """Each reference -> the cases it names: a case id, else a patient pseudonym (which may name
    several cases of one patient)."""
    found: dict[str, list[Case]] = {}
    ids = sorted({int(r) for r in refs if r.isdigit()})
    for chunk in _chunks(ids):
        for case in session.scalars(select(Case).where(Case.id.in_(chunk))):
            found[str(case.id)] = [case]
    pseudonyms = sorted(r for r in refs if r not in found)
    for start in range(0, len(pseudonyms), _CHUNK):
        chunk_p = pseudonyms[start : start + _CHUNK]
        for case in session.scalars(
            select(Case).where(Case.patient_pseudonym.in_(chunk_p)).order_by(Case.id)
        ):
            found.setdefault(case.patient_pseudonym, []).append(case)
    return found


def import_outcomes(
    session: Session, rows: Iterable[str], user: User, now: datetime, lang: Lang = "en"
) -> ImportResult:
    """Record the outcomes of a CSV file (``case,diagnosis,source,date``) as ``user``, or none.

    ``case`` is a case id or the patient's pseudonym (a pseudonym with several cases is refused:
    name the case id). Every row is checked before anything is written (diagnosis, source and
    date as :func:`parse_outcome`; the case exists, is in ``user``'s centre, has a validated
    report); if any row is bad, :class:`OutcomeImportError` lists each one with its line number
    and nothing is recorded. A row identical to an outcome already on record (same case,
    diagnosis, source and date) is skipped, so importing a file twice records it once. The
    caller commits; the writes share the caller's transaction.
    """
    text = list(rows)
    sample = "".join(text[:5])
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text, dialect=dialect)
    columns = _header(reader.fieldnames)
    if user.role not in (Role.first_reader, Role.senior):
        raise OutcomeImportError([(0, f"a {user.role.value} may not record outcomes")])

    parsed: list[tuple[int, str, OutcomeEntry | None, dict[str, str]]] = []
    for row in reader:
        line = reader.line_num
        ref = (row.get(columns["case"]) or "").strip()
        values = {ours: (row.get(theirs) or "") for ours, theirs in columns.items()}
        try:
            entry: OutcomeEntry | None = parse_outcome(values, today=now.date(), lang=lang)
            problems: dict[str, str] = {}
        except OutcomeError as exc:
            entry, problems = None, exc.errors
        parsed.append((line, ref, entry, problems))

    cases = _cases_by_reference(session, {ref for _, ref, _, _ in parsed if ref})
    errors: list[tuple[int, str]] = []
    todo: list[tuple[Case, OutcomeEntry]] = []
    seen: dict[tuple[int, OutcomeEntry], int] = {}
    for line, ref, entry, problems in parsed:
        messages = [f"{field}: {message}" for field, message in problems.items()]
        matches = cases.get(ref, []) if ref else []
        case: Case | None = None
        if not ref:
            messages.insert(0, "case: empty")
        elif not matches:
            messages.insert(0, f"case: no case {ref!r}")
        elif len(matches) > 1:
            ids = ", ".join(str(c.id) for c in matches)
            messages.insert(0, f"case: pseudonym {ref!r} names several cases ({ids}): use the id")
        else:
            case = matches[0]
            if not can(user, Permission.change_case, case):
                messages.insert(0, f"case: case {case.id} is not in your centre")
            elif Status(case.status) not in svc.OUTCOME_STATUSES:
                messages.insert(0, f"case: case {case.id} has no validated report yet")
        if case is not None and entry is not None and not messages:
            first = seen.setdefault((case.id, entry), line)
            if first != line:
                messages.append(f"repeats line {first}")
            else:
                todo.append((case, entry))
        if messages:
            errors.append((line, "; ".join(messages)))
    if errors:
        raise OutcomeImportError(errors)

    on_record = _existing(session, [case.id for case, _ in todo])
    recorded = 0
    for case, entry in todo:
        key = (entry.code.value, entry.source.value, entry.outcome_date)
        if key in on_record.get(case.id, set()):
            continue
        svc.record_outcome(session, case, user, entry.code, entry.source, entry.outcome_date, now)
        recorded += 1
    return ImportResult(recorded=recorded, already_recorded=len(todo) - recorded, errors=[])


def _existing(session: Session, case_ids: list[int]) -> dict[int, set[tuple[str, str, date]]]:
    out: dict[int, set[tuple[str, str, date]]] = {}
    for chunk in _chunks(sorted(set(case_ids))):
        rows = session.execute(
            select(
                Outcome.case_id, Outcome.diagnosis_code, Outcome.source, Outcome.outcome_date
            ).where(Outcome.case_id.in_(chunk))
        )
        for case_id, code, source, when in rows:
            out.setdefault(case_id, set()).add((code, source, when))
    return out
