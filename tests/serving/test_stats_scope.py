"""Activity statistics are scoped like the worklist: a reader counts their own centre's requests.

The security report: ``GET /api/v1/stats`` as a Grenoble first reader counted Lyon's requests.
Now experts (first readers, seniors) see their centre's figures, in the API and on ``/stats``;
the auditor, the data scientist and the admin keep the all-centres view (docs/access.md). On
SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.workflow import Role
from serving import auth
from serving.app import create_app
from serving.settings import Settings
from serving.users import DEMO_PASSWORD, GRENOBLE, LYON, User
from tests.serving.conftest import sign_in
from tests.serving.test_api_cases import submit

LYON_GP, GRENOBLE_GP = "dr-martin", "dr-blanc"
LYON_READER, LYON_SENIOR, GRENOBLE_READER = "dr-bernard", "pr-dubois", "dr-roux"
EVERY_CENTRE = ("audit-moreau", "ds-petit", "admin")


@pytest.fixture
def client(database_url: str, tmp_path: Path, clean_photos: list[Path]) -> Iterator[TestClient]:
    """Two Lyon requests and one Grenoble request (sent by a Grenoble GP made for the test)."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, mlflow_tracking_uri=None,
        scoring_worker=False,
    )  # fmt: skip
    with TestClient(create_app(settings)) as test_client:
        runtime = test_client.app.state.case_runtime  # type: ignore[attr-defined]
        with runtime.database.session() as session:
            grenoble_gp = User(
                id=GRENOBLE_GP, name="Dr Léa Blanc", role=Role.requester,
                organisation="Cabinet de la Bastille", email="lea.blanc@example.fr",
                rpps="10100000099", centre=GRENOBLE,
            )  # fmt: skip
            auth.create_account(session, grenoble_gp, DEMO_PASSWORD, now=datetime.now(UTC))
        photo = clean_photos[0].read_bytes()
        for gp, pseudonym in ((LYON_GP, "PAT-LYON-1"), (LYON_GP, "PAT-LYON-2"),
                              (GRENOBLE_GP, "PAT-GRE-1")):  # fmt: skip
            sent = submit(test_client, [photo], user=gp, patient_pseudonym=pseudonym)
            assert sent.status_code == 201, sent.text
        yield test_client


def api_stats(client: TestClient, person: str) -> dict:
    response = client.get("/api/v1/stats", headers=sign_in(client, person))
    assert response.status_code == 200, response.text
    return response.json()


def page_total(client: TestClient, person: str) -> tuple[int, str]:
    sign_in(client, person)
    page = client.get("/stats", params={"lang": "en"})
    assert page.status_code == 200, page.text[:300]
    total = re.search(
        r'<div class="value">(\d+)</div><div class="label">Requests received', page.text
    )
    scope = re.search(r'<p id="stats-scope">([^<]*)</p>', page.text)
    assert total and scope, page.text[:2000]
    return int(total.group(1)), scope.group(1)


def test_statistics_follow_the_worklists_scope(client: TestClient) -> None:
    """One world per database (each sign-in costs argon2 hashes), every role asked in turn."""
    grenoble = api_stats(client, GRENOBLE_READER)
    assert grenoble["total_requests"] == 1, "a Grenoble reader counts Lyon's requests"
    assert grenoble["centre"] == GRENOBLE
    assert sum(sum(w["requests"].values()) for w in grenoble["weeks"]) == 1
    assert sum(t["requests"] for t in grenoble["by_tier"].values()) == 1
    for person in (LYON_READER, LYON_SENIOR):
        lyon = api_stats(client, person)
        assert (lyon["total_requests"], lyon["centre"]) == (2, LYON), person
    assert page_total(client, GRENOBLE_READER) == (1, f"Requests sent to the {GRENOBLE} centre.")
    assert page_total(client, LYON_READER) == (2, f"Requests sent to the {LYON} centre.")

    # The auditor, the data scientist and the admin keep the all-centres view.
    for person in EVERY_CENTRE:
        every = api_stats(client, person)
        assert (every["total_requests"], every["centre"]) == (3, None), person
        assert page_total(client, person) == (3, "Requests to every centre."), person

    # Requesters still have no statistics at all.
    for person in (LYON_GP, GRENOBLE_GP):
        assert client.get("/api/v1/stats", headers=sign_in(client, person)).status_code == 403
