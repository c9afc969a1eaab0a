"""The whole journey in a real browser (Debian's Chromium through Playwright), on a live server.

A GP submits a case with photos; it appears in the worklist above a lower-risk case once the
background worker has scored it with a real trained model, loaded by the service's own loader
from a real MLflow registry (the suite's shared tiny training run); the reading dermatologist asks a
question, the GP answers, the dermatologist writes the report, a senior validates it, and the GP
sees the answer and downloads its PDF. The GP's form shows who sends the request from the account,
read-only, and nothing the GP sees (pages, PDF) carries the model's output. The loop then closes:
the histology comes back, the reader records it on the case page, and the auditor's real-world
figures for the model version count one more confirmed cancer, now proven by histology.
Screenshots of each step go to ``$DERMTRIAGE_SCREENSHOTS`` when that variable names a folder.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image
from pypdf import PdfReader

from serving.app import create_app
from serving.settings import Settings
from serving.users import DEMO_PASSWORD
from tests.serving.conftest import seed_accounts, sign_in_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = (
    Path(os.environ["DERMTRIAGE_SCREENSHOTS"]) if os.environ.get("DERMTRIAGE_SCREENSHOTS") else None
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MODEL_URI = "models:/dermtriage-classifier/1"


@pytest.fixture
def predictor(tiny_run: Any) -> Any:
    """The registered tiny model, as the service loads it."""
    from models.predictor import Predictor

    return Predictor.load(MODEL_URI, tracking_uri=tiny_run.tracking_uri)


@pytest.fixture
def live_server(settings: Settings, tiny_run: Any) -> Iterator[str]:
    """The real application on a loopback port, its scoring worker loading the registered model."""
    app = create_app(
        settings.model_copy(
            update={
                "scoring_worker": True,
                "scoring_poll_seconds": 0.2,
                "mlflow_tracking_uri": tiny_run.tracking_uri,
                "model_uri": MODEL_URI,
            }
        )
    )
    seed_accounts(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def _ranked(photos: list[Path], predictor: Any) -> list[Path]:
    """The photos from least to most suspicious according to the predictor."""
    images = []
    for path in photos:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    scores = [p.p_malignant for p in predictor.predict(images)]
    return [path for _, path in sorted(zip(scores, photos, strict=True))]


def _api_token(base: str, user_id: str) -> str:
    issued = httpx.post(
        f"{base}/api/v1/auth/token",
        json={"login": user_id, "password": DEMO_PASSWORD},
        timeout=60,  # password hashing is slow on a busy machine
    )
    assert issued.status_code == 200, issued.text
    return str(issued.json()["access_token"])


def _submit_by_api(base: str, photo: Path) -> int:
    """A lower-risk case sent earlier by another GP, through the JSON API."""
    questionnaire = {
        "patient_pseudonym": "PAT-EARLIER",
        "age": 34,
        "sex": "male",
        "fitzpatrick": "III",
        "body_site": "trunk",
        "duration": "over_5_years",
        "clinical_question": "Naevus ancien, contrôle demandé par le patient.",
    }
    import json

    response = httpx.post(
        f"{base}/api/v1/cases",
        data={"questionnaire": json.dumps(questionnaire)},
        files=[("photos", ("naevus.jpg", photo.read_bytes(), "image/jpeg"))],
        headers={"Authorization": f"Bearer {_api_token(base, 'dr-leroy')}"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _real_world(page: Any, base: str) -> tuple[int, int, str]:
    """What the auditor reads on version 1's real-world page: the number of confirmed cases (the
    AUROC's n), of cancers among them (the sensitivity's n), and the line naming the sources."""
    page.goto(f"{base}/governance/versions/1/real-world")

    def n(figure: str) -> int:
        # label, value, 95 % interval, n: the version's own columns come first.
        return int(page.locator(f"tr[data-figure='{figure}'] td").nth(3).inner_text())

    return n("auroc"), n("sensitivity"), page.locator("#real-world-counts").inner_text()


def _real_world_once(
    page: Any, base: str, shows: Callable[[tuple[int, int, str]], bool]
) -> tuple[int, int, str]:
    """The auditor's figures once they show what ``shows`` looks for: the service recomputes its
    stored figures in the background after new data, so the auditor reloads until they do."""
    deadline = time.monotonic() + 90
    while True:
        found = _real_world(page, base)
        if shows(found):
            return found
        assert time.monotonic() < deadline, f"the auditor's figures did not follow: {found}"
        time.sleep(1)


def shot(page: Any, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_whole_journey(
    live_server: str, chromium_executable: str, clean_photos: list[Path], predictor: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = live_server
    ranked = _ranked(clean_photos, predictor)
    low_risk, high_risk = ranked[0], ranked[-1]
    earlier = _submit_by_api(base, low_risk)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=["--no-sandbox"]
        )
        contexts = {
            name: browser.new_context(locale="fr-FR", viewport={"width": 1360, "height": 900})
            for name in ("gp", "reader", "senior", "auditor")
        }
        gp, reader, senior, auditor = (
            contexts[n].new_page() for n in ("gp", "reader", "senior", "auditor")
        )
        for page in (gp, reader, senior, auditor):
            page.set_default_timeout(30_000)

        # 0. The auditor's real-world figures for the model version before the journey.
        sign_in_page(auditor, base, "audit-moreau")
        cases_before, cancers_before, _ = _real_world(auditor, base)

        # 1. The GP fills in the request, gets the instant quality verdict, and sends it.
        sign_in_page(gp, base, "dr-martin")
        expect(gp.locator("h1")).to_have_text("Mes demandes d'avis")
        gp.click("text=Nouvelle demande")
        # Who sends it comes from her account, shown read-only: no field to fill in.
        expect(gp.locator("#requester-name")).to_have_text("Dr Claire Martin")
        expect(gp.locator("#requester-rpps")).to_have_text("10101234564")
        expect(gp.locator("input[name^='requester']")).to_have_count(0)
        gp.fill("#f-patient_pseudonym", "PAT-JOURNEY")
        gp.fill("#f-age", "67")
        gp.select_option("#f-sex", "female")
        gp.select_option("#f-fitzpatrick", "II")
        gp.select_option("#f-body_site", "back")
        gp.select_option("#f-duration", "1_6_months")
        gp.check("#f-changed_size")
        gp.check("#f-bleeding")
        gp.fill(
            "#f-clinical_question", "Lésion pigmentée du dos qui grandit et saigne : mélanome ?"
        )
        gp.set_input_files("#photo-close_up", str(high_risk))
        gp.set_input_files("#photo-dermoscopy", str(high_risk))
        verdicts = gp.locator("[data-quality-verdict]")
        expect(verdicts).to_have_count(2)
        expect(verdicts.first).to_have_attribute("data-acceptable", "true")
        expect(verdicts.first).to_contain_text("Photo exploitable")
        shot(gp, "1-gp-new-request")
        gp.click("#submit-request")
        expect(gp.locator(".alert.ok")).to_contain_text("Demande envoyée")
        row = gp.locator("tr", has_text="PAT-JOURNEY")
        expect(row).to_be_visible()
        case_id = int(row.get_attribute("data-case-id") or 0)
        assert case_id and case_id != earlier

        # 2. The reader's worklist: once scored, the GP's case sits above the lower-risk one.
        sign_in_page(reader, base, "dr-bernard")
        expect(reader.locator("h1")).to_have_text("File de lecture")
        rows = reader.locator("table.worklist tbody tr")
        deadline = time.monotonic() + 120
        while True:
            reader.reload()
            ids = [int(r.get_attribute("data-case-id") or 0) for r in rows.all()]
            scored = reader.locator(f"tr[data-case-id='{case_id}'] .score").count()
            if scored and reader.locator(f"tr[data-case-id='{earlier}'] .score").count():
                break
            assert time.monotonic() < deadline, "the cases were not scored in time"
            time.sleep(0.5)
        assert ids.index(case_id) < ids.index(earlier)
        expect(reader.locator(f"tr[data-case-id='{case_id}'] .reasons")).to_contain_text(
            "taille modifiée"
        )
        shot(reader, "2-worklist")

        # 3. The reader opens the case, starts reading and asks the GP a question.
        reader.click(f"tr[data-case-id='{case_id}'] a")
        expect(reader.locator("#model-version")).to_have_text("dermtriage-classifier/1")
        expect(reader.locator("#requester")).to_contain_text("Dr Claire Martin")
        expect(reader.locator("#requester-rpps")).to_have_text("10101234564")
        reader.click("#start-review")
        expect(reader.locator("#case-status")).to_have_attribute("data-status", "in_review")
        reader.locator(".photo-card .toggle button[data-view='saliency']").first.click()
        expect(reader.locator(".photo-card.saliency")).to_have_count(1)
        reader.fill(
            "#question", "Depuis quand la lésion saigne-t-elle ? Y a-t-il eu un traumatisme ?"
        )
        reader.click("#ask-question")
        expect(reader.locator("#case-status")).to_have_attribute("data-status", "info_requested")
        shot(reader, "3-case-question")

        # 4. The GP sees the question and answers it.
        gp.goto(f"{base}/gp/requests/{case_id}")
        expect(gp.locator(".alert.warn")).to_be_visible()
        expect(gp.locator(".msg[data-kind='info_request']")).to_contain_text("Depuis quand")
        gp.fill("#answer-body", "Depuis trois semaines, sans traumatisme.")
        gp.click("#send-answer")
        expect(gp.locator("#case-status")).to_have_attribute("data-status", "answered")

        # 5. The reader reads the answer and writes the report.
        reader.reload()
        expect(reader.locator(".msg[data-kind='answer']")).to_contain_text("trois semaines")
        reader.check("input[name='conduct'][value='consultation']")
        reader.fill("#interval", "2")
        reader.select_option("#diagnosis-code", "melanoma")
        reader.fill("#diagnosis", "Suspicion de mélanome")
        reader.fill(
            "#report-text", "Lésion asymétrique qui saigne : exérèse à prévoir sous 15 jours."
        )
        reader.click("#save-report")
        expect(reader.locator("#case-status")).to_have_attribute("data-status", "report_written")

        # 6. A senior validates it.
        sign_in_page(senior, base, "pr-dubois")
        senior.goto(f"{base}/cases/{case_id}")
        senior.click("#validate-report")
        expect(senior.locator("#case-status")).to_have_attribute("data-status", "validated")
        shot(senior, "4-validated")
        # The validated report is the case's reference until an outcome comes back.
        validated_cases, validated_cancers, by_report = _real_world_once(
            auditor, base, lambda found: found[0] > cases_before
        )
        assert (validated_cases, validated_cancers) == (cases_before + 1, cancers_before + 1)

        # 7. The GP sees the answer and downloads its PDF.
        gp.goto(f"{base}/gp/requests")
        expect(gp.locator(f"tr[data-case-id='{case_id}']")).to_contain_text(
            "Consultation dermatologique sous 2 semaines"
        )
        gp.goto(f"{base}/gp/requests/{case_id}")
        expect(gp.locator("#model-version")).to_have_count(0)
        assert "dermtriage-classifier" not in gp.content()
        expect(gp.locator("#answer")).to_contain_text("Suspicion de mélanome")
        expect(gp.locator("#answer")).to_contain_text("Validé par Pr Hélène Dubois")
        shot(gp, "5-gp-answer")
        pdf = gp.request.get(base + (gp.locator("#download-pdf").get_attribute("href") or ""))
        assert pdf.ok and pdf.body().startswith(b"%PDF")
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.body())).pages)
        assert "Suspicion de mélanome" in text and "dermtriage-classifier" not in text
        assert "Mélanome (SNOMED CT 93655004)" in text
        expect(gp.locator("#report-diagnosis-code")).to_contain_text("Mélanome")

        # 8. The histology comes back: the reader records the outcome on the case page.
        reader.goto(f"{base}/cases/{case_id}")
        expect(reader.locator("#no-outcome")).to_be_visible()
        reader.select_option("#outcome-diagnosis", "melanoma")
        reader.select_option("#outcome-source", "histology")
        reader.fill("#outcome-date", datetime.now(UTC).date().isoformat())
        reader.click("#save-outcome")
        expect(reader.locator("#outcome-list .outcome")).to_have_count(1)
        expect(reader.locator("#outcome-list")).to_contain_text("Mélanome · Histologie")

        # 9. The auditor's figures: the same confirmed cancer, now proven by histology.
        cases_after, cancers_after, by_histology = _real_world_once(
            auditor, base, lambda found: found[2] != by_report
        )
        assert (cases_after, cancers_after) == (validated_cases, validated_cancers)
        assert "histolog" in by_histology.lower()
        shot(auditor, "6-auditor-real-world")
        browser.close()
