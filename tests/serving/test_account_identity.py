"""Who a request is from: the requester's account, corrected by an administrator or the person.

Issue 13, finding 4: a GP could send a request in a colleague's name by writing the colleague's
name and RPPS number into the questionnaire. The identity (name, practice, RPPS number, e-mail,
phone) is now a property of the account: ``PATCH /api/v1/users/{login}`` (administrators),
``PATCH /api/v1/users/me`` (the person) and ``dermtriage users update`` change it; requests carry
it, and those already sent keep the name and practice they were sent under. Real application,
real SQLite database, real CLI; the demo accounts of ``serving.users``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from serving.app import create_app
from serving.cli import main
from serving.db.models import AuditEvent, Case, UserAccount
from serving.settings import Settings, get_settings
from tests.serving.conftest import seed_accounts, sign_in

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
GP, OTHER_GP, READER, ADMIN = "dr-martin", "dr-leroy", "dr-bernard", "admin"
QUESTIONNAIRE = {
    "patient_pseudonym": "PAT-ID", "age": 50, "sex": "female", "fitzpatrick": "II",
    "body_site": "back", "duration": "1_6_months",
    "clinical_question": "Lésion pigmentée récente, avis ?",
}  # fmt: skip


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.clock = lambda: NOW
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def photo(clean_photos: list[Path]) -> bytes:
    return clean_photos[0].read_bytes()


def send(client: TestClient, photo: bytes, who: str = GP) -> dict[str, Any]:
    response = client.post(
        "/api/v1/cases",
        data={"questionnaire": json.dumps(QUESTIONNAIRE)},
        files=[("photos", ("p.jpg", photo, "image/jpeg"))],
        headers=sign_in(client, who),
    )
    assert response.status_code == 201, response.text
    return response.json()


def stored(settings: Settings, model: Any, *where: Any) -> list[Any]:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(model).where(*where)))
    finally:
        engine.dispose()


def test_the_person_corrects_their_identity_and_new_requests_carry_it(
    client: TestClient, settings: Settings, photo: bytes
) -> None:
    before = send(client, photo)
    gp = sign_in(client, GP)
    me = client.get("/api/v1/auth/me", headers=gp).json()
    assert (me["rpps"], me["organisation"]) == ("10101234564", "Cabinet médical des Lilas, Lyon")

    moved = {"organisation": "Cabinet des Lilas, Villeurbanne", "phone": "04 72 00 00 09"}
    changed = client.patch("/api/v1/users/me", json=moved, headers=gp)
    assert changed.status_code == 200, changed.text
    assert changed.json()["organisation"] == moved["organisation"]
    assert client.get("/api/v1/auth/me", headers=gp).json()["phone"] == "04 72 00 00 09"

    after = send(client, photo)
    cases = {c.id: c for c in stored(settings, Case, Case.requester_id == GP)}
    assert cases[before["id"]].requester_organisation == "Cabinet médical des Lilas, Lyon"
    assert cases[after["id"]].requester_organisation == "Cabinet des Lilas, Villeurbanne"
    sign_in(client, READER)
    page = client.get(f"/cases/{after['id']}").text
    assert "Cabinet des Lilas, Villeurbanne" in page and "04 72 00 00 09" in page

    trail = stored(settings, AuditEvent, AuditEvent.action == "account.update")
    assert [(e.actor_id, e.details) for e in trail] == [
        (GP, {"login": GP, "fields": ["organisation", "phone"]})  # names, never the values
    ]


@pytest.mark.parametrize(
    ("change", "status", "why"),
    [
        ({"role": "admin"}, 422, "extra_forbidden"),  # identity only: not the role
        ({"centre": "crd-grenoble"}, 422, "extra_forbidden"),  # nor the centre
        ({"rpps": "10109876549"}, 422, "belongs to another account"),  # dr-leroy's
        ({"rpps": None}, 422, "needs an RPPS number"),  # a requester signs with one
        ({"rpps": "1234"}, 422, "string_pattern_mismatch"),
        ({"name": ""}, 422, "string_too_short"),
    ],
)
def test_an_identity_a_gp_may_not_give_themself_is_refused_and_nothing_changes(
    client: TestClient, settings: Settings, change: dict[str, Any], status: int, why: str
) -> None:
    seed_accounts(settings, OTHER_GP)
    gp = sign_in(client, GP)
    before = stored(settings, UserAccount, UserAccount.id == GP)
    refused = client.patch("/api/v1/users/me", json=change, headers=gp)
    assert refused.status_code == status and why in refused.text, refused.text
    assert stored(settings, UserAccount, UserAccount.id == GP) == before


def test_only_an_administrator_corrects_someone_elses_identity(
    client: TestClient, settings: Settings, photo: bytes
) -> None:
    seed_accounts(settings, OTHER_GP)
    rename = {"name": "Dr Paul Leroy-Marchand"}
    for person in (GP, READER):
        assert (
            client.patch("/api/v1/users/dr-leroy", json=rename, headers=sign_in(client, person))
        ).status_code == 403
    admin = sign_in(client, ADMIN)
    assert client.patch("/api/v1/users/nobody", json=rename, headers=admin).status_code == 404
    done = client.patch("/api/v1/users/dr-leroy", json=rename, headers=admin)
    assert done.status_code == 200 and done.json()["name"] == "Dr Paul Leroy-Marchand"
    assert send(client, photo, OTHER_GP)["requester"] == {
        "id": OTHER_GP, "name": "Dr Paul Leroy-Marchand"
    }  # fmt: skip
    trail = stored(settings, AuditEvent, AuditEvent.action == "account.update")
    assert [(e.actor_id, e.details) for e in trail] == [
        (ADMIN, {"login": OTHER_GP, "fields": ["name"]})
    ]


def test_a_requester_account_needs_an_rpps_number_and_a_practice(
    client: TestClient, settings: Settings
) -> None:
    new = {"id": "dr-neuf", "name": "Dr Jeanne Neuf", "role": "requester", "centre": "crd-lyon",
           "email": "jeanne.neuf@example.fr", "password": "a long enough password"}  # fmt: skip
    admin = sign_in(client, ADMIN)
    incomplete_ones = ({**new, "organisation": "Cabinet Neuf"},
                       {**new, "organisation": " ", "rpps": "10100000990"})  # fmt: skip
    for incomplete in incomplete_ones:
        refused = client.post("/api/v1/users", json=incomplete, headers=admin)
        assert refused.status_code == 422 and "RPPS number and a practice" in refused.text
    taken = {**new, "organisation": "Cabinet Neuf", "rpps": "10101234564"}  # dr-martin's
    sign_in(client, GP)
    assert client.post("/api/v1/users", json=taken, headers=admin).status_code == 422
    whole = {**new, "organisation": "Cabinet Neuf", "rpps": "10100000990"}
    created = client.post("/api/v1/users", json=whole, headers=admin)
    assert created.status_code == 201 and created.json()["rpps"] == "10100000990"


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("DERMTRIAGE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_dermtriage_users_update_corrects_an_identity(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_accounts(cli_env, GP, OTHER_GP)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    update = ["users", "update", GP, "--organisation", "Maison de santé des Lilas"]
    assert main([*update, "--rpps", "10109876549"]) == 2  # dr-leroy's number: refused
    assert main(update) == 0
    assert "organisation" in capsys.readouterr().out
    assert main(["users", "update", GP]) == 2  # nothing to change
    assert main(["users", "update", "nobody", "--name", "X"]) == 2
    engine = create_engine(cli_env.sqlalchemy_url)
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT organisation, rpps FROM users WHERE id = :id"), {"id": GP}
        ).one()
        actions = connection.execute(
            text("SELECT actor_role, details FROM audit_events WHERE action = 'account.update'")
        ).all()
    engine.dispose()
    assert tuple(row) == ("Maison de santé des Lilas", "10101234564")
    assert [(role, json.loads(details) if isinstance(details, str) else details)
            for role, details in actions] == [
        ("operator", {"login": GP, "fields": ["organisation"]})
    ]  # fmt: skip
