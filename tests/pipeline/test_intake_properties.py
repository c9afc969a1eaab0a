"""Property-based tests of the intake: whatever bytes arrive, the answer is a whole picture or a
named refusal (``IntakeError``), never a crash, a hang or half an image.

Hypothesis generates random bytes and mutates real derm-dev photos (bit flips, cuts, insertions,
bytes glued after the end, header fields overwritten), the shapes that broken transfers and
hostile files take.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.intake import ACCEPTED_FORMATS, DecodedImage, IntakeError, decode_image, sniff_format

MAX_BYTES = 2_000_000
MAX_PIXELS = 4_000_000
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def seeds(derm_images: list[Path]) -> list[bytes]:
    """Real photos as JPEG (as sent) and PNG (re-encoded), the starting points of mutations."""
    jpegs = [path.read_bytes() for path in derm_images[:3]]
    buffer = io.BytesIO()
    with Image.open(derm_images[0]) as image:
        image.resize((96, 96)).save(buffer, "PNG")
    return [*jpegs, buffer.getvalue()]


def outcome(data: bytes) -> DecodedImage | IntakeError:
    """The intake's verdict; any exception other than ``IntakeError`` fails the property."""
    try:
        decoded = decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    except IntakeError as refusal:
        assert refusal.code in {
            "empty", "too_large", "not_an_image", "unsupported_format", "corrupt",
            "decompression_bomb", "trailing_data", "too_small",
        }  # fmt: skip
        assert refusal.message and refusal.text("fr")
        return refusal
    assert decoded.format in ACCEPTED_FORMATS
    assert decoded.image.mode == "RGB"
    width, height = decoded.image.size
    assert width > 0 and height > 0 and width * height <= MAX_PIXELS
    decoded.image.tobytes()  # every pixel is really there
    return decoded


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_are_an_image_or_a_named_refusal(data: bytes) -> None:
    outcome(data)


@SETTINGS
@given(prefix=st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x18ftypheic"]),
       tail=st.binary(max_size=2048))  # fmt: skip
def test_random_bytes_behind_an_image_signature_never_crash(prefix: bytes, tail: bytes) -> None:
    result = outcome(prefix + tail)
    assert isinstance(result, IntakeError) or result.format in ACCEPTED_FORMATS


@st.composite
def mutations(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "append", "overwrite"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=256))
        elif kind == "overwrite" and len(data) > 30:
            header_spot = draw(st.integers(0, min(len(data), 400) - 4))
            data[header_spot : header_spot + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


@SETTINGS
@given(data=st.data())
def test_mutated_real_photos_are_whole_images_or_named_refusals(
    data: st.DataObject, seeds: list[bytes]
) -> None:
    outcome(data.draw(mutations(seeds)))


@SETTINGS
@given(data=st.data(), junk=st.binary(min_size=1, max_size=512))
def test_anything_glued_after_a_real_photo_is_refused_unless_it_is_padding(
    data: st.DataObject, junk: bytes, seeds: list[bytes]
) -> None:
    photo = data.draw(st.sampled_from(seeds))
    result = outcome(photo + junk)
    if set(junk) <= {0x00, 0xFF}:
        assert isinstance(result, DecodedImage)  # a camera's padding is harmless
    else:
        assert isinstance(result, IntakeError) and result.code == "trailing_data"


@SETTINGS
@given(st.binary(max_size=64))
def test_sniffing_names_an_accepted_format_or_refuses(data: bytes) -> None:
    try:
        assert sniff_format(data) in ACCEPTED_FORMATS
    except IntakeError as refusal:
        assert refusal.code in {"empty", "not_an_image", "unsupported_format"}


def test_the_unmutated_seeds_are_accepted(seeds: list[bytes]) -> None:
    assert all(isinstance(outcome(seed), DecodedImage) for seed in seeds)
