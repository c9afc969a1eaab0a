"""The GP photo-check page as the server renders it: language choice, what a phone needs, and
the wiring its script relies on. (What the script does with it: test_browser_gp_photo.py.)"""

from __future__ import annotations

import json
from html import unescape
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from pipeline.quality import PROBLEM_CODES
from serving.app import create_app
from serving.deps import LANG_COOKIE
from serving.settings import Settings


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the text of ``<script>`` blocks."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self._script_id: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script" and attributes.get("id"):
            self._script_id = attributes["id"]

    def handle_data(self, data: str) -> None:
        if self._script_id:
            self.scripts[self._script_id] = self.scripts.get(self._script_id, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script_id = None

    def find(self, tag: str, **wanted: str | None) -> list[dict[str, str | None]]:
        """Elements ``tag`` having every attribute in ``wanted`` (``None``: present, any value)."""
        return [
            attrs
            for name, attrs in self.tags
            if name == tag
            and all(
                key in attrs and (value is None or attrs[key] == value)
                for key, value in wanted.items()
            )
        ]


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def page_lang(response_text: str) -> str | None:
    return Elements(response_text).find("html")[0].get("lang")


def test_the_site_root_leads_to_the_photo_check_keeping_the_language(client: TestClient) -> None:
    plain = client.get("/", follow_redirects=False)
    english = client.get("/?lang=en", follow_redirects=False)

    assert plain.status_code == 303
    assert plain.headers["location"] == "/gp/photo"
    assert english.headers["location"] == "/gp/photo?lang=en"


def test_the_page_is_in_french_by_default(client: TestClient) -> None:
    response = client.get("/gp/photo")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert page_lang(response.text) == "fr"
    assert "Vérifier la photo d'une lésion" in unescape(response.text)
    assert "Prendre une photo" in response.text


def test_the_browser_language_is_followed_when_nothing_was_chosen(client: TestClient) -> None:
    english = client.get("/gp/photo", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    unsupported = client.get("/gp/photo", headers={"Accept-Language": "de-DE,de;q=0.9"})

    assert page_lang(english.text) == "en"
    assert "Take a photo" in english.text
    assert page_lang(unsupported.text) == "fr"


def test_a_language_chosen_with_lang_is_remembered_and_beats_the_browser(
    client: TestClient,
) -> None:
    chosen = client.get("/gp/photo?lang=en", headers={"Accept-Language": "fr-FR"})
    assert chosen.cookies.get(LANG_COOKIE) == "en"

    later = client.get("/gp/photo", headers={"Accept-Language": "fr-FR"})
    assert page_lang(later.text) == "en"

    back = client.get("/gp/photo?lang=fr")
    assert page_lang(back.text) == "fr"
    assert back.cookies.get(LANG_COOKIE) == "fr"


def test_the_service_default_language_applies_to_a_browser_that_says_nothing(
    settings: Settings,
) -> None:
    client = TestClient(create_app(settings.model_copy(update={"language": "en"})))

    assert page_lang(client.get("/gp/photo").text) == "en"


def test_the_page_opens_the_phone_camera_and_also_accepts_a_file(client: TestClient) -> None:
    page = Elements(client.get("/gp/photo").text)

    camera = page.find("input", type="file", accept="image/*", capture="environment")
    files = [a for a in page.find("input", type="file") if "capture" not in a]
    assert len(camera) == 1
    assert len(files) == 1
    assert "image/*" in (files[0]["accept"] or "")
    assert page.find("meta", name="viewport")


def test_the_verdict_is_announced_to_screen_readers(client: TestClient) -> None:
    page = Elements(client.get("/gp/photo").text)

    live = page.find("p", role="status")
    assert live and live[0].get("aria-live") == "polite"


def test_the_script_gets_the_endpoint_the_limit_and_a_title_for_every_problem(
    settings: Settings, client: TestClient
) -> None:
    page = Elements(client.get("/gp/photo?lang=en").text)

    root = page.find("div", **{"data-quality-check": None})[0]
    assert root["data-endpoint"] == "/api/v1/quality"
    assert root["data-lang"] == "en"
    assert root["data-max-bytes"] == str(settings.max_upload_bytes)
    strings = json.loads(page.scripts["gp-photo-strings"])
    assert set(PROBLEM_CODES) <= set(strings["problems"])
    assert strings["problems"]["blur"] == "Not sharp enough"
    assert "25 MB" in strings["errors"]["too_large"]
    assert page.find("script", src="/static/gp_photo.js")


def test_the_stylesheet_and_script_are_served(client: TestClient) -> None:
    css = client.get("/static/app.css")
    js = client.get("/static/gp_photo.js")

    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert "dataset.endpoint" in js.text  # the endpoint comes from the page, not hard-coded
