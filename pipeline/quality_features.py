"""Measurements behind the photo-quality checks: pure functions from pixels to numbers.

Every function takes the *working* image made by :func:`working_rgb` (RGB ``float32`` in
``[0, 1]``, shape ``(H, W, 3)``, long side at most a fixed working size) so the same threshold
means the same thing for a 224 px dermoscopy crop and a 12-MP phone photo. Nothing here decides
whether a photo is acceptable: :mod:`pipeline.quality` does, from these numbers.

Conventions: ``y`` is luma (Rec. 601) in ``[0, 1]``; ``fov`` is the boolean mask of the lit field
of view (the whole frame for a phone photo, the disc inside a dermatoscope's dark vignette).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

#: Luma below which a pixel counts as part of a dermatoscope's black surround.
VIGNETTE_LUMA = 0.12
#: Long side at which the lesion is segmented and colours are summarised: coarse shape and
#: colour statistics do not need more pixels, and this keeps them cheap.
SUMMARY_SIDE = 160


def working_rgb(image: Image.Image | np.ndarray, working_side: int) -> np.ndarray:
    """RGB ``float32`` in ``[0, 1]``, long side reduced to ``working_side`` (never enlarged).

    Accepts a PIL image (any mode) or an ``(H, W)``/``(H, W, 3|4)`` array, ``uint8`` or float in
    ``[0, 1]``. Area averaging is used for the reduction, as a camera's own downscaler would.
    """
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got {array.shape}")
        array = array[:, :, :3]
        if array.dtype != np.uint8:
            array = np.clip(np.asarray(array, dtype=np.float32) * 255.0 + 0.5, 0, 255)
            array = array.astype(np.uint8)
    height, width = array.shape[:2]
    if height < 2 or width < 2:
        raise ValueError(f"image too small to assess: {width} x {height}")
    scale = working_side / max(height, width)
    if scale < 1.0:
        size = (max(2, round(width * scale)), max(2, round(height * scale)))
        array = cv2.resize(np.ascontiguousarray(array), size, interpolation=cv2.INTER_AREA)
    return array.astype(np.float32) * np.float32(1.0 / 255.0)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma, the brightness a viewer perceives, in ``[0, 1]``."""
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def srgb_to_linear(values: np.ndarray | float) -> np.ndarray:
    """sRGB code values to linear light, where exposure steps (EV) are factors of two."""
    v = np.asarray(values, dtype=np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear light (clipped to ``[0, 1]``) back to 8-bit sRGB code values: the inverse of
    :func:`srgb_to_linear`, for code that makes defects in linear light (benchmark, fitting)."""
    v = np.clip(linear, 0.0, 1.0)
    v = np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1 / 2.4) - 0.055)
    return np.clip(v * 255.0 + 0.5, 0, 255).astype(np.uint8)


def resize_long_side(array: np.ndarray, side: int) -> np.ndarray:
    """Area-average ``array`` so its long side is at most ``side``."""
    height, width = array.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return array
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def field_of_view(y: np.ndarray) -> tuple[np.ndarray, float]:
    """The lit field of view and the fraction of the frame outside it (the vignette).

    A dermatoscope images the skin through a circular window, leaving black corners. Those pixels
    are dark without the photo being under-exposed, so exposure must be measured inside the disc.
    The vignette is the near-black region connected to the frame's edge, accepted only if it fills
    at least two corners (a dark lesion touching one edge is not a vignette) and leaves a lit
    field of at least a quarter of the frame (otherwise the whole photo is simply dark).
    """
    full = np.ones_like(y, dtype=bool)
    small = resize_long_side(y, SUMMARY_SIDE)  # the rim is a coarse shape: find it small
    height, width = small.shape
    smooth = cv2.GaussianBlur(small, (0, 0), max(1.0, 0.01 * max(height, width)))
    dark = (smooth < VIGNETTE_LUMA).astype(np.uint8)
    if not dark.any():
        return full, 0.0
    _, labels = cv2.connectedComponents(dark, connectivity=8)
    edge_labels = np.unique(
        np.concatenate([labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1]])
    )
    edge_labels = edge_labels[edge_labels != 0]
    if edge_labels.size == 0:
        return full, 0.0
    vignette = np.isin(labels, edge_labels)
    patch = max(2, min(height, width) // 40)
    corners = (
        vignette[:patch, :patch],
        vignette[:patch, -patch:],
        vignette[-patch:, :patch],
        vignette[-patch:, -patch:],
    )
    dark_corners = sum(float(corner.mean()) > 0.5 for corner in corners)
    if dark_corners < 2 or vignette.mean() > 0.75:
        return full, 0.0
    fov = cv2.resize(
        (~vignette).astype(np.uint8), (y.shape[1], y.shape[0]), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    return fov, float(1.0 - fov.mean())


def interior(fov: np.ndarray, margin: int) -> np.ndarray:
    """The field of view shrunk by ``margin`` pixels from its rim and from the frame's edge,
    where filters see the vignette's hard edge or the padding; the whole frame if that leaves
    almost nothing."""
    shrunk = cv2.erode(fov.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    shrunk[:margin, :] = 0
    shrunk[-margin:, :] = 0
    shrunk[:, :margin] = 0
    shrunk[:, -margin:] = 0
    mask = shrunk.astype(bool)
    return mask if mask.sum() >= 64 else np.ones_like(fov, dtype=bool)


@dataclass(frozen=True)
class Exposure:
    """Brightness of the lit field. ``exposure_ev`` is the skin's brightness in stops relative to
    a well-exposed *light* skin tone (0 is right for light skin, -2 is four times too little
    light, or skin that reflects a quarter as much: dark skin in good light sits near -2).
    ``highlight_ev`` is the same for the 99.5th percentile, the brightest things in the frame
    (sheen on the skin, a ruler, a sleeve): they reflect what light there is whatever the skin's
    tone, so they tell a dim photo from dark skin well lit."""

    exposure_ev: float
    median_luma: float
    dark_fraction: float
    white_fraction: float
    highlight_ev: float


#: Linear-light brightness of well-exposed skin at the 90th percentile of the field (sRGB ~0.70).
REFERENCE_SKIN_LINEAR = 0.45


def exposure(rgb: np.ndarray, y: np.ndarray, fov: np.ndarray) -> Exposure:
    """Exposure measured on the field of view only.

    The 90th percentile of luma stands for the surrounding skin (the lesion is darker and may fill
    half the frame), and is compared with a well-exposed skin tone in linear light so the result
    reads in photographic stops. The 99.5th percentile is the frame's highlights, read in the same
    stops: with a fraction ``f`` of the light nothing that reflects it can be brighter than
    ``log2(f / 0.45)`` stops (white paper at 1/8 of the light: -1.85).
    """
    step = 2 if y.size > 200_000 else 1  # a quarter of the pixels gives the same percentiles
    inside = y[::step, ::step][fov[::step, ::step]]
    p90, p995 = (float(v) for v in np.percentile(inside, [90, 99.5]))
    ev = math.log2(max(float(srgb_to_linear(p90)), 1e-4) / REFERENCE_SKIN_LINEAR)
    highlight = math.log2(max(float(srgb_to_linear(p995)), 1e-4) / REFERENCE_SKIN_LINEAR)
    white = channel_min(rgb[::step, ::step]) >= 0.94
    return Exposure(
        exposure_ev=ev,
        median_luma=float(np.median(inside)),
        dark_fraction=float((inside < 0.08).mean()),
        white_fraction=float(white[fov[::step, ::step]].mean()),
        highlight_ev=highlight,
    )


@dataclass(frozen=True)
class Sharpness:
    """Estimated blur, as the Gaussian sigma (in working pixels) an ideal edge would need to look
    like this photo's edges: ``blur_px`` averaged over directions, ``blur_max_px`` in the worst
    direction (motion smears one direction only), and their difference ``blur_anisotropy_px``.

    They are measured only in the regions with enough structure to judge focus (``blur_judged_
    fraction`` of the field's interior), each region counting equally; when fewer than
    :data:`MIN_JUDGED_FRACTION` have, on the whole interior at once."""

    blur_px: float
    blur_max_px: float
    blur_anisotropy_px: float
    edge_strength: float
    blur_judged_fraction: float


_SIGMA_FINE = 1.0
_SIGMA_COARSE = 2.0
_ANGLES = np.linspace(0.0, math.pi, 12, endpoint=False)
#: Sharpness is judged region by region on a grid this many regions along the long side (14 px
#: regions on a 224 px crop, 48 px at the working size of a phone photo).
SHARPNESS_GRID = 16
#: A region is judged only if its RMS luma gradient (after the fine smoothing) is at least this,
#: in full-scale units per working pixel: above a phone's grain (sigma 4 code values gives about
#: 0.003) and JPEG noise, so the region holds edges or texture whose width can be read. Smooth
#: skin or the smooth inside of a lesion has none: its few gradients are soft shading, not focus.
MIN_REGION_GRADIENT = 0.004
#: Fewer judged regions than this share of the interior: judge the whole interior at once (a
#: strongly blurred photo has lost most of its structure, and must still read as blurred).
MIN_JUDGED_FRACTION = 0.1


def _gradient_products(y: np.ndarray, sigma: float, weight: np.ndarray) -> list[np.ndarray]:
    """Per-pixel structure tensor ``(gx^2, gx gy, gy^2)`` of ``y`` smoothed by ``sigma``, times
    ``weight`` (1 inside the measured mask, 0 outside)."""
    smooth = cv2.GaussianBlur(y, (0, 0), sigma)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    gxw, gyw = gx * weight, gy * weight
    return [gxw * gx, gxw * gy, gyw * gy]


def region_means(image: np.ndarray) -> np.ndarray:
    """Mean of ``image`` over each cell of the :data:`SHARPNESS_GRID` grid."""
    height, width = image.shape
    long_cells = SHARPNESS_GRID
    short_cells = max(1, round(SHARPNESS_GRID * min(height, width) / max(height, width)))
    size = (long_cells, short_cells) if width >= height else (short_cells, long_cells)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _blur_from_ratio(ratio: np.ndarray) -> np.ndarray:
    """Invert the energy ratio of an ideal edge blurred by sigma_b, seen at two smoothing scales.

    A step edge smoothed by a total sigma ``s`` has gradient energy proportional to ``1 / s``, so
    ``E(coarse) / E(fine) = sqrt((b^2 + f^2) / (b^2 + c^2))``; solving for ``b`` gives the edge's
    own blur whatever its contrast. Fine texture makes the ratio lower, i.e. reads as sharper.
    """
    r2 = np.clip(ratio, 0.0, 0.995) ** 2
    c2, f2 = _SIGMA_COARSE**2, _SIGMA_FINE**2
    return np.sqrt(np.clip((r2 * c2 - f2) / (1.0 - r2), 0.0, None))


#: Luma (sRGB) of the 90th percentile at -1.5 EV from :data:`REFERENCE_SKIN_LINEAR` (the
#: under-exposure line until 2026-12): pictures at least this bright are judged as before.
_DARK_PICTURE_LUMA = 0.435
#: Luma (sRGB) of :data:`REFERENCE_SKIN_LINEAR`, well-exposed light skin.
_REFERENCE_SKIN_LUMA = 0.70


def _structure_scale(y: np.ndarray, mask: np.ndarray) -> float:
    """How much smaller than usual a region's gradients may be and still be structure: 1 for a
    picture whose skin (90th percentile) is at least :data:`_DARK_PICTURE_LUMA`, else the square
    root of its brightness against well-exposed light skin. Skin's gradients shrink with its
    lightness: on dark skin in good light the absolute threshold left only the lesion's soft
    border judged, and 8 of 60 sharp derm-dev photos made dark (ITA -35 deg, simulated) read as
    blurred; 2 with this scale. In proportion to the brightness (not its root) it was 0, but
    more grain was then judged as structure and blurred, grained dark skin was caught less
    (22 of 32 test photos against 26 unscaled and 25 with the root)."""
    step = 2 if y.size > 200_000 else 1
    inside = y[::step, ::step][mask[::step, ::step]]
    if inside.size == 0:
        return 1.0
    level = float(np.percentile(inside, 90))
    if level >= _DARK_PICTURE_LUMA:
        return 1.0
    return max(0.5, math.sqrt(level / _REFERENCE_SKIN_LUMA))


def sharpness(y: np.ndarray, fov: np.ndarray) -> Sharpness:
    """Focus and motion blur, independent of contrast and measured where there is structure.

    Gradients are taken after smoothing at two scales; how much energy the coarser smoothing
    removes says how sharp the edges were, per direction (from the 2x2 structure tensor, so any
    motion angle is covered). Pixels near the frame and the vignette's rim are left out: that rim
    is a hard edge whatever the focus.

    The tensors are summed over the regions of a grid that hold structure (RMS gradient at least
    :data:`MIN_REGION_GRADIENT`), each normalised by its own energy so every such region weighs
    the same. Summed over the whole frame by energy, as before 2026-12-01, a large lesion's
    border, high in contrast but naturally gradual, outweighed all the fine texture around it and
    a sharp photo of a smooth lesion on smooth skin read as blurred. Real blur widens every edge,
    so it still shows in every region that has one.
    """
    mask = interior(fov, math.ceil(3 * _SIGMA_COARSE) + 2)
    weight = mask.astype(np.float32)
    fine_maps = _gradient_products(y, _SIGMA_FINE, weight)
    coarse_maps = _gradient_products(y, _SIGMA_COARSE, weight)
    total = float(weight.sum())
    fine = np.array([float(m.sum()) / total for m in fine_maps])
    coarse = np.array([float(m.sum()) / total for m in coarse_maps])
    edge_strength = math.sqrt(max(fine[0] + fine[2], 0.0))

    coverage = region_means(weight)
    inside = coverage > 0.9  # regions almost wholly in the measured mask
    fine_cells = np.stack([region_means(m)[inside] for m in fine_maps]) / coverage[inside]
    coarse_cells = np.stack([region_means(m)[inside] for m in coarse_maps]) / coverage[inside]
    energy = fine_cells[0] + fine_cells[2]
    judged = energy >= (MIN_REGION_GRADIENT * _structure_scale(y, mask)) ** 2
    judged_fraction = float(judged.mean()) if judged.size else 0.0
    if judged_fraction >= MIN_JUDGED_FRACTION:
        scale = 1.0 / energy[judged]
        fine = fine_cells[:, judged] @ scale
        coarse = coarse_cells[:, judged] @ scale

    cos, sin = np.cos(_ANGLES), np.sin(_ANGLES)
    e_fine = fine[0] * cos**2 + 2 * fine[1] * cos * sin + fine[2] * sin**2
    e_coarse = coarse[0] * cos**2 + 2 * coarse[1] * cos * sin + coarse[2] * sin**2
    blur = _blur_from_ratio(np.sqrt(e_coarse / np.maximum(e_fine, 1e-12)))
    overall = _blur_from_ratio(
        np.array([math.sqrt((coarse[0] + coarse[2]) / max(fine[0] + fine[2], 1e-12))])
    )
    return Sharpness(
        blur_px=float(overall[0]),
        blur_max_px=float(blur.max()),
        blur_anisotropy_px=float(blur.max() - blur.min()),
        edge_strength=edge_strength,
        blur_judged_fraction=judged_fraction,
    )


@dataclass(frozen=True)
class Highlights:
    """Specular glare: small near-white spots much brighter than the skin around them."""

    glare_fraction: float


def channel_min(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel minimum of R, G and B (high only for white light). Written with ``np.minimum``
    because numpy's ``min(axis=2)`` over three channels is many times slower."""
    return np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def channel_max(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel maximum of R, G and B (see :func:`channel_min`)."""
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


#: Long side at which glare spots are looked for: spots that matter span several pixels there.
_GLARE_SIDE = 384


def highlights(rgb: np.ndarray, y: np.ndarray, fov: np.ndarray) -> Highlights:
    """Fraction of the field covered by specular highlights.

    A highlight is near-white in every channel (light reflected, not skin colour) *and* stands
    out from its neighbourhood (morphological top-hat), which separates glare spots from skin that
    is merely pale or from an over-exposed photo, where everything is bright.
    """
    white = (channel_min(rgb) >= 0.86) & fov
    if not white.any():
        return Highlights(glare_fraction=0.0)
    small = resize_long_side(y, _GLARE_SIDE)
    codes = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
    radius = max(2, round(0.03 * max(small.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    tophat = cv2.morphologyEx(codes, cv2.MORPH_TOPHAT, kernel)
    if tophat.shape != y.shape:
        tophat = cv2.resize(tophat, (y.shape[1], y.shape[0]), interpolation=cv2.INTER_LINEAR)
    spots = white & (tophat >= 31)  # 0.12 of full scale brighter than the surroundings
    return Highlights(glare_fraction=float(spots.sum() / max(fov.sum(), 1)))
