"""The photo store: content-addressed, atomic, and never keeping what the GP's phone embedded."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from pipeline.intake import IntakeError
from serving.storage import BlobNotFoundError, PhotoStore


def test_blobs_are_named_by_their_sha256_and_stored_once(tmp_path: Path) -> None:
    store = PhotoStore(tmp_path)
    data = b"some bytes"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.path(digest) == tmp_path / digest[:2] / digest[2:4] / digest
    assert store.put(data) == digest
    assert store.get(digest) == data
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]  # no temp files left


def test_only_hex_digests_name_a_blob(tmp_path: Path) -> None:
    store = PhotoStore(tmp_path)
    for name in ("../../etc/passwd", "a" * 63, "A" * 64, "g" * 64):
        with pytest.raises(ValueError):
            store.path(name)
    with pytest.raises(BlobNotFoundError):
        store.get("0" * 64)


def test_ingest_stores_an_upright_metadata_free_copy_and_a_thumbnail(
    tmp_path: Path, derm_images: list[Path]
) -> None:
    with Image.open(derm_images[0]) as image:
        wide = image.resize((600, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    exif[0x010F] = "PhoneMaker"
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", exif=exif)
    stored = PhotoStore(tmp_path).ingest(buffer.getvalue(), max_bytes=10**7, max_pixels=10**8)
    assert (stored.width, stored.height) == (400, 600)  # turned upright
    blob = PhotoStore(tmp_path).get(stored.sha256)
    assert b"PhoneMaker" not in blob
    with Image.open(io.BytesIO(blob)) as image:
        assert not image.getexif()
    with Image.open(io.BytesIO(PhotoStore(tmp_path).get(stored.thumbnail_sha256))) as thumb:
        assert max(thumb.size) == 320


def test_ingest_refuses_what_is_not_a_photo_and_stores_nothing(tmp_path: Path) -> None:
    store = PhotoStore(tmp_path)
    with pytest.raises(IntakeError):
        store.ingest(b"<html>not a photo</html>", max_bytes=10**6, max_pixels=10**7)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
