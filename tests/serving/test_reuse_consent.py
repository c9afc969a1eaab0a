"""The patient's consent to reuse the photos: asked on the GP form, no by default, kept per case.

Real application, SQLite and PostgreSQL, the form and the JSON API; the case pages show the
answer to the GP and to the expert.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.db.models import Case
from serving.settings import Settings
from tests.serving.conftest import sign_in

FORM = {
    "patient_pseudonym": "PAT-31",
    "age": "47",
    "sex": "male",
    "fitzpatrick": "III",
    "body_site": "back",
    "duration": "1_6_months",
    "clinical_question": "Lésion pigmentée récente, avis ?",
}


@pytest.fixture
def client(settings: Settings, database_url: str, real_predictor: Any) -> Iterator[TestClient]:
    app = create_app(
        settings.model_copy(update={"scoring_worker": False, "database_url": database_url})
    )
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def photo(clean_photos: list[Path]) -> bytes:
    return clean_photos[0].read_bytes()


def send_form(client: TestClient, photo: bytes, **changes: str) -> int:
    sign_in(client, "dr-martin")
    files = [("photo_close_up", ("lesion.jpg", photo, "image/jpeg"))]
    response = client.post("/gp/requests/new", data={**FORM, **changes}, files=files)
    assert response.status_code == 303, response.text
    listing = client.get("/gp/requests").text
    return max(int(i) for i in re.findall(r'data-case-id="(\d+)"', listing))


def stored_consent(client: TestClient, case_id: int) -> bool:
    with client.app.state.case_runtime.database.session() as session:  # type: ignore[attr-defined]
        case = session.get(Case, case_id)
        assert case is not None
        assert "reuse_consent" not in case.questionnaire  # one place for it: the case's column
        return case.reuse_consent


def test_the_form_asks_with_the_box_unticked_and_an_unticked_box_records_no(
    client: TestClient, photo: bytes
) -> None:
    sign_in(client, "dr-martin")
    form = client.get("/gp/requests/new").text
    box = re.search(r'<input type="checkbox" name="reuse_consent"[^>]*>', form)
    assert box is not None and "checked" not in box.group(0)
    assert "accepte que ses photos soient réutilisées" in form
    case_id = send_form(client, photo)
    assert stored_consent(client, case_id) is False
    assert "Non (pas d'accord du patient)" in html.unescape(
        client.get(f"/gp/requests/{case_id}").text
    )


def test_a_ticked_box_records_yes_and_the_expert_sees_it(client: TestClient, photo: bytes) -> None:
    case_id = send_form(client, photo, reuse_consent="on")
    assert stored_consent(client, case_id) is True
    sign_in(client, "dr-bernard")
    page = client.get(f"/cases/{case_id}?lang=en").text
    assert re.search(
        r'id="reuse-consent"><th>Reuse of the photos</th><td>Agreed by the patient', page
    )


def test_the_api_takes_it_in_the_questionnaire_and_answers_with_it(
    client: TestClient, photo: bytes
) -> None:
    headers = sign_in(client, "dr-martin")

    def submit(**answers: Any) -> Any:
        body = {"questionnaire": json.dumps({**FORM, **answers})}
        files = [("photos", ("p.jpg", photo, "image/jpeg"))]
        return client.post("/api/v1/cases", data=body, files=files, headers=headers)

    agreed = submit(reuse_consent=True)
    assert agreed.status_code == 201, agreed.text
    assert agreed.json()["reuse_consent"] is True
    assert stored_consent(client, agreed.json()["id"]) is True
    silent = submit()
    assert silent.status_code == 201 and silent.json()["reuse_consent"] is False
    refused = submit(reuse_consent="perhaps")
    assert refused.status_code == 422
    assert "reuse_consent" in json.dumps(refused.json())
