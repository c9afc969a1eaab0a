"""Every route, tried by every person who must not use it: 401, 403 or 404, and nothing changes.

:data:`ACCESS` declares, for each route of the application, who may call it. The first test walks
``app.routes`` and fails on any route missing from the table (or any table entry that no longer
exists), so a new route cannot ship without a declared access rule. The parametrised tests then
call each route as each person outside its allowed set, signed in for real (API: bearer token;
pages: session cookie with a valid CSRF token, so the refusal is the access rule's and not the
CSRF check's), and compare the domain tables before and after: a refused call changes nothing.

The cast: a Lyon case sent by ``dr-martin``; ``dr-leroy`` is another GP of the same centre,
``dr-roux`` a first reader of another centre (Grenoble). Other people's cases answer 404 so their
existence is not disclosed; a role that may never use a route gets 403; nobody signed in gets 401
(API and form posts) or a redirect to the sign-in page (pages read with GET).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import sign_in

ANON = "anonymous"
GP, OTHER_GP = "dr-martin", "dr-leroy"
READER, SENIOR, GRENOBLE = "dr-bernard", "pr-dubois", "dr-roux"
AUDITOR, DATA_SCIENTIST, ADMIN = "audit-moreau", "ds-petit", "admin"
PEOPLE = (ANON, GP, OTHER_GP, READER, SENIOR, GRENOBLE, AUDITOR, DATA_SCIENTIST, ADMIN)
SIGNED_IN = frozenset(PEOPLE) - {ANON}

PUBLIC = frozenset(PEOPLE)
REQUESTERS = frozenset({GP, OTHER_GP})
CASE_READERS = frozenset({GP, READER, SENIOR, AUDITOR})  # who may read the Lyon case
STAFF_READERS = frozenset({READER, SENIOR, AUDITOR})  # the case's triage data, history
LYON_EXPERTS = frozenset({READER, SENIOR})
WORKLIST = frozenset({READER, SENIOR, GRENOBLE, AUDITOR})
STATS = frozenset({READER, SENIOR, GRENOBLE, AUDITOR, DATA_SCIENTIST, ADMIN})
AUDIT = frozenset({AUDITOR, ADMIN})  # serving/routes/audit.py
GOVERNANCE = frozenset({AUDITOR, ADMIN, DATA_SCIENTIST})  # model data, no identities
ADMINS = frozenset({ADMIN})

# (method, path) -> who may call it. Workflow rules (who may validate, answer...) narrow the
# case routes further; being in the set means the access policy lets the call reach them.
ACCESS: dict[tuple[str, str], frozenset[str]] = {
    # public: health probes, the GP's photo check (stores nothing), sign-in, the API's description
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,  # the readiness probe: no credentials, names no one
    ("GET", "/"): PUBLIC,
    ("GET", "/gp/photo"): PUBLIC,
    ("POST", "/api/v1/quality"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    # the signed-in person's own session and tokens
    ("POST", "/logout"): SIGNED_IN,
    ("DELETE", "/api/v1/auth/token"): SIGNED_IN,
    ("GET", "/api/v1/auth/me"): SIGNED_IN,
    # cases, API
    ("POST", "/api/v1/cases"): REQUESTERS,
    ("GET", "/api/v1/cases"): REQUESTERS | WORKLIST,
    ("GET", "/api/v1/cases/{case_id}"): CASE_READERS,
    ("GET", "/api/v1/cases/{case_id}/photos/{photo_id}"): CASE_READERS,
    ("GET", "/api/v1/cases/{case_id}/photos/{photo_id}/thumbnail"): CASE_READERS,
    ("GET", "/api/v1/cases/{case_id}/photos/{photo_id}/saliency"): STAFF_READERS,
    ("GET", "/api/v1/cases/{case_id}/events"): STAFF_READERS,
    ("GET", "/api/v1/cases/{case_id}/report.pdf"): CASE_READERS,
    ("GET", "/api/v1/cases/{case_id}/report.fhir.json"): CASE_READERS,
    ("POST", "/api/v1/cases/{case_id}/review"): LYON_EXPERTS,
    ("POST", "/api/v1/cases/{case_id}/messages"): LYON_EXPERTS | {GP},
    ("POST", "/api/v1/cases/{case_id}/info-requests"): LYON_EXPERTS,
    ("POST", "/api/v1/cases/{case_id}/answers"): frozenset({GP}),
    ("PUT", "/api/v1/cases/{case_id}/report"): LYON_EXPERTS,
    ("POST", "/api/v1/cases/{case_id}/report/validation"): frozenset({SENIOR}),
    ("POST", "/api/v1/cases/{case_id}/report/revision"): frozenset({SENIOR}),
    ("POST", "/api/v1/cases/{case_id}/close"): frozenset({GP, SENIOR}),
    ("POST", "/api/v1/cases/{case_id}/outcomes"): LYON_EXPERTS,
    ("GET", "/api/v1/stats"): STATS,
    # pages
    ("GET", "/worklist"): WORKLIST,
    ("GET", "/cases/{case_id}"): CASE_READERS,  # the GP is redirected to their own page
    ("POST", "/cases/{case_id}/review"): LYON_EXPERTS,
    ("POST", "/cases/{case_id}/info-request"): LYON_EXPERTS,
    ("POST", "/cases/{case_id}/message"): LYON_EXPERTS | {GP},
    ("POST", "/cases/{case_id}/report"): LYON_EXPERTS,
    ("POST", "/cases/{case_id}/validate"): frozenset({SENIOR}),
    ("POST", "/cases/{case_id}/revision"): frozenset({SENIOR}),
    ("POST", "/cases/{case_id}/outcomes"): LYON_EXPERTS,
    ("GET", "/gp/requests"): REQUESTERS,
    ("GET", "/gp/requests/new"): REQUESTERS,
    ("POST", "/gp/requests/new"): REQUESTERS,
    ("GET", "/gp/requests/{case_id}"): frozenset({GP}) | LYON_EXPERTS,  # experts: redirected
    ("POST", "/gp/requests/{case_id}/answer"): frozenset({GP}),
    ("POST", "/gp/requests/{case_id}/message"): LYON_EXPERTS | {GP},
    ("POST", "/gp/requests/{case_id}/close"): frozenset({GP, SENIOR}),
    ("GET", "/stats"): STATS,
    # accounts
    ("GET", "/api/v1/users"): ADMINS,
    ("POST", "/api/v1/users"): ADMINS,
    ("POST", "/api/v1/users/{login}/disable"): ADMINS,
    ("PATCH", "/api/v1/users/{login}"): ADMINS,
    ("PATCH", "/api/v1/users/me"): SIGNED_IN,  # one's own identity
    # audit trail
    ("GET", "/api/v1/audit/events"): AUDIT,
    ("GET", "/api/v1/audit/chain"): AUDIT,
    ("GET", "/audit"): AUDIT,
    # model governance
    ("GET", "/governance"): GOVERNANCE,
    ("GET", "/governance/versions/{version}"): GOVERNANCE,
    ("GET", "/governance/versions/{version}/plots/{plot}.png"): GOVERNANCE,
    ("GET", "/governance/versions/{version}/report.pdf"): GOVERNANCE,
    ("GET", "/governance/versions/{version}/real-world"): GOVERNANCE,
    ("GET", "/governance/compare"): GOVERNANCE,
    ("GET", "/governance/cases/{case_id}"): GOVERNANCE,
    ("GET", "/governance/drift"): GOVERNANCE,
    ("GET", "/api/v1/governance/versions"): GOVERNANCE,
    ("GET", "/api/v1/governance/versions/{version}"): GOVERNANCE,
    ("GET", "/api/v1/governance/versions/{version}/cases"): GOVERNANCE,
    ("GET", "/api/v1/governance/versions/{version}/real-world"): GOVERNANCE,
    ("GET", "/api/v1/governance/compare"): GOVERNANCE,
    ("GET", "/api/v1/governance/shadow"): GOVERNANCE,
    ("GET", "/api/v1/governance/cases/{case_id}/scores"): GOVERNANCE,
    ("GET", "/api/v1/governance/drift"): GOVERNANCE,
}

# The tables whose content a refused call must leave untouched (sign-in tokens, failed sign-ins
# and the audit trail legitimately record attempts).
DOMAIN_TABLES = ("cases", "photos", "scores", "messages", "reports", "events", "users")


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the application serves, included routers and mounts too."""
    found: set[tuple[str, str]] = set()

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included router
                walk(route.original_router.routes, prefix)
            elif not hasattr(route, "methods") or route.methods is None:  # a mount
                found.add(("GET", prefix + route.path))
            else:
                for method in route.methods - {"HEAD"}:
                    found.add((method, prefix + route.path))

    walk(app.routes, "")
    return found


QUESTIONNAIRE = {
    "patient_pseudonym": "PAT-ACCESS", "age": 61, "sex": "female", "fitzpatrick": "II",
    "body_site": "back", "duration": "1_6_months",
    "clinical_question": "Lésion pigmentée qui grandit : avis ?",
}  # fmt: skip
OUTCOME = {"diagnosis_code": "naevus", "source": "histology", "outcome_date": "2020-01-02"}
REPORT = {"conduct": "consultation", "interval": 2, "diagnosis": "Naevus atypique",
          "diagnosis_code": "naevus", "text": "Exérèse à prévoir."}  # fmt: skip
PAGE_FORM = {"patient_pseudonym": "PAT-78", "age": "61", "sex": "female", "fitzpatrick": "II",
             "body_site": "back", "duration": "1_6_months",
             "clinical_question": "Lésion pigmentée qui grandit : avis ?"}  # fmt: skip
NEW_USER = {"id": "dr-new", "name": "Dr New", "role": "auditor", "organisation": "CNIL",
            "email": "new@example.fr", "password": "a long enough password"}  # fmt: skip


class World:
    """One application, its database, every demo person signed in, and the Lyon case."""

    def __init__(self, client: TestClient, settings: Settings, photo: bytes) -> None:
        self.client, self.settings, self.photo = client, settings, photo
        self.bearer = {person: sign_in(client, person) for person in PEOPLE if person != ANON}
        created = client.post(
            "/api/v1/cases",
            data={"questionnaire": json.dumps(QUESTIONNAIRE)},
            files=[("photos", ("p.jpg", photo, "image/jpeg"))],
            headers=self.bearer[GP],
        )
        assert created.status_code == 201, created.text
        self.case_id = created.json()["id"]
        self.photo_id = created.json()["photos"][0]["id"]

    def url(self, path: str) -> str:
        filled = (
            path.replace("{case_id}", str(self.case_id))
            .replace("{photo_id}", str(self.photo_id))
            .replace("{login}", "dr-nguyen")
            .replace("{version}", "1")
            .replace("{plot}", "roc")
            .replace("/static", "/static/cases.css")
        )
        return filled + ("?a=1&b=2" if path.endswith("/compare") else "")

    def body(self, method: str, path: str) -> dict[str, Any]:
        """A well-formed request body, so that a refusal is about access, not about the input."""
        if path == "/api/v1/cases" and method == "POST":
            return {
                "data": {"questionnaire": json.dumps(QUESTIONNAIRE)},
                "files": [("photos", ("p.jpg", self.photo, "image/jpeg"))],
            }
        if path == "/gp/requests/new" and method == "POST":
            return {
                "data": PAGE_FORM,
                "files": [("photo_close_up", ("p.jpg", self.photo, "image/jpeg"))],
            }
        if path == "/api/v1/quality":
            return {"files": [("file", ("p.jpg", self.photo, "image/jpeg"))]}
        if path == "/api/v1/cases/{case_id}/report":
            return {"json": REPORT}
        if path == "/cases/{case_id}/report":
            return {"data": {k: str(v) for k, v in REPORT.items()}}
        if path == "/api/v1/cases/{case_id}/outcomes":
            return {"json": OUTCOME}
        if path == "/cases/{case_id}/outcomes":
            return {"data": OUTCOME}
        if path == "/api/v1/users":
            return {"json": NEW_USER}
        if path.startswith("/api/v1/users/") and method == "PATCH":
            return {"json": {"phone": "04 00 00 00 00"}}
        if path == "/api/v1/auth/token":
            return {"json": {"login": "dr-martin", "password": "wrong password"}}
        if path.startswith("/api/") and method != "GET":
            return {"json": {"body": "Bonjour"}}
        if method == "POST":
            return {"data": {"body": "Bonjour"}}
        return {}

    def call(self, person: str, method: str, path: str) -> Any:
        """``path`` as ``person``: API routes with their bearer token, pages with their browser
        session and its CSRF token; nobody at all with no credentials."""
        client = self.client
        client.cookies.clear()
        client.headers.pop("X-CSRF-Token", None)
        headers: dict[str, str] = {}
        if person != ANON:
            if path.startswith("/api/"):
                headers = self.bearer[person]
            else:
                sign_in(client, person)  # session cookie + CSRF header
        return client.request(
            method, self.url(path), headers=headers, follow_redirects=False,
            **self.body(method, path),
        )  # fmt: skip

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(self.settings.sqlalchemy_url)
        try:
            with engine.connect() as connection:
                return {
                    table: sorted(
                        (tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}"))),
                        key=repr,
                    )
                    for table in DOMAIN_TABLES
                }
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, derm_images: list[Path]) -> Iterator[World]:
    from pipeline.quality import assess_bytes

    photo = next(
        p.read_bytes()
        for p in derm_images
        if assess_bytes(p.read_bytes(), max_bytes=10_000_000, max_pixels=50_000_000).acceptable
    )
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("access") / "data",
        mlflow_tracking_uri=None,
        database_url=None,
        scoring_worker=False,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield World(client, settings, photo)


def test_every_route_has_a_declared_access_rule(world: World) -> None:
    served = app_routes(world.client.app)
    missing = sorted(served - ACCESS.keys())
    stale = sorted(ACCESS.keys() - served)
    assert not missing, (
        f"routes without an access rule in tests/serving/test_access_routes.py: {missing}"
    )
    assert not stale, f"access rules for routes that no longer exist: {stale}"


FORBIDDEN = [
    pytest.param(method, path, person, id=f"{method} {path} as {person}")
    for (method, path), allowed in sorted(ACCESS.items())
    for person in PEOPLE
    if person not in allowed
]


@pytest.mark.parametrize(("method", "path", "person"), FORBIDDEN)
def test_a_forbidden_person_is_refused_and_nothing_changes(
    world: World, method: str, path: str, person: str
) -> None:
    before = world.snapshot()
    response = world.call(person, method, path)
    if person == ANON and method == "GET" and not path.startswith("/api/"):
        assert response.status_code == 303, response.text[:300]
        assert response.headers["location"].startswith("/login?next=")
    else:
        assert response.status_code in (401, 403, 404), (response.status_code, response.text[:300])
    assert world.snapshot() == before


ALLOWED_READS = [
    pytest.param(path, person, id=f"GET {path} as {person}")
    for (method, path), allowed in sorted(ACCESS.items())
    if method == "GET"
    for person in sorted(allowed)
]


@pytest.mark.parametrize(("path", "person"), ALLOWED_READS)
def test_an_allowed_person_is_not_refused(world: World, path: str, person: str) -> None:
    """The other half of the table: it must not be stricter than the service (a 404 is fine where
    the thing asked for does not exist, such as a report not written yet)."""
    response = world.call(person, "GET", path)
    assert response.status_code not in (401, 403), (response.status_code, response.text[:300])
    if response.status_code == 303:
        assert not response.headers["location"].startswith("/login")


def test_each_centre_sees_only_its_own_worklist_and_auditors_see_all(world: World) -> None:
    def listed(person: str) -> list[int]:
        response = world.call(person, "GET", "/api/v1/cases")
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert world.case_id in listed(READER)
    assert world.case_id in listed(AUDITOR)
    assert world.case_id not in listed(GRENOBLE)
    page = world.call(GRENOBLE, "GET", "/worklist")
    assert page.status_code == 200 and "PAT-ACCESS" not in page.text
    assert "PAT-ACCESS" in world.call(READER, "GET", "/worklist").text
    assert world.call(OTHER_GP, "GET", "/api/v1/cases").json()["items"] == []


def test_an_auditor_reads_a_case_page_without_any_form_to_change_it(world: World) -> None:
    audited = world.call(AUDITOR, "GET", "/cases/{case_id}")
    assert audited.status_code == 200 and "PAT-ACCESS" in audited.text
    assert f'action="/cases/{world.case_id}/' not in audited.text
    read = world.call(READER, "GET", "/cases/{case_id}")
    assert f'action="/cases/{world.case_id}/message"' in read.text
