"""A fitted blur detector that still sees blur under a sensor's grain.

Why it exists: the blur width of :func:`pipeline.quality_features.sharpness` reads a photo's
fine structure at one or two pixels, which is where a sensor's grain lives too. A photo blurred
by the optics and then grained by the sensor (what a real out-of-focus photo is) shows sharp
fine-scale gradients everywhere and passes for sharp (docs/quality.md, Known limits). What still
tells them apart is how gradient energy falls from one smoothing scale to the next, and how
evenly it is spread: grain is the same everywhere and carries little energy at coarse scales,
a sharp photo's fine structure sits where its edges and texture are and continues at every
scale. No single ratio separates them; a small model over a few dozen such ratios does.

The model is a small network (one hidden layer) over :func:`blur_features`, fitted by
:mod:`training.blur_model` on derm-dev photos with blur, grain and compression made in code, and
shipped as ``blur_model.json`` beside this module (its weights, the decision threshold and what
it was fitted on). Everything here is a pure function of pixels and that file's numbers.

Features are computed on a copy whose long side is :data:`CANONICAL_SIDE` pixels, the size of
the photos it was fitted on: blur is judged relative to the frame (1.2 % of the frame is 2.7 px
there whatever the camera), and a phone photo's grain is averaged down by the reduction as the
eye averages it on a screen. Every feature is a ratio, a spread or a correlation of log
energies, or a blur width, so neither contrast nor exposure moves it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline import quality_features

#: Long side (pixels) of the copy the features are computed on: derm-dev's photo size.
CANONICAL_SIDE = 224
#: Smoothing scales (Gaussian sigma, canonical pixels) at which gradient energy is measured.
SCALES = (0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
#: Margin kept clear of the frame and of a dermatoscope's rim: the coarsest filter's reach.
_MARGIN = math.ceil(3 * SCALES[-1]) + 2
_EPS = 1e-10
#: Pairs of :data:`SCALES` whose energy fall is also read per direction, and the scales at which
#: the directions are compared: shake removes energy along one direction only, grain along none.
_DIRECTED_PAIRS = ((1.0, 2.0), (1.4, 2.8), (2.0, 4.0))
_DIRECTED_SPREAD = (1.4, 2.8, 4.0)
_ANGLES = np.linspace(0.0, math.pi, 12, endpoint=False)


def _feature_names() -> tuple[str, ...]:
    names = [f"total_ratio_{a}_{b}" for a, b in itertools.pairwise(SCALES)]
    for a, b in itertools.pairwise(SCALES):
        names += [f"cell_ratio_{a}_{b}_p{p}" for p in (10, 50, 90)]
    names += [f"cell_spread_{SCALES[i]}" for i in (0, 3, 5)]
    names += [f"cell_corr_{SCALES[0]}_{SCALES[i]}" for i in (3, 5)]
    for a, b in _DIRECTED_PAIRS:
        names += [f"direction_ratio_{a}_{b}_{end}" for end in ("min", "max")]
    names += [f"direction_spread_{sigma}" for sigma in _DIRECTED_SPREAD]
    names += ["blur_px", "blur_max_px", "blur_anisotropy_px"]
    return tuple(names)


#: The order of :func:`blur_features`' values; the model file must list the same names.
FEATURE_NAMES = _feature_names()


def canonical_view(y: np.ndarray, fov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luma and field of view reduced (area averaging, never enlarged) to :data:`CANONICAL_SIDE`."""
    small = quality_features.resize_long_side(y, CANONICAL_SIDE)
    if small.shape == y.shape:
        return y, fov
    mask = cv2.resize(
        fov.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    return small, mask


def photo_features(
    y: np.ndarray, fov: np.ndarray, sharpness: quality_features.Sharpness | None = None
) -> np.ndarray:
    """:func:`blur_features` of a photo's working luma and field of view, as the quality check
    (and the fitting, so both see the same numbers) computes them. ``sharpness``: the working
    copy's, when already measured; reused when the canonical copy is that same copy (a photo of
    at most :data:`CANONICAL_SIDE` pixels), not measured twice."""
    small, small_fov = canonical_view(y, fov)
    return blur_features(small, small_fov, sharpness if small is y else None)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation over regions; 0 when either side is (nearly) the same everywhere, as in a
    blank picture, where it says nothing."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if a.size < 3 or float(a.std()) < 1e-3 or float(b.std()) < 1e-3:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def blur_features(
    y: np.ndarray, fov: np.ndarray, sharpness: quality_features.Sharpness | None = None
) -> np.ndarray:
    """The :data:`FEATURE_NAMES` values of a canonical view (:func:`canonical_view`);
    ``sharpness``, that view's :func:`quality_features.sharpness` if already measured.

    Per region of the sharpness grid, the gradient energy after smoothing at each of
    :data:`SCALES`; from them: how the whole interior's energy falls between neighbouring
    scales, the 10th/50th/90th percentile over regions of the same fall, how unevenly the
    energy is spread over regions at a fine, a middle and the coarsest scale (grain is even),
    how the finest scale's energy follows the middle and coarsest ones from region to region
    (in a sharp photo fine structure sits where the edges are; grain sits everywhere); per
    direction, the least and the most energy lost between pairs of scales and how unequal the
    directions are at three coarse scales (shake smears one direction, grain none).
    The last three are the two-scale blur widths of :func:`quality_features.sharpness`.
    """
    weight = quality_features.interior(fov, _MARGIN).astype(np.float32)
    coverage = quality_features.region_means(weight)
    inside = coverage > 0.9
    if not inside.any():
        inside = coverage > 0.0
    energies, directed = [], {}
    cos, sin = np.cos(_ANGLES), np.sin(_ANGLES)
    for sigma in SCALES:
        smooth = cv2.GaussianBlur(y, (0, 0), sigma)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        cells = quality_features.region_means((gx * gx + gy * gy) * weight)[inside]
        energies.append(cells / coverage[inside])
        gxw, gyw = gx * weight, gy * weight
        xx, xy, yy = (float(v.sum()) for v in (gxw * gx, gxw * gy, gyw * gy))
        directed[sigma] = xx * cos**2 + 2 * xy * cos * sin + yy * sin**2 + _EPS
    cells = np.stack(energies)
    log_cells = np.log(cells + _EPS)
    log_total = np.log(cells.mean(axis=1) + _EPS)
    values = list(np.diff(log_total))
    for i in range(len(SCALES) - 1):
        values += list(np.percentile(log_cells[i + 1] - log_cells[i], (10, 50, 90)))
    values += [float(log_cells[i].std()) for i in (0, 3, 5)]
    values += [_corr(log_cells[0], log_cells[i]) for i in (3, 5)]
    for a, b in _DIRECTED_PAIRS:
        fall = np.log(directed[b] / directed[a])
        values += [float(fall.min()), float(fall.max())]
    values += [float(np.log(directed[s].max() / directed[s].min())) for s in _DIRECTED_SPREAD]
    sharp = sharpness if sharpness is not None else quality_features.sharpness(y, fov)
    values += [sharp.blur_px, sharp.blur_max_px, sharp.blur_anisotropy_px]
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class BlurModel:
    """A small network over :data:`FEATURE_NAMES`: standardised features, one hidden layer of
    ReLU units, a logistic output.

    ``threshold``: the probability above which a photo is called blurred, chosen at fitting time
    from the sharp photos' scores (``fit`` says how); ``fit``: what it was fitted on (data set,
    lesions, degradations, figures), kept for audit and so the benchmark can leave those lesions
    out."""

    mean: np.ndarray
    scale: np.ndarray
    hidden_weights: np.ndarray  # (features, units)
    hidden_bias: np.ndarray  # (units,)
    output_weights: np.ndarray  # (units,)
    output_bias: float
    threshold: float
    fit: dict[str, Any] = field(default_factory=dict)

    def probability(self, features: np.ndarray) -> float:
        """Probability that the photo is blurred beyond what a dermatologist accepts."""
        z = (np.nan_to_num(features) - self.mean) / self.scale
        hidden = np.maximum(z @ self.hidden_weights + self.hidden_bias, 0.0)
        logit = float(hidden @ self.output_weights + self.output_bias)
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(FEATURE_NAMES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "hidden_weights": self.hidden_weights.tolist(),
            "hidden_bias": self.hidden_bias.tolist(),
            "output_weights": self.output_weights.tolist(),
            "output_bias": self.output_bias,
            "threshold": self.threshold,
            "fit": self.fit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlurModel:
        """Read a model file's content; refuses one that does not fit this code's features."""
        if tuple(data.get("features", ())) != FEATURE_NAMES:
            raise ValueError("blur model file lists other features than pipeline.quality_blur")
        n = len(FEATURE_NAMES)
        mean, scale = (np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale"))
        weights = np.asarray(data["hidden_weights"], dtype=np.float64)
        bias = np.asarray(data["hidden_bias"], dtype=np.float64)
        out = np.asarray(data["output_weights"], dtype=np.float64)
        units = bias.shape[0] if bias.ndim == 1 else -1
        if mean.shape != (n,) or scale.shape != (n,) or weights.shape != (n, units):
            raise ValueError("blur model file: its arrays do not match the feature count")
        if out.shape != (units,) or np.any(scale <= 0):
            raise ValueError("blur model file: malformed output layer or scale")
        threshold = float(data["threshold"])
        if not 0.0 < threshold < 1.0:
            raise ValueError("blur model file: threshold must lie strictly between 0 and 1")
        return cls(
            mean,
            scale,
            weights,
            bias,
            out,
            float(data["output_bias"]),
            threshold,
            data.get("fit", {}),
        )


#: The shipped model's file, beside this module.
MODEL_FILE = "blur_model.json"


def load_blur_model(path: Path | None = None) -> BlurModel:
    """The model in ``path``, or the shipped one."""
    if path is not None:
        return BlurModel.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    return shipped_blur_model()


@cache
def shipped_blur_model() -> BlurModel:
    """The model shipped with the code (read once: it is part of the code's version)."""
    text = resources.files("pipeline").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    return BlurModel.from_json(json.loads(text))


@cache
def shipped_blur_model_version() -> str:
    """A short content hash of the shipped model file: stored with each case photo's verdict so
    an auditor can tell which detector judged it (the file changes only through a refit)."""
    data = resources.files("pipeline").joinpath(MODEL_FILE).read_bytes()
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]
