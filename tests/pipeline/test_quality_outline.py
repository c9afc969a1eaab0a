"""Framing with a learned lesion outline: trusted only where it looks like one lesion, and then
able to clear a photo the colour rule wrongly calls ``framing``; otherwise the colour rule decides.

Real photos: named clinical-phone photos of the *fit* split (docs/quality.md, "Framing with the
learned outline") and a derm-dev naevus, read at test time; masks for the trust rules are drawn
in code. ``pipeline`` never imports the segmenter: it is passed in, as the serving code does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from benchmarks import synthetic
from models.segmenter import segment
from pipeline.quality import QualityResult, assess_bytes
from pipeline.quality_content import outline
from tests.conftest import require_tool

#: Usable fit-split phone photos, one lesion near the centre, no labelled defect, that the colour
#: rule alone called ``framing`` (its "lesion" was inflamed skin or shading reaching an edge).
WELL_OUTLINED_PHONE_PHOTOS = (
    "phone_0009.jpg",
    "phone_0186.jpg",
    "phone_0403.jpg",
    "phone_0435.jpg",
)


def _judge(data: bytes, *, outlined: bool = True) -> QualityResult:
    return assess_bytes(data, lang="en", lesion_segmenter=segment if outlined else None)


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


# --- when the outline is trusted ------------------------------------------------------------


def test_one_central_lesion_of_a_tenth_of_the_frame_is_a_trusted_whole_outline() -> None:
    mask = _disc((120, 160), (80, 60), 25)
    o = outline(mask, np.ones((480, 640), bool))
    assert o.trusted == 1.0
    assert 0.09 < o.area_fraction < 0.11
    assert o.edge_run == 0.0 and o.lost_fraction == 0.0 and o.offset < 0.05


def test_an_outline_spreading_over_most_of_the_frame_is_not_trusted() -> None:
    # What the segmenter draws on many pink, scaly lesions in phone close-ups.
    mask = np.ones((120, 160), bool)
    mask[:10, :10] = False
    assert outline(mask, np.ones((120, 160), bool)).trusted == 0.0


def test_fragments_of_similar_size_are_not_trusted() -> None:
    # Redness and pen marks outlined piece by piece: no one region is the lesion.
    mask = _disc((120, 160), (40, 60), 15) | _disc((120, 160), (120, 60), 14)
    assert outline(mask, np.ones((120, 160), bool)).trusted == 0.0


def test_a_speck_or_nothing_is_not_trusted() -> None:
    assert outline(_disc((120, 160), (80, 60), 3), np.ones((120, 160), bool)).trusted == 0.0
    assert outline(np.zeros((120, 160), bool), np.ones((120, 160), bool)).trusted == 0.0


def test_a_broken_segmenter_leaves_the_photo_to_the_colour_rule() -> None:
    def broken(_: np.ndarray) -> tuple[np.ndarray, str]:
        raise RuntimeError("no weights")

    data = synthetic.jpeg_bytes(np.full((300, 400, 3), (200, 150, 130), np.uint8))
    result = assess_bytes(data, lesion_segmenter=broken)
    assert "lesion_segmenter" not in result.checks
    assert result.outline == {}


# --- real photos ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phone_dir(dataset_dir: Path) -> Path:
    path = dataset_dir.parent / "clinical-phone" / "images"
    require_tool(path.is_dir(), f"clinical-phone photos at {path}")
    return path


@pytest.mark.parametrize("name", WELL_OUTLINED_PHONE_PHOTOS)
def test_a_usable_phone_photo_with_one_well_outlined_central_lesion_is_not_told_framing(
    phone_dir: Path, name: str
) -> None:
    data = (phone_dir / name).read_bytes()

    colour_rule, outlined = _judge(data, outlined=False), _judge(data)

    assert colour_rule.codes == ("framing",)  # what a GP was told before the outline was used
    assert outlined.acceptable, outlined.codes
    assert outlined.outline["outline_trusted"] == 1.0
    assert outlined.to_dict(with_outline=True)["metrics"]["outline_trusted"] == 1.0
    assert "outline_trusted" not in outlined.to_dict()["metrics"]  # the published answer's shape
    assert outlined.checks["lesion_segmenter"] == segment(np.zeros((8, 8, 3), np.uint8))[1]


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_derm_dev_lesion_cut_by_the_frame_is_still_framing_with_the_outline(
    dataset_dir: Path, side: str
) -> None:
    # The naevus of test_quality's cut-lesion test, in the half-width window whose edge runs
    # through its centre: the outline touches the side, so it cannot clear the photo.
    rgb = np.asarray(Image.open(dataset_dir / "images" / "ISIC_0024396.jpg").convert("RGB"))
    height, width = rgb.shape[:2]
    window = width // 2
    lx, ly = synthetic.lesion_centre(rgb)
    x0 = round(lx) if side == "left" else round(lx) - window
    y0 = int(np.clip(round(ly - window / 2), 0, height - window))
    crop = rgb[y0 : y0 + window, x0 : x0 + window]
    cut = cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC)

    whole, halved = _judge(synthetic.jpeg_bytes(rgb)), _judge(synthetic.jpeg_bytes(cut))

    assert whole.acceptable, whole.codes
    assert halved.codes == ("framing",)
    assert "lesion_segmenter" in halved.checks
