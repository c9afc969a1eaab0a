"""What the photo shows: skin or not, its colour balance, and where the lesion sits in the frame.

Pure functions on the working image of :func:`pipeline.quality_features.working_rgb` (RGB
``float32`` in ``[0, 1]``) and its field-of-view mask. Colour and shape are summarised on a small
copy (long side :data:`~pipeline.quality_features.SUMMARY_SIDE`): they are coarse properties, and
a small copy keeps them fast and blind to noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.quality_features import (
    SUMMARY_SIDE,
    channel_max,
    channel_min,
    interior,
    luma,
    resize_long_side,
)

#: Hue range (CIELAB, degrees) of skin and of pigmented or vascular lesions under white light:
#: from purple-red (vascular lesions, about -45) through red and brown to yellow (about 100).
SKIN_HUE_RANGE = (-50.0, 105.0)


def _small_views(rgb: np.ndarray, fov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The small RGB copy, its CIELAB (L 0-100, a and b signed) and its field-of-view mask."""
    small = np.ascontiguousarray(resize_long_side(rgb, SUMMARY_SIDE))
    small_fov = cv2.resize(
        fov.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
    return small, lab, small_fov


@dataclass(frozen=True)
class Colour:
    """Colour statistics of the well-exposed part of the field.

    ``skin_fraction``: share of pixels whose colour could be skin or a lesion (skin hue, dark
    brown-black, or nearly colourless); ``neutral_fraction``: share of light, colourless pixels
    (paper, screens, white walls); ``mean_a``/``mean_b``: the average CIELAB chroma, whose
    direction (``cast_hue_deg``) and strength reveal a colour cast; ``hue_spread``: how many
    different hues the photo holds (1 - length of the mean unit chroma vector), high for scenes,
    low for skin.
    """

    skin_fraction: float
    neutral_fraction: float
    mean_a: float
    mean_b: float
    cast_hue_deg: float
    hue_spread: float
    well_exposed_fraction: float


def colour(rgb: np.ndarray, fov: np.ndarray) -> Colour:
    """Colour statistics over the field's pixels that are neither clipped nor near-black."""
    small, lab, small_fov = _small_views(rgb, fov)
    y = luma(small)
    well = small_fov & (y > 0.08) & (channel_max(small) < 0.985)
    well_fraction = float(well.sum() / max(small_fov.sum(), 1))
    if well.sum() < 16:
        well = small_fov
    lightness, a, b = lab[..., 0][well], lab[..., 1][well], lab[..., 2][well]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a))
    low, high = SKIN_HUE_RANGE
    skin_hue = (chroma >= 4.0) & (hue >= low) & (hue <= high) & (chroma <= 75.0)
    dark_lesion = (lightness < 40.0) & (chroma < 25.0)
    colourless = chroma < 6.0  # pale skin, scale, a blue-grey veil: not evidence against skin
    neutral = (chroma < 4.0) & (lightness >= 40.0)
    weights = np.maximum(chroma, 1e-6)
    unit = np.stack([a / weights, b / weights])
    resultant = float(np.hypot(*np.average(unit, axis=1, weights=np.minimum(chroma, 20.0))))
    mean_a, mean_b = float(a.mean()), float(b.mean())
    return Colour(
        skin_fraction=float((skin_hue | dark_lesion | colourless).mean()),
        neutral_fraction=float(neutral.mean()),
        mean_a=mean_a,
        mean_b=mean_b,
        cast_hue_deg=math.degrees(math.atan2(mean_b, mean_a)),
        hue_spread=1.0 - resultant,
        well_exposed_fraction=well_fraction,
    )


@dataclass(frozen=True)
class Structure:
    """Clues that a picture is man-made (document, screen, graphic) rather than a photo of skin.

    ``flat_fraction``: share of pixels whose 3x3 neighbourhood is exactly uniform (no camera noise:
    rendered graphics); ``rectilinear_fraction``: share of edge energy within 10 degrees of
    horizontal or vertical (text lines, screens, grids; about 0.22 for skin, whose edges point
    everywhere); ``stroke_fraction``: share of thin dark strokes on a light, colourless ground
    (ink on paper).
    """

    flat_fraction: float
    rectilinear_fraction: float
    stroke_fraction: float


def structure(rgb: np.ndarray, y: np.ndarray, fov: np.ndarray) -> Structure:
    """Man-made-picture clues; see :class:`Structure`."""
    codes = np.round(rgb * 255.0).astype(np.uint8)
    luma_codes = np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(luma_codes, kernel) - cv2.erode(luma_codes, kernel)
    count = max(int(fov.sum()), 1)
    # Clipped or near-black pixels are flat in any photo; only mid-tones betray rendering.
    brightest = channel_max(codes)
    midtone = (y > 0.1) & (brightest < 250) & fov
    flat = float(((spread == 0) & midtone).sum() / max(int(midtone.sum()), 1))

    inner = interior(fov, max(3, round(0.04 * max(y.shape))))
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    energy = (gx * gx + gy * gy)[inner]
    # |sin 2θ| small means θ near 0 or 90 degrees; computed without arctan.
    sin2 = np.abs(2.0 * gx * gy)[inner] / np.maximum(energy, 1e-12)
    total = float(energy.sum())
    rectilinear = float(energy[sin2 < math.sin(math.radians(20.0))].sum() / total) if total else 0.0

    side = max(y.shape)
    width = 2 * max(1, round(0.008 * side)) + 1
    ground = cv2.morphologyEx(luma_codes, cv2.MORPH_CLOSE, np.ones((width, width), np.uint8))
    chroma = brightest - channel_min(codes)
    ink = ((ground.astype(np.int16) - luma_codes) > 64) & (ground > 140)
    paper_ground = cv2.blur((chroma < 20).astype(np.uint8) * 255, (width, width)) > 127
    stroke = float((ink & paper_ground & fov).sum() / count)
    return Structure(flat_fraction=flat, rectilinear_fraction=rectilinear, stroke_fraction=stroke)


@dataclass(frozen=True)
class Lesion:
    """Where the lesion (the region darker than the surrounding skin) sits in the frame.

    ``contrast``: skin minus lesion lightness (CIELAB L); below a few units there is no distinct
    lesion and framing is not judged. ``area_fraction``: lesion area over the field; ``offset``:
    the lesion centre's distance from the frame centre (0 centre, 1 edge, per axis, the larger);
    ``border_contact``: share of the field's rim covered by the lesion; ``contact_asymmetry``:
    0 when that contact is spread all round (a lesion filling a close-up), 1 when it is all on
    one side; ``cut_fraction``: share of the lesion's outline that is the frame's edge rather
    than the lesion's own border (about 0.4 for a lesion cut in half, 0 for a whole one).
    """

    contrast: float
    area_fraction: float
    offset: float
    border_contact: float
    contact_asymmetry: float
    cut_fraction: float


def _remove_falloff(lightness: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Lightness with the lens and lighting fall-off towards the corners taken out.

    The fall-off is modelled as radial (``L = c0 + c1 r^2``), fitted to the lighter (skin) pixels:
    a radial model cannot tilt to swallow a lesion lying against one edge, as a plane would.
    """
    height, width = lightness.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = (xx / width - 0.5) ** 2 + (yy / height - 0.5) ** 2
    skin = field & (lightness >= np.percentile(lightness[field], 40))
    if skin.sum() < 32:
        return lightness
    design = np.stack([np.ones_like(r2), r2], axis=-1)
    (_, c1), *_ = np.linalg.lstsq(design[skin], lightness[skin], rcond=None)
    return lightness - c1 * r2


def _lesion_likeness(lab: np.ndarray, field: np.ndarray) -> np.ndarray:
    """How far each pixel's colour is from the surrounding skin (CIELAB distance, counting
    lightness only when darker): a lesion differs by being darker, browner, redder or bluer."""
    lightness = _remove_falloff(cv2.GaussianBlur(lab[..., 0], (0, 0), 1.5), field)
    a = cv2.GaussianBlur(lab[..., 1], (0, 0), 1.5)
    b = cv2.GaussianBlur(lab[..., 2], (0, 0), 1.5)
    skin = field & (lightness >= np.percentile(lightness[field], 60))
    ref_l, ref_a, ref_b = (float(np.median(c[skin])) for c in (lightness, a, b))
    darker = np.minimum(lightness - ref_l, 0.0)
    return np.sqrt(darker**2 + (a - ref_a) ** 2 + (b - ref_b) ** 2)


#: Width of the band along the field's rim where a lesion counts as touching it (fraction of the
#: long side): a lesion cut by the frame rarely reaches the very last pixel row once smoothed.
RIM_BAND = 0.04


def _rim_band(field: np.ndarray) -> np.ndarray:
    """The field's pixels within :data:`RIM_BAND` of its rim or of the frame's edge."""
    width = max(1, round(RIM_BAND * max(field.shape)))
    padded = np.pad(field.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return field & (distance <= width)


def lesion(rgb: np.ndarray, fov: np.ndarray) -> Lesion:
    """Segment the lesion by Otsu's threshold on illumination-flattened lightness in the field.

    The dark component with the most contrast (area times darkness) is taken as the lesion; hairs
    and pores are too thin to survive the morphological opening at this scale.
    """
    _, lab, small_fov = _small_views(rgb, fov)
    if not small_fov.all():
        # A dermatoscope's rim fades to black over a few pixels: keep clear of it.
        small_fov = cv2.erode(small_fov.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    height, width = small_fov.shape
    likeness = _lesion_likeness(lab, small_fov)
    values = likeness[small_fov]
    high = float(values.max())
    if high < 1e-3:
        return Lesion(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    scaled = likeness * (255.0 / high)
    codes = np.clip(scaled[small_fov], 0, 255).astype(np.uint8).reshape(-1, 1)
    threshold, _ = cv2.threshold(codes, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    candidate = (scaled > threshold) & small_fov
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    candidate = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_CLOSE, kernel)
    count, labels, _, centroids = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if count <= 1:
        return Lesion(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    mass = [float(likeness[labels == i].sum()) for i in range(1, count)]
    best = 1 + int(np.argmax(mass))
    mask = labels == best
    ring = cv2.dilate(mask.astype(np.uint8), kernel, iterations=2).astype(bool)
    skin = small_fov & ~ring & (candidate == 0)
    if skin.sum() < 16:
        skin = small_fov & ~mask
    contrast = float(np.median(likeness[mask]) - np.median(likeness[skin])) if skin.any() else 0.0

    cx, cy = centroids[best]
    offset = max(abs(cx - (width - 1) / 2) / (width / 2), abs(cy - (height - 1) / 2) / (height / 2))

    band = _rim_band(small_fov)
    contact = band & mask
    border_contact = float(contact.sum() / max(band.sum(), 1))
    asymmetry = 0.0
    if contact.any():
        rows, cols = np.nonzero(contact)
        vx, vy = cols - (width - 1) / 2, rows - (height - 1) / 2
        norm = np.maximum(np.hypot(vx, vy), 1e-6)
        asymmetry = float(np.hypot((vx / norm).mean(), (vy / norm).mean()))
    # The outline of the lesion as seen in the frame: pixels of the mask with a neighbour outside
    # it, counting beyond the frame as outside; the part of it on the photo's edge is where the
    # frame, not the lesion's border, ends the lesion. A dermatoscope's round rim is not counted:
    # its field is what the device shows, and lesions often reach it in accepted photos.
    padded = np.pad(mask.astype(np.uint8), 1)
    outline = mask & ~cv2.erode(padded, np.ones((3, 3), np.uint8))[1:-1, 1:-1].astype(bool)
    outer = np.zeros_like(mask)
    outer[:2, :] = outer[-2:, :] = True
    outer[:, :2] = outer[:, -2:] = True
    outer &= small_fov
    cut_fraction = float((outline & outer).sum() / max(outline.sum(), 1))
    return Lesion(
        cut_fraction=cut_fraction,
        contrast=contrast,
        area_fraction=float(mask.sum() / max(small_fov.sum(), 1)),
        offset=float(offset),
        border_contact=border_contact,
        contact_asymmetry=asymmetry,
    )
