"""Real-world figures from the database, on SQLite and PostgreSQL, against hand-computed values.

The same four Lyon cases as ``tests/pipeline/test_real_world.py``'s queue fixture, now stored as
rows (case, photo, champion score of version 1, shadow score of version 2, outcomes, reports):

    case  arrives  first read  v1 score  v2 (shadow)  reference
    A     0 h      10 h        0.30      0.20         naevus, follow-up
    B     1 h       2 h        0.80      0.30         melanoma, histology
    C     3 h       5 h        0.50      0.60         BCC, consultation
    D     4 h      20 h        0.10      0.05         naevus, validated expert report

Version 1 calls B and C (p >= 0.40) and nothing benign: sensitivity, specificity, NPV and AUROC
1; both cancers were first in their queue; they waited 1 and 2 h (median 1.5) where first come,
first served would have made them wait 4 and 7 h (median 5.5): 4 h sooner. Version 2 on the same
cases misses B (0.30): sensitivity 1/2, NPV 2/3, AUROC still 1.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from serving.app import create_app
from serving.db import Case, Database
from serving.db.models import AuditEvent, Outcome, Photo, Report, Score
from serving.governance_real_world import (
    ALERT_ACTION,
    record_alert,
    version_real_world,
    wait_for_refreshes,
)
from serving.settings import get_settings
from serving.users import find_user
from tests.serving.conftest import sign_in
from tests.serving.test_cli_governance_check import champion, seed_cases, store  # noqa: F401

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=20)
MODEL = "dermtriage-classifier"
READER, SENIOR = find_user("dr-bernard"), find_user("pr-dubois")
AUDITOR = find_user("audit-moreau")


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.upgrade()
    yield db
    db.dispose()


def add_case(
    db: Database,
    name: str,
    arrives: float,
    read: float,
    v1: float,
    v2: float | None,
    outcome: tuple[str, str] | None,
    report_code: str,
) -> int:
    submitted = T0 + timedelta(hours=arrives)
    with db.session() as session:
        case = Case(
            status="closed",
            submitted_at=submitted,
            updated_at=submitted,
            requester_id="dr-martin",
            requester_name="Dr Claire Martin",
            requester_organisation="Cabinet",
            centre="crd-lyon",
            patient_pseudonym=f"RW-{name}",
            questionnaire={"fitzpatrick": "II", "body_site": "back", "age": 61},
            scoring_state="done",
            first_read_at=T0 + timedelta(hours=read),
            closed_at=NOW - timedelta(days=1),
        )
        photo = Photo(
            position=0, kind="dermoscopy", sha256="0" * 64, mime="image/jpeg", width=224,
            height=224, size_bytes=1000, thumbnail_sha256="1" * 64, quality_acceptable=True,
            created_at=submitted,
        )  # fmt: skip
        case.photos.append(photo)
        session.add(case)
        session.flush()
        for version, p, role in ((1, v1, "champion"), (2, v2, "shadow")):
            if p is None:
                continue
            session.add(
                Score(
                    case=case, photo_id=photo.id, photo_position=0,
                    model_version=f"{MODEL}/{version}", p_malignant=p, uncertainty=0.0,
                    predicted_class="nv", superseded=False, role=role,
                    created_at=submitted + timedelta(minutes=1 + version),
                )
            )  # fmt: skip
        case.report = Report(
            conduct="monitor", interval=6, diagnosis="", diagnosis_code=report_code, text="Avis.",
            author_id=READER.id, author_name=READER.name,
            written_at=T0 + timedelta(hours=read + 1), validated_by_id=SENIOR.id,
            validated_by_name=SENIOR.name, validated_at=T0 + timedelta(hours=read + 2),
        )  # fmt: skip
        if outcome is not None:
            session.add(
                Outcome(
                    case=case, diagnosis_code=outcome[0], source=outcome[1],
                    outcome_date=date(2026, 3, 15), recorded_by_id=READER.id,
                    recorded_by_name=READER.name, recorded_at=NOW - timedelta(days=2),
                )
            )  # fmt: skip
        session.flush()
        return case.id


def seed_fixture(db: Database) -> None:
    add_case(db, "A", 0, 10, 0.30, 0.20, ("naevus", "follow_up"), "naevus")
    add_case(db, "B", 1, 2, 0.80, 0.30, ("melanoma", "histology"), "naevus")
    add_case(db, "C", 3, 5, 0.50, 0.60, ("bcc", "consultation"), "bcc")
    add_case(db, "D", 4, 20, 0.10, 0.05, None, "naevus")


def report(db: Database, version: str = "1", **kwargs):
    with db.session() as session:
        return version_real_world(
            session, MODEL, version, registered=kwargs.pop("registered", {}), now=NOW,
            deadline_hours=48.0, **kwargs,
        )  # fmt: skip


def test_the_champion_figures_from_the_database_match_the_hand_computed_values(database):
    seed_fixture(database)
    found = report(database, challenger="2")
    overall = found.figures.overall
    assert (overall.n_cases, overall.n_malignant) == (4, 2)
    assert dict(found.sources) == {
        "follow_up": 1,
        "histology": 1,
        "consultation": 1,
        "expert_report": 1,
    }
    assert overall.auroc.value == overall.sensitivity.value == 1.0
    assert overall.specificity.value == overall.npv.value == 1.0
    assert overall.first_fifth.value == 1.0 and overall.first_fifth.n == 2
    assert overall.hours_to_first_reading.value == pytest.approx(1.5)
    assert overall.hours_fcfs.value == pytest.approx(5.5)
    assert overall.triage_benefit_hours.value == pytest.approx(4.0)
    by_group = {(s.dimension, s.value): s.figures.n_cases for s in found.figures.subgroups}
    assert by_group[("centre", "crd-lyon")] == 4 and by_group[("age_band", "60-74")] == 4
    assert by_group[("photo_domain", "dermoscopy")] == 4
    challenger = found.challenger_figures
    assert found.challenger == "2" and challenger.n_cases == 4
    assert challenger.sensitivity.value == pytest.approx(0.5)
    assert challenger.npv.value == pytest.approx(2 / 3)
    assert challenger.auroc.value == 1.0
    assert challenger.first_fifth.value == 1.0
    assert challenger.hours_to_first_reading.value is None  # it ordered no worklist
    assert found.alert is None


def test_an_outcome_arriving_changes_the_figures(database):
    seed_fixture(database)
    before = report(database).figures.overall
    with database.session() as session:
        case_id = session.scalar(select(Case.id).where(Case.patient_pseudonym == "RW-D"))
        session.add(
            Outcome(
                case_id=case_id, diagnosis_code="melanoma", source="histology",
                outcome_date=date(2026, 3, 18), recorded_by_id=READER.id,
                recorded_by_name=READER.name, recorded_at=NOW,
            )
        )  # fmt: skip
    after = report(database).figures.overall
    assert before.n_malignant == 2 and after.n_malignant == 3
    assert after.sensitivity.value == pytest.approx(2 / 3)  # D scored 0.10: missed


def test_a_weak_live_sensitivity_raises_an_alert_audited_once(database):
    seed_fixture(database)
    for k in range(12):
        add_case(database, f"M{k}", 30 + k, 31 + k, 0.10, None, ("melanoma", "histology"), "bcc")
    found = report(database, registered={"sens_at_95_spec": 0.72, "malignant_auroc": 0.94})
    assert found.figures.overall.sensitivity.value == pytest.approx(2 / 14)
    assert found.alert is not None and found.alert.live.high < 0.72
    with database.session() as session:
        assert record_alert(session, AUDITOR, found, at=NOW)
        assert not record_alert(session, AUDITOR, found, at=NOW)  # same evidence: once
    with database.session() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == ALERT_ACTION)).all()
        assert len(events) == 1 and events[0].model_version == f"{MODEL}/1"
        assert events[0].details["n_malignant"] == 14
        assert session.scalar(select(func.count()).select_from(Outcome)) == 15


def test_a_page_after_new_data_reads_the_stored_figures_while_they_are_recomputed(database):
    """The pages never wait for the computation: after an outcome they get the figures stored
    before it, marked as being recomputed, and the recomputed ones once ready."""
    seed_fixture(database)
    first = report(database, stale_ok=True)
    assert first.computed_at == NOW and not first.refreshing
    assert report(database, stale_ok=True) is first  # same data: the stored result itself
    with database.session() as session:
        case_id = session.scalar(select(Case.id).where(Case.patient_pseudonym == "RW-D"))
        session.add(
            Outcome(
                case_id=case_id, diagnosis_code="melanoma", source="histology",
                outcome_date=date(2026, 3, 18), recorded_by_id=READER.id,
                recorded_by_name=READER.name, recorded_at=NOW,
            )
        )  # fmt: skip
    stale = report(database, stale_ok=True)
    assert stale.refreshing and stale.figures.overall.n_malignant == 2
    assert wait_for_refreshes(timeout=60)
    fresh = report(database, stale_ok=True)
    assert not fresh.refreshing and fresh.figures.overall.n_malignant == 3


# --- the pages: the landing page's banner, the dossier's link, French and English ------------
#
# The store of test_cli_governance_check (a real local MLflow store, one tiny logged model)
# with a champion registered under its own name and figure, sixteen closed cases it scored
# (live sensitivity 2/14, 95 % interval far below 0.90 and above 0.05), and the application
# itself read through its test client as the auditor.


def governance_client(
    request: pytest.FixtureRequest, figures: dict[str, float], database_url: str, monkeypatch
) -> Iterator[tuple[TestClient, str]]:
    name = champion(request.getfixturevalue("store"), figures, database_url, monkeypatch)
    seed_cases(database_url, f"{name}/1")
    settings = get_settings().model_copy(update={"scoring_worker": False})
    with TestClient(create_app(settings)) as client:
        sign_in(client, "audit-moreau")
        yield client, name
    assert wait_for_refreshes(timeout=60)


@pytest.fixture
def alerting(request, database_url, monkeypatch) -> Iterator[tuple[TestClient, str]]:
    """The champion was registered with a test sensitivity of 0.90 at the operating point."""
    figures = {"sens_at_operating_point": 0.90}
    yield from governance_client(request, figures, database_url, monkeypatch)


@pytest.fixture
def within(request, database_url, monkeypatch) -> Iterator[tuple[TestClient, str]]:
    """The champion was registered with 0.05: the live 2/14 is no worse."""
    figures = {"sens_at_operating_point": 0.05}
    yield from governance_client(request, figures, database_url, monkeypatch)


def test_the_landing_page_carries_a_banner_when_a_version_in_service_alerts(alerting):
    client, name = alerting
    page = client.get("/governance")
    assert page.status_code == 200, page.text[:300]
    banner = page.text.split('id="real-world-alert-1"')[1].split("</div>")[0]
    assert "sensibilité 0.143" in banner and "14 cancers" in banner  # French by default
    assert "sens_at_operating_point 0.900" in banner
    assert 'href="/governance/versions/1/real-world"' in banner
    english = html.unescape(client.get("/governance?lang=en").text)
    assert "catches fewer cancers on the centre's patients" in english
    # Seeing the alert is an audited event, as on the real-world page (once for this evidence).
    assert client.get("/governance").status_code == 200
    events = client.get(
        "/api/v1/audit/events",
        params={"action": ALERT_ACTION},
        headers=sign_in(client, "audit-moreau"),
    ).json()
    assert [e["model_version"] for e in events["items"]] == [f"{name}/1"]


def test_no_banner_while_the_live_sensitivity_holds_its_registered_figure(within):
    client, _ = within
    page = client.get("/governance")
    assert page.status_code == 200 and 'id="real-world-alert-' not in page.text
    assert 'id="real-world-alert"' not in client.get("/governance/versions/1/real-world").text


def test_each_version_dossier_links_to_its_real_world_page(alerting):
    client, _ = alerting
    dossier = client.get("/governance/versions/1")
    assert dossier.status_code == 200, dossier.text[:300]
    link = dossier.text.split('id="real-world-link"')[0].rsplit("<a ", 1)[1]
    assert 'href="/governance/versions/1/real-world"' in link
    assert client.get("/governance/versions/1/real-world").status_code == 200


def test_the_real_world_page_speaks_french_by_default_and_english_when_asked(alerting):
    client, _ = alerting
    french = html.unescape(client.get("/governance/versions/1/real-world").text)
    for text in (
        "Performances en conditions réelles : version 1",
        "16 cas confirmés, 14 cancers",
        "Compte rendu validé 16",
        "Sensibilité au point de fonctionnement",
        "Valeur prédictive négative",
        "Par sous-groupe",
        "Tranche d'âge",
        "la sensibilité sur les patients du centre est de 0.143",
        "Retour au dossier de la version",
    ):
        assert text in french, text
    assert "Real-world performance" not in french and "Negative predictive value" not in french
    english = html.unescape(client.get("/governance/versions/1/real-world?lang=en").text)
    for text in (
        "Real-world performance: version 1",
        "16 confirmed cases, 14 cancers",
        "Validated report 16",
        "Sensitivity at the operating point",
        "Negative predictive value",
        "By subgroup",
        "Age band",
        "the live sensitivity is 0.143",
        "Back to the version's dossier",
    ):
        assert text in english, text
    assert "Valeur prédictive négative" not in english
