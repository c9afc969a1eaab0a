"""Outcomes: recording what a lesion turned out to be, the reference diagnosis, the CSV import.

Every test runs on SQLite and on PostgreSQL (``database_url``). Cases are built as rows in the
state each test needs (a validated report, or not yet), then changed only through the service,
the import and the ``dermtriage`` command, as the pages and the API do.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from pipeline.diagnosis import DiagnosisCode, OutcomeSource, ReferenceDiagnosis
from serving import case_service as svc
from serving.auth import seed_demo_accounts
from serving.cli import main
from serving.db import Case, Database
from serving.db.models import AuditEvent, Outcome, Report
from serving.outcomes import OutcomeImportError, import_outcomes, reference_diagnoses
from serving.settings import get_settings
from serving.users import find_user

NOW = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)
GP, READER, SENIOR = find_user("dr-martin"), find_user("dr-bernard"), find_user("pr-dubois")
GRENOBLE_READER = find_user("dr-roux")


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("DERMTRIAGE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    db = Database(database_url)
    db.upgrade()
    yield db
    db.dispose()
    get_settings.cache_clear()


def add_case(
    database: Database,
    pseudonym: str,
    *,
    status: str = "closed",
    report_code: str | None = "naevus",
    validated: bool = True,
) -> int:
    """A case of Lyon in ``status``, with a report coded ``report_code`` (validated or not)."""
    submitted = NOW - timedelta(days=30)
    with database.session() as session:
        case = Case(
            status=status,
            submitted_at=submitted,
            updated_at=submitted,
            requester_id=GP.id,
            requester_name=GP.name,
            requester_organisation=GP.organisation,
            centre="crd-lyon",
            patient_pseudonym=pseudonym,
            questionnaire={"patient_pseudonym": pseudonym},
        )
        if status not in ("submitted", "in_review"):
            case.report = Report(
                conduct="consultation",
                interval=2,
                diagnosis="",
                diagnosis_code=report_code,
                text="Avis de l'expert.",
                author_id=READER.id,
                author_name=READER.name,
                written_at=submitted + timedelta(hours=5),
                validated_by_id=SENIOR.id if validated else None,
                validated_by_name=SENIOR.name if validated else None,
                validated_at=submitted + timedelta(hours=8) if validated else None,
            )
        session.add(case)
        session.flush()
        return case.id


def record(database: Database, case_id: int, user: Any, code: str, source: str, when: date) -> None:
    with database.session() as session:
        case = svc.get_case(session, case_id, user, for_update=True)
        svc.record_outcome(
            session, case, user, DiagnosisCode(code), OutcomeSource(source), when, NOW
        )


def count(database: Database, model: Any) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# --- recording one outcome --------------------------------------------------------------------


def test_an_outcome_is_recorded_in_the_history_and_the_audit_trail(database: Database) -> None:
    case_id = add_case(database, "PAT-1")
    record(database, case_id, READER, "melanoma", "histology", date(2026, 3, 2))

    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.status == "closed"  # the workflow does not move
        [outcome] = case.outcomes
        assert (outcome.diagnosis_code, outcome.source, outcome.outcome_date) == (
            "melanoma",
            "histology",
            date(2026, 3, 2),
        )
        assert (outcome.recorded_by_id, outcome.recorded_at) == (READER.id, NOW)
        [event] = [e for e in case.events if e.action == "outcome"]
        assert event.actor_id == READER.id
        assert event.detail == {
            "outcome_id": outcome.id,
            "diagnosis_code": "melanoma",
            "source": "histology",
            "outcome_date": "2026-03-02",
        }
        [audited] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "case.outcome")
        ).all()
        # The trail names the case and the outcome row; the diagnosis itself stays in the case.
        assert (audited.case_id, audited.actor_id) == (case_id, READER.id)
        assert audited.details == {"outcome_id": outcome.id}


def test_only_the_centres_readers_and_seniors_record_once_the_report_is_validated(
    database: Database,
) -> None:
    written = add_case(database, "PAT-2", status="report_written", validated=False)
    closed = add_case(database, "PAT-3")
    with pytest.raises(svc.ConflictError) as refused:
        record(database, written, SENIOR, "bcc", "histology", date(2026, 3, 1))
    assert refused.value.code == "outcome_before_report"
    with pytest.raises((svc.ForbiddenError, svc.CaseNotFoundError)):
        record(database, closed, GRENOBLE_READER, "bcc", "histology", date(2026, 3, 1))
    with pytest.raises(svc.ForbiddenError):
        record(database, closed, GP, "bcc", "histology", date(2026, 3, 1))
    with pytest.raises(svc.InvalidRequestError):
        record(database, closed, SENIOR, "bcc", "histology", date(2026, 3, 21))  # tomorrow
    assert count(database, Outcome) == 0
    record(database, closed, SENIOR, "bcc", "consultation", date(2026, 3, 1))
    assert count(database, Outcome) == 1


# --- the reference diagnosis each case is judged by -------------------------------------------


def test_reference_diagnoses_prefer_histology_then_the_validated_report(
    database: Database,
) -> None:
    biopsied = add_case(database, "PAT-10", report_code="naevus")
    consulted = add_case(database, "PAT-11", report_code="bcc")
    reported = add_case(database, "PAT-12", report_code="seborrhoeic_keratosis")
    unvalidated = add_case(database, "PAT-13", status="report_written", validated=False)
    old_report = add_case(database, "PAT-14", report_code=None)  # written before codes
    uncertain = add_case(database, "PAT-15", report_code="uncertain")
    record(database, biopsied, READER, "naevus", "consultation", date(2026, 2, 1))
    record(database, biopsied, READER, "melanoma", "histology", date(2026, 1, 10))
    record(database, consulted, SENIOR, "ak_bowen", "consultation", date(2026, 2, 5))

    with database.session() as session:
        references = reference_diagnoses(
            session, [biopsied, consulted, reported, unvalidated, old_report, uncertain, 999]
        )
    assert references == {
        biopsied: ReferenceDiagnosis(DiagnosisCode.MELANOMA, "histology"),
        consulted: ReferenceDiagnosis(DiagnosisCode.AK_BOWEN, "consultation"),
        reported: ReferenceDiagnosis(DiagnosisCode.SEBORRHOEIC_KERATOSIS, "expert_report"),
    }


# --- the CSV import ---------------------------------------------------------------------------


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_a_good_file_is_recorded_by_id_or_pseudonym_and_a_second_import_adds_nothing(
    database: Database,
) -> None:
    first = add_case(database, "PAT-20")
    add_case(database, "PAT-21")
    csv_text = (
        "case;diagnosis;source;date\n"
        f"{first};melanoma;histology;2026-03-02\n"
        "PAT-21;254701007;Follow-up;14/03/2026\n"  # a SNOMED CT code, a French date
    )
    with database.session() as session:
        result = import_outcomes(session, lines(csv_text), READER, NOW)
    assert (result.recorded, result.already_recorded) == (2, 0)
    with database.session() as session:
        rows = session.execute(
            select(Case.patient_pseudonym, Outcome.diagnosis_code, Outcome.source)
            .join(Outcome)
            .order_by(Case.patient_pseudonym)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("PAT-20", "melanoma", "histology"),
        ("PAT-21", "bcc", "follow_up"),
    ]
    with database.session() as session:
        again = import_outcomes(session, lines(csv_text), READER, NOW)
    assert (again.recorded, again.already_recorded) == (0, 2)
    assert count(database, Outcome) == 2


def test_every_bad_row_is_reported_by_line_and_nothing_is_imported(database: Database) -> None:
    good = add_case(database, "PAT-30")
    pending = add_case(database, "PAT-31", status="report_written", validated=False)
    add_case(database, "PAT-32")
    add_case(database, "PAT-32")  # one patient, two lesions: the pseudonym is ambiguous
    events_before = count(database, AuditEvent)
    csv_text = (
        "case,diagnosis,source,date\n"
        f"{good},melanoma,histology,2026-03-02\n"  # line 2: fine
        f"{good},mole,histology,2026-03-02\n"  # 3: unknown diagnosis
        f"{good},bcc,biopsy,2026-13-02\n"  # 4: unknown source and a bad date
        "PAT-404,bcc,histology,2026-03-02\n"  # 5: no such case
        f"{pending},bcc,histology,2026-03-02\n"  # 6: report not validated
        "PAT-32,bcc,histology,2026-03-02\n"  # 7: ambiguous pseudonym
        f"{good},bcc,histology,2027-01-01\n"  # 8: in the future
        f"{good},melanoma,histology,2026-03-02\n"  # 9: repeats line 2
        ",bcc,histology,2026-03-02\n"  # 10: no case
    )
    with pytest.raises(OutcomeImportError) as bad, database.session() as session:
        import_outcomes(session, lines(csv_text), READER, NOW)
    by_line = dict(bad.value.errors)
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "diagnosis_code" in by_line[3]
    assert "source" in by_line[4] and "outcome_date" in by_line[4]
    assert "no case 'PAT-404'" in by_line[5]
    assert "no validated report" in by_line[6]
    assert "several cases" in by_line[7]
    assert "future" in by_line[8]
    assert by_line[9] == "repeats line 2"
    assert "empty" in by_line[10]
    assert count(database, Outcome) == 0
    assert count(database, AuditEvent) == events_before


def test_a_file_without_the_columns_or_a_reader_elsewhere_is_refused(database: Database) -> None:
    case_id = add_case(database, "PAT-40")
    with pytest.raises(OutcomeImportError) as no_columns, database.session() as session:
        import_outcomes(session, lines("case,diagnosis\n1,bcc\n"), READER, NOW)
    assert no_columns.value.errors == [(1, "missing column(s): source; date or outcome_date")]
    good = f"case,diagnosis,source,date\n{case_id},bcc,histology,2026-03-02\n"
    with pytest.raises(OutcomeImportError) as elsewhere, database.session() as session:
        import_outcomes(session, lines(good), GRENOBLE_READER, NOW)
    assert elsewhere.value.errors == [(2, f"case: case {case_id} is not in your centre")]
    with pytest.raises(OutcomeImportError), database.session() as session:
        import_outcomes(session, lines(good), GP, NOW)
    assert count(database, Outcome) == 0


def test_the_command_imports_or_prints_each_bad_row_and_exits_1(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with database.session() as session:
        seed_demo_accounts(session, now=NOW, only=[READER.id])
    case_id = add_case(database, "PAT-50")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"case,diagnosis,source,date\n{case_id},bcc,histology,2026-03-02\n{case_id},x,y,z\n",
        encoding="utf-8",
    )
    assert main(["outcomes", "import", str(bad), "--as", READER.id]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3: diagnosis_code" in err and "nothing imported" in err
    assert count(database, Outcome) == 0

    good = tmp_path / "good.csv"
    good.write_text(
        f"\ufeffcase,diagnosis,source,date\n{case_id},bcc,histology,2026-03-02\n",  # Excel BOM
        encoding="utf-8",
    )
    assert main(["outcomes", "import", str(good), "--as", READER.id]) == 0
    assert "1 outcome(s) recorded" in capsys.readouterr().out
    assert count(database, Outcome) == 1
    assert main(["outcomes", "import", str(good), "--as", "nobody"]) == 2
