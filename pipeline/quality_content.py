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
    clipped_fraction: float


def colour(rgb: np.ndarray, fov: np.ndarray) -> Colour:
    """Colour statistics over the field's pixels that are neither clipped nor near-black."""
    small, lab, small_fov = _small_views(rgb, fov)
    y = luma(small)
    clipped = channel_max(small) >= 0.985
    well = small_fov & (y > 0.08) & ~clipped
    field_size = max(int(small_fov.sum()), 1)
    well_fraction = float(well.sum() / field_size)
    clipped_fraction = float((clipped & small_fov).sum() / field_size)
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
    strength = np.minimum(chroma, 20.0)
    # A picture without any colour (a grey card, a lens cap) has no hue to agree on: 0, not a
    # division by zero.
    resultant = (
        float(np.hypot(*np.average(unit, axis=1, weights=strength))) if strength.sum() > 0 else 0.0
    )
    mean_a, mean_b = float(a.mean()), float(b.mean())
    return Colour(
        skin_fraction=float((skin_hue | dark_lesion | colourless).mean()),
        neutral_fraction=float(neutral.mean()),
        mean_a=mean_a,
        mean_b=mean_b,
        cast_hue_deg=math.degrees(math.atan2(mean_b, mean_a)),
        hue_spread=1.0 - resultant,
        well_exposed_fraction=well_fraction,
        clipped_fraction=clipped_fraction,
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
    """Where the lesion (the region that differs from the surrounding skin) sits in the frame.

    ``contrast``: the lesion's colour distance from the skin (CIELAB delta E); below a few units
    there is no distinct lesion. ``area_fraction``: lesion area over the field; ``offset``: the
    lesion centre's distance from the frame centre (0 centre, 1 edge, per axis, the larger).

    Cut by the frame, for the side of the photo where it is worst (``cut_side``: 0 left, 1 right,
    2 top, 3 bottom, -1 when the lesion reaches no side): ``edge_run``, the share of that side
    along which the lesion reaches the edge; ``edge_contrast``, how far the lesion's colour right
    at the edge is from the skin (delta E: the lesion itself, not a faint fringe, is cut);
    ``lost_fraction``, the estimated share of the lesion beyond the frame (0 whole, 0.5 cut
    through its middle; see :func:`_lost_fraction`); ``opposite_margin``, the share of the frame
    between the lesion and the opposite side (0 when the lesion spans the frame, as in a
    close-up). A dermatoscope's round rim is not a side.

    Whether the region is the photo's lesion at all (see :func:`_distinctness`):
    ``distinctness``, how much more it differs from the skin than the ring right around it
    (delta E; high for a lesion with a border, low for shading that fades out), and
    ``rival_distinctness``, the same for the clearest other region wholly inside the frame.
    """

    contrast: float
    area_fraction: float
    offset: float
    cut_side: float = -1.0
    edge_run: float = 0.0
    edge_contrast: float = 0.0
    lost_fraction: float = 0.0
    opposite_margin: float = 0.0
    distinctness: float = 0.0
    rival_distinctness: float = 0.0


_NO_LESION = Lesion(contrast=0.0, area_fraction=0.0, offset=0.0)


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


#: Width (pixels of the small copy, 160 px long side) of the strip along each side of the photo
#: in which the lesion counts as reaching that side: its segmented outline, smoothed, rarely
#: reaches the very last row.
EDGE_BAND_PX = 3


def _lost_fraction(chord: float, depth: float) -> float:
    """Share of a round lesion's area beyond a straight frame edge, from what is visible.

    ``chord``: the length along the edge where the lesion meets it; ``depth``: how far the lesion
    reaches into the photo from that edge. A circle through both ends of the chord and the
    farthest point has radius ``r = (depth^2 + chord^2 / 4) / (2 depth)``; its centre lies
    ``u = depth - r`` inside the frame (negative: beyond it). The part beyond the edge is the
    circular segment cut off at distance ``|u|`` from the centre. A lesion cut through its middle
    gives 0.5, one just grazing the edge about 0. The model assumes the far side of the lesion is
    in the picture: for a lesion spanning the frame to the opposite side it does not hold.
    """
    if chord <= 0.0 or depth <= 0.0:
        return 0.0
    radius = (depth**2 + chord**2 / 4.0) / (2.0 * depth)
    inside = depth - radius
    theta = 2.0 * math.acos(min(1.0, abs(inside) / radius))
    segment = (theta - math.sin(theta)) / (2.0 * math.pi)
    return segment if inside >= 0.0 else 1.0 - segment


def _frame_cut(
    mask: np.ndarray, likeness: np.ndarray, field: np.ndarray, skin_level: float
) -> tuple[float, float, float, float, float]:
    """``(cut_side, edge_run, edge_contrast, lost_fraction, opposite_margin)`` for the side of
    the photo that cuts the lesion most; see :class:`Lesion`.

    Each side is looked at as the lesion's pixels within :data:`EDGE_BAND_PX` of it, where that
    strip lies in the field of view. The lesion is segmented inside the field only, so where a
    dermatoscope's dark surround covers a side the lesion cannot reach it: the round rim, which
    is what the device shows, never counts as a cut.
    """
    best = (-1.0, 0.0, 0.0, 0.0, 0.0)
    band = EDGE_BAND_PX
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return best
    height, width = mask.shape
    # Per side: the strip (as rows along the side) and how deep the lesion reaches from it.
    sides = (
        (mask[:, :band], field[:, :band], likeness[:, :band], cols.max() + 1),
        (mask[:, -band:], field[:, -band:], likeness[:, -band:], width - cols.min()),
        (mask[:band, :].T, field[:band, :].T, likeness[:band, :].T, rows.max() + 1),
        (mask[-band:, :].T, field[-band:, :].T, likeness[-band:, :].T, height - rows.min()),
    )
    for side, (strip, strip_field, strip_likeness, depth) in enumerate(sides):
        valid = strip_field.all(axis=1)
        touched = strip.any(axis=1) & valid
        if not touched.any():
            continue
        lost = _lost_fraction(float(touched.sum()), float(depth))
        if lost > best[3]:
            at_edge = strip_likeness[touched][strip[touched]]
            best = (
                float(side),
                float(touched.sum() / valid.sum()),
                float(np.median(at_edge)) - skin_level,
                lost,
                1.0 - float(depth) / (width if side < 2 else height),
            )
    return best


#: A region smaller than this share of the field (a hair crossing, a pore, a speck) is never
#: a rival to the lesion: see :func:`_distinctness`.
RIVAL_MIN_AREA = 0.005


def _distinctness(
    labels: np.ndarray,
    count: int,
    best: int,
    likeness: np.ndarray,
    field: np.ndarray,
    kernel: np.ndarray,
) -> tuple[float, float]:
    """``(distinctness, rival_distinctness)``: how clearly the lesion stands out from what lies
    right around it, and the same for the clearest *other* candidate region lying wholly inside
    the frame (not reaching any side), at least :data:`RIVAL_MIN_AREA` of the field (0 if none).

    Distinctness is the median colour distance from the skin inside the region minus the median
    in a ring about 6 px (small copy) wide around it. A lesion has a border: its surroundings
    are skin. Shading (a darker corner, the edge of a dermatoscope's lens or spacer) fades
    gradually, so the region Otsu cuts out of it is barely darker than its own surroundings,
    however large it is. When a whole lesion elsewhere stands out more, that one is what the
    photo shows, and the large region at the edge is not a lesion cut off by the frame.
    """
    height, width = labels.shape
    field_size = max(int(field.sum()), 1)
    band = EDGE_BAND_PX
    own, rivals = 0.0, []
    for i in range(1, count):
        region = labels == i
        rows, cols = np.nonzero(region)
        whole = bool(
            rows.min() >= band
            and cols.min() >= band
            and rows.max() < height - band
            and cols.max() < width - band
        )
        if i != best and not (whole and rows.size >= RIVAL_MIN_AREA * field_size):
            continue  # neither the lesion nor a rival: its ring need not be measured
        ring = cv2.dilate(region.astype(np.uint8), kernel, iterations=3).astype(bool)
        ring &= field & ~region
        inside = float(np.median(likeness[region]))
        value = inside - float(np.median(likeness[ring])) if ring.any() else 0.0
        if i == best:
            own = value
        else:
            rivals.append(value)
    return own, max(rivals, default=0.0)


def lesion(rgb: np.ndarray, fov: np.ndarray) -> Lesion:
    """Segment the lesion by Otsu's threshold on its colour distance from the skin in the field.

    The component with the most contrast (area times colour distance) is taken as the lesion;
    hairs and pores are too thin to survive the morphological opening at this scale.
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
        return _NO_LESION
    scaled = likeness * (255.0 / high)
    codes = np.clip(scaled[small_fov], 0, 255).astype(np.uint8).reshape(-1, 1)
    threshold, _ = cv2.threshold(codes, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    candidate = (scaled > threshold) & small_fov
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    candidate = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_CLOSE, kernel)
    count, labels, _, centroids = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if count <= 1:
        return _NO_LESION
    mass = [float(likeness[labels == i].sum()) for i in range(1, count)]
    best = 1 + int(np.argmax(mass))
    mask = labels == best
    distinctness, rival = _distinctness(labels, count, best, likeness, small_fov, kernel)
    ring = cv2.dilate(mask.astype(np.uint8), kernel, iterations=2).astype(bool)
    skin = small_fov & ~ring & (candidate == 0)
    if skin.sum() < 16:
        skin = small_fov & ~mask
    skin_level = float(np.median(likeness[skin])) if skin.any() else 0.0
    contrast = float(np.median(likeness[mask]) - skin_level) if skin.any() else 0.0

    cx, cy = centroids[best]
    offset = max(abs(cx - (width - 1) / 2) / (width / 2), abs(cy - (height - 1) / 2) / (height / 2))
    cut_side, edge_run, edge_contrast, lost, margin = _frame_cut(
        mask, likeness, small_fov, skin_level
    )
    return Lesion(
        contrast=contrast,
        area_fraction=float(mask.sum() / max(small_fov.sum(), 1)),
        offset=float(offset),
        cut_side=cut_side,
        edge_run=edge_run,
        edge_contrast=edge_contrast,
        lost_fraction=lost,
        opposite_margin=margin,
        distinctness=distinctness,
        rival_distinctness=rival,
    )


@dataclass(frozen=True)
class Outline:
    """Where a learned lesion outline (a boolean mask the caller's segmenter drew on the small
    copy) puts the lesion, and whether that outline can be believed.

    The segmenter learned from dermoscopy of mostly pigmented lesions. On a pink or scaly lesion
    in a phone close-up it spreads over most of the frame or breaks into fragments that follow
    redness and pen marks (docs/quality.md, "Learned lesion outline"), so it is ``trusted`` (1.0)
    only when it looks like one lesion: its largest region covers :data:`OUTLINE_MIN_AREA` to
    :data:`OUTLINE_MAX_AREA` of the field and holds at least :data:`OUTLINE_MIN_MAIN_SHARE` of
    the masked pixels. ``area_fraction``: that main region over the field; ``main_share``: its
    share of the masked pixels; ``offset``, ``edge_run``, ``lost_fraction`` and
    ``opposite_margin``: as in :class:`Lesion`, for the main region.
    """

    trusted: float
    area_fraction: float
    main_share: float
    offset: float = 0.0
    edge_run: float = 0.0
    lost_fraction: float = 0.0
    opposite_margin: float = 0.0


#: The outline is trusted only when its main region covers at least this share of the field:
#: below it the network found no lesion it is sure of (or a speck), and "too small" would be
#: a guess.
OUTLINE_MIN_AREA = 0.02
#: ... and at most this share: beyond it the outline is spreading over inflamed skin, as it does
#: on pink lesions in phone close-ups, and says nothing about where the lesion ends.
OUTLINE_MAX_AREA = 0.70
#: ... and the main region holds at least this share of everything outlined: several fragments
#: of similar size are redness and pen marks, not one lesion.
OUTLINE_MIN_MAIN_SHARE = 0.8


def outline(mask: np.ndarray, fov: np.ndarray) -> Outline:
    """Measure a lesion ``mask`` (bool, any size; the small copy's is cheapest) in the field
    ``fov`` (bool, the working copy's size). See :class:`Outline`."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    field = cv2.resize(fov.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    field = field.astype(bool)
    if not field.all():
        # A dermatoscope's rim: measured inside the field, as :func:`lesion` does.
        field = cv2.erode(field.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    inside = mask & field
    total = int(inside.sum())
    field_size = max(int(field.sum()), 1)
    if total == 0:
        return Outline(trusted=0.0, area_fraction=0.0, main_share=0.0)
    _, labels, stats, centroids = cv2.connectedComponentsWithStats(
        inside.astype(np.uint8), connectivity=8
    )
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    main = labels == best
    area = float(stats[best, cv2.CC_STAT_AREA]) / field_size
    share = float(stats[best, cv2.CC_STAT_AREA]) / total
    trusted = OUTLINE_MIN_AREA <= area <= OUTLINE_MAX_AREA and share >= OUTLINE_MIN_MAIN_SHARE
    cx, cy = centroids[best]
    offset = max(abs(cx - (width - 1) / 2) / (width / 2), abs(cy - (height - 1) / 2) / (height / 2))
    _, edge_run, _, lost, margin = _frame_cut(main, np.zeros(main.shape, np.float32), field, 0.0)
    return Outline(
        trusted=float(trusted),
        area_fraction=area,
        main_share=share,
        offset=float(offset),
        edge_run=edge_run,
        lost_fraction=lost,
        opposite_margin=margin,
    )
