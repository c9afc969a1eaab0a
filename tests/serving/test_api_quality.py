"""``POST /api/v1/quality``: the pipeline's verdict on real photos, and clear refusals of requests
that carry no photo to judge, without ever reading more than the upload limit."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from pipeline.quality import assess_bytes
from pipeline.quality_messages import message
from serving.app import create_app
from serving.settings import Settings
from serving.uploads import MULTIPART_OVERHEAD_BYTES, display_name

URL = "/api/v1/quality"


def client_for(settings: Settings) -> TestClient:
    """The real application; its lifespan (database, scoring worker) is not started because the
    quality check needs neither."""
    return TestClient(create_app(settings))


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return client_for(settings)


@pytest.fixture(scope="module")
def good_photo(derm_images: list[Path]) -> Path:
    """The first derm-dev image of the sample that the quality check accepts."""
    for path in derm_images:
        if assess_bytes(path.read_bytes()).acceptable:
            return path
    pytest.fail("no acceptable image in the derm-dev sample: the quality check rejects them all")


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def blurred_jpeg(good_photo: Path) -> bytes:
    """The good photo out of focus: a Gaussian blur no dermatologist would accept."""
    with Image.open(good_photo) as image:
        return jpeg(image.convert("RGB").filter(ImageFilter.GaussianBlur(3)))


def codes(answer: dict[str, Any]) -> list[str]:
    return [problem["code"] for problem in answer["problems"]]


def test_a_sharp_dermoscopy_photo_is_acceptable_and_answered_like_the_command_line(
    client: TestClient, good_photo: Path
) -> None:
    data = good_photo.read_bytes()
    response = client.post(URL, files={"file": (good_photo.name, data, "image/jpeg")})

    assert response.status_code == 200
    answer = response.json()
    assert answer == assess_bytes(data).to_dict(file=good_photo.name)
    assert list(answer) == ["file", "acceptable", "problems", "metrics"]
    assert answer["acceptable"] is True
    assert answer["problems"] == []
    assert answer["metrics"]["original_width"] == 224


def test_a_blurred_photo_is_refused_with_the_french_retake_advice_by_default(
    client: TestClient, blurred_jpeg: bytes
) -> None:
    response = client.post(URL, files={"file": ("lesion.jpg", blurred_jpeg, "image/jpeg")})

    assert response.status_code == 200
    answer = response.json()
    assert answer["file"] == "lesion.jpg"
    assert answer["acceptable"] is False
    assert "blur" in codes(answer)
    blur = next(p for p in answer["problems"] if p["code"] == "blur")
    assert blur["message"] == message("blur", "fr")


def test_lang_en_gives_the_advice_in_english(client: TestClient, blurred_jpeg: bytes) -> None:
    response = client.post(
        URL, params={"lang": "en"}, files={"file": ("lesion.jpg", blurred_jpeg, "image/jpeg")}
    )

    blur = next(p for p in response.json()["problems"] if p["code"] == "blur")
    assert blur["message"] == message("blur", "en")


def test_the_service_default_language_applies_when_lang_is_not_given(
    settings: Settings, blurred_jpeg: bytes
) -> None:
    client = client_for(settings.model_copy(update={"language": "en"}))

    response = client.post(URL, files={"file": ("lesion.jpg", blurred_jpeg, "image/jpeg")})

    blur = next(p for p in response.json()["problems"] if p["code"] == "blur")
    assert blur["message"] == message("blur", "en")


def test_an_unsupported_language_is_refused(client: TestClient, blurred_jpeg: bytes) -> None:
    response = client.post(
        URL, params={"lang": "de"}, files={"file": ("lesion.jpg", blurred_jpeg, "image/jpeg")}
    )

    assert response.status_code == 422


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/lesion.jpg", "lesion.jpg"),  # path parts
        ("C:\\Users\\claire\\Desktop\\dos.jpg", "dos.jpg"),
        ("photo\u202egpj.exe", "photogpj.exe"),  # a right-to-left override disguising .exe
        ("\u2066naevus\u2069\u200f.jpg", "naevus.jpg"),  # isolates and a right-to-left mark
        ("<img src=x onerror=alert(1)>.jpg", "img src=x onerror=alert(1).jpg"),  # markup
        ("<script>x</script>.png", "script.png"),  # markup with a path separator inside
        ("a\tb\x07\x00.jpg", "ab.jpg"),  # control characters
    ],
)
def test_the_file_name_echoed_is_the_sanitised_display_name_case_pages_use(
    client: TestClient, good_photo: Path, raw: str, shown: str
) -> None:
    """The name is sent as the raw bytes of the multipart header (a client is not bound to any
    encoding rules), so the service sees exactly what an attacker would send."""
    boundary = "dermtriagenames"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{raw}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + good_photo.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )

    response = client.post(
        URL, content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )

    assert response.status_code == 200, response.text
    echoed = response.json()["file"]
    assert echoed == shown == display_name(raw)
    assert not set(echoed) & set("/\\<>\"'\u202e\u2066\u2069\u200f\r\n\x00")


def test_a_text_file_named_like_a_photo_is_an_unreadable_file_verdict_not_an_error(
    client: TestClient,
) -> None:
    text = "Compte rendu de consultation\nPatient vu pour une lésion du dos.\n".encode()

    response = client.post(URL, files={"file": ("photo.jpg", text, "image/jpeg")})

    assert response.status_code == 200
    answer = response.json()
    assert answer["file"] == "photo.jpg"
    assert answer["acceptable"] is False
    assert codes(answer) == ["unreadable_file"]
    assert answer["problems"][0]["message"].startswith(message("unreadable_file", "fr"))
    assert answer["metrics"] == {}


def test_a_request_without_the_file_field_is_a_422_naming_the_missing_file(
    client: TestClient, good_photo: Path
) -> None:
    response = client.post(
        URL, files={"photo": (good_photo.name, good_photo.read_bytes(), "image/jpeg")}
    )

    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "missing_file"


def test_a_plain_text_field_called_file_is_not_a_file(client: TestClient) -> None:
    response = client.post(URL, data={"file": "lesion.jpg"}, files={"other": ("a", b"a")})

    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "missing_file"


def test_a_form_sent_with_no_photo_chosen_is_a_missing_file(client: TestClient) -> None:
    response = client.post(URL, files={"file": ("", b"", "application/octet-stream")})

    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "missing_file"


def test_a_body_that_is_not_multipart_is_a_415(client: TestClient) -> None:
    response = client.post(URL, json={"file": "lesion.jpg"})

    assert response.status_code == 415
    assert response.json()["detail"]["code"] == "not_multipart"


def test_a_photo_over_the_upload_limit_is_a_413_with_a_clear_message(
    settings: Settings, good_photo: Path
) -> None:
    with Image.open(good_photo) as image:
        big = jpeg(image.convert("RGB").resize((1600, 1600)), quality=98)
    limit = len(big) // 2
    client = client_for(settings.model_copy(update={"max_upload_bytes": limit}))

    response = client.post(URL, files={"file": ("big.jpg", big, "image/jpeg")})

    assert response.status_code == 413
    detail = response.json()["detail"]
    assert detail["code"] == "too_large"
    assert str(limit) in detail["message"]


def test_a_file_just_over_the_limit_is_refused_even_when_the_body_fits_the_envelope(
    settings: Settings,
) -> None:
    limit = 100_000
    client = client_for(settings.model_copy(update={"max_upload_bytes": limit}))

    over = client.post(URL, files={"file": ("a.jpg", b"\xff" * (limit + 1), "image/jpeg")})
    at = client.post(URL, files={"file": ("a.jpg", b"\xff" * limit, "image/jpeg")})

    assert over.status_code == 413
    assert at.status_code == 200  # within the limit: judged (and unreadable), not refused


def run_asgi(
    app: Any, headers: list[tuple[bytes, bytes]], *, first: bytes, then: bytes, chunks: int
) -> dict[str, Any]:
    """Drive the ASGI app directly (as uvicorn would) with a body of ``chunks`` pieces, ``first``
    then ``then`` repeated; report the answer and how many pieces the app asked for."""
    sent = {"chunks": 0}
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict:
        if sent["chunks"] >= chunks:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent["chunks"] += 1
        body = first if sent["chunks"] == 1 else then
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(msg: dict) -> None:
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    out["chunks_read"] = sent["chunks"]
    return out


def test_a_chunked_upload_without_content_length_is_cut_off_at_the_limit(
    settings: Settings,
) -> None:
    limit = 256 * 1024
    app = create_app(settings.model_copy(update={"max_upload_bytes": limit}))
    boundary = b"dermtriageboundary"
    head = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="huge.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    chunk = b"\xff" * (64 * 1024)
    headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]

    out = run_asgi(app, headers, first=head + chunk, then=chunk, chunks=10_000)  # 640 MB offered

    assert out["status"] == 413
    assert json.loads(out["body"])["detail"]["code"] == "too_large"
    most = (limit + MULTIPART_OVERHEAD_BYTES) // len(chunk) + 1
    assert out["chunks_read"] <= most


def test_an_announced_content_length_over_the_limit_is_refused_before_reading(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"max_upload_bytes": 1024}))
    headers = [
        (b"content-type", b"multipart/form-data; boundary=x"),
        (b"content-length", b"999999999"),
    ]

    out = run_asgi(app, headers, first=b"\x00" * 1024, then=b"\x00" * 1024, chunks=100)

    assert out["status"] == 413
    assert out["chunks_read"] == 0
