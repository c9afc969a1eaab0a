"""The audit trail seen from the service: a whole case workflow through the real API leaves one
event per read and per change (who, what, which case, which model), in one intact chain; only
auditors and admins can read it, as JSON or on the ``/audit`` page (French, or English).

Real everything: ``create_app``, SQLite with the migrations, real derm-dev photos, the real
``Predictor`` through the scoring worker, real sign-in through ``tests.serving.conftest.sign_in``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from models.segmenter import shipped_segmenter
from pipeline.quality_blur import shipped_blur_model_version
from serving import audit
from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import sign_in

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
GP, READER, SENIOR, AUDITOR, ADMIN = "dr-martin", "dr-bernard", "pr-dubois", "audit-moreau", "admin"
DATA_SCIENTIST = "ds-petit"
PSEUDONYM = "PAT-ZX81-QW"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def questionnaire() -> dict[str, Any]:
    return {
        "patient_pseudonym": PSEUDONYM,
        "age": 61,
        "sex": "female",
        "fitzpatrick": "II",
        "body_site": "back",
        "duration": "6_12_months",
        "changed_size": True,
        "bleeding": False,
        "clinical_question": "Lésion pigmentée qui s'étend, avis sur l'exérèse ?",
    }


@pytest.fixture
def client(settings: Settings, real_predictor: Any) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.clock = Clock()
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def pg_client(settings: Settings, real_predictor: Any, postgres_url: str) -> Iterator[TestClient]:
    """The same service on PostgreSQL (row lock on the chain's head, PL/pgSQL triggers)."""
    app = create_app(
        settings.model_copy(update={"scoring_worker": False, "database_url": postgres_url})
    )
    app.state.clock = Clock()
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app) as test_client:
        yield test_client


def run_workflow(client: TestClient, photo: bytes) -> int:
    """Submit, score, read every way there is, ask, answer, report, validate, export."""
    gp, reader, senior = sign_in(client, GP), sign_in(client, READER), sign_in(client, SENIOR)
    files = [("photos", ("lesion.jpg", photo, "image/jpeg"))]
    made = client.post(
        "/api/v1/cases", data={"questionnaire": json.dumps(questionnaire())}, files=files,
        headers=gp,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    case_id = made.json()["id"]
    photo_id = made.json()["photos"][0]["id"]
    client.app.state.case_runtime.worker.run_once()  # type: ignore[attr-defined]
    base = f"/api/v1/cases/{case_id}"
    steps: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = [
        ("GET", "/api/v1/cases", reader, None),
        ("GET", base, reader, None),
        ("GET", f"{base}/photos/{photo_id}", reader, None),
        ("GET", f"{base}/photos/{photo_id}/thumbnail", reader, None),
        ("GET", f"{base}/photos/{photo_id}/saliency", reader, None),
        ("GET", f"{base}/events", reader, None),
        ("GET", f"/cases/{case_id}", reader, None),  # the case page
        ("GET", "/worklist", reader, None),  # the worklist page
        ("POST", f"{base}/review", reader, None),
        ("POST", f"{base}/info-requests", reader, {"body": "Depuis quand saigne-t-elle ?"}),
        ("POST", f"{base}/answers", gp, {"body": "Depuis deux semaines environ."}),
        ("POST", f"{base}/messages", gp, {"body": "Patiente anxieuse, merci."}),
        ("PUT", f"{base}/report", reader,
         {"conduct": "consultation", "interval": 2, "diagnosis": "Naevus atypique",
          "diagnosis_code": "naevus", "text": "Exérèse conseillée en consultation."}),
        ("POST", f"{base}/report/validation", senior, None),
        ("GET", f"{base}/report.pdf", gp, None),
        ("GET", f"{base}/report.fhir.json", gp, None),
        ("GET", "/api/v1/cases", gp, None),
    ]  # fmt: skip
    for method, url, headers, body in steps:
        response = client.request(method, url, headers=headers, json=body)
        assert response.status_code in (200, 201), (url, response.text)
    return case_id


@pytest.fixture
def photo(clean_photos: list[Path]) -> bytes:
    return clean_photos[0].read_bytes()


def events_of(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    auditor = sign_in(client, AUDITOR)
    query = {"page_size": 500, **params}
    response = client.get("/api/v1/audit/events", params=query, headers=auditor)
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))  # oldest first


def test_every_read_and_change_of_a_case_is_in_the_trail_in_order(
    client: TestClient, photo: bytes
) -> None:
    case_id = run_workflow(client, photo)
    trail = [(e["actor_id"], e["action"]) for e in events_of(client, case_id=case_id)]
    assert trail == [
        (GP, "case.submit"),
        (GP, "case.photo.quality"),
        ("system", "case.score"),
        (READER, "case.read"),
        (READER, "case.photo.read"),
        (READER, "case.photo.read"),
        (READER, "case.saliency.read"),
        (READER, "case.history.read"),
        (READER, "case.read"),  # the case page
        (READER, "case.start_review"),
        (READER, "case.request_info"),
        (GP, "case.answer"),
        (GP, "case.message"),
        (READER, "case.write_report"),
        (SENIOR, "case.validate"),
        (GP, "case.export"),
        (GP, "case.export"),
    ]
    listings = events_of(client, action="*")
    worklist = [e for e in listings if e["action"] == "worklist.read"]
    assert [(e["actor_id"], e["details"]["via"], e["details"]["case_ids"]) for e in worklist] == [
        (READER, "api", [case_id]),
        (READER, "page", [case_id]),
    ]
    assert [e["actor_id"] for e in listings if e["action"] == "requests.read"] == [GP]


def test_the_same_workflow_on_postgresql_leaves_the_same_intact_trail(
    pg_client: TestClient, photo: bytes
) -> None:
    case_id = run_workflow(pg_client, photo)
    actions = [e["action"] for e in events_of(pg_client, case_id=case_id)]
    assert actions[:3] == ["case.submit", "case.photo.quality", "case.score"]
    assert actions.count("case.export") == 2 and "case.validate" in actions
    chain = pg_client.get("/api/v1/audit/chain", headers=sign_in(pg_client, AUDITOR)).json()
    assert chain["intact"] is True and chain["events"] >= 19


def test_events_say_which_model_and_carry_no_patient_data(client: TestClient, photo: bytes) -> None:
    case_id = run_workflow(client, photo)
    events = events_of(client, case_id=case_id)
    score = next(e for e in events if e["action"] == "case.score")
    assert score["model_version"] == "test-model/1"
    assert score["details"]["from"] == "submitted" and score["details"]["to"] == "scored"
    assert 0.0 <= score["details"]["p_malignant"] <= 1.0
    saliency = next(e for e in events if e["action"] == "case.saliency.read")
    assert saliency["model_version"] == "test-model/1"
    quality = next(e for e in events if e["action"] == "case.photo.quality")
    assert set(quality["details"]) == {"photo_id", "position", "acceptable", "problems", "checks"}
    assert quality["details"]["checks"] == {
        "blur_model": shipped_blur_model_version(),
        "lesion_segmenter": shipped_segmenter().version,
    }
    validate = next(e for e in events if e["action"] == "case.validate")
    # The revision validated is named: which text the senior vouched for.
    assert validate["details"] == {"from": "report_written", "to": "validated", "revision": 1}
    exports = [e["details"]["format"] for e in events if e["action"] == "case.export"]
    assert exports == ["pdf", "fhir"]
    dumped = json.dumps(events, ensure_ascii=False)
    for secret in (PSEUDONYM, "saigne", "deux semaines", "anxieuse", "Naevus", "Exérèse"):
        assert secret not in dumped


def test_the_chain_of_a_real_workflow_is_intact_and_a_tampered_row_is_named(
    client: TestClient, photo: bytes
) -> None:
    run_workflow(client, photo)
    auditor = sign_in(client, AUDITOR)
    chain = client.get("/api/v1/audit/chain", headers=auditor).json()
    assert chain["intact"] is True and chain["events"] >= 19
    first = client.get("/audit", headers=auditor).text
    assert 'data-intact="true" data-full="true"' in first
    database = client.app.state.case_runtime.database  # type: ignore[attr-defined]
    with database.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER audit_events_no_update"))
        connection.execute(text("UPDATE audit_events SET actor_id = 'dr-nguyen' WHERE seq = 5"))
    chain = client.get("/api/v1/audit/chain", headers=auditor).json()  # always the whole chain
    assert chain["intact"] is False
    assert chain["first_break"]["seq"] == 5 and chain["first_break"]["reason"] == "edited"
    between = client.get("/audit", headers=auditor).text  # the page: new events only, until...
    assert 'data-intact="true" data-full="false"' in between
    full = unescape(client.get("/audit?verify=full", headers=auditor).text)  # ...a full walk
    assert 'data-intact="false"' in full and "Chaîne rompue à l'événement 5 (edited)" in full


def test_a_refused_change_leaves_no_event(client: TestClient, photo: bytes) -> None:
    case_id = run_workflow(client, photo)
    before = len(events_of(client, case_id=case_id))
    again = client.post(
        f"/api/v1/cases/{case_id}/report/validation", headers=sign_in(client, SENIOR)
    )
    assert again.status_code == 409
    after = [e["action"] for e in events_of(client, case_id=case_id)]
    assert len(after) == before


@pytest.mark.parametrize("who", [GP, READER, SENIOR, DATA_SCIENTIST])
def test_only_auditors_and_admins_read_the_trail(client: TestClient, who: str) -> None:
    headers = sign_in(client, who)
    assert client.get("/api/v1/audit/events", headers=headers).status_code == 403
    assert client.get("/api/v1/audit/chain", headers=headers).status_code == 403
    assert client.get("/audit", headers=headers).status_code == 403


def test_nobody_signed_in_is_sent_away(settings: Settings, real_predictor: Any) -> None:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    with TestClient(app) as anonymous:
        assert anonymous.get("/api/v1/audit/events").status_code == 401
        page = anonymous.get("/audit", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_admins_read_the_trail_and_reading_it_is_recorded(client: TestClient) -> None:
    admin = sign_in(client, ADMIN)
    assert client.get("/api/v1/audit/events?actor=x", headers=admin).status_code == 200
    events = events_of(client, action="audit.read")
    first = events[0]
    assert (first["actor_id"], first["details"]) == (ADMIN, {"via": "api", "actor_id": "x"})


def test_the_audit_page_lists_filters_and_pages_in_french_and_english(
    client: TestClient, photo: bytes
) -> None:
    case_id = run_workflow(client, photo)
    auditor = sign_in(client, AUDITOR)
    page = client.get("/audit", headers=auditor)
    assert page.status_code == 200
    assert "<h1>Journal d'audit</h1>" in unescape(page.text)
    assert 'data-intact="true"' in page.text and "Chaîne intacte" in page.text
    assert '<a href="/audit" class="active">Audit</a>' in page.text  # in the navigation
    assert 'href="/audit"' not in client.get("/worklist", headers=sign_in(client, READER)).text
    by_case = client.get(f"/audit?case={case_id}&action=case.photo.read", headers=auditor)
    rows = by_case.text.count("<tr data-seq=")
    assert rows == 2 and PSEUDONYM not in by_case.text
    by_actor = client.get(f"/audit?actor={SENIOR}&action=case.*", headers=auditor).text
    assert by_actor.count("<tr data-seq=") == 1 and "case.validate" in by_actor
    day = T0.date().isoformat()
    assert client.get(f"/audit?start={day}&end={day}", headers=auditor).text.count("<tr data-seq=")
    later = (T0 + timedelta(days=400)).date().isoformat()
    empty = client.get(f"/audit?start={later}", headers=auditor)
    assert "Aucun événement ne correspond" in empty.text
    first = client.get("/audit", headers=auditor).text
    assert "Page 1 sur 1" in first
    english = client.get("/audit?lang=en", headers=auditor)  # remembered from here on
    assert "<h1>Audit trail</h1>" in english.text and "Chain intact" in english.text
    assert "Page 1 of 1" in client.get("/audit", headers=auditor).text


def test_audit_pages_are_fifty_events_long(client: TestClient) -> None:
    database = client.app.state.case_runtime.database  # type: ignore[attr-defined]
    with database.session() as session:
        for i in range(120):
            audit.record(session, audit.AuditActor("job", "system"), "case.read", case_id=i)
    auditor = sign_in(client, AUDITOR)
    second = client.get("/audit?page=2", headers=auditor).text
    assert second.count("<tr data-seq=") == 50 and "Page 2 sur 3" in second
    api = client.get("/api/v1/audit/events?page=3&page_size=50", headers=auditor).json()
    assert api["pages"] == 3 and api["total"] >= 120
