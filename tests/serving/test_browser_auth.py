"""Signing in and out in a real browser (Debian's Chromium through Playwright) on a live server.

A wrong password shows the error and no session; the right one lands on the user's home page
with an HttpOnly session cookie; every form of the pages carries the CSRF token; a form posted
from another site (no token) is refused; signing out revokes the session, so the copied cookie
no longer opens anything.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from serving.app import create_app
from serving.settings import Settings
from serving.users import DEMO_PASSWORD
from tests.serving.conftest import seed_accounts, sign_in_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("browser-auth") / "data",
        mlflow_tracking_uri=None,
        database_url=None,
        scoring_worker=False,
    )
    seed_accounts(settings, "dr-martin", "dr-bernard")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-auth", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture
def page(chromium_executable: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=["--no-sandbox"]
        )
        context = browser.new_context(locale="fr-FR")
        tab = context.new_page()
        tab.set_default_timeout(20_000)
        yield tab
        browser.close()


def test_sign_in_with_a_password_csrf_in_forms_and_sign_out(
    base_url: str, page: Any, clean_photos: list[Path]
) -> None:
    from playwright.sync_api import expect

    # A wrong password: the error, still on the sign-in page, no session cookie.
    page.goto(f"{base_url}/worklist")
    expect(page).to_have_url(f"{base_url}/login?next=/worklist")
    page.fill("#login", "dr-bernard")
    page.fill("#password", "not the password")
    page.click("#sign-in")
    expect(page.locator("#sign-in-error")).to_have_text("Identifiant ou mot de passe incorrect.")
    assert not [c for c in page.context.cookies() if c["name"] == "dermtriage_session"]

    # The right one: back to the page asked for, with an HttpOnly, SameSite=Lax session cookie.
    page.fill("#password", DEMO_PASSWORD)
    page.click("#sign-in")
    expect(page).to_have_url(f"{base_url}/worklist")
    expect(page.locator("h1")).to_have_text("File de lecture")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "dermtriage_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert (
        page.evaluate("document.cookie").find("dermtriage_session") == -1
    )  # scripts can't read it

    # A GP's case, opened by the reader: every form carries the session's CSRF token.
    page.context.clear_cookies()
    sign_in_page(page, base_url, "dr-martin")
    page.goto(f"{base_url}/gp/requests/new")
    page.fill("#f-patient_pseudonym", "PAT-BROWSER")
    page.fill("#f-age", "44")
    page.select_option("#f-sex", "male")
    page.select_option("#f-fitzpatrick", "III")
    page.select_option("#f-body_site", "back")
    page.select_option("#f-duration", "1_6_months")
    page.fill("#f-clinical_question", "Lésion pigmentée : avis ?")
    page.set_input_files("#photo-close_up", str(clean_photos[0]))
    page.click("#submit-request")
    expect(page.locator(".alert.ok")).to_be_visible()
    case_id = page.locator("tr", has_text="PAT-BROWSER").get_attribute("data-case-id")

    page.context.clear_cookies()
    sign_in_page(page, base_url, "dr-bernard")
    page.goto(f"{base_url}/cases/{case_id}")
    forms = page.locator("form[method='post']")
    assert forms.count() >= 3
    tokens = {
        forms.nth(i).locator("input[name='csrf_token']").get_attribute("value")
        for i in range(forms.count())
    }
    assert len(tokens) == 1 and None not in tokens and "" not in tokens

    # A form posted from elsewhere (the browser sends the cookie, but no token): refused.
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "dermtriage_session"]
    forged = page.request.post(f"{base_url}/cases/{case_id}/review", form={"x": "1"})
    assert forged.status == 403
    page.reload()
    expect(page.locator("#case-status")).to_have_attribute("data-status", "submitted")

    # Signing out revokes the session on the server: the copied cookie opens nothing any more.
    page.click("#sign-out")
    expect(page).to_have_url(f"{base_url}/login")
    replay = httpx.get(
        f"{base_url}/worklist", cookies={"dermtriage_session": cookie["value"]},
        follow_redirects=False,
    )  # fmt: skip
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
    page.goto(f"{base_url}/worklist")
    expect(page).to_have_url(f"{base_url}/login?next=/worklist")
