"""Photo-quality checks: for every problem, good photos pass and defective ones are flagged.

Real dermoscopy images come from the derm-dev sample (``derm_images``); defects and non-skin
pictures are made in code by :mod:`benchmarks.synthetic`, the same generators the benchmark uses.
Assertions on real images are rates over the 20-image sample, with margins looser than the
benchmark's figures (docs/quality.md), so they state the behaviour without being brittle.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks import synthetic
from pipeline.quality import (
    PROBLEM_CODES,
    WORKING_SIDE,
    QualityResult,
    assess_bytes,
    assess_image,
    message,
)
from pipeline.quality_blur import shipped_blur_model
from pipeline.quality_content import _lost_fraction
from pipeline.quality_messages import MESSAGES


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def derm_rgbs(derm_images: list[Path]) -> list[np.ndarray]:
    return [_rgb(path) for path in derm_images]


@pytest.fixture(scope="module")
def unseen_derm_rgbs(dataset_dir: Path, derm_metadata: pd.DataFrame) -> list[np.ndarray]:
    """Twenty real photos, chosen as ``derm_images`` are, among lesions the shipped blur detector
    was not fitted on: what it is judged on must be new to it."""
    fitted = set(shipped_blur_model().fit["lesion_ids"])
    unseen = derm_metadata[~derm_metadata["lesion_id"].isin(fitted)]
    sample = unseen.sort_values("image_id").groupby("dx", group_keys=False).head(3).head(20)
    return [_rgb(dataset_dir / "images" / f"{i}.jpg") for i in sample["image_id"]]


def _assess_jpeg(rgb: np.ndarray, **kwargs) -> QualityResult:
    """The whole path a GP's upload takes: JPEG bytes, intake, checks."""
    return assess_bytes(synthetic.jpeg_bytes(rgb), **kwargs)


def _flag_rate(
    images: list[np.ndarray],
    code: str,
    defect: Callable[[np.ndarray, float, np.random.Generator], np.ndarray] | None = None,
    strength: float = 0.0,
) -> float:
    rng = np.random.default_rng(7)
    flagged = 0
    for rgb in images:
        picture = rgb if defect is None else defect(rgb, strength, rng)
        flagged += code in _assess_jpeg(picture).codes
    return flagged / len(images)


def skin_scene(
    width: int,
    height: int,
    *,
    lesion_at: tuple[float, float] = (0.5, 0.5),
    lesion_radius: float = 0.18,
    seed: int = 0,
) -> np.ndarray:
    """A close-up of skin made in code: pink skin with fine texture and a brown, textured lesion
    with a crisp irregular border. ``lesion_at`` is its centre as fractions of the frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = min(width, height)
    cx, cy = lesion_at[0] * width, lesion_at[1] * height
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.12 * np.sin(3 * angle + 1.0) + 0.06 * np.sin(7 * angle)
    inside = np.hypot(xx - cx, yy - cy) < lesion_radius * side * wobble
    fine = rng.normal(0, 1, (height, width)).astype(np.float32)
    coarse = cv2.resize(
        rng.normal(0, 1, (height // 6, width // 6)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    skin = np.array([214, 160, 145], np.float32)
    brown = np.array([120, 75, 50], np.float32)
    image = np.where(inside[..., None], brown, skin)
    image = image * (1 + 0.06 * coarse[..., None]) + 6 * fine[..., None]
    image = cv2.GaussianBlur(image, (0, 0), 0.6)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


# --- the result object and messages --------------------------------------------------------


def test_problem_codes_are_the_nine_of_the_issue_each_with_french_and_english_advice() -> None:
    assert set(PROBLEM_CODES) == {
        "blur", "underexposed", "overexposed", "low_resolution", "not_skin", "framing",
        "glare", "colour_cast", "unreadable_file",
    }  # fmt: skip
    for code in PROBLEM_CODES:
        assert message(code) == MESSAGES[code]["fr"] == message(code, "fr")
        assert message(code, "en") == MESSAGES[code]["en"]
        assert message(code, "fr") != message(code, "en")
    assert "floue" in message("blur")
    with pytest.raises(ValueError):
        message("blur", "de")


def test_result_dict_has_the_shape_shared_by_cli_and_api(derm_rgbs: list[np.ndarray]) -> None:
    result = assess_image(synthetic.gaussian_blur(derm_rgbs[0], 0.03, np.random.default_rng()))

    as_dict = result.to_dict(file="photo.jpg")
    assert list(as_dict) == ["file", "acceptable", "problems", "metrics"]
    assert as_dict["acceptable"] is False
    assert {"code": "blur", "message": message("blur")} in as_dict["problems"]
    assert all(isinstance(value, float) for value in as_dict["metrics"].values())
    assert "file" not in result.to_dict()


def test_messages_follow_the_requested_language(derm_rgbs: list[np.ndarray]) -> None:
    blurred = synthetic.gaussian_blur(derm_rgbs[0], 0.03, np.random.default_rng())

    english = assess_image(blurred, lang="en")

    assert english.problems[0].message == message("blur", "en")


# --- good photos pass -----------------------------------------------------------------------


def test_most_real_dermoscopy_images_are_acceptable(derm_rgbs: list[np.ndarray]) -> None:
    verdicts = [_assess_jpeg(rgb) for rgb in derm_rgbs]

    assert sum(v.acceptable for v in verdicts) >= 18, [v.codes for v in verdicts]


def test_a_sharp_well_exposed_skin_close_up_is_acceptable_at_every_size() -> None:
    scene = skin_scene(WORKING_SIDE, WORKING_SIDE * 3 // 4)
    # The same scene as a 12-MP phone photo (up-sampled, so it holds no more detail than the
    # working size) and as a small 300 px crop: analysed at one working size, all pass.
    big = cv2.resize(scene, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(scene, (400, 300), interpolation=cv2.INTER_AREA)

    for picture in (scene, big, small):
        result = _assess_jpeg(picture)
        assert result.acceptable, (picture.shape, result.codes, result.metrics)


def test_a_12_mp_photo_is_analysed_at_the_working_size_but_judged_on_its_full_size() -> None:
    big = cv2.resize(skin_scene(800, 600), (4000, 3000), interpolation=cv2.INTER_CUBIC)

    result = _assess_jpeg(big)

    assert max(result.metrics["working_width"], result.metrics["working_height"]) == WORKING_SIDE
    assert (result.metrics["original_width"], result.metrics["original_height"]) == (4000, 3000)


# --- one check at a time: flagged when defective, silent when not ---------------------------


def test_focus_blur_is_flagged(derm_rgbs: list[np.ndarray]) -> None:
    assert _flag_rate(derm_rgbs, "blur") <= 0.1
    assert _flag_rate(derm_rgbs, "blur", synthetic.gaussian_blur, 0.02) >= 0.9


def test_motion_blur_is_flagged(derm_rgbs: list[np.ndarray]) -> None:
    assert _flag_rate(derm_rgbs, "blur", synthetic.motion_blur, 0.08) >= 0.9


#: Sharp derm-dev photos of large, smooth lesions on smooth skin that the whole-frame estimate
#: (before 2026-12-01) called blurred: the lesion's soft natural border outweighed the fine
#: texture (ISIC_0034215: blur_px 3.35; ISIC_0029117: anisotropy 1.14, from a few hairs).
_SHARP_SMOOTH_LESIONS = ("ISIC_0034215", "ISIC_0029117")


@pytest.mark.parametrize("image_id", _SHARP_SMOOTH_LESIONS)
def test_a_sharp_photo_of_a_smooth_lesion_is_not_blurred_but_the_same_photo_blurred_is(
    dataset_dir: Path, image_id: str
) -> None:
    rgb = _rgb(dataset_dir / "images" / f"{image_id}.jpg")
    sharp = _assess_jpeg(rgb)
    assert "blur" not in sharp.codes, sharp.metrics
    # Judged where the photo has structure, not on its soft lesion border alone.
    assert 0.1 <= sharp.metrics["blur_judged_fraction"] <= 1.0
    rng = np.random.default_rng(5)
    for defect, strength in ((synthetic.gaussian_blur, 0.012), (synthetic.motion_blur, 0.06)):
        blurred = _assess_jpeg(defect(rgb, strength, rng))
        assert "blur" in blurred.codes, (defect.__name__, blurred.metrics)


def test_a_strongly_blurred_photo_with_no_structure_left_is_still_blurred(
    derm_rgbs: list[np.ndarray],
) -> None:
    # Blur of 4 % of the frame leaves almost no region with structure to judge: the whole
    # interior is then judged at once, and the photo must not pass for want of evidence.
    rng = np.random.default_rng(2)
    for rgb in derm_rgbs[:5]:
        result = _assess_jpeg(synthetic.gaussian_blur(rgb, 0.04, rng))
        assert "blur" in result.codes or "not_skin" in result.codes, result.metrics


def test_blur_is_judged_relative_to_the_frame_from_small_crops_to_12_mp() -> None:
    scene = skin_scene(WORKING_SIDE, WORKING_SIDE * 3 // 4, seed=3)
    # Blur of 1.5 % of the frame, applied before resizing (the same as after, and far cheaper
    # than a 60 px Gaussian on 12 megapixels).
    blurred = synthetic.gaussian_blur(scene, 0.015, np.random.default_rng())
    for size, interpolation in (((400, 300), cv2.INTER_AREA), ((4000, 3000), cv2.INTER_CUBIC)):
        sharp_photo = cv2.resize(scene, size, interpolation=interpolation)
        blurred_photo = cv2.resize(blurred, size, interpolation=interpolation)
        assert "blur" not in _assess_jpeg(sharp_photo).codes, size
        assert "blur" in _assess_jpeg(blurred_photo).codes, size


@pytest.mark.parametrize("defect", ["noisy_gaussian_blur", "noisy_motion_blur"])
def test_the_benchmarks_realistic_blur_adds_the_sensors_grain_after_the_blur(
    derm_rgbs: list[np.ndarray], defect: str
) -> None:
    # A real out-of-focus phone photo: the optics blur the scene, the sensor then adds its grain,
    # which stays sharp. The benchmark row "focus/motion blur + noise" must look like that.
    rgb = derm_rgbs[0]
    plain = getattr(synthetic, defect.removeprefix("noisy_"))(rgb, 0.012, np.random.default_rng(4))
    noisy = getattr(synthetic, defect)(rgb, 0.012, np.random.default_rng(4))
    grain = noisy.astype(np.float32) - plain.astype(np.float32)
    assert abs(float(grain.std()) - synthetic.PHONE_GRAIN_SIGMA) < 0.3
    assert abs(float(grain.mean())) < 0.3


def test_a_sharp_photo_with_a_phones_grain_is_not_blurred(derm_rgbs: list[np.ndarray]) -> None:
    # The grain alone (sigma 4 code values, the benchmark's "sensor noise") is no reason to retake.
    rng = np.random.default_rng(11)
    for rgb in derm_rgbs:
        grained = synthetic.sensor_noise(rgb, synthetic.PHONE_GRAIN_SIGMA, rng)
        result = _assess_jpeg(grained)
        assert "blur" not in result.codes, result.metrics


@pytest.mark.parametrize(
    ("defect", "strength"),
    [("noisy_gaussian_blur", 0.012), ("noisy_motion_blur", 0.06)],
)
def test_a_real_photo_blurred_at_the_reject_strength_then_grained_is_blurred(
    unseen_derm_rgbs: list[np.ndarray], defect: str, strength: float
) -> None:
    # A real out-of-focus or shaken phone photo (focus 1.2 % or motion 6 % of the frame, then
    # the sensor's grain) must be flagged as often as the same blur without grain (>= 95 % in
    # the benchmark; 90 % here, on 20 photos the blur detector was not fitted on). The
    # two-scale blur width alone caught 8 and 10 of them: the grain reads as sharp structure.
    assert _flag_rate(unseen_derm_rgbs, "blur", getattr(synthetic, defect), strength) >= 0.9


def test_a_blurred_12_mp_phone_photo_of_skin_is_told_to_refocus_not_that_it_is_not_skin(
    unseen_derm_rgbs: list[np.ndarray],
) -> None:
    # Blurred, then enlarged to 12 MP with the benchmark's phone texture and grain: at the
    # working size almost no edge is left and the grain reads as sharp noise, which once made
    # the photo "featureless", i.e. not skin. Its colours are skin's and it is blurred.
    rng = np.random.default_rng(8)
    for rgb in unseen_derm_rgbs[:3]:
        blurred = synthetic.gaussian_blur(rgb, 0.012, rng)
        photo = synthetic.phone_photo(blurred, (4000, 3000), rng)
        result = assess_bytes(synthetic.jpeg_bytes(photo, quality=92))
        assert "blur" in result.codes and "not_skin" not in result.codes, result.metrics


def test_dark_photo_is_underexposed(derm_rgbs: list[np.ndarray]) -> None:
    assert _flag_rate(derm_rgbs, "underexposed") == 0
    assert _flag_rate(derm_rgbs, "underexposed", synthetic.exposure_shift, -3.0) >= 0.9


def test_dermatoscope_black_border_is_not_underexposure(derm_rgbs: list[np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    for rgb in derm_rgbs[:8]:
        plain = _assess_jpeg(rgb)
        ringed = _assess_jpeg(synthetic.dermatoscope_vignette(rgb, 0.68, rng))
        assert ringed.metrics["vignette_fraction"] > 0.1
        assert "underexposed" not in ringed.codes
        assert math.isclose(
            ringed.metrics["exposure_ev"], plain.metrics["exposure_ev"], abs_tol=0.35
        )


def test_bright_photo_is_overexposed(derm_rgbs: list[np.ndarray]) -> None:
    assert _flag_rate(derm_rgbs, "overexposed") <= 0.05
    assert _flag_rate(derm_rgbs, "overexposed", synthetic.exposure_shift, 2.0) >= 0.95


def test_red_skin_burnt_in_its_red_channel_is_overexposed_though_not_white() -> None:
    scene = skin_scene(640, 480)
    burnt = scene.copy()
    burnt[..., 0] = 255  # red clipped everywhere; green and blue keep the picture's detail

    good, bad = _assess_jpeg(scene), _assess_jpeg(burnt)

    assert "overexposed" not in good.codes and good.metrics["clipped_fraction"] < 0.1
    assert bad.metrics["white_fraction"] < 0.2 and bad.metrics["exposure_ev"] < 1.0
    assert "overexposed" in bad.codes and bad.metrics["clipped_fraction"] > 0.9


def test_small_image_has_low_resolution(derm_rgbs: list[np.ndarray]) -> None:
    assert "low_resolution" not in _assess_jpeg(derm_rgbs[0]).codes  # 224 px dermoscopy is fine
    small = synthetic.downscale(derm_rgbs[0], 150, np.random.default_rng())
    assert "low_resolution" in _assess_jpeg(small).codes


def test_low_resolution_uses_the_original_size_not_the_analysed_copy() -> None:
    reduced = skin_scene(300, 225)

    assert "low_resolution" not in assess_image(reduced, original_size=(4000, 3000)).codes
    assert "low_resolution" in assess_image(reduced, original_size=(180, 135)).codes


@pytest.mark.parametrize("kind", sorted(synthetic.NON_SKIN))
def test_pictures_that_are_not_skin_are_rejected_as_not_skin(kind: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(3):
        picture = synthetic.NON_SKIN[kind]((640, 480), rng)
        result = _assess_jpeg(picture)
        assert not result.acceptable, kind
        if kind in ("solid colour", "gradient") and result.codes[0] != "not_skin":
            # A dark or burnt-out plain picture is first of all badly exposed.
            assert result.codes[0] in ("underexposed", "overexposed"), (kind, result.codes)
        else:
            assert result.codes[0] == "not_skin", (kind, result.codes)


@pytest.mark.parametrize("level", [0, 128, 255])
def test_a_picture_without_any_colour_is_a_verdict_not_a_crash(level: int) -> None:
    # A lens cap, a grey card, a burnt-out frame: no pixel has a hue (this used to divide by
    # zero while averaging hues, and the GP's page got a server error instead of advice).
    buffer = io.BytesIO()
    Image.fromarray(np.full((600, 800, 3), level, np.uint8)).save(buffer, format="PNG")

    result = assess_bytes(buffer.getvalue())

    assert not result.acceptable
    assert result.codes[0] in ("not_skin", "underexposed", "overexposed"), result.codes


def test_skin_is_not_mistaken_for_something_else(derm_rgbs: list[np.ndarray]) -> None:
    assert _flag_rate(derm_rgbs, "not_skin") == 0
    assert "not_skin" not in _assess_jpeg(skin_scene(640, 480)).codes


def test_lesion_cut_off_by_the_edge_is_a_framing_problem() -> None:
    centred = skin_scene(640, 480)
    cut_off = skin_scene(640, 480, lesion_at=(0.97, 0.5))
    corner = skin_scene(640, 480, lesion_at=(0.07, 0.1), lesion_radius=0.06)

    assert "framing" not in _assess_jpeg(centred).codes
    assert "framing" in _assess_jpeg(cut_off).codes
    assert "framing" in _assess_jpeg(corner).codes


def test_lesion_too_small_in_the_frame_is_a_framing_problem() -> None:
    far_away = skin_scene(1600, 1200, lesion_radius=0.035)

    assert "framing" in _assess_jpeg(far_away).codes


def test_share_of_a_lesion_beyond_the_frame_is_estimated_from_its_visible_chord_and_depth() -> None:
    assert _lost_fraction(chord=2.0, depth=1.0) == pytest.approx(0.5)  # cut through the middle
    assert _lost_fraction(chord=0.0, depth=1.0) == 0.0  # does not reach the edge
    assert _lost_fraction(chord=0.2, depth=2.0) < 0.01  # a whole lesion grazing the edge
    assert _lost_fraction(chord=2.0, depth=0.5) > 0.5  # its centre is beyond the frame


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_real_lesion_cut_by_the_frame_is_flagged_and_the_same_lesion_whole_is_not(
    dataset_dir: Path, side: str
) -> None:
    # A naevus in the middle of a derm-dev photo. The cut version is the square window, half the
    # photo wide, whose left (or right) edge runs through the lesion's centre, shown at full size.
    rgb = _rgb(dataset_dir / "images" / "ISIC_0024396.jpg")
    height, width = rgb.shape[:2]
    window = width // 2
    lx, ly = synthetic.lesion_centre(rgb)
    x0 = round(lx) if side == "left" else round(lx) - window
    y0 = int(np.clip(round(ly - window / 2), 0, height - window))
    assert 0 <= x0 <= width - window
    crop = rgb[y0 : y0 + window, x0 : x0 + window]
    cut = cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC)

    whole, halved = _assess_jpeg(rgb), _assess_jpeg(cut)

    assert whole.acceptable, whole.codes
    assert whole.metrics["lesion_lost_fraction"] < 0.05
    assert halved.codes == ("framing",)
    assert halved.metrics["lesion_cut_side"] == (0 if side == "left" else 1)
    assert 0.25 <= halved.metrics["lesion_lost_fraction"] <= 0.75


def test_a_lesion_reaching_a_dermatoscope_round_rim_is_not_cut_off() -> None:
    # A large lesion whose border runs under the black surround of the device's window: the rim
    # is what the dermatoscope shows, not the photo's frame.
    scene = skin_scene(640, 480, lesion_radius=0.45)
    ringed = synthetic.dermatoscope_vignette(scene, 0.7, np.random.default_rng(0))

    result = _assess_jpeg(ringed)

    assert result.metrics["vignette_fraction"] > 0.1
    assert result.metrics["lesion_contrast"] >= 8  # a lesion distinct enough to be judged
    assert "framing" not in result.codes, result.metrics


@pytest.mark.parametrize(
    "image_id",
    [
        "ISIC_0031789",  # a darker lower-left corner, small naevus in the middle
        "ISIC_0032139",  # a darker lower-right corner, purple lesion in the middle
        "ISIC_0029792",  # the edge of the dermatoscope's lens across the left side, a dot centred
    ],
)
def test_shading_at_the_edge_of_a_real_photo_is_not_taken_for_a_cut_lesion(
    dataset_dir: Path, image_id: str
) -> None:
    # Otsu's threshold cuts out the large dark shading at the edge, which outweighs the small
    # lesion the photographer centred; but the shading fades into what surrounds it while the
    # whole lesion in the middle has a border, so the cut region is not the photo's lesion.
    result = _assess_jpeg(_rgb(dataset_dir / "images" / f"{image_id}.jpg"))

    m = result.metrics
    assert m["lesion_lost_fraction"] >= 0.1  # the shading does reach the edge
    assert m["lesion_rival_distinctness"] > 1.5 * m["lesion_distinctness"]
    assert "framing" not in result.codes, m


def test_a_lesion_cut_by_the_frame_is_flagged_even_with_a_smaller_one_whole_beside_it() -> None:
    # A second, smaller lesion wholly in view does not excuse the cut one: it stands out no
    # more clearly than the lesion at the edge.
    scene = skin_scene(640, 480, lesion_at=(0.97, 0.5), lesion_radius=0.2)
    other = skin_scene(640, 480, lesion_at=(0.3, 0.5), lesion_radius=0.06, seed=1)
    mask = np.zeros(scene.shape[:2], np.uint8)
    cv2.circle(mask, (round(0.3 * 640), 240), round(0.08 * 480), 1, -1)
    scene = np.where(mask[..., None].astype(bool), other, scene)

    result = _assess_jpeg(scene)

    assert "framing" in result.codes, result.metrics


def test_real_lesions_cut_in_half_by_the_frame_are_mostly_flagged(
    derm_rgbs: list[np.ndarray],
) -> None:
    # On real dermoscopy about 9 in 10 lesions cut through the middle are recognised; the rest
    # are too faint, or larger than the frame (docs/quality.md, Known limits).
    untouched = _flag_rate(derm_rgbs, "framing")
    cut = _flag_rate(derm_rgbs, "framing", synthetic.off_centre_crop, 0.0)

    assert untouched <= 0.1
    assert cut >= 0.65
    assert cut >= 5 * untouched


def test_specular_glare_is_flagged(derm_rgbs: list[np.ndarray]) -> None:
    assert _flag_rate(derm_rgbs, "glare") == 0
    assert _flag_rate(derm_rgbs, "glare", synthetic.glare, 0.03) >= 0.9


def test_cold_or_green_light_is_a_colour_cast(derm_rgbs: list[np.ndarray]) -> None:
    assert _flag_rate(derm_rgbs, "colour_cast") <= 0.05
    assert _flag_rate(derm_rgbs, "colour_cast", synthetic.colour_cast, 2.0) >= 0.9


# --- files --------------------------------------------------------------------------------


def test_unreadable_bytes_become_a_result_not_an_exception() -> None:
    result = assess_bytes(b"%PDF-1.7 not a photo", lang="en")

    assert not result.acceptable
    assert result.codes == ("unreadable_file",)
    assert result.problems[0].message.startswith(message("unreadable_file", "en"))
    assert "not an image" in result.problems[0].message


def test_truncated_upload_is_unreadable_with_the_reason_in_french(
    derm_images: list[Path],
) -> None:
    data = derm_images[0].read_bytes()

    result = assess_bytes(data[: len(data) // 2])

    assert result.codes == ("unreadable_file",)
    assert "tronqué" in result.problems[0].message


def test_oversize_upload_is_unreadable() -> None:
    buffer = io.BytesIO()
    Image.fromarray(skin_scene(300, 300)).save(buffer, format="PNG")

    result = assess_bytes(buffer.getvalue(), lang="en", max_bytes=1000)

    assert result.codes == ("unreadable_file",)
    assert "too large" in result.problems[0].message
