"""The governance pages in the product's shell, in a real browser (Debian's Chromium, Playwright).

The data scientist lands on the models after signing in; the auditor reaches them from the
navigation; both find the same header as everywhere (French by default, the language switch,
sign-out); a shipped model built from a tree with uncommitted changes says so in plain words.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import seed_accounts, sign_in_page
from training.bootstrap import register_shipped_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DATA_SCIENTIST, AUDITOR = "ds-petit", "audit-moreau"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("browser-governance") / "data",
        mlflow_tracking_uri=None,
        database_url=None,
        scoring_worker=False,
    )
    seed_accounts(settings, DATA_SCIENTIST, AUDITOR)
    register_shipped_model(
        settings.shipped_model_dir,
        tracking_uri=settings.tracking_uri,
        registered_model_name=settings.registered_model_name,
        artifact_root=settings.artifact_root,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-governance", daemon=True)
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
        # A browser asking for a language the service does not speak gets its default, French.
        tab = browser.new_context(locale="de-DE").new_page()
        tab.set_default_timeout(20_000)
        yield tab
        browser.close()


def test_the_data_scientist_lands_on_the_models_in_the_shell_and_reads_the_lineage(
    base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    sign_in_page(page, base_url, DATA_SCIENTIST)
    assert page.url == f"{base_url}/governance"
    assert page.locator("html").get_attribute("lang") == "fr"
    expect(page.locator("#nav-models")).to_have_text("Modèles")
    expect(page.locator("#nav-models")).to_have_class("active")
    expect(page.locator(".langs a.active")).to_have_text("FR")
    expect(page.locator("#sign-out")).to_be_visible()
    expect(page.locator(".topbar .who")).to_contain_text("Julie Petit")
    expect(page.locator("#governance-nav")).to_contain_text("Dérive")

    # The shipped model was trained from a tree with uncommitted changes: said, not suffixed.
    shipped = json.loads((Settings().shipped_model_dir / "model.json").read_text(encoding="utf-8"))[
        "git_commit"
    ]
    assert shipped.endswith("-dirty")
    page.goto(f"{base_url}/governance/versions/1")
    expect(page.locator("#lineage-commit code")).to_have_text(shipped.removesuffix("-dirty"))
    expect(page.locator("#lineage-dirty")).to_contain_text("modifications non enregistrées")
    assert "-dirty" not in page.locator("#lineage").inner_text()

    page.click(".langs a:text-is('EN')")
    expect(page.locator("#nav-models")).to_have_text("Models")
    expect(page.locator("#lineage-dirty")).to_contain_text("uncommitted changes")
    page.click("#governance-nav a:text-is('Drift')")
    assert page.url.startswith(f"{base_url}/governance/drift")
    expect(page.locator("#nav-models")).to_have_class("active")
    page.click(".langs a:text-is('FR')")
    page.click("#sign-out")
    assert "/login" in page.url


def test_the_auditor_reaches_the_models_from_the_navigation(base_url: str, page: Any) -> None:
    from playwright.sync_api import expect

    sign_in_page(page, base_url, AUDITOR)
    assert "/governance" not in page.url  # the auditor's home is the cases
    page.click("#nav-models")
    assert page.url == f"{base_url}/governance"
    expect(page.locator("#versions")).to_contain_text("1")
    expect(page.locator("#sign-out")).to_be_visible()
