"""The GP photo check in a real browser (Debian's Chromium through Playwright) against the real
service (uvicorn on a loopback port): choose a photo, read the verdict and the retake advice."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from PIL import Image, ImageFilter

from pipeline.quality import assess_bytes
from pipeline.quality_messages import message
from serving.app import create_app
from serving.settings import Settings

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The whole service, started as ``dermtriage serve`` starts it, in a background thread."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("gp-photo-data"),
        mlflow_tracking_uri=None,
        database_url=None,
        scoring_worker=False,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-gp-photo", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def photos(derm_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sharp derm-dev photo the check accepts, and the same photo blurred, as files to pick."""
    folder = tmp_path_factory.mktemp("photos")
    good = next((p for p in derm_images if assess_bytes(p.read_bytes()).acceptable), None)
    assert good is not None, "no acceptable image in the derm-dev sample"
    with Image.open(good) as image:
        blurred = image.convert("RGB").filter(ImageFilter.GaussianBlur(3))
    buffer = io.BytesIO()
    blurred.save(buffer, "JPEG", quality=92)
    (folder / "lesion-floue.jpg").write_bytes(buffer.getvalue())
    (folder / "lesion-nette.jpg").write_bytes(good.read_bytes())
    return {"blurred": folder / "lesion-floue.jpg", "good": folder / "lesion-nette.jpg"}


def test_a_blurred_photo_shows_the_french_retake_advice_on_a_phone(
    browser, base_url: str, photos: dict[str, Path]
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=PHONE, locale="fr-FR", has_touch=True)
    try:
        page = context.new_page()
        page.goto(base_url + "/")
        assert page.url.endswith("/gp/photo")
        expect(page.locator("html")).to_have_attribute("lang", "fr")

        page.locator("input[type=file][capture]").set_input_files(photos["blurred"])

        expect(page.locator("[data-verdict-title]")).to_have_text("Photo à reprendre")
        advice = page.locator(".advice__item[data-code=blur]")
        expect(advice).to_contain_text(message("blur", "fr"))
        expect(advice).to_contain_text("Netteté insuffisante")
        expect(page.locator("[role=status]")).to_contain_text(message("blur", "fr"))
        expect(page.locator("[data-file-name]")).to_have_text("lesion-floue.jpg")
        preview = page.locator("img[data-preview]")
        expect(preview).to_be_visible()
        assert preview.evaluate("img => img.complete && img.naturalWidth") == 224

        # Usable on a phone: nothing wider than the screen, buttons big enough for a thumb.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        take = page.locator("label.button--primary").bounding_box()
        assert take is not None and take["height"] >= 44
    finally:
        context.close()


def test_a_good_photo_is_declared_usable_in_english(
    browser, base_url: str, photos: dict[str, Path]
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=PHONE, locale="fr-FR")
    try:
        page = context.new_page()
        page.goto(base_url + "/gp/photo?lang=en")

        page.locator("input[type=file]:not([capture])").set_input_files(photos["good"])

        expect(page.locator("[data-verdict-title]")).to_have_text("Photo is usable")
        expect(page.locator(".advice__item")).to_have_count(0)
        expect(page.locator("[data-file-size]")).to_have_text("224 × 224 px")
    finally:
        context.close()


def test_a_document_that_is_not_a_photo_gets_the_unreadable_file_advice_without_a_preview(
    browser, base_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    letter = tmp_path / "courrier.jpg"
    letter.write_text("Cher confrère, je vous adresse Mme D. pour une lésion du dos.\n")
    context = browser.new_context(viewport=PHONE, locale="fr-FR")
    try:
        page = context.new_page()
        page.goto(base_url + "/gp/photo")

        page.locator("input[type=file]:not([capture])").set_input_files(letter)

        expect(page.locator("[data-verdict-title]")).to_have_text("Photo à reprendre")
        advice = page.locator(".advice__item[data-code=unreadable_file]")
        expect(advice).to_contain_text(message("unreadable_file", "fr"))
        expect(page.locator("[data-preview-fallback]")).to_be_visible()
        expect(page.locator("img[data-preview]")).to_be_hidden()
        expect(page.locator("[data-file-size-row]")).to_be_hidden()
    finally:
        context.close()
