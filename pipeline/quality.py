"""Instant photo-quality feedback for GPs: is this photo good enough, and if not, how to retake it.

Pure functions, no I/O: :func:`assess_image` takes pixels, :func:`assess_bytes` takes an upload's
bytes (decoded through :mod:`pipeline.intake`); both return a :class:`QualityResult` whose
``to_dict()`` is the one object the CLI, the API and the GP page all show.

How the checks stay valid from a 224 px dermoscopy crop to a 12-MP phone photo: every photo is
analysed at a fixed working size (long side :data:`WORKING_SIDE`, never enlarged), sharpness is a
blur *width* estimated from how edges respond to two smoothing scales (so contrast and content do
not matter), joined by a fitted detector that judges a 224 px copy and still sees blur under a
sensor's grain, and exposure is measured in photographic stops inside the lit field of view (so a
dermatoscope's black circular surround is not mistaken for under-exposure). Measurements live in
:mod:`pipeline.quality_features`, :mod:`pipeline.quality_content` and :mod:`pipeline.quality_blur`;
the thresholds that turn them into problems are in :class:`Thresholds`, each with the reason for
its value. docs/quality.md gives the benchmark that set them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from pipeline import quality_blur, quality_content, quality_features
from pipeline.intake import IntakeError, decode_image
from pipeline.quality_messages import message

__all__ = [
    "MAX_PROBLEMS",
    "PROBLEM_CODES",
    "WORKING_SIDE",
    "LesionSegmenter",
    "Problem",
    "QualityResult",
    "Thresholds",
    "assess_bytes",
    "assess_image",
    "message",
]

logger = logging.getLogger(__name__)

#: At most this many problems are reported per photo, the most useful first: a GP fixes one or
#: two things per retake, and the next photo is judged again.
MAX_PROBLEMS = 2

#: Every problem code, in the order problems are reported (most useful first: a cause before
#: what it causes, since fixing the light or the focus changes everything measured after it).
PROBLEM_CODES: tuple[str, ...] = (
    "unreadable_file",
    "not_skin",
    "low_resolution",
    "underexposed",
    "overexposed",
    "blur",
    "glare",
    "colour_cast",
    "framing",
)

#: A learned lesion outliner the caller may pass in: RGB ``uint8`` pixels (the small copy the
#: checks summarise, :data:`~pipeline.quality_features.SUMMARY_SIDE` px long side) in, a boolean
#: mask of the same size and the outliner's version out. Passed in, never imported, because
#: ``pipeline`` holds no model code (``models.segmenter.segment`` has this signature).
LesionSegmenter = Callable[[np.ndarray], tuple[np.ndarray, str]]

#: Long side, in pixels, at which every photo is analysed (smaller photos are kept as they are).
#: 768 px shows what a dermatologist sees on a screen; blur finer than that is invisible there.
WORKING_SIDE = 768


@dataclass(frozen=True)
class Problem:
    """One reason to retake the photo: a stable ``code`` and advice a GP can follow."""

    code: str
    message: str


@dataclass(frozen=True)
class QualityResult:
    """The verdict on one photo: ``acceptable`` when ``problems`` is empty; ``metrics`` holds every
    measurement behind it (names in docs/quality.md) so a decision can always be explained."""

    acceptable: bool
    problems: tuple[Problem, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    #: Which fitted parts judged the photo (``lesion_segmenter``: the outliner's version, when one
    #: was passed in), for the caller to store with the verdict; not part of :meth:`to_dict`.
    checks: dict[str, str] = field(default_factory=dict)
    #: The learned outline's measurements (``outline_*``, :func:`quality_content.outline`) when an
    #: outliner was passed in. Kept apart from ``metrics`` so the answer the API and the command
    #: line publish keeps its shape; :meth:`to_dict` adds them for the stored verdict on request.
    outline: dict[str, float] = field(default_factory=dict)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(problem.code for problem in self.problems)

    def to_dict(self, file: str | None = None, *, with_outline: bool = False) -> dict[str, Any]:
        """The JSON-ready object shared by the CLI and the API (``file`` only when given);
        ``with_outline`` adds the ``outline_*`` measurements to ``metrics`` (the stored verdict,
        so that a framing decision can always be explained)."""
        out: dict[str, Any] = {} if file is None else {"file": file}
        out["acceptable"] = self.acceptable
        out["problems"] = [{"code": p.code, "message": p.message} for p in self.problems]
        out["metrics"] = {**self.metrics, **(self.outline if with_outline else {})}
        return out


@dataclass(frozen=True)
class Thresholds:
    """Where each measurement becomes a problem. Values were set on the benchmark in
    docs/quality.md with margins towards *accepting* photos: a false alarm costs a GP a retake,
    a miss costs a dermatologist a useless photo, and both must stay rare."""

    #: Shorter side below this is too few pixels to see dermoscopic structures; 200 px keeps the
    #: common 224 px dermoscopy crops acceptable.
    min_short_side: int = 200
    #: Under-exposed: the skin (``exposure_ev``, against a well-exposed *light* skin tone) darker
    #: than this many stops, with nothing in the frame brighter than ``lit_highlight_ev``; or
    #: darker than ``underexposed_ev_lit`` whatever the highlights. The line was -1.5 until
    #: 2026-12, which is where dark skin in good light sits: Fitzpatrick V-VI skin (ITA -35 deg,
    #: simulated on real photos) reads -2.2 to -1.3 and was told ``underexposed`` 97.7 % of the
    #: time. At -2.3 none of it is, while light skin at 1/8 of the light (-3 EV) still is (97-100 %
    #: of fit photos and derm-dev) and at 1/10 with a phone's noise 100 %. Between -2.3 and -1.5
    #: a light-skinned photo at 1/5-1/3 of the light passes: in its pixels it is the same as dark
    #: skin well lit (docs/quality.md, "Dark skin is not under-exposure").
    underexposed_ev: float = -2.3
    #: Highlights (99.5th percentile) brighter than this show there is light: with 1/8 of the
    #: light even white paper reads -1.85 EV (every dim photo simulated on fit photos and
    #: derm-dev stays at or below -2.2). Dark skin keeps its sheen, so a darker skin with sheen
    #: (ITA -45 deg or below) is judged on the deeper line below.
    lit_highlight_ev: float = -1.0
    underexposed_ev_lit: float = -3.0
    #: A picture darker than this (the under-exposure line until 2026-12) but not under-exposed,
    #: dark skin for one, is judged ``not_skin`` on less: exactly flat patches are not read (its
    #: smooth skin quantises into them: 0.53 on a soft close-up with simulated dark skin), and
    #: the "no structure" line (``min_edge_strength``) is scaled by its brightness, since skin's
    #: gradients shrink with its lightness (a smooth derm-dev photo made ITA -35 deg dark goes
    #: from 0.0038 to 0.0019, its line to 0.0015; solid colours and gradients made in code at
    #: that brightness read 0.0015-0.0016 against a line of 0.0016-0.0017).
    dark_picture_ev: float = -1.5
    #: Skin brighter than this many stops above it, or this share of the field burnt to white.
    overexposed_ev: float = 1.0
    overexposed_white_fraction: float = 0.2
    #: ... or two thirds of the field with a channel burnt (red skin loses its red first and is
    #: never white): there the skin's colour and the pigment network are gone. 99 % of good
    #: derm-dev photos have under 10 % of such pixels; one very pink one has 58 %.
    overexposed_clipped_fraction: float = 0.67
    #: Estimated edge blur, in working pixels: all directions (focus) or the worst one (motion).
    blur_px: float = 2.9
    blur_max_px: float = 3.1
    #: Motion: blur this much wider in the worst direction than in the best one. 1.0 until the
    #: fitted detector below took over motion blur: at 1.0 it flagged 0.8 % of good photos
    #: (acral ridges, parallel streaks or hairs), at 1.5 0.3 %, for no loss on shaken photos
    #: (docs/quality.md); above 1.5 it is a backstop for a smear the detector might not know.
    blur_anisotropy_px: float = 1.5
    #: ... or the fitted blur detector (:mod:`pipeline.quality_blur`, which still sees blur under
    #: a sensor's grain) gives at least this probability: by default the shipped model's own
    #: threshold, set when it was fitted so that 1 in 200 of its sharp fitting photos reaches it.
    blur_probability: float = field(
        default_factory=lambda: quality_blur.shipped_blur_model().threshold
    )
    #: Share of the field covered by specular highlights.
    glare_fraction: float = 0.004
    #: Colour cast: the average colour's hue (CIELAB, degrees) greener than the first or more
    #: violet than the second (skin and lesions run from purple-red to orange), or its b* bluer
    #: than the last. Warm casts are indistinguishable from skin's own colour: not judged. The
    #: green line was 55 deg, set on dermoscopy; real phone photos under warm indoor light sit at
    #: 55-80 deg (yellow, olive) and dermatologists read them (28.7 % of the clinical-phone fit
    #: photos were told to retake at 55, 3.3 % at 80; docs/quality.md, "Colour cast on real
    #: photos"). A yellow-green cast made in code overlaps them: at a gain of 2.0 the benchmark
    #: catches fewer (95.0 -> 91.5 % on a 200-photo sample).
    cast_max_hue_deg: float = 80.0
    cast_min_hue_deg: float = -55.0
    cast_min_b: float = -13.0
    #: Not skin, from colour: fewer skin-coloured pixels than this, with this many hues (a scene).
    min_skin_fraction: float = 0.5
    scene_hue_spread: float = 0.35
    #: Not skin, from structure: rendered flat areas, ink strokes laid out in lines, edges aligned
    #: to a grid, or no structure at all (a blank wall or screen; any photo of skin has some
    #: texture). Set on real phone photos (docs/quality.md, "Real photos"): hair, pen marks and a
    #: soft, smooth close-up reach 0.074 of strokes, 0.44 of rectilinear edges and 0.24 of flat
    #: patches there; documents have at least 0.034 of strokes *with* at least 0.32 of
    #: rectilinear edges (text lines), screens and grids at least 0.49 rectilinear, rendered
    #: pictures 0.4 or more flat.
    max_flat_fraction: float = 0.3
    max_stroke_fraction: float = 0.025
    stroke_min_rectilinear: float = 0.3
    max_rectilinear_fraction: float = 0.47
    min_edge_strength: float = 0.003
    #: Nothing lit: an under-exposed picture with fewer than this share of the field's pixels
    #: above 8 % luma and unclipped. Not a dark photo of skin (a phone's auto-exposure lifts any
    #: scene it can see; derm-dev at 1/30 of the light keeps most of its pixels) but a covered
    #: lens.
    min_lit_fraction: float = 0.02
    #: Colours judged even when the photo is too bright: at least this share of the field is
    #: neither clipped nor near-black.
    min_judged_colour_fraction: float = 0.2
    #: Too small or off-centre is judged only when a lesion stands out from the skin by this
    #: colour distance (CIELAB delta E); fainter "lesions" are often just uneven skin.
    lesion_min_contrast: float = 15.0
    #: Too small: the lesion covers less than this share of the field.
    lesion_min_area: float = 0.005
    #: Off-centre: the lesion's centre lies in the outer 7.5 % of the frame.
    lesion_max_offset: float = 0.85
    #: Cut off: this share of the lesion is estimated to lie beyond one side of the photo. At 0.1
    #: about a quarter of its outline, where the signs of melanoma are read, is not in the
    #: picture; a lesion that merely reaches the edge loses about 0 and is not cut off.
    lesion_max_lost_fraction: float = 0.1
    #: ... provided skin shows between the lesion and the opposite side, over at least this share
    #: of the frame: a lesion spanning the frame is a close-up, and the estimate needs its far
    #: border ...
    lesion_cut_min_margin: float = 0.05
    #: ... and provided both the lesion and its colour right at the cut differ from the skin by this
    #: delta E (clearly visible side by side; fainter regions are often uneven skin or shading),
    #: so that a shading or a faint fringe reaching the edge is not taken for a cut lesion.
    lesion_cut_min_contrast: float = 8.0
    #: ... and provided the cut region is the photo's main lesion: no whole lesion elsewhere in
    #: the frame stands out from its own surroundings more than this many times as clearly
    #: (``lesion_rival_distinctness`` against ``lesion_distinctness``). A darker corner or a
    #: lens edge fades gradually and is barely distinct from what surrounds it; the small
    #: central lesion the photographer aimed at has a border.
    lesion_rival_ratio: float = 1.5
    #: A trusted learned outline (one main region, 2-70 % of the field:
    #: :func:`pipeline.quality_content.outline`) clears a photo of ``framing`` when the lesion it
    #: outlines is whole and central: touching a side along less than this share of it, ...
    outline_whole_max_edge_run: float = 0.5
    #: ... with less than this share estimated beyond the frame (the cut-off line above), ...
    outline_whole_max_lost: float = 0.1
    #: ... and its centre within this distance of the frame's centre (0 centre, 1 edge). The
    #: colour rule's "lesion" on a phone close-up is often inflamed skin or shading reaching an
    #: edge (42 % of usable clinical fit photos were told ``framing``); where the outline finds
    #: one whole central lesion, that is what the photo shows. On the outline's fit rows the
    #: cleared photos' centres lay at 0.02-0.40; 0.42 keeps the one synthetic lesion cut at the
    #: edge whose outline found another, central spot at 0.44 (docs/quality.md). Otherwise, and
    #: whenever the outline is not trusted, the colour rule decides alone.
    outline_whole_max_offset: float = 0.42


DEFAULT_THRESHOLDS = Thresholds()


def measure(
    image: Image.Image | np.ndarray, lesion_segmenter: LesionSegmenter | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Every quality measurement of ``image``, analysed at :data:`WORKING_SIDE`, and the
    versions of the fitted parts used (``checks``).

    With ``lesion_segmenter``, the learned outline of the small copy is measured too
    (``outline_*`` metrics) and its version returned as ``checks["lesion_segmenter"]``. An
    outliner that fails leaves the photo to the colour rule: a quality check must never refuse
    an upload because a helper model broke.
    """
    rgb = quality_features.working_rgb(image, WORKING_SIDE)
    y = quality_features.luma(rgb)
    fov, vignette = quality_features.field_of_view(y)
    exposure = quality_features.exposure(rgb, y, fov)
    sharp = quality_features.sharpness(y, fov)
    blur_model = quality_blur.shipped_blur_model()
    blur_probability = blur_model.probability(quality_blur.photo_features(y, fov, sharp))
    glare = quality_features.highlights(rgb, y, fov)
    colour = quality_content.colour(rgb, fov)
    structure = quality_content.structure(rgb, y, fov)
    lesion = quality_content.lesion(rgb, fov)
    metrics: dict[str, float] = {
        "working_width": float(rgb.shape[1]),
        "working_height": float(rgb.shape[0]),
        "vignette_fraction": vignette,
        "blur_probability": blur_probability,
    }
    for group, prefix in (
        (exposure, ""),
        (sharp, ""),
        (glare, ""),
        (colour, ""),
        (structure, ""),
        (lesion, "lesion_"),
    ):
        for name, value in vars(group).items():
            metrics[prefix + name] = float(value)
    checks: dict[str, str] = {}
    if lesion_segmenter is not None:
        small = quality_features.resize_long_side(rgb, quality_features.SUMMARY_SIDE)
        small8 = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
        try:
            mask, version = lesion_segmenter(np.ascontiguousarray(small8))
        except Exception:  # any outliner failure: the colour rule decides
            logger.warning(
                "lesion segmenter failed; framing judged by the colour rule", exc_info=True
            )
        else:
            for name, value in vars(quality_content.outline(mask, fov)).items():
                metrics["outline_" + name] = float(value)
            checks["lesion_segmenter"] = str(version)
    return {name: round(value, 4) for name, value in metrics.items()}, checks


def decide(
    metrics: dict[str, float],
    original_size: tuple[int, int],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[str]:
    """The problem codes that ``metrics`` (from :func:`measure`) reveal, most useful first, at
    most :data:`MAX_PROBLEMS` of them.

    Precedence (docs/quality.md, "Which advice comes first"):

    - ``not_skin`` only on evidence that holds whatever the light. A photo too dark or too bright
      to judge is told so, never ``not_skin``: darkness quantises smooth skin into exactly flat
      patches and leaves too little contrast for texture, so the "rendered" and "featureless"
      clues are read only when the exposure is right, and on a dark picture that is not
      under-exposed (dark skin, :func:`_underexposed`) "rendered" not at all and "featureless"
      only for a plain one. Text (ink strokes need a light ground),
      grid-aligned edges (a ratio, blind to brightness), a covered lens (nothing lit at all) and
      the colours of what is not burnt (a bright blue sky) are read at any exposure. A picture
      that is not skin gets that verdict alone (with ``low_resolution``, or ``underexposed``
      when nothing is lit): judging the focus or framing of a document would only confuse.
    - Then ``low_resolution`` (send the original file), the light, ``blur``, ``glare``,
      ``colour_cast``, ``framing``. Exposure problems silence the colour checks, whose pixels are
      then clipped or drowned in noise; a single burnt channel does not (the colour statistics
      leave clipped pixels out, and a strong blue or green cast is what burns that channel).
    """
    t = thresholds
    resolution = ["low_resolution"] if min(original_size) < t.min_short_side else []
    under = _underexposed(metrics, t)
    too_bright = (
        metrics["exposure_ev"] > t.overexposed_ev
        or metrics["white_fraction"] > t.overexposed_white_fraction
    )
    burnt_channel = metrics["clipped_fraction"] > t.overexposed_clipped_fraction
    over = too_bright or burnt_channel
    exposure_ok = not under and not too_bright
    if under and metrics["well_exposed_fraction"] < t.min_lit_fraction:
        return ["not_skin", *resolution, "underexposed"][:MAX_PROBLEMS]
    if _not_skin(metrics, t, exposure_ok=exposure_ok, under=under):
        return ["not_skin", *resolution][:MAX_PROBLEMS]
    codes = list(resolution)
    if under:
        codes.append("underexposed")
    if over:
        codes.append("overexposed")
    if (
        metrics["blur_px"] > t.blur_px
        or metrics["blur_max_px"] > t.blur_max_px
        or metrics["blur_anisotropy_px"] > t.blur_anisotropy_px
        or metrics["blur_probability"] >= t.blur_probability
    ):
        codes.append("blur")
    if not over and metrics["glare_fraction"] > t.glare_fraction:
        codes.append("glare")
    if exposure_ok and _colour_cast(metrics, t):
        codes.append("colour_cast")
    if _badly_framed(metrics, t):
        codes.append("framing")
    return codes[:MAX_PROBLEMS]


def _underexposed(m: dict[str, float], t: Thresholds) -> bool:
    """Too little light, as a camera's under-exposure shows it: the skin is dark *and* nothing in
    the frame is bright (every reflecting thing is dimmed together), or the skin is darker than
    any skin tone in good light. Dark skin alone is not under-exposure: it reflects less light,
    while its sheen, a ruler or a sleeve still reflect all of it. Metrics stored before
    2026-12 have no ``highlight_ev``: the skin's level stands in for it."""
    ev = m["exposure_ev"]
    if ev < t.underexposed_ev_lit:
        return True
    return ev < t.underexposed_ev and m.get("highlight_ev", ev) <= t.lit_highlight_ev


def _not_skin(m: dict[str, float], t: Thresholds, *, exposure_ok: bool, under: bool) -> bool:
    """Whether the picture shows something other than skin; see :func:`decide` for which clues
    are read at which exposure."""
    dark_picture = m["exposure_ev"] < t.dark_picture_ev
    if _man_made(m, t, rendered_readable=not dark_picture):
        return True
    scene = m["skin_fraction"] < t.min_skin_fraction
    if exposure_ok:
        featureless = _featureless(m, t, dark_picture=dark_picture)
        return featureless or (scene and m["hue_spread"] >= t.scene_hue_spread)
    # Too bright: what is not burnt keeps its colour. A bright sky is blue, featureless and has
    # no skin colour in it; an over-exposed photo of skin keeps pale skin colours. Too dark: the
    # colours are noise, nothing is read from them.
    colours_judged = not under and m["well_exposed_fraction"] >= t.min_judged_colour_fraction
    return (
        colours_judged and scene and (m["hue_spread"] >= t.scene_hue_spread or _featureless(m, t))
    )


def _man_made(m: dict[str, float], t: Thresholds, *, rendered_readable: bool = True) -> bool:
    """A document, a screen or a graphic, whatever its colours.

    ``rendered_readable`` is false for a dark photo, whose smooth skin is quantised into exactly
    flat patches (at a fifth of the sRGB level, 78 of 100 derm-dev photos had over 10 % of them).
    Strokes count only when laid out along lines, as text is; hair and pen marks on skin are not.
    """
    # Flat patches with crisp edges are rendered; flat patches in a blurred photo are not.
    rendered = (
        rendered_readable and m["flat_fraction"] > t.max_flat_fraction and m["blur_px"] <= t.blur_px
    )
    text = (
        m["stroke_fraction"] > t.max_stroke_fraction
        and m["rectilinear_fraction"] > t.stroke_min_rectilinear
    )
    return rendered or text or m["rectilinear_fraction"] > t.max_rectilinear_fraction


def _featureless(m: dict[str, float], t: Thresholds, *, dark_picture: bool = False) -> bool:
    """Nothing to see: almost no edges, and those are noise rather than a blurred picture. A
    blurred photo of skin under a sensor's grain reads as sharp noise to the blur width alone;
    when its colours are skin's and the fitted detector calls it blurred, it is that photo, and
    the GP must be told to refocus, not that it is not skin."""
    blurred_skin = (
        m["blur_probability"] >= t.blur_probability and m["skin_fraction"] >= t.min_skin_fraction
    )
    min_edge = t.min_edge_strength
    if dark_picture:
        # Skin's gradients shrink with its lightness (a sensor's grain does not): on a picture
        # darker than a well-exposed light skin the line shrinks with it, in sRGB code values.
        reference = quality_features.REFERENCE_SKIN_LINEAR
        level = quality_features.linear_to_srgb8(np.float32(reference * 2.0 ** m["exposure_ev"]))
        min_edge *= float(level) / float(quality_features.linear_to_srgb8(np.float32(reference)))
    return m["edge_strength"] < min_edge and m["blur_px"] <= t.blur_px and not blurred_skin


def _colour_cast(m: dict[str, float], t: Thresholds) -> bool:
    return (
        not t.cast_min_hue_deg <= m["cast_hue_deg"] <= t.cast_max_hue_deg
        or m["mean_b"] < t.cast_min_b
    )


def _badly_framed(m: dict[str, float], t: Thresholds) -> bool:
    if _outline_whole_and_central(m, t):
        return False
    cut_off = (
        m["lesion_lost_fraction"] >= t.lesion_max_lost_fraction
        and m["lesion_opposite_margin"] >= t.lesion_cut_min_margin
        and m["lesion_contrast"] >= t.lesion_cut_min_contrast
        and m["lesion_edge_contrast"] >= t.lesion_cut_min_contrast
        and m["lesion_rival_distinctness"] <= t.lesion_rival_ratio * m["lesion_distinctness"]
    )
    misplaced = m["lesion_contrast"] >= t.lesion_min_contrast and (
        m["lesion_area_fraction"] < t.lesion_min_area or m["lesion_offset"] > t.lesion_max_offset
    )
    return cut_off or misplaced


def _outline_whole_and_central(m: dict[str, float], t: Thresholds) -> bool:
    """A trusted learned outline shows one whole lesion near the centre (see
    :attr:`Thresholds.outline_whole_max_offset`). Metrics without an outline never are."""
    return (
        m.get("outline_trusted", 0.0) >= 1.0
        and m["outline_edge_run"] < t.outline_whole_max_edge_run
        and m["outline_lost_fraction"] < t.outline_whole_max_lost
        and m["outline_offset"] <= t.outline_whole_max_offset
    )


def _result(
    codes: list[str], metrics: dict[str, float], lang: str, checks: dict[str, str] | None = None
) -> QualityResult:
    problems = tuple(Problem(code, message(code, lang)) for code in codes)
    outline = {name: value for name, value in metrics.items() if name.startswith("outline_")}
    return QualityResult(
        acceptable=not problems,
        problems=problems,
        metrics={name: value for name, value in metrics.items() if name not in outline},
        checks=dict(checks or {}),
        outline=outline,
    )


def assess_image(
    image: Image.Image | np.ndarray,
    *,
    original_size: tuple[int, int] | None = None,
    lang: str = "fr",
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    lesion_segmenter: LesionSegmenter | None = None,
) -> QualityResult:
    """Judge one photo's pixels.

    ``image``: a PIL image or an RGB/grey array (``uint8``, or float in ``[0, 1]``), possibly
    already reduced; ``original_size``: the photo's full ``(width, height)`` when ``image`` is a
    reduced copy (it decides ``low_resolution``); ``lang``: ``fr`` or ``en`` for the messages;
    ``lesion_segmenter``: a learned outliner (:data:`LesionSegmenter`), run on the small copy,
    whose trusted outline can clear a photo the colour rule calls ``framing``.
    """
    message("blur", lang)  # fail fast on an unsupported language
    if original_size is None:
        if isinstance(image, Image.Image):
            original_size = image.size
        else:
            original_size = (int(np.shape(image)[1]), int(np.shape(image)[0]))
    metrics, checks = measure(image, lesion_segmenter)
    metrics["original_width"] = float(original_size[0])
    metrics["original_height"] = float(original_size[1])
    return _result(decide(metrics, original_size, thresholds), metrics, lang, checks)


def assess_bytes(
    data: bytes,
    *,
    lang: str = "fr",
    max_bytes: int = 25 * 1024 * 1024,
    max_pixels: int = 50_000_000,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    lesion_segmenter: LesionSegmenter | None = None,
) -> QualityResult:
    """Judge an uploaded file's bytes; never raises for a bad file.

    The photo is decoded straight at about :data:`WORKING_SIDE` (JPEG draft mode), which is all
    the checks look at. A file :mod:`pipeline.intake` refuses becomes a result with the single
    problem ``unreadable_file``, whose message adds the intake's reason.
    """
    message("blur", lang)
    try:
        decoded = decode_image(
            data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=WORKING_SIDE
        )
    except IntakeError as exc:
        logger.debug("unreadable upload: %s (%s)", exc.code, exc.message)
        advice = message("unreadable_file", lang)
        reason = exc.message if lang == "en" else _INTAKE_REASONS_FR.get(exc.code, exc.message)
        problem = Problem("unreadable_file", f"{advice} ({reason})")
        return QualityResult(acceptable=False, problems=(problem,), metrics={})
    return assess_image(
        decoded.image,
        original_size=decoded.original_size,
        lang=lang,
        thresholds=thresholds,
        lesion_segmenter=lesion_segmenter,
    )


#: The intake's refusal reasons in French, by :class:`~pipeline.intake.IntakeError` code.
_INTAKE_REASONS_FR = {
    "empty": "le fichier est vide",
    "too_large": "le fichier dépasse la taille maximale",
    "not_an_image": "le contenu n'est pas une image",
    "unsupported_format": "format d'image non pris en charge",
    "corrupt": "fichier tronqué ou endommagé",
    "decompression_bomb": "image aux dimensions démesurées",
    "trailing_data": "données étrangères après la fin de l'image",
    "too_small": "image de quelques pixels seulement",
}
