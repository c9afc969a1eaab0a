"""The ``Idempotency-Key`` header through HTTP: a retried submission answers with the same case.

Real application, SQLite and photo store, real photos, signed in through the real sign-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import sign_in

GP, READER = "dr-martin", "dr-bernard"

QUESTIONNAIRE = {
    "patient_pseudonym": "PAT-RETRY",
    "age": 38,
    "sex": "female",
    "fitzpatrick": "II",
    "body_site": "back",
    "duration": "6_12_months",
    "clinical_question": "Naevus qui a changé de couleur, avis ?",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("idempotency") / "data",
        mlflow_tracking_uri=None,
        database_url=None,
        scoring_worker=False,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post(client: TestClient, photo: bytes, key: str | bytes | None) -> Any:
    headers: dict[str, Any] = dict(sign_in(client, GP))
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        "/api/v1/cases",
        data={"questionnaire": json.dumps(QUESTIONNAIRE)},
        files=[("photos", ("p.jpg", photo, "image/jpeg"))],
        headers=headers,
    )


def total(client: TestClient) -> int:
    return int(client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["total"])


def test_a_retry_with_the_same_key_gets_the_same_case(
    client: TestClient, derm_images: list[Path]
) -> None:
    before = total(client)
    photo = derm_images[3].read_bytes()
    first = post(client, photo, "3f2b8c1e-retry-one")
    again = post(client, photo, "3f2b8c1e-retry-one")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert total(client) == before + 1


def test_the_same_key_for_another_request_is_refused(
    client: TestClient, derm_images: list[Path]
) -> None:
    first = post(client, derm_images[4].read_bytes(), "key-used-once")
    assert first.status_code == 201
    before = total(client)
    other = post(client, derm_images[5].read_bytes(), "key-used-once")
    assert other.status_code == 422
    assert other.json()["detail"]["code"] == "idempotency_key_reused"
    assert total(client) == before


@pytest.mark.parametrize("bad_key", ["has space", "x" * 129, "é-accent".encode("latin-1")])
def test_a_malformed_key_is_refused(
    client: TestClient, derm_images: list[Path], bad_key: str | bytes
) -> None:
    before = total(client)
    response = post(client, derm_images[6].read_bytes(), bad_key)
    assert response.status_code == 422
    assert total(client) == before


def test_without_a_key_each_request_is_a_new_case(
    client: TestClient, derm_images: list[Path]
) -> None:
    before = total(client)
    photo = derm_images[7].read_bytes()
    assert post(client, photo, None).json()["id"] != post(client, photo, None).json()["id"]
    assert total(client) == before + 2
