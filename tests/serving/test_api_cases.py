"""The cases API, endpoint by endpoint and transition by transition, forbidden ones included.

Real everything: the application from ``create_app``, SQLite under a temporary folder with the
Alembic migrations, the photo store on disk, real derm-dev photos, and the real ``Predictor``
(scoring runs synchronously through the worker's ``run_once`` so the tests control when).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from models.segmenter import shipped_segmenter
from pipeline.quality_blur import shipped_blur_model_version
from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import sign_in

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
GP, OTHER_GP, READER, SENIOR, SENIOR2 = (
    "dr-martin",
    "dr-leroy",
    "dr-bernard",
    "pr-dubois",
    ("dr-garnier"),
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, hours: float) -> None:
        self.now += timedelta(hours=hours)


def questionnaire(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient_pseudonym": "PAT-0001",
        "age": 58,
        "sex": "male",
        "fitzpatrick": "II",
        "body_site": "back",
        "duration": "6_12_months",
        "changed_size": False,
        "bleeding": False,
        "clinical_question": "Lésion pigmentée du dos, avis sur la conduite à tenir ?",
    }
    data.update(overrides)
    return data


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(settings: Settings, clock: Clock, real_predictor: Any) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.clock = clock
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app) as test_client:
        yield test_client


def worker(client: TestClient) -> Any:
    return client.app.state.case_runtime.worker  # type: ignore[attr-defined]


def submit(
    client: TestClient,
    photos: list[bytes],
    user: str = GP,
    kinds: list[str] | None = None,
    **overrides: Any,
) -> Any:
    files = [("photos", (f"photo{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    form: dict[str, Any] = {"questionnaire": json.dumps(questionnaire(**overrides))}
    if kinds:
        form["photo_kinds"] = kinds
    return client.post("/api/v1/cases", data=form, files=files, headers=sign_in(client, user))


@pytest.fixture
def photo(clean_photos: list[Path]) -> bytes:
    return clean_photos[0].read_bytes()


def created(client: TestClient, photos: list[bytes], **kw: Any) -> dict[str, Any]:
    response = submit(client, photos, **kw)
    assert response.status_code == 201, response.text
    return response.json()


# --- submitting ------------------------------------------------------------------------------


def test_a_submitted_case_is_in_the_worklist_at_once_flagged_unscored(
    client: TestClient, photo: bytes
) -> None:
    case = created(client, [photo, photo], kinds=["close_up", "dermoscopy"])
    assert case["status"] == "submitted"
    assert case["scoring_state"] == "pending"
    assert [p["kind"] for p in case["photos"]] == ["close_up", "dermoscopy"]
    items = client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["items"]
    assert [i["id"] for i in items] == [case["id"]]
    assert items[0]["priority"]["flagged"] is True
    assert items[0]["priority"]["reasons"][0] == "not_scored"
    assert items[0]["score"] is None


def test_stored_photos_are_sanitised_copies_without_metadata(
    client: TestClient, derm_images: list[Path]
) -> None:
    with Image.open(derm_images[1]) as image:
        exif = Image.Exif()
        exif[0x010F] = "PhoneMaker"  # Make
        exif[0x8825] = {2: (48.0, 51.0, 24.0)}  # GPS latitude
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", exif=exif)
    upload = buffer.getvalue()
    case = created(client, [upload])
    url = case["photos"][0]["url"]
    stored = client.get(url, headers=sign_in(client, READER))
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(stored.content)) as image:
        assert not image.getexif()
        assert image.size == (224, 224)
    assert b"PhoneMaker" not in stored.content
    thumb = client.get(case["photos"][0]["thumbnail_url"], headers=sign_in(client, READER))
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"


def test_a_questionnaire_with_errors_is_refused_whole_with_field_messages(
    client: TestClient, photo: bytes
) -> None:
    response = submit(client, [photo], age=140, fitzpatrick="VIII")
    assert response.status_code == 422
    errors = response.json()["detail"]["errors"]
    assert set(errors) == {"age", "fitzpatrick"}
    assert errors["age"] == "Doit être au plus 120."
    english = client.post(
        "/api/v1/cases?lang=en",
        data={"questionnaire": json.dumps(questionnaire(age=-1))},
        files=[("photos", ("a.jpg", photo, "image/jpeg"))],
        headers=sign_in(client, GP),
    )
    assert english.json()["detail"]["errors"] == {"age": "Must be at least 0."}
    assert client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["total"] == 0


@pytest.mark.parametrize("count", [0, 6])
def test_a_case_needs_one_to_five_photos(client: TestClient, photo: bytes, count: int) -> None:
    if count == 0:
        response = client.post(
            "/api/v1/cases",
            data={"questionnaire": json.dumps(questionnaire())},
            headers=sign_in(client, GP),
        )
    else:
        response = submit(client, [photo] * count)
    assert response.status_code == 422
    assert client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["total"] == 0


def test_one_bad_file_refuses_the_whole_case(client: TestClient, photo: bytes) -> None:
    response = submit(client, [photo, b"%PDF-1.4 not a photo at all"])
    assert response.status_code == 422
    assert set(response.json()["detail"]["errors"]) == {"photos.1"}
    assert client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["total"] == 0


def test_a_photo_that_fails_quality_is_accepted_but_flags_the_case(
    client: TestClient, derm_images: list[Path]
) -> None:
    with Image.open(derm_images[2]) as image:
        blurred = image.filter(ImageFilter.GaussianBlur(4))
        buffer = io.BytesIO()
        blurred.save(buffer, "JPEG", quality=92)
    case = created(client, [buffer.getvalue()])
    assert case["photos"][0]["quality"]["acceptable"] is False
    assert case["photos"][0]["quality"]["problems"]  # whichever check caught it
    # The verdict says which fitted parts (blur detector, lesion outline) took part in it.
    assert case["photos"][0]["quality"]["checks"] == {
        "blur_model": shipped_blur_model_version(),
        "lesion_segmenter": shipped_segmenter().version,
    }
    worker(client).run_once()
    item = client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["items"][0]
    assert item["scoring_state"] == "done"
    assert item["priority"]["flagged"] is True
    assert "quality_failed" in item["priority"]["reasons"]


# --- who sees what ---------------------------------------------------------------------------


def test_nobody_signed_in_gets_401(client: TestClient) -> None:
    assert client.get("/api/v1/cases").status_code == 401
    forged = {"Authorization": "Bearer not-a-token", "Cookie": "dermtriage_session=forged"}
    assert client.get("/api/v1/cases", headers=forged).status_code == 401


def test_a_requester_sees_only_their_own_cases(client: TestClient, photo: bytes) -> None:
    mine = created(client, [photo], user=GP)
    theirs = created(client, [photo], user=OTHER_GP, patient_pseudonym="PAT-OTHER")
    listed = client.get("/api/v1/cases", headers=sign_in(client, GP)).json()
    assert [i["id"] for i in listed["items"]] == [mine["id"]]
    assert (
        client.get(f"/api/v1/cases/{theirs['id']}", headers=sign_in(client, GP)).status_code == 404
    )
    photo_url = theirs["photos"][0]["url"]
    assert client.get(photo_url, headers=sign_in(client, GP)).status_code == 404
    own = client.get(f"/api/v1/cases/{mine['id']}", headers=sign_in(client, GP)).json()
    assert own["score"] is None and own["priority"] is None  # triage is for the experts


def test_the_requester_is_the_signed_in_account_whatever_the_body_says(
    client: TestClient, photo: bytes
) -> None:
    """Issue 13, finding 4: a GP naming a colleague (name, RPPS, practice) in the body still sends
    the request as themself; the experts' case page, the API and the worklist's requester filter
    name the account, and the stored questionnaire holds no identity."""
    colleague = {"name": "Dr Paul Leroy", "rpps": "10109876549",
                 "organisation": "Maison de santé", "email": "paul.leroy@example.fr"}  # fmt: skip
    case = created(client, [photo], requester=colleague)
    assert case["requester"] == {"id": GP, "name": "Dr Claire Martin"}
    assert "requester" not in case["questionnaire"]
    reader = sign_in(client, READER)
    assert client.get(f"/api/v1/cases/{case['id']}", headers=reader).json()["requester"] == {
        "id": GP, "name": "Dr Claire Martin"
    }  # fmt: skip
    page = client.get(f"/cases/{case['id']}").text  # signed in as the reader
    assert "Dr Claire Martin" in page and "Cabinet médical des Lilas, Lyon" in page
    assert '<span id="requester-rpps">10101234564</span>' in page  # her account's RPPS
    assert "Paul Leroy" not in page and "10109876549" not in page
    worklist = client.get("/worklist").text
    assert f'<option value="{GP}"' in worklist and ">Dr Claire Martin</option>" in worklist
    assert "Paul Leroy" not in worklist
    assert client.get(f"/api/v1/cases?requester={OTHER_GP}", headers=reader).json()["total"] == 0


def test_a_gp_account_without_rpps_cannot_send_a_request(
    client: TestClient, photo: bytes, settings: Settings
) -> None:
    """A request must say which professional sends it: an account created before RPPS numbers
    were required has to get one (from an administrator) first."""
    from sqlalchemy import create_engine, text

    sign_in(client, GP)
    engine = create_engine(settings.sqlalchemy_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET rpps = NULL WHERE id = :id"), {"id": GP})
    engine.dispose()
    refused = submit(client, [photo])
    assert refused.status_code == 422
    assert "RPPS" in refused.json()["detail"]["errors"]["requester"]


def test_a_gp_list_carries_no_model_output(client: TestClient, photo: bytes) -> None:
    """Issue 13, finding 3: the GP's list of requests showed each case's score (p_malignant,
    uncertainty, predicted class, model version); like the single case, it shows none."""
    case = created(client, [photo])
    assert worker(client).run_once() == 1
    mine = client.get("/api/v1/cases", headers=sign_in(client, GP)).json()["items"]
    assert [(i["id"], i["score"], i["priority"]) for i in mine] == [(case["id"], None, None)]
    assert "test-model/1" not in json.dumps(mine)
    theirs = client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["items"]
    assert theirs[0]["score"]["model_version"] == "test-model/1"  # the experts still see it


def test_experts_cannot_submit_and_requesters_cannot_read_triage_data(
    client: TestClient, photo: bytes
) -> None:
    assert submit(client, [photo], user=READER).status_code == 403
    case = created(client, [photo])
    worker(client).run_once()
    assert (
        client.get(f"/api/v1/cases/{case['id']}/events", headers=sign_in(client, GP)).status_code
        == 403
    )
    saliency = f"/api/v1/cases/{case['id']}/photos/{case['photos'][0]['id']}/saliency"
    assert client.get(saliency, headers=sign_in(client, GP)).status_code == 403
    assert client.get("/api/v1/stats", headers=sign_in(client, GP)).status_code == 403


def test_an_unknown_case_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/cases/999", headers=sign_in(client, READER)).status_code == 404
    assert (
        client.post("/api/v1/cases/999/review", headers=sign_in(client, READER)).status_code == 404
    )


# --- scoring and the worklist ----------------------------------------------------------------


def test_scoring_records_the_model_version_and_a_saliency_overlay(
    client: TestClient, photo: bytes
) -> None:
    case = created(client, [photo])
    assert worker(client).run_once() == 1
    detail = client.get(f"/api/v1/cases/{case['id']}", headers=sign_in(client, READER)).json()
    assert detail["status"] == "scored"
    assert detail["score"]["model_version"] == "test-model/1"
    assert 0.0 <= detail["score"]["p_malignant"] <= 1.0
    photo_score = detail["photos"][0]["score"]
    assert sum(photo_score["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    overlay = client.get(photo_score["saliency_url"], headers=sign_in(client, READER))
    assert overlay.status_code == 200
    with Image.open(io.BytesIO(overlay.content)) as image:
        assert image.size == (448, 448)
    events = client.get(
        f"/api/v1/cases/{case['id']}/events", headers=sign_in(client, READER)
    ).json()
    assert [(e["action"], e["actor"], e["to"]) for e in events] == [
        ("submit", GP, "submitted"),
        ("score", "system", "scored"),
    ]
    assert events[1]["detail"]["model_version"] == "test-model/1"
    assert worker(client).run_once() == 0  # nothing left to do


def test_the_riskier_case_is_listed_above_the_other_once_scored(
    client: TestClient, clean_photos: list[Path], real_predictor: Any
) -> None:
    images = []
    for path in clean_photos:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    scores = [p.p_malignant for p in real_predictor.predict(images)]
    low = clean_photos[scores.index(min(scores))].read_bytes()
    high = clean_photos[scores.index(max(scores))].read_bytes()
    first = created(client, [low], patient_pseudonym="PAT-LOW")
    second = created(client, [high], patient_pseudonym="PAT-HIGH")
    worker(client).run_once()
    items = client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["items"]
    assert [i["id"] for i in items] == [second["id"], first["id"]]
    assert items[0]["score"]["p_malignant"] == pytest.approx(max(scores), abs=1e-4)
    assert items[0]["priority"]["reason_text"].startswith("p(malin) ")


def test_a_model_that_cannot_load_leaves_cases_queued_and_flagged(
    settings: Settings, clock: Clock, photo: bytes
) -> None:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.clock = clock

    def no_model() -> Any:
        raise FileNotFoundError("no registered model")

    app.state.load_predictor = no_model
    with TestClient(app) as client:
        case = created(client, [photo])
        worker(client).run_once()
        item = client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["items"][0]
        assert item["id"] == case["id"]
        assert item["scoring_state"] == "failed"
        assert item["status"] == "submitted"
        assert item["priority"]["flagged"] and item["priority"]["tier"] in ("urgent", "high")
        assert item["priority"]["reasons"][0] == "scoring_failed"
        # An expert can still read it: a human look does not wait for the model.
        review = client.post(f"/api/v1/cases/{case['id']}/review", headers=sign_in(client, READER))
        assert review.status_code == 200 and review.json()["status"] == "in_review"


def test_filters_and_pagination(client: TestClient, photo: bytes, clock: Clock) -> None:
    a = created(client, [photo], patient_pseudonym="PAT-A")
    clock.advance(1)
    b = created(client, [photo], user=OTHER_GP, patient_pseudonym="PAT-B", bleeding=True)
    clock.advance(1)
    c = created(client, [photo], patient_pseudonym="PAT-C")
    worker(client).run_once()
    client.post(f"/api/v1/cases/{c['id']}/review", headers=sign_in(client, READER))

    def ids(query: str) -> list[int]:
        body = client.get(f"/api/v1/cases?{query}", headers=sign_in(client, READER)).json()
        return [i["id"] for i in body["items"]]

    assert ids("status=in_review") == [c["id"]]
    assert set(ids("status=scored")) == {a["id"], b["id"]}
    assert ids(f"requester={OTHER_GP}") == [b["id"]]
    everything = client.get("/api/v1/cases?page_size=2", headers=sign_in(client, READER)).json()
    assert everything["total"] == 3 and everything["pages"] == 2 and len(everything["items"]) == 2
    page2 = client.get("/api/v1/cases?page_size=2&page=2", headers=sign_in(client, READER)).json()
    assert len(page2["items"]) == 1
    assert {i["id"] for i in everything["items"] + page2["items"]} == {a["id"], b["id"], c["id"]}
    tiers = everything["tier_counts"]
    some_tier = next(t for t, n in tiers.items() if n)
    assert len(ids(f"priority={some_tier}")) == tiers[some_tier]
    assert (
        client.get("/api/v1/cases?priority=bogus", headers=sign_in(client, READER)).status_code
        == 422
    )


# --- the workflow ----------------------------------------------------------------------------


def post(client: TestClient, path: str, user: str, body: Any = None) -> Any:
    return client.post(path, json=body, headers=sign_in(client, user))


def test_the_whole_workflow_with_every_forbidden_move_refused(
    client: TestClient, photo: bytes, clock: Clock
) -> None:
    case = created(client, [photo])
    base = f"/api/v1/cases/{case['id']}"
    worker(client).run_once()

    assert post(client, f"{base}/review", GP).status_code == 403
    assert post(client, f"{base}/answers", GP, {"body": "Rien demandé"}).status_code == 409
    written_too_soon = client.put(
        f"{base}/report",
        json={"conduct": "reassure", "text": "Lésion bénigne.", "diagnosis_code": "naevus"},
        headers=sign_in(client, READER),
    )  # fmt: skip
    assert written_too_soon.status_code == 409
    assert written_too_soon.json()["detail"]["code"] == "bad_state"

    clock.advance(5)
    review = post(client, f"{base}/review", READER)
    assert review.status_code == 200 and review.json()["status"] == "in_review"
    assert review.json()["first_read_at"] == (T0 + timedelta(hours=5)).isoformat()
    assert post(client, f"{base}/review", READER).status_code == 409

    question = "La lésion a-t-elle changé depuis 3 mois ? Pouvez-vous envoyer une vue large ?"
    asked = post(client, f"{base}/info-requests", READER, {"body": question})
    assert asked.status_code == 201 and asked.json()["status"] == "info_requested"
    assert post(client, f"{base}/answers", READER, {"body": "moi"}).status_code == 403
    assert post(client, f"{base}/answers", OTHER_GP, {"body": "x"}).status_code == 404
    assert post(client, f"{base}/answers", GP, {"body": "   "}).status_code == 422
    answered = post(client, f"{base}/answers", GP, {"body": "Oui, elle a grossi cet hiver."})
    assert answered.status_code == 201 and answered.json()["status"] == "answered"

    again = post(client, f"{base}/info-requests", READER, {"body": "Des démangeaisons ?"})
    assert again.json()["status"] == "info_requested"
    post(client, f"{base}/answers", GP, {"body": "Non."})

    bad_report = client.put(
        f"{base}/report", json={"conduct": "consultation", "text": "Trop court"},
        headers=sign_in(client, READER),
    )  # fmt: skip
    assert bad_report.status_code == 422
    # A client written before coded diagnoses is told which field it misses, nothing is saved.
    assert set(bad_report.json()["detail"]["errors"]) == {"diagnosis_code", "interval"}
    report = {
        "conduct": "consultation",
        "interval": 2,
        "diagnosis": "Suspicion de mélanome superficiel extensif",
        "diagnosis_code": "melanoma",
        "text": "Lésion asymétrique et polychrome qui a grossi : exérèse à prévoir.",
    }
    written = client.put(f"{base}/report", json=report, headers=sign_in(client, READER))
    assert written.status_code == 200 and written.json()["status"] == "report_written"
    assert client.put(f"{base}/report", json=report, headers=sign_in(client, GP)).status_code == 403

    # The requester does not see an unvalidated report.
    gp_view = client.get(base, headers=sign_in(client, GP)).json()
    assert gp_view["report"] is None
    assert client.get(f"{base}/report.pdf", headers=sign_in(client, GP)).status_code == 404
    assert client.get(f"{base}/report.pdf", headers=sign_in(client, READER)).status_code == 200

    assert post(client, f"{base}/report/validation", READER).status_code == 403
    assert post(client, f"{base}/close", GP).status_code == 409
    returned = post(client, f"{base}/report/revision", SENIOR, {"body": "Préciser la marge."})
    assert returned.json()["status"] == "in_review"
    report["text"] += " Marge de 2 mm."
    rewritten = client.put(f"{base}/report", json=report, headers=sign_in(client, READER))
    assert rewritten.json()["report"]["revision"] == 2

    validated = post(client, f"{base}/report/validation", SENIOR)
    assert validated.status_code == 200 and validated.json()["status"] == "validated"
    assert validated.json()["report"]["validated_by"] == "Pr Hélène Dubois"
    assert (
        client.put(f"{base}/report", json=report, headers=sign_in(client, SENIOR)).status_code
        == 409
    )

    gp_view = client.get(base, headers=sign_in(client, GP)).json()
    assert gp_view["report"]["conduct"] == "consultation"
    pdf = client.get(f"{base}/report.pdf", headers=sign_in(client, GP))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"

    closed = post(client, f"{base}/close", GP)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert post(client, f"{base}/messages", GP, {"body": "Merci !"}).status_code == 409

    events = client.get(f"{base}/events", headers=sign_in(client, SENIOR)).json()
    moves = [(e["action"], e["actor"], e["from"], e["to"]) for e in events if e["to"]]
    assert moves == [
        ("submit", GP, None, "submitted"),
        ("score", "system", "submitted", "scored"),
        ("start_review", READER, "scored", "in_review"),
        ("request_info", READER, "in_review", "info_requested"),
        ("answer", GP, "info_requested", "answered"),
        ("request_info", READER, "answered", "info_requested"),
        ("answer", GP, "info_requested", "answered"),
        ("write_report", READER, "answered", "report_written"),
        ("return_for_revision", SENIOR, "report_written", "in_review"),
        ("write_report", READER, "in_review", "report_written"),
        ("validate", SENIOR, "report_written", "validated"),
        ("close", GP, "validated", "closed"),
    ]
    assert all(e["at"] for e in events)
    kinds = [m["kind"] for m in client.get(base, headers=sign_in(client, GP)).json()["messages"]]
    assert kinds == ["info_request", "answer", "info_request", "answer", "revision"]


def test_a_senior_cannot_validate_a_report_they_wrote(client: TestClient, photo: bytes) -> None:
    case = created(client, [photo])
    base = f"/api/v1/cases/{case['id']}"
    post(client, f"{base}/review", SENIOR)
    client.put(
        f"{base}/report",
        json={"conduct": "urgent", "text": "Exérèse rapide.", "diagnosis_code": "bcc"},
        headers=sign_in(client, SENIOR),
    )  # fmt: skip
    own = post(client, f"{base}/report/validation", SENIOR)
    assert own.status_code == 409 and own.json()["detail"]["code"] == "same_author"
    assert post(client, f"{base}/report/validation", SENIOR2).status_code == 200


def test_plain_messages_go_both_ways_while_the_case_is_open(
    client: TestClient, photo: bytes
) -> None:
    case = created(client, [photo])
    base = f"/api/v1/cases/{case['id']}"
    assert post(client, f"{base}/messages", GP, {"body": "Patient anxieux."}).status_code == 201
    reply = post(client, f"{base}/messages", READER, {"body": "Bien noté."})
    assert [m["body"] for m in reply.json()["messages"]] == ["Patient anxieux.", "Bien noté."]
    assert post(client, f"{base}/messages", GP, {"body": "x" * 5000}).status_code == 422


def test_the_fhir_export_is_a_valid_final_diagnostic_report(
    client: TestClient, photo: bytes
) -> None:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    case = created(client, [photo], patient_pseudonym="PAT-FHIR")
    base = f"/api/v1/cases/{case['id']}"
    worker(client).run_once()
    post(client, f"{base}/review", READER)
    client.put(
        f"{base}/report",
        json={
            "conduct": "monitor",
            "interval": 6,
            "text": "Naevus banal, surveillance simple.",
            "diagnosis_code": "naevus",
        },
        headers=sign_in(client, READER),
    )
    assert client.get(f"{base}/report.fhir.json", headers=sign_in(client, GP)).status_code == 404
    post(client, f"{base}/report/validation", SENIOR)
    response = client.get(f"{base}/report.fhir.json", headers=sign_in(client, GP))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    resource = DiagnosticReport.model_validate(response.json())
    assert resource.status == "final"
    assert resource.subject.identifier.value == "PAT-FHIR"
    assert resource.presentedForm[0].contentType == "application/pdf"
    diagnosis = resource.conclusionCode[0]
    assert (diagnosis.coding[0].system, diagnosis.coding[0].code) == (
        "http://snomed.info/sct",
        "400096001",
    )
    assert diagnosis.text == "Nævus"  # the page's language (French by default)
    # The report goes to the GP and the patient's record: the experts' answer, not the model's.
    assert "test-model/1" not in response.text and "p(malin" not in response.text


def test_an_outcome_is_recorded_through_the_api_once_the_report_is_validated(
    client: TestClient, photo: bytes, clock: Clock
) -> None:
    case = created(client, [photo], patient_pseudonym="PAT-OUTCOME")
    base = f"/api/v1/cases/{case['id']}"
    worker(client).run_once()
    post(client, f"{base}/review", READER)
    client.put(
        f"{base}/report",
        json={"conduct": "urgent", "text": "Exérèse rapide.", "diagnosis_code": "melanoma"},
        headers=sign_in(client, READER),
    )  # fmt: skip
    clock.advance(24 * 12)
    histology = {"diagnosis_code": "naevus", "source": "histology", "outcome_date": "2025-03-20"}
    too_early = post(client, f"{base}/outcomes", READER, histology)
    assert too_early.status_code == 409
    assert too_early.json()["detail"]["code"] == "outcome_before_report"
    validated = post(client, f"{base}/report/validation", SENIOR).json()
    assert validated["report"]["diagnosis_code"] == "melanoma"
    assert validated["report"]["diagnosis_label"] == "Mélanome"
    assert validated["outcomes"] == []

    assert post(client, f"{base}/outcomes", GP, histology).status_code == 403
    bad = post(client, f"{base}/outcomes", READER, {**histology, "source": "biopsy"})
    assert bad.status_code == 422 and set(bad.json()["detail"]["errors"]) == {"source"}
    recorded = post(client, f"{base}/outcomes", READER, histology)
    assert recorded.status_code == 201
    [outcome] = recorded.json()["outcomes"]
    assert outcome["diagnosis_code"] == "naevus" and outcome["source"] == "histology"
    assert outcome["outcome_date"] == "2025-03-20" and outcome["source_label"] == "Histologie"
    assert recorded.json()["status"] == "validated"  # the workflow does not move
    history = client.get(f"{base}/events", headers=sign_in(client, SENIOR)).json()
    assert history[-1]["action"] == "outcome"


def test_statistics_for_experts(client: TestClient, photo: bytes, clock: Clock) -> None:
    case = created(client, [photo])
    worker(client).run_once()
    clock.advance(10)
    base = f"/api/v1/cases/{case['id']}"
    post(client, f"{base}/review", READER)
    client.put(
        f"{base}/report",
        json={"conduct": "urgent", "text": "Exérèse rapide.", "diagnosis_code": "bcc"},
        headers=sign_in(client, READER),
    )  # fmt: skip
    post(client, f"{base}/report/validation", SENIOR)
    stats = client.get("/api/v1/stats", headers=sign_in(client, SENIOR)).json()
    assert stats["total_requests"] == 1
    assert stats["median_hours_to_first_reading"] == pytest.approx(10)
    assert stats["share_read_within_deadline"] == 1.0
    assert stats["consultation_share"] == 1.0
    assert sum(sum(w["requests"].values()) for w in stats["weeks"]) == 1
    created(client, [photo], patient_pseudonym="PAT-LATE")
    clock.advance(50)  # the second case is now unread past the 48 h deadline: a miss
    stats = client.get("/api/v1/stats", headers=sign_in(client, SENIOR)).json()
    assert stats["total_requests"] == 2
    assert stats["share_read_within_deadline"] == 0.5
