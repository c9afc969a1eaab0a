"""The case pages, server-side: who gets which page, languages, forms and their errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.case_texts import TEXTS
from serving.settings import Settings
from serving.users import DEMO_PASSWORD
from tests.serving.conftest import sign_in


@pytest.fixture
def client(settings: Settings, real_predictor: Any) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


FORM = {
    "patient_pseudonym": "PAT-77",
    "age": "61",
    "sex": "female",
    "fitzpatrick": "II",
    "body_site": "back",
    "duration": "1_6_months",
    "changed_size": "on",
    "clinical_question": "Lésion pigmentée qui grandit : mélanome ?",
}


def send_form(client: TestClient, photo: bytes | None, **changes: str) -> Any:
    files = [("photo_close_up", ("lesion.jpg", photo, "image/jpeg"))] if photo else []
    files.append(("photo_wide", ("", b"", "application/octet-stream")))  # an empty slot
    return client.post("/gp/requests/new", data={**FORM, **changes}, files=files)


def test_every_text_exists_in_both_languages() -> None:
    assert set(TEXTS["fr"]) == set(TEXTS["en"])


def test_pages_send_strangers_to_sign_in(client: TestClient) -> None:
    for path in ("/worklist", "/cases/1", "/gp/requests", "/gp/requests/new", "/stats"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


def test_sign_in_goes_to_the_users_home_and_never_off_site(client: TestClient) -> None:
    sign_in(client, "dr-bernard")
    assert client.get("/worklist").status_code == 200
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    back = client.post(
        "/login",
        data={"login": "dr-bernard", "password": DEMO_PASSWORD, "csrf_token": token,
              "next": "//evil.example"},
    )  # fmt: skip
    assert back.headers["location"] == "/worklist"  # no open redirect


def test_french_by_default_english_on_request(client: TestClient) -> None:
    sign_in(client, "dr-bernard")
    assert "<h1>File de lecture</h1>" in client.get("/worklist").text
    english = client.get("/worklist?lang=en")
    assert "<h1>Worklist</h1>" in english.text
    assert "<h1>Worklist</h1>" in client.get("/worklist").text  # remembered


def test_each_role_is_refused_the_other_roles_pages(client: TestClient) -> None:
    sign_in(client, "dr-martin")
    assert client.get("/worklist").status_code == 403
    assert client.get("/stats").status_code == 403
    sign_in(client, "pr-dubois")
    assert client.get("/gp/requests/new").status_code == 403


def test_a_gp_submits_a_request_and_the_expert_reads_it(
    client: TestClient, clean_photos: list[Path]
) -> None:
    sign_in(client, "dr-martin")
    form = client.get("/gp/requests/new")
    # Who sends it is shown from the signed-in GP's account, read-only: no field to fill.
    assert '<dd id="requester-rpps">10101234564</dd>' in form.text
    assert '<dd id="requester-organisation">Cabinet médical des Lilas, Lyon</dd>' in form.text
    assert 'name="requester_' not in form.text
    response = send_form(client, clean_photos[0].read_bytes())
    assert response.status_code == 303 and response.headers["location"] == "/gp/requests?done=sent"
    listing = client.get("/gp/requests?done=sent").text
    assert "PAT-77" in listing and "Demande envoyée" in listing
    case_id = int(re.search(r'data-case-id="(\d+)"', listing).group(1))  # type: ignore[union-attr]
    assert "PAT-77" in client.get(f"/gp/requests/{case_id}").text

    sign_in(client, "dr-bernard")
    worklist = client.get("/worklist").text
    assert "PAT-77" in worklist and "taille modifiée" in worklist
    assert "pas encore scoré" in worklist
    page = client.get(f"/cases/{case_id}")
    assert page.status_code == 200 and "Commencer la lecture" in page.text
    assert client.post(f"/cases/{case_id}/review").status_code == 303
    reviewing = client.get(f"/cases/{case_id}").text
    assert 'data-status="in_review"' in reviewing and 'id="report-form"' in reviewing


def test_a_faulty_request_is_shown_again_with_its_errors_and_values(
    client: TestClient, clean_photos: list[Path]
) -> None:
    sign_in(client, "dr-martin")
    response = send_form(client, clean_photos[0].read_bytes(), age="150")
    assert response.status_code == 422
    assert "Doit être au plus 120." in response.text
    assert 'value="PAT-77"' in response.text  # what the GP typed is kept
    no_photo = send_form(client, None)
    assert no_photo.status_code == 422 and "Joignez de 1 à 5 photos." in no_photo.text
    sign_in(client, "dr-bernard")
    assert "PAT-77" not in client.get("/worklist").text


def test_a_report_with_errors_is_shown_again_on_the_case_page(
    client: TestClient, clean_photos: list[Path]
) -> None:
    sign_in(client, "dr-martin")
    send_form(client, clean_photos[0].read_bytes())
    sign_in(client, "dr-bernard")
    client.post("/cases/1/review")
    response = client.post("/cases/1/report", data={"conduct": "monitor", "text": "Surveiller."})
    assert response.status_code == 422
    assert "Délai entre 1 et 24 requis." in response.text
    assert "Choisissez le diagnostic dans la liste." in response.text
    assert "Surveiller." in response.text
    saved = client.post(
        "/cases/1/report",
        data={
            "conduct": "monitor",
            "interval": "6",
            "diagnosis_code": "naevus",
            "text": "Naevus banal, surveiller.",
        },
    )
    assert saved.status_code == 303
    assert "Surveiller et renvoyer des photos dans 6 mois" in client.get("/cases/1").text


def test_the_statistics_page_draws_its_chart(client: TestClient, clean_photos: list[Path]) -> None:
    sign_in(client, "dr-martin")
    send_form(client, clean_photos[0].read_bytes())
    sign_in(client, "pr-dubois")
    page = client.get("/stats")
    assert page.status_code == 200
    assert "<svg" in page.text and "Demandes reçues par semaine" in page.text
    assert "cdn" not in page.text.lower()


def test_assets_are_served_locally(client: TestClient) -> None:
    sign_in(client, "dr-bernard")
    page = client.get("/worklist").text
    for asset in ("/static/cases.css", "/static/cases.js"):
        assert client.get(asset).status_code == 200
    assert 'href="/static/cases.css"' in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN


def test_the_gp_page_shows_the_request_but_not_the_triage(
    client: TestClient, clean_photos: list[Path]
) -> None:
    sign_in(client, "dr-martin")
    send_form(client, clean_photos[0].read_bytes())
    client.app.state.case_runtime.worker.run_once()  # type: ignore[attr-defined]
    page = client.get("/gp/requests/1").text
    assert "PAT-77" in page and "Lésion pigmentée qui grandit" in page
    assert "test-model/1" not in page and "p(malin)" not in page and "saliency" not in page
    sign_in(client, "dr-leroy")
    assert client.get("/gp/requests/1").status_code == 404  # another GP's case


def test_the_form_speaks_english_when_asked(client: TestClient, clean_photos: list[Path]) -> None:
    sign_in(client, "dr-martin")
    client.get("/gp/requests/new?lang=en")
    response = send_form(client, clean_photos[0].read_bytes(), age="")
    assert response.status_code == 422
    assert "A whole number is expected." in response.text
    assert "New request for an opinion" in response.text


def test_a_forged_identity_in_the_form_is_not_the_requester(
    client: TestClient, clean_photos: list[Path]
) -> None:
    """Issue 13, finding 4, through the page: fields naming a colleague posted with the form set
    nothing; the case is the signed-in GP's and the experts' page names her."""
    sign_in(client, "dr-martin")
    forged = {"requester_name": "Dr Paul Leroy", "requester_rpps": "10109876549",
              "requester_organisation": "Maison de santé de Villeurbanne"}  # fmt: skip
    assert send_form(client, clean_photos[0].read_bytes(), **forged).status_code == 303
    sign_in(client, "dr-bernard")
    worklist = client.get("/worklist").text
    case_id = int(re.search(r'data-case-id="(\d+)"', worklist).group(1))  # type: ignore[union-attr]
    page = client.get(f"/cases/{case_id}").text
    assert "Dr Claire Martin" in page and '<span id="requester-rpps">10101234564</span>' in page
    assert "Leroy" not in page and "Villeurbanne" not in page and "Leroy" not in worklist
