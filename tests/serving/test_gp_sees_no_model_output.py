"""A requesting GP never sees the model's output: every route, walked as a GP, with scored cases.

The model's output is the triage machinery of the experts (docs/access.md): a case's score
(p_malignant, uncertainty, predicted class, class probabilities), the model version, the Grad-CAM
saliency maps, and the priority tier, score and reasons computed from them. The GP gets the
experts' answer, never the model's, in any form: JSON, pages, the report's PDF and FHIR exports,
redirects and error bodies.

The cast is the demo itself (:func:`serving.demo.seed_demo` with a small plan): real derm-dev
photos, scored by the real predictor, taken through the workflow by the demo's GPs and experts.
``dr-martin`` then sends three more through the API, scored by the service's own worker, and the
experts take two of them on, so that every state a GP meets is there (a case waiting, an expert's
question, a validated answer with its PDF). The walk takes the routes from
``app.routes`` (:func:`tests.serving.test_access_routes.app_routes`), so a route added later is
walked too: each is called as ``dr-martin`` for each of her cases, for another GP's case and for
a case that does not exist, once with a well-formed request and once with a malformed one, and
every answer is searched for the model's output of every case in the database.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select

from pipeline.quality import assess_bytes
from serving.app import create_app
from serving.case_texts import TEXTS
from serving.db.models import Case, Score
from serving.demo import seed_demo
from serving.settings import Settings
from tests.serving.conftest import sign_in
from tests.serving.test_access_routes import app_routes

GP, OTHER_GP, READER, SENIOR = "dr-martin", "dr-leroy", "dr-bernard", "pr-dubois"
NOW = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
PLAN = {"mel": 2, "nv": 2, "bkl": 1}
MISSING_CASE = 987654

# Code and documentation, the same for everyone and about no case: the OpenAPI description names
# the score's fields (the experts' API), the static script toggles the experts' saliency view.
# ``/readyz`` answers 503 by design while no model is loadable: a probe, not case data.
NOT_CASE_DATA = frozenset(
    {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static", "/readyz"}
)

# JSON keys that carry the model's output or what is computed from it: absent, or null.
MODEL_KEYS = frozenset(
    {
        "score", "p_malignant", "uncertainty", "predicted_class", "probabilities",
        "model_version", "saliency_url", "scored_at", "priority", "tier", "tier_counts",
        "reasons", "reason_text", "flagged", "domain", "not_applicable_reason", "ood",
        "ood_distance",
    }
)  # fmt: skip
# The experts' wording of the model's output on their pages (both languages).
EXPERT_LABELS = ("p_malignant", "uncertainty", "model_version", "class_probabilities",
                 "show_saliency", "priority_reasons", "ai_disclaimer", "scored_at")  # fmt: skip
WORDS = re.compile(r"saliency|grad-?cam|p\(malin|decision support|aide à la décision", re.I)
TIER_BADGE = re.compile(r"tier-(urgent|high|routine|low)")
# Numbers as pages print them that any page may hold for other reasons.
BLAND = frozenset({"0.0", "1.0", "0.00", "1.00", "0.000", "1.000", "0.0000", "1.0000"})


@dataclass
class ModelOutput:
    """Everything the model said about the cases in the database, to look for in answers."""

    versions: set[str] = field(default_factory=set)
    #: Scores, uncertainties and class probabilities, but 0 and 1: too common to tell anything.
    numbers: set[float] = field(default_factory=set)

    def text_patterns(self) -> list[re.Pattern[str]]:
        patterns = [re.compile(re.escape(v)) for v in self.versions]
        for n in self.numbers:
            for shown in {repr(n), f"{n:.4f}", f"{n:.3f}", f"{n:.2f}"} - BLAND:
                patterns.append(re.compile(rf"(?<![\d.]){re.escape(shown)}(?!\d)"))
        labels = {TEXTS[lang][key] for lang in ("fr", "en") for key in EXPERT_LABELS}
        patterns += [re.compile(re.escape(label)) for label in labels]
        return [*patterns, WORDS, TIER_BADGE]


def leaks_in_text(text: str, patterns: list[re.Pattern[str]]) -> list[str]:
    return [f"{p.pattern!r} in {text[max(0, m.start() - 60) : m.end() + 60]!r}"
            for p in patterns for m in [p.search(text)] if m]  # fmt: skip


def leaks_in_json(value: Any, output: ModelOutput, patterns: list[re.Pattern[str]]) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in MODEL_KEYS and item not in (None, [], {}):
                found.append(f"key {key!r} = {str(item)[:80]}")
            found += leaks_in_json(item, output, patterns)
    elif isinstance(value, list):
        for item in value:
            found += leaks_in_json(item, output, patterns)
    elif isinstance(value, float) and value in output.numbers:
        found.append(f"the model's number {value!r}")
    elif isinstance(value, str):
        found += leaks_in_text(value, patterns)
    return found


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def leaks_in_answer(response: Any, output: ModelOutput) -> list[str]:
    """What of the model's output ``response`` shows, whatever its form."""
    patterns = output.text_patterns()
    kind = response.headers.get("content-type", "")
    if not response.content:
        return []
    if kind.startswith("application/pdf"):
        return leaks_in_text(pdf_text(response.content), patterns)
    if kind.startswith("image/"):
        return []  # a photo or thumbnail; the saliency route itself is judged by its path
    if "json" in kind:
        body = response.json()
        found = leaks_in_json(body, output, patterns)
        for form in body.get("presentedForm", []) if isinstance(body, dict) else []:
            found += leaks_in_text(pdf_text(base64.b64decode(form["data"])), patterns)
        return found
    return leaks_in_text(response.text, patterns)


QUESTIONNAIRE = {
    "patient_pseudonym": "PAT-WALK", "age": 47, "sex": "female", "fitzpatrick": "III",
    "body_site": "back", "duration": "1_6_months",
    "clinical_question": "Lésion pigmentée récente du dos : avis ?",
}  # fmt: skip
REPORT = {"conduct": "consultation", "interval": 2, "diagnosis": "Naevus atypique",
          "diagnosis_code": "naevus", "text": "Exérèse à prévoir sous quinze jours."}  # fmt: skip


class Walk:
    """The app, its demo database, and ``dr-martin`` signed in (API token and browser session)."""

    def __init__(self, client: TestClient, photo: bytes) -> None:
        self.client, self.photo = client, photo
        self.bearer = sign_in(client, GP)
        for person in (READER, SENIOR, OTHER_GP):
            sign_in(client, person)

    def database(self) -> Any:
        return self.client.app.state.case_runtime.database  # type: ignore[attr-defined]

    def cases_of(self, requester: str) -> list[Case]:
        with self.database().session() as session:
            query = select(Case).where(Case.requester_id == requester).order_by(Case.id)
            return list(session.scalars(query))

    def model_output(self) -> ModelOutput:
        output = ModelOutput()
        with self.database().session() as session:
            for score in session.scalars(select(Score)):
                output.versions.add(score.model_version)
                output.numbers |= {score.p_malignant, score.uncertainty}
                output.numbers |= set(score.probabilities.values())
        output.numbers -= {0.0, 1.0}
        return output

    def as_expert(self, method: str, path: str, who: str, body: Any = None) -> None:
        response = self.client.request(method, path, json=body, headers=sign_in(self.client, who))
        assert response.status_code < 300, (path, response.text)

    def body(self, method: str, path: str, good: bool) -> dict[str, Any]:
        """A well-formed request for ``path`` (``good``), or a malformed one (for error bodies)."""
        if method in ("GET", "DELETE"):
            return {}
        if path == "/api/v1/cases":
            return {"data": {"questionnaire": json.dumps(QUESTIONNAIRE if good else {})},
                    "files": [("photos", ("p.jpg", self.photo, "image/jpeg"))]}  # fmt: skip
        if path == "/gp/requests/new":
            fields = {k: str(v) for k, v in QUESTIONNAIRE.items()} if good else {"age": "200"}
            return {"data": fields,
                    "files": [("photo_close_up", ("p.jpg", self.photo, "image/jpeg"))]}  # fmt: skip
        if path == "/api/v1/quality":
            return {"files": [("file", ("p.jpg", self.photo if good else b"GIF89a", "image/jpeg"))]}
        if path in ("/login", "/api/v1/auth/token"):
            password = "demo-dermtriage" if good else "wrong password"
            key = "data" if path == "/login" else "json"
            return {key: {"login": GP, "password": password}}
        if path.startswith("/api/v1/users"):
            return {"json": {"phone": "04 72 00 00 09"} if good else {"role": "admin"}}
        if path.endswith("/report"):
            key = "json" if path.startswith("/api/") else "data"
            return {key: REPORT if good else {"conduct": "nonsense"}}
        key = "json" if path.startswith("/api/") else "data"
        return {key: {"body": "Merci pour votre avis."} if good else {}}

    def call(self, method: str, path: str, url: str, good: bool) -> Any:
        client = self.client
        sign_in(client, GP)  # the browser session and its CSRF header, whatever came before
        headers = self.bearer if path.startswith("/api/") else {}
        if (method, path) == ("DELETE", "/api/v1/auth/token"):  # revoke a token of its own
            issued = client.post(
                "/api/v1/auth/token", **self.body("POST", "/api/v1/auth/token", True)
            )
            headers = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        return client.request(
            method, url, headers=headers, follow_redirects=True, **self.body(method, path, good)
        )


@pytest.fixture(scope="module")
def walk(
    tmp_path_factory: pytest.TempPathFactory, real_predictor: Any, derm_images: list[Path]
) -> Iterator[Walk]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("gp-walk") / "data",
        mlflow_tracking_uri=None,
        database_url=None,
        scoring_worker=False,
    )
    assert seed_demo(settings, load_predictor=lambda: real_predictor, now=NOW, plan=PLAN)
    photo = next(
        p.read_bytes()
        for p in derm_images
        if assess_bytes(p.read_bytes(), max_bytes=10_000_000, max_pixels=50_000_000).acceptable
    )
    app = create_app(settings)
    app.state.clock = lambda: NOW
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app) as client:
        walk = Walk(client, photo)
        sent = [
            client.post(
                "/api/v1/cases", headers=walk.bearer, **walk.body("POST", "/api/v1/cases", True)
            )
            for _ in range(3)
        ]
        assert all(r.status_code == 201 for r in sent), [r.text for r in sent]
        assert client.app.state.case_runtime.worker.run_once() == 3  # type: ignore[attr-defined]
        asked, answered = sent[0].json()["id"], sent[1].json()["id"]
        walk.as_expert("POST", f"/api/v1/cases/{asked}/review", READER)
        walk.as_expert("POST", f"/api/v1/cases/{asked}/info-requests", READER, {"body": "Depuis?"})
        walk.as_expert("POST", f"/api/v1/cases/{answered}/review", READER)
        walk.as_expert("PUT", f"/api/v1/cases/{answered}/report", READER, REPORT)
        walk.as_expert("POST", f"/api/v1/cases/{answered}/report/validation", SENIOR)
        yield walk


def test_a_gp_sees_no_model_output_on_any_route(walk: Walk) -> None:
    mine = walk.cases_of(GP)
    assert all(c.scoring_state == "done" for c in mine)
    statuses = {c.status for c in mine}
    assert {"scored", "info_requested", "validated"} <= statuses, statuses
    # One case of each state of hers, another GP's case, and one that does not exist.
    targets = [next(c for c in mine if c.status == s) for s in sorted(statuses)]
    targets.append(walk.cases_of(OTHER_GP)[0])
    output = walk.model_output()
    assert output.versions == {"test-model/1"} and len(output.numbers) > 20

    def ids_of(case: Case | None) -> dict[str, str]:
        if case is None:
            return {"{case_id}": str(MISSING_CASE), "{photo_id}": "1"}
        with walk.database().session() as session:
            photo_id = session.get(Case, case.id).photos[0].id  # type: ignore[union-attr]
        return {"{case_id}": str(case.id), "{photo_id}": str(photo_id)}

    fillings = [*(ids_of(c) for c in targets), ids_of(None)]
    common = {"{login}": GP, "{version}": "1", "{plot}": "roc"}
    routes = sorted(app_routes(walk.client.app) - {("GET", p) for p in NOT_CASE_DATA})
    # Signing out and revoking a token last: the walk goes on signed in until then.
    routes.sort(key=lambda r: r in {("POST", "/logout"), ("DELETE", "/api/v1/auth/token")})
    leaks: dict[tuple[str, str], list[str]] = {}
    answered_ok: set[tuple[str, str]] = set()
    for method, path in routes:
        urls = {path}
        if "{case_id}" in path:
            urls = {path.replace("{case_id}", f["{case_id}"]).replace("{photo_id}", f["{photo_id}"])
                    for f in fillings}  # fmt: skip
        for url in sorted(urls):
            for placeholder, value in common.items():
                url = url.replace(placeholder, value)
            for good in (True, False):
                response = walk.call(method, path, url, good)
                assert response.status_code < 500, (method, url, response.text[:300])
                if response.status_code < 300:
                    answered_ok.add((method, path))
                leaks.setdefault((method, path), []).extend(
                    f"{url} ({response.status_code}): {leak}"
                    for leak in leaks_in_answer(response, output)
                )
    leaked = {route: found for route, found in leaks.items() if found}
    assert not leaked, "the model's output reaches a GP:\n" + "\n".join(
        f"{method} {path}: {len(found)} times, e.g. {found[0]}"
        for (method, path), found in sorted(leaked.items())
    )
    # The walk reached what a GP reads: not a pass by refusals alone.
    for route in [
        ("GET", "/api/v1/cases"), ("GET", "/api/v1/cases/{case_id}"),
        ("GET", "/api/v1/cases/{case_id}/report.pdf"),
        ("GET", "/api/v1/cases/{case_id}/report.fhir.json"), ("POST", "/api/v1/cases"),
        ("POST", "/api/v1/cases/{case_id}/messages"), ("GET", "/gp/requests"),
        ("GET", "/gp/requests/{case_id}"), ("GET", "/cases/{case_id}"),
        ("POST", "/gp/requests/new"), ("PATCH", "/api/v1/users/me"),
    ]:  # fmt: skip
        assert route in answered_ok, route


def test_the_walk_finds_the_model_output_where_experts_see_it(walk: Walk) -> None:
    """The detector is not blind: the same answers for a reader are full of it."""
    output = walk.model_output()
    case = next(c for c in walk.cases_of(GP) if c.status == "scored")
    reader = sign_in(walk.client, READER)
    listing = walk.client.get("/api/v1/cases", headers=reader)
    assert any("model_version" in leak for leak in leaks_in_answer(listing, output))
    page = walk.client.get(f"/cases/{case.id}")
    assert leaks_in_answer(page, output)
