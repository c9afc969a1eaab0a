"""Signing in, sessions, CSRF, API tokens, the sign-in rate limit and ``dermtriage users``.

Real everything: the application from ``create_app`` on a real database (SQLite, and PostgreSQL
where it matters: the rate limit must hold across workers), argon2 hashes, the real CLI.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from serving.app import create_app
from serving.cli import main
from serving.db.models import AuthToken, LoginFailure, Message, UserAccount
from serving.settings import Settings, get_settings
from serving.users import DEMO_PASSWORD
from tests.serving.conftest import seed_accounts, sign_in

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_client(
    settings: Settings, clock: Clock, base_url: str = "http://testserver"
) -> TestClient:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.clock = clock
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    # Only the accounts signed in without the helper (argon2 makes each one cost ~0.1 s on
    # purpose); sign_in() creates the others on demand.
    seed_accounts(settings, "dr-martin", "dr-leroy", "dr-bernard")
    with make_client(settings, clock) as test_client:
        yield test_client


def rows(settings: Settings, query: Any) -> list[Any]:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(query))
    finally:
        engine.dispose()


def login_form(client: TestClient) -> str:
    """Open the sign-in page; returns the CSRF token its form carries."""
    page = client.get("/login")
    assert page.status_code == 200
    match = re.search(r'id="sign-in-form".*?name="csrf_token" value="([^"]+)"', page.text, re.S)
    assert match, "the sign-in form has no CSRF token"
    return match.group(1)


def post_login(client: TestClient, login: str, password: str, **extra: str) -> Any:
    token = login_form(client)
    return client.post(
        "/login", data={"login": login, "password": password, "csrf_token": token, **extra}
    )


def api_token(client: TestClient, login: str, password: str = DEMO_PASSWORD) -> Any:
    return client.post("/api/v1/auth/token", json={"login": login, "password": password})


# --- passwords and sessions ------------------------------------------------------------------


def test_passwords_are_argon2_hashes_and_tokens_are_stored_hashed(
    client: TestClient, settings: Settings
) -> None:
    (hashed,) = rows(
        settings, select(UserAccount.password_hash).where(UserAccount.id == "dr-martin")
    )
    assert hashed[0].startswith("$argon2id$") and DEMO_PASSWORD not in hashed[0]

    response = post_login(client, "dr-martin", DEMO_PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/gp/requests"
    cookie = client.cookies["dermtriage_session"]
    stored = {r[0] for r in rows(settings, select(AuthToken.token_hash))}
    assert cookie not in stored
    assert hashlib.sha256(cookie.encode()).hexdigest() in stored


def test_the_session_cookie_is_httponly_lax_and_secure_unless_on_loopback(
    settings: Settings, clock: Clock
) -> None:
    seed_accounts(settings, "dr-martin")
    for overrides, secure in (
        ({}, False),  # the embedded default: http://127.0.0.1, no TLS
        ({"host": "0.0.0.0"}, True),  # reachable from elsewhere: behind TLS
        ({"cookie_secure": True}, True),
        ({"host": "0.0.0.0", "cookie_secure": False}, False),
    ):
        # over https, so that the client sends Secure cookies back as a browser would
        with make_client(
            settings.model_copy(update=overrides), clock, "https://testserver"
        ) as client:
            response = post_login(client, "dr-martin", DEMO_PASSWORD)
            header = next(
                h for h in response.headers.get_list("set-cookie") if "dermtriage_session" in h
            )
            flags = {part.strip().lower() for part in header.split(";")}
            assert "httponly" in flags and "samesite=lax" in flags
            assert ("secure" in flags) is secure, (overrides, header)


@pytest.mark.parametrize(
    ("login", "password"), [("dr-martin", "wrong password"), ("nobody", DEMO_PASSWORD)]
)
def test_a_wrong_password_or_login_shows_one_error_and_opens_no_session(
    client: TestClient, settings: Settings, login: str, password: str
) -> None:
    response = post_login(client, login, password)
    assert response.status_code == 401
    assert "Identifiant ou mot de passe incorrect." in response.text
    assert "dermtriage_session" not in response.headers.get("set-cookie", "")
    assert rows(settings, select(func.count()).select_from(AuthToken))[0][0] == 0


def test_the_sign_in_form_without_its_csrf_token_is_refused(client: TestClient) -> None:
    login_form(client)
    forged = client.post("/login", data={"login": "dr-martin", "password": DEMO_PASSWORD})
    assert forged.status_code == 403
    assert "dermtriage_session" not in client.cookies


def test_sign_in_never_redirects_off_site(client: TestClient) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = post_login(client, "dr-bernard", DEMO_PASSWORD, next=target)
        assert response.headers["location"] == "/worklist"
    response = post_login(client, "dr-bernard", DEMO_PASSWORD, next="/cases/3")
    assert response.headers["location"] == "/cases/3"


def test_logout_revokes_the_session_even_for_a_copied_cookie(client: TestClient) -> None:
    sign_in(client, "dr-bernard")
    cookie = client.cookies["dermtriage_session"]
    assert client.get("/worklist").status_code == 200
    page = client.get("/worklist").text
    token = re.search(r'action="/logout".*?name="csrf_token" value="([^"]+)"', page, re.S)
    assert token, "the sign-out form carries a CSRF token"
    del client.headers["X-CSRF-Token"]
    assert client.post("/logout").status_code == 403  # a forged sign-out does nothing
    out = client.post("/logout", data={"csrf_token": token.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    replay = client.get("/worklist", headers={"Cookie": f"dermtriage_session={cookie}"})
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
    api = client.get("/api/v1/cases", headers={"Cookie": f"dermtriage_session={cookie}"})
    assert api.status_code == 401


def test_a_session_expires(client: TestClient, clock: Clock, settings: Settings) -> None:
    sign_in(client, "dr-bernard")
    clock.now += timedelta(hours=settings.session_hours - 0.1)
    assert client.get("/worklist").status_code == 200
    clock.now += timedelta(hours=0.2)
    assert client.get("/worklist").status_code == 303


# --- CSRF on forms and cookie-authenticated API calls ----------------------------------------


def _a_case(client: TestClient, photo: bytes) -> int:
    """A case sent by dr-martin through the API (bearer token: no CSRF token needed)."""
    import json

    questionnaire = {
        "patient_pseudonym": "PAT-CSRF", "age": 50, "sex": "female", "fitzpatrick": "II",
        "body_site": "back", "duration": "1_6_months",
        "clinical_question": "Lésion pigmentée récente, avis ?",
    }  # fmt: skip
    response = client.post(
        "/api/v1/cases",
        data={"questionnaire": json.dumps(questionnaire)},
        files=[("photos", ("p.jpg", photo, "image/jpeg"))],
        headers=sign_in(client, "dr-martin"),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.fixture
def photo(clean_photos: list[Path]) -> bytes:
    return clean_photos[0].read_bytes()


def test_a_form_post_without_a_valid_csrf_token_is_403_and_changes_nothing(
    client: TestClient, settings: Settings, photo: bytes
) -> None:
    case_id = _a_case(client, photo)
    sign_in(client, "dr-bernard")
    page = client.get(f"/cases/{case_id}").text
    tokens = set(re.findall(r'name="csrf_token" value="([^"]+)"', page))
    forms = len(re.findall(r'<form method="post"', page))
    assert len(tokens) == 1 and forms >= 3, "every form of the page carries the session's token"
    del client.headers["X-CSRF-Token"]
    for data in ({"body": "Bonjour"}, {"body": "Bonjour", "csrf_token": "forged"}):
        assert client.post(f"/cases/{case_id}/message", data=data).status_code == 403
    assert rows(settings, select(func.count()).select_from(Message))[0][0] == 0
    ok = client.post(
        f"/cases/{case_id}/message", data={"body": "Bonjour", "csrf_token": tokens.pop()}
    )
    assert ok.status_code == 303
    assert rows(settings, select(func.count()).select_from(Message))[0][0] == 1


def test_cookie_authenticated_api_calls_need_the_csrf_header_bearer_calls_do_not(
    client: TestClient, photo: bytes
) -> None:
    case_id = _a_case(client, photo)
    bearer = sign_in(client, "dr-bernard")  # also leaves a session cookie and its CSRF header
    csrf = client.headers.pop("X-CSRF-Token")
    url = f"/api/v1/cases/{case_id}/messages"
    assert client.post(url, json={"body": "Sans jeton"}).status_code == 403
    assert client.get(f"/api/v1/cases/{case_id}").status_code == 200  # reads need none
    with_header = client.post(url, json={"body": "Avec"}, headers={"X-CSRF-Token": csrf})
    assert with_header.status_code == 201
    client.cookies.clear()
    assert client.post(url, json={"body": "Par jeton"}, headers=bearer).status_code == 201


# --- API tokens ------------------------------------------------------------------------------


def test_an_api_token_works_until_revoked(client: TestClient, settings: Settings) -> None:
    issued = api_token(client, "dr-bernard")
    assert issued.status_code == 200 and issued.json()["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert client.get("/api/v1/auth/me", headers=headers).json()["id"] == "dr-bernard"
    assert client.delete("/api/v1/auth/token", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert client.get("/api/v1/cases", headers=headers).status_code == 401
    wrong = api_token(client, "dr-bernard", "not the password")
    assert wrong.status_code == 401 and "access_token" not in wrong.text


def test_a_disabled_account_cannot_sign_in_and_its_tokens_stop(
    client: TestClient, settings: Settings
) -> None:
    reader = sign_in(client, "dr-bernard")
    admin = sign_in(client, "admin")
    client.cookies.clear()
    disabled = client.post("/api/v1/users/dr-bernard/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    assert client.get("/api/v1/auth/me", headers=reader).status_code == 401
    assert api_token(client, "dr-bernard").status_code == 401
    assert post_login(client, "dr-bernard", DEMO_PASSWORD).status_code == 401


def test_only_admins_manage_accounts(client: TestClient, settings: Settings) -> None:
    new = {
        "id": "dr-blanc", "name": "Dr Léa Blanc", "role": "first_reader",
        "organisation": "CRD Grenoble", "centre": "crd-grenoble",
        "email": "lea.blanc@example.fr", "password": "a long enough password",
    }  # fmt: skip
    for user in ("dr-bernard", "audit-moreau", "ds-petit"):
        headers = sign_in(client, user)
        assert client.post("/api/v1/users", json=new, headers=headers).status_code == 403
        assert client.get("/api/v1/users", headers=headers).status_code == 403
    admin = sign_in(client, "admin")
    created = client.post("/api/v1/users", json=new, headers=admin)
    assert created.status_code == 201 and created.json()["centre"] == "crd-grenoble"
    again = client.post("/api/v1/users", json=new, headers=admin)
    assert again.status_code == 422 and "taken" in again.text
    weak = client.post(
        "/api/v1/users", json={**new, "id": "dr-x", "password": "short"}, headers=admin
    )
    assert weak.status_code == 422
    assert api_token(client, "dr-blanc", "a long enough password").status_code == 200


def test_sign_ins_sign_outs_and_account_changes_go_to_the_audit_trail(
    client: TestClient, settings: Settings
) -> None:
    from serving import audit
    from serving.db.session import Database

    assert post_login(client, "dr-bernard", "wrong password").status_code == 401
    assert post_login(client, "dr-bernard", DEMO_PASSWORD).status_code == 303
    page = client.get("/worklist").text
    token = re.search(r'action="/logout".*?name="csrf_token" value="([^"]+)"', page, re.S)
    assert token and client.post("/logout", data={"csrf_token": token.group(1)}).status_code == 303
    admin = sign_in(client, "admin")
    client.post("/api/v1/users/dr-bernard/disable", headers=admin)
    client.delete("/api/v1/auth/token", headers=admin)

    trail = rows(settings, text(
        "SELECT actor_id, actor_role, action, details FROM audit_events ORDER BY seq"))  # fmt: skip
    events = [(r[0], r[1], r[2]) for r in trail if r[2].startswith(("auth.", "account."))]
    assert events == [
        ("dr-bernard", "unauthenticated", "auth.sign_in_failed"),
        ("dr-bernard", "first_reader", "auth.sign_in"),
        ("dr-bernard", "first_reader", "auth.sign_out"),
        ("admin", "admin", "auth.sign_in"),  # the helper's form sign-in
        ("admin", "admin", "auth.token_issued"),
        ("admin", "admin", "account.disable"),
        ("admin", "admin", "auth.token_revoked"),
    ]
    assert DEMO_PASSWORD not in repr(trail)
    database = Database(settings.sqlalchemy_url)
    try:
        with database.session() as session:
            assert audit.verify(session).intact
    finally:
        database.dispose()


def test_an_account_made_by_an_admin_works_and_is_named_in_the_case_history(
    client: TestClient, photo: bytes
) -> None:
    case_id = _a_case(client, photo)
    new = {
        "id": "dr-blanc", "name": "Dr Léa Blanc", "role": "first_reader", "organisation": "CRD",
        "centre": "crd-lyon", "email": "lea.blanc@example.fr", "rpps": "10100000099",
        "password": "a long enough password",
    }  # fmt: skip
    assert (
        client.post("/api/v1/users", json=new, headers=sign_in(client, "admin")).status_code == 201
    )
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token")  # the admin's, left by sign_in()
    assert post_login(client, "dr-blanc", "a long enough password").status_code == 303
    review = client.post(f"/cases/{case_id}/review", data={"csrf_token": _page_csrf(client)})
    assert review.status_code == 303
    sign_in(client, "dr-bernard")  # a colleague reads the case: its history names her
    assert "Dr Léa Blanc" in client.get(f"/cases/{case_id}").text


def _page_csrf(client: TestClient) -> str:
    page = client.get("/worklist").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


# --- the sign-in rate limit ------------------------------------------------------------------


def test_five_failures_lock_the_login_for_the_window_across_restarts(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """On SQLite and PostgreSQL: failures are rows, so a second worker or a restart sees them."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    seed_accounts(settings, "dr-martin", "dr-leroy")
    with make_client(settings, clock) as client:
        for _ in range(settings.login_max_failures):
            assert api_token(client, "dr-martin", "guess").status_code == 401
        locked = api_token(client, "dr-martin")  # even the right password
        assert locked.status_code == 429
        assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
        assert post_login(client, "dr-martin", DEMO_PASSWORD).status_code == 429
        assert api_token(client, "dr-leroy").status_code == 200  # other logins are unaffected
    with make_client(settings, clock) as restarted:  # another process, same database
        assert api_token(restarted, "dr-martin").status_code == 429
        clock.now += timedelta(minutes=settings.login_window_minutes, seconds=1)
        assert api_token(restarted, "dr-martin").status_code == 200
    assert rows(settings, select(func.count()).select_from(LoginFailure).where(
        LoginFailure.login == "dr-martin"))[0][0] == 0  # fmt: skip


def test_a_success_resets_the_count_and_one_client_is_limited_across_logins(
    client: TestClient, settings: Settings
) -> None:
    for _ in range(settings.login_max_failures - 1):
        assert api_token(client, "dr-martin", "guess").status_code == 401
    assert api_token(client, "dr-martin").status_code == 200
    for _ in range(settings.login_max_failures - 1):
        assert api_token(client, "dr-martin", "guess").status_code == 401
    assert api_token(client, "dr-martin").status_code == 200  # the count started again

    limited = settings.model_copy(update={"login_max_failures_per_client": 3})
    client.app.state.settings = limited  # type: ignore[attr-defined]
    for login in ("a", "b", "c"):
        assert api_token(client, login, "guess").status_code == 401
    assert api_token(client, "dr-leroy").status_code == 429  # same address, another login


def test_make_run_seeds_the_demo_accounts_that_the_readme_and_the_banner_list(
    settings: Settings, clock: Clock
) -> None:
    from serving.commands.serve import demo_banner, seed_demo_accounts
    from serving.users import DEMO_USERS

    assert seed_demo_accounts(settings) == len(DEMO_USERS)
    assert seed_demo_accounts(settings) == 0  # a restart leaves them (and their passwords) alone
    banner = "\n".join(demo_banner())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Demo accounts", 1)[1].split("\n## ", 1)[0]
    assert DEMO_PASSWORD in banner and DEMO_PASSWORD in section
    for user in DEMO_USERS:
        assert user.id in banner and f"`{user.id}`" in section, user.id
    with make_client(settings, clock) as client:
        for login in ("dr-roux", "ds-petit"):  # the newer roles sign in like the others
            assert api_token(client, login).status_code == 200


# --- dermtriage users ------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("DERMTRIAGE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


def test_users_create_list_reset_and_disable_from_the_command_line(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    clock: Clock,
) -> None:  # fmt: skip
    create = [
        "users", "create", "dr-roy", "--name", "Dr Jean Roy", "--role", "senior",
        "--email", "jean.roy@example.fr", "--centre", "crd-lyon", "--password-stdin",
    ]  # fmt: skip
    assert run_cli(monkeypatch, create, "correct horse battery\n") == 0
    assert run_cli(monkeypatch, create, "correct horse battery\n") == 2  # login taken
    weak = ["users", "create", "dr-x", "--name", "X", "--role", "auditor", "--email", "x@e.fr",
            "--password-stdin"]  # fmt: skip
    assert run_cli(monkeypatch, weak, "short\n") == 2
    no_centre = ["users", "create", "dr-y", "--name", "Y", "--role", "first_reader",
                 "--email", "y@e.fr", "--password-stdin"]  # fmt: skip
    assert run_cli(monkeypatch, no_centre, "long enough password\n") == 2
    capsys.readouterr()
    assert run_cli(monkeypatch, ["users", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"dr-roy\s+senior\s+crd-lyon\s+active\s+Dr Jean Roy", listing)
    assert "dr-x" not in listing and "dr-y" not in listing

    with make_client(cli_env, clock) as client:
        token = api_token(client, "dr-roy", "correct horse battery")
        assert token.status_code == 200
        old = {"Authorization": f"Bearer {token.json()['access_token']}"}
        reset = ["users", "password", "dr-roy", "--password-stdin"]
        assert run_cli(monkeypatch, reset, "short\n") == 2
        assert run_cli(monkeypatch, reset, "staple battery horse\n") == 0
        assert client.get("/api/v1/auth/me", headers=old).status_code == 401  # signed out
        assert api_token(client, "dr-roy", "correct horse battery").status_code == 401
        token = api_token(client, "dr-roy", "staple battery horse")
        assert token.status_code == 200
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert run_cli(monkeypatch, ["users", "disable", "dr-roy"]) == 0
        assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
        assert api_token(client, "dr-roy", "staple battery horse").status_code == 401
    assert run_cli(monkeypatch, ["users", "disable", "nobody"]) == 2
    capsys.readouterr()
    run_cli(monkeypatch, ["users", "list"])
    assert re.search(r"dr-roy\s+senior\s+crd-lyon\s+disabled", capsys.readouterr().out)
    assert (
        rows(cli_env, text("SELECT count(*) FROM users WHERE password_hash LIKE '$argon2id$%'"))[0][
            0
        ]
        == 1
    )
