"""Photos made in code for the quality benchmark and tests: defects applied to real dermoscopy
images, and pictures that are not skin at all.

Every defect takes an RGB ``uint8`` array and a strength and returns a new RGB ``uint8`` array;
strengths are expressed relative to the image (a fraction of its long side, photographic stops)
so they mean the same at any size. Randomness comes from the ``numpy`` generator passed in, so a
benchmark run is reproducible from its seed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.quality_features import linear_to_srgb8, srgb_to_linear

Defect = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _to_linear(rgb: np.ndarray) -> np.ndarray:
    return srgb_to_linear(rgb.astype(np.float32) / 255.0)


def gaussian_blur(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: Gaussian blur whose sigma is ``fraction`` of the long side."""
    sigma = fraction * max(rgb.shape[:2])
    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def motion_blur(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Camera shake: a straight smear ``fraction`` of the long side long, at a random angle."""
    length = max(2, round(fraction * max(rgb.shape[:2])))
    size = length + 2 + (length % 2 == 0)
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    angle = rng.uniform(0, math.pi)
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    cv2.line(
        kernel,
        (round(centre * 16 - dx * 16), round(centre * 16 - dy * 16)),
        (round(centre * 16 + dx * 16), round(centre * 16 + dy * 16)),
        1.0,
        thickness=1,
        lineType=cv2.LINE_AA,
        shift=4,
    )
    kernel /= kernel.sum()
    return cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REFLECT)


def exposure_shift(rgb: np.ndarray, stops: float, rng: np.random.Generator) -> np.ndarray:
    """Too little or too much light: multiply linear light by ``2 ** stops`` (clipping at white)."""
    return linear_to_srgb8(_to_linear(rgb) * (2.0**stops))


def downscale(rgb: np.ndarray, short_side: float, rng: np.random.Generator) -> np.ndarray:
    """A reduced copy (a thumbnail, a forwarded picture) whose short side is ``short_side``."""
    height, width = rgb.shape[:2]
    scale = short_side / min(height, width)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def lesion_centre(rgb: np.ndarray) -> tuple[float, float]:
    """Where the lesion is, ``(x, y)`` in pixels: the centroid of how much darker than the
    surrounding skin each pixel is (lightness below the image's 75th percentile, smoothed; only
    the darker half of that range counts, so faint shading does not pull the centre away).

    Deliberately simpler than, and independent of, the checks' own segmentation: it only has to
    say where to put the crop's edge. An image without a darker region gives its centre (where
    dermoscopy puts the lesion)."""
    height, width = rgb.shape[:2]
    lightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    skin = float(np.percentile(lightness, 75))
    # A dermatoscope's black surround (L* below 12) is not the lesion: count it as skin.
    lightness = np.where(lightness < 0.12 * 255, skin, lightness)
    lightness = cv2.GaussianBlur(lightness, (0, 0), 0.02 * max(height, width))
    weight = np.clip(skin - lightness, 0, None)
    weight = np.where(weight >= 0.5 * weight.max(), weight, 0.0) if weight.max() > 0 else weight
    total = float(weight.sum())
    if total <= 0:
        return width / 2, height / 2
    yy, xx = np.mgrid[0:height, 0:width]
    return float((xx * weight).sum() / total), float((yy * weight).sum() / total)


def off_centre_crop(rgb: np.ndarray, position: float, rng: np.random.Generator) -> np.ndarray:
    """Poor framing: crop a square window half the image's short side wide whose edge passes
    ``position`` (a fraction of the window) from the lesion's centre (:func:`lesion_centre`),
    then restore the size. At 0 the frame's edge runs through the lesion's middle: the lesion is
    cut in half; at 0.25 it is well off-centre and, unless small, still cut.

    The side is drawn among the four (left, right, top, bottom) those that leave the window
    inside the image, so the requested position is really obtained (an earlier version used a
    60 % window that could not reach the centre and was clipped to 16 % in from the edge, leaving
    many lesions whole). Along the other axis the window is centred on the lesion."""
    height, width = rgb.shape[:2]
    window = round(0.5 * min(height, width))
    lx, ly = lesion_centre(rgb)
    near = position * window
    far = (1 - position) * window
    placements = [  # (x0, y0): lesion against the left, right, top, bottom edge
        (lx - near, ly - window / 2),
        (lx - far, ly - window / 2),
        (lx - window / 2, ly - near),
        (lx - window / 2, ly - far),
    ]

    def misfit(x0: float, y0: float) -> float:
        return max(0.0, -x0, x0 - (width - window)) + max(0.0, -y0, y0 - (height - window))

    sides = [i for i, (x0, y0) in enumerate(placements) if misfit(x0, y0) <= 1.0]
    if not sides:  # the lesion is too close to a corner: take the placement that fits best
        sides = [min(range(4), key=lambda i: misfit(*placements[i]))]
    x0, y0 = placements[sides[int(rng.integers(len(sides)))]]
    x0 = int(np.clip(round(x0), 0, width - window))
    y0 = int(np.clip(round(y0), 0, height - window))
    crop = rgb[y0 : y0 + window, x0 : x0 + window]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC)


def colour_cast(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Cold light (blue) or fluorescent tint (green): channel gains in linear light.

    ``strength`` is the gain on the favoured channel (the others get its inverse square root).
    Warm casts are left out on purpose: they look like skin's own colour (docs/quality.md).
    """
    favoured = 2 if rng.random() < 0.5 else 1
    gains = np.full(3, 1.0 / math.sqrt(strength), np.float32)
    gains[favoured] = strength
    return linear_to_srgb8(_to_linear(rgb) * gains)


def glare(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Flash or wet skin: white specular spots covering about ``fraction`` of the frame."""
    height, width = rgb.shape[:2]
    out = rgb.astype(np.float32)
    layer = np.zeros((height, width), np.float32)
    target = fraction * height * width
    radius_base = 0.025 * max(height, width)
    while (layer > 0.5).sum() < target:
        cx = rng.uniform(0.2, 0.8) * width
        cy = rng.uniform(0.2, 0.8) * height
        ax = radius_base * rng.uniform(0.6, 1.6)
        ay = ax * rng.uniform(0.4, 1.0)
        yy, xx = np.ogrid[0:height, 0:width]
        distance = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
        layer = np.maximum(layer, np.clip(1.6 - distance, 0, 1))
    out = out * (1 - layer[..., None]) + 255.0 * layer[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def dermatoscope_vignette(rgb: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Not a defect: the black surround of a dermatoscope's round window, ``radius`` as a
    fraction of the half-diagonal. A good photo with it must stay acceptable."""
    height, width = rgb.shape[:2]
    yy, xx = np.ogrid[0:height, 0:width]
    r = np.hypot(xx - width / 2, yy - height / 2) / math.hypot(width / 2, height / 2)
    soft = np.clip((radius - r) / 0.03, 0, 1)[..., None]
    dark = rng.normal(8.0, 2.0, rgb.shape).clip(0, 255)
    return np.clip(rgb * soft + dark * (1 - soft) + 0.5, 0, 255).astype(np.uint8)


def sensor_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Not a defect: a phone's grain, Gaussian noise of ``sigma`` code values."""
    noisy = rgb.astype(np.float32) + rng.normal(0, sigma, rgb.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


#: Grain of a phone's sensor in code values (0-255), as in the "sensor noise" good-photo variant.
PHONE_GRAIN_SIGMA = 4.0


def noisy_gaussian_blur(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A real out-of-focus photo: :func:`gaussian_blur`, then the sensor's grain
    (:func:`sensor_noise`, sigma :data:`PHONE_GRAIN_SIGMA`). The optics blur the scene; the grain
    is added afterwards, by the sensor, so it stays sharp whatever the focus."""
    return sensor_noise(gaussian_blur(rgb, fraction, rng), PHONE_GRAIN_SIGMA, rng)


def noisy_motion_blur(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A real shaken photo: :func:`motion_blur`, then the sensor's grain (as
    :func:`noisy_gaussian_blur`)."""
    return sensor_noise(motion_blur(rgb, fraction, rng), PHONE_GRAIN_SIGMA, rng)


# --- pictures that are not skin ------------------------------------------------------------

_WORDS = [
    "ordonnance",
    "patient",
    "docteur",
    "date",
    "posologie",
    "comprimé",
    "matin",
    "soir",
    "pendant",
    "jours",
    "renouveler",
    "fois",
    "analyse",
    "résultat",
    "glycémie",
    "compte",
    "rendu",
    "consultation",
    "signature",
]


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(60, 255), rng.uniform(60, 255)]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _camera(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half the pictures are photographed (grain, slight softness), half rendered exactly."""
    if rng.random() < 0.5:
        return rgb
    soft = cv2.GaussianBlur(rgb, (0, 0), 0.6).astype(np.float32)
    return np.clip(soft + rng.normal(0, 2.5, rgb.shape) + 0.5, 0, 255).astype(np.uint8)


def document(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A page of text (prescription, lab report) on slightly tinted, unevenly lit paper."""
    width, height = size
    paper = np.array([rng.uniform(215, 250)] * 3) + rng.uniform(-6, 6, 3)
    page = Image.new("RGB", size, tuple(int(v) for v in np.clip(paper, 0, 255)))
    draw = ImageDraw.Draw(page)
    font_size = max(8, int(height * rng.uniform(0.035, 0.06)))
    font = ImageFont.load_default(size=font_size)
    ink = tuple(int(v) for v in rng.uniform(0, 70, 3))
    y = int(height * 0.06)
    while y < height * 0.92:
        words = " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 9))))
        draw.text((int(width * 0.06), y), words, fill=ink, font=font)
        y += int(font_size * rng.uniform(1.3, 1.8))
    array = np.asarray(page).astype(np.float32)
    light = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0), width, dtype=np.float32)
    return _camera(np.clip(array * light[None, :, None], 0, 255).astype(np.uint8), rng)


def solid_colour(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    width, height = size
    return _camera(np.full((height, width, 3), _random_colour(rng), np.uint8), rng)


def gradient(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    width, height = size
    start, end = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx / width - 0.5) * math.cos(angle) + (yy / height - 0.5) * math.sin(angle) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    return _camera((start * (1 - t) + end * t).astype(np.uint8), rng)


def outdoor_scene(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Sky over foliage or grass: the blue and green of a random outdoor photo."""
    width, height = size
    horizon = int(height * rng.uniform(0.3, 0.7))
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky_top, sky_low = np.array([70, 130, 220]), np.array([170, 205, 245])
    sky = sky_top * (1 - yy) + sky_low * yy
    texture = cv2.resize(rng.normal(0, 1, (height // 8 + 1, width // 8 + 1)), (width, height))
    fine = rng.normal(0, 1, (height, width))
    green = np.array([rng.uniform(40, 110), rng.uniform(110, 180), rng.uniform(30, 80)])
    grass = green[None, None, :] * (1 + 0.25 * texture[..., None] + 0.15 * fine[..., None])
    scene = np.where(
        np.arange(height)[:, None, None] < horizon, sky * np.ones((1, width, 1)), grass
    )
    return np.clip(scene, 0, 255).astype(np.uint8)


def checkerboard(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    width, height = size
    cell = int(rng.integers(8, 48))
    yy, xx = np.mgrid[0:height, 0:width]
    board = ((yy // cell + xx // cell) % 2).astype(bool)[..., None]
    first, second = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    return _camera(np.where(board, first, second).astype(np.uint8), rng)


def screenshot(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An app screen: a coloured bar, buttons and lines of text on a light background."""
    width, height = size
    screen = Image.new("RGB", size, (250, 250, 250) if rng.random() < 0.7 else (30, 30, 36))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, width, int(height * 0.12)), fill=_random_colour(rng))
    font = ImageFont.load_default(size=max(8, height // 24))
    y = int(height * 0.18)
    while y < height * 0.9:
        if rng.random() < 0.3:
            draw.rounded_rectangle(
                (int(width * 0.08), y, int(width * 0.6), y + height // 14),
                radius=6,
                fill=_random_colour(rng),
            )
        else:
            words = " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 6))))
            draw.text((int(width * 0.08), y), words, fill=(90, 90, 90), font=font)
        y += height // 10
    return _camera(np.asarray(screen), rng)


NON_SKIN: dict[str, Callable[[tuple[int, int], np.random.Generator], np.ndarray]] = {
    "document": document,
    "solid colour": solid_colour,
    "gradient": gradient,
    "outdoor scene": outdoor_scene,
    "checkerboard": checkerboard,
    "screenshot": screenshot,
}


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode as a phone would send it."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def phone_photo(rgb: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A large photo made from a small one: upscaled, with skin-like fine texture and sensor
    grain added so the JPEG is as heavy to decode as a real 12-MP photo."""
    width, height = size
    big = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    texture = cv2.resize(rng.normal(0, 1, (height // 4, width // 4)).astype(np.float32), size)
    grain = rng.normal(0, 1, (height, width)).astype(np.float32)
    big *= (1 + 0.03 * texture)[..., None]
    big += (3.0 * grain)[..., None]
    return np.clip(big + 0.5, 0, 255).astype(np.uint8)


# --- skin tone and light, as a camera renders them --------------------------------------------

#: Individual typology angle (ITA, degrees) of the simulated dark skin: below -30 is "dark"
#: (Chardon's classes), about Fitzpatrick V-VI.
DARK_SKIN_ITA = -35.0
#: b* (CIELAB yellowness) of the simulated dark skin: measured dark skin sits near 12-20.
DARK_SKIN_B = 18.0


def _specular_mask(rgb: np.ndarray) -> np.ndarray:
    """Where light is reflected off the skin's surface (sheen, specular spots), 0-1, feathered:
    near-white in every channel and brighter than its surroundings. Specular reflection does not
    depend on melanin, so darker skin keeps it as it was."""
    low = rgb.min(axis=2)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    radius = max(2, round(0.03 * max(rgb.shape[:2])))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    tophat = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel)
    spots = ((low >= 200) & (tophat >= 25)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(spots, (0, 0), 1.5) * 1.5, 0.0, 1.0)


def darker_skin(rgb: np.ndarray, ita: float, rng: np.random.Generator) -> np.ndarray:
    """The same well-lit photo with darker skin: the skin's ITA lowered to ``ita`` degrees.

    ITA = atan((L* - 50) / b*) in CIELAB. The skin's reference colour is the median L*, a*, b* of
    the field's lighter 60 % (the lesion is darker). Every pixel's L* is scaled by the factor that
    takes the reference to the target (so the lesion stays as much darker, in proportion), the
    skin's b* is set to :data:`DARK_SKIN_B` and its a* moved halfway towards at least 10 (both as a
    shift, so the lesion keeps its colour difference), and specular sheen (near-white spots
    brighter than their surroundings) is kept as it was: it is light reflected by the surface,
    not by melanin. Nothing else is added: no noise, no change of light. It is a simulation, not
    a photo of dark skin: hair, pen marks and shadows are darkened with the skin.
    """
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    skin = lightness >= np.percentile(lightness, 40)
    ref_l, ref_a, ref_b = (float(np.median(c[skin])) for c in (lightness, a, b))
    target_l = 50.0 + DARK_SKIN_B * math.tan(math.radians(ita))
    scale = min(1.0, max(target_l, 5.0) / max(ref_l, 1e-3))
    darker = np.stack(
        [
            lightness * scale,
            a + 0.5 * (max(ref_a, 10.0) - ref_a),
            b + (DARK_SKIN_B - ref_b),
        ],
        axis=-1,
    )
    out = cv2.cvtColor(darker.astype(np.float32), cv2.COLOR_LAB2RGB)
    out = np.clip(out * 255.0, 0, 255)
    keep = _specular_mask(rgb)[..., None]
    return np.clip(out * (1 - keep) + rgb.astype(np.float32) * keep + 0.5, 0, 255).astype(np.uint8)


def dim_phone_photo(rgb: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """A photo taken in too little light, as a phone records it: ``factor`` times the light.

    In dim light a phone raises its sensor gain as far as it can; what is still missing stays
    dark. The scene is scaled in linear light, then the sensor's noise is added at that gain:
    shot noise (Poisson, 400-1500 electrons at full scale, a small pixel at high ISO) and read
    noise (2-4 electrons), each channel on its own; then the tone curve sets a black level
    (0.2-0.6 % of full scale in linear light, about sRGB code 6-15) below which shadows are
    crushed to black, and a slight noise reduction (Gaussian, sigma 0.6 px). A real dim photo has
    all three; a photo of dark skin in good light has none.
    """
    electrons = rng.uniform(400.0, 1500.0)
    read = rng.uniform(2.0, 4.0)
    black = rng.uniform(0.002, 0.006)
    signal = np.clip(_to_linear(rgb) * factor, 0.0, 1.0) * electrons
    noisy = rng.poisson(signal).astype(np.float32) + rng.normal(0.0, read, signal.shape)
    linear = np.clip((noisy / electrons - black) / (1.0 - black), 0.0, 1.0).astype(np.float32)
    return cv2.GaussianBlur(linear_to_srgb8(linear), (0, 0), 0.6)
