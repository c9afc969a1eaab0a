"""The model's intended use, enforced in the service: a clinical photo gets no malignancy score
and says why; a dermoscopic photo is scored; the pages say "AI not applicable" (FR/EN)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.modality import load_modality_model
from serving import case_service as svc
from serving.app import create_app
from serving.db.session import Database
from serving.scoring_worker import ScoringWorker
from serving.settings import Settings
from serving.storage import PhotoStore
from tests.serving.conftest import sign_in
from tests.serving.test_case_db import READER, T0, Clock, ScriptedPredictor, new_case
from tests.serving.test_worklist_pages import FORM


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'cases.db'}")
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    return PhotoStore(tmp_path / "photos")


def test_a_clinical_photo_gets_no_score_and_the_reason(
    database: Any, store: PhotoStore, clinical_holdout_photos: list[Path]
) -> None:
    case_id = new_case(database, store, clinical_holdout_photos[:1])
    model = ScriptedPredictor([0.9])
    assert ScoringWorker(database, store, lambda: model, clock=Clock()).run_once() == 1
    assert model.calls == 0  # the classifier never read the photo
    with database.session() as session:
        case = svc.get_case(session, case_id, READER)
        assert (case.status, case.scoring_state) == ("scored", "done")  # not a failure
        [row] = case.current_scores
        assert (row.p_malignant, row.uncertainty, row.probabilities) == (None, None, None)
        assert (row.domain, row.domain_reason) == ("clinical", "clinical_photo")
        assert row.modality_version == load_modality_model().version
        assert row.model_version == "scripted/1" and row.saliency_sha256 is None
        assert case.case_score is None and case.ai_not_applicable_reason == "clinical_photo"
        priority = svc.priority_of(case, T0 + timedelta(hours=2), 48)
        assert priority.reasons[0].code == "ai_not_applicable" and not priority.flagged
        [event] = [e for e in case.events if e.action == "score"]
        assert event.detail["ai_not_applicable"] == "clinical_photo"


def test_a_case_with_a_dermoscopic_photo_is_scored_on_that_photo(
    database: Any,
    store: PhotoStore,
    clinical_holdout_photos: list[Path],
    clean_photos: list[Path],
) -> None:
    case_id = new_case(database, store, [clinical_holdout_photos[1], clean_photos[0]])
    worker = ScoringWorker(database, store, lambda: ScriptedPredictor([0.7]), clock=Clock())
    assert worker.run_once() == 1
    with database.session() as session:
        case = svc.get_case(session, case_id, READER)
        clinical, dermoscopic = sorted(case.current_scores, key=lambda s: s.photo_position)
        assert clinical.p_malignant is None and clinical.domain == "clinical"
        assert dermoscopic.p_malignant == 0.7 and dermoscopic.domain == "dermoscopic"
        assert dermoscopic.ood is not None and dermoscopic.saliency_sha256 is not None
        assert case.case_score is dermoscopic and case.ai_not_applicable_reason is None
        reasons = svc.priority_of(case, T0, 48).reason_text("en")
        assert reasons.startswith("p(malignant) 0.70")


@pytest.fixture
def client(settings: Settings, real_predictor: Any) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def test_the_pages_say_ai_not_applicable_in_french_and_english(
    client: TestClient, clinical_holdout_photos: list[Path]
) -> None:
    sign_in(client, "dr-martin")
    photo = clinical_holdout_photos[2].read_bytes()
    files = [("photo_close_up", ("lesion.jpg", photo, "image/jpeg"))]
    assert client.post("/gp/requests/new", data=FORM, files=files).status_code == 303
    client.app.state.case_runtime.worker.run_once()  # type: ignore[attr-defined]
    sign_in(client, "dr-bernard")
    worklist = client.get("/worklist").text
    assert "IA non applicable : photo clinique, le modèle lit des images dermoscopiques" in worklist
    assert "data-ai-not-applicable" in worklist and "échec" not in worklist
    case_id = int(re.search(r'data-case-id="(\d+)"', worklist).group(1))  # type: ignore[union-attr]
    page = client.get(f"/cases/{case_id}").text
    assert 'id="ai-not-applicable"' in page
    assert "IA non applicable : photo clinique, le modèle lit des images dermoscopiques" in page
    english = client.get(f"/cases/{case_id}?lang=en").text
    assert "AI not applicable: clinical photo, the model reads dermoscopic images" in english
    detail = client.get(f"/api/v1/cases/{case_id}").json()
    [photo_out] = detail["photos"]
    assert photo_out["score"]["p_malignant"] is None
    assert photo_out["score"]["not_applicable_reason"] == "clinical_photo"
    assert photo_out["score"]["saliency_url"] is None


def test_the_gp_form_says_the_ai_needs_a_dermoscopic_photo_without_requiring_one(
    client: TestClient,
) -> None:
    sign_in(client, "dr-martin")
    french = client.get("/gp/requests/new").text
    assert "Le pré-tri par l'IA a besoin d'une photo dermoscopique" in french.replace("&#39;", "'")
    english = client.get("/gp/requests/new?lang=en").text
    assert "The AI pre-sort needs a dermoscopic photo" in english
    slot = re.search(r'<input type="file" id="photo-dermoscopy"[^>]*>', french)
    assert slot is not None and "required" not in slot.group(0)
