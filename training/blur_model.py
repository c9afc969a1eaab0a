"""Fit the blur detector of :mod:`pipeline.quality_blur` on derm-dev photos degraded in code.

Each photo of a sample of lesions is turned into sharp variants (untouched, sensor grain,
sharpening as a phone's processing does, a trace of blur, a dermatoscope's dark rim, an
exposure shift) and blurred ones (defocus or camera shake, with or without grain, sharpening
and an exposure shift), every variant JPEG-compressed at a random quality. The degradations are
deliberately *not* the benchmark's (``benchmarks/synthetic.py``): defocus is a disc in linear
light rather than a Gaussian in sRGB, shake a bent path rather than a straight line, grain
partly shared between the colour channels and stronger in bright areas, so the benchmark's rows
test the model on a family it was not fitted on.

Lesions come from the classifier's training split only (:func:`training.data.config_split`
with the default training config); their ids are written into the model file so the benchmark
and the tests can judge the model on other lesions. The
decision threshold is the 99.5th percentile of the sharp variants' out-of-fold probabilities
(folds by lesion): about one sharp photo in 200 crosses it, before any other check's alarms.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.neural_network import MLPClassifier

from pipeline import quality_blur, quality_features
from pipeline.quality import WORKING_SIDE
from training import tracking
from training.config import TrainConfig
from training.data import config_split, load_metadata, read_rgb

logger = logging.getLogger(__name__)

#: The MLflow experiment every fit is logged to, beside the classifier's.
EXPERIMENT = "dermtriage-blur-detector"
_PROJECT_DIR = Path(__file__).resolve().parents[1]

#: Hidden ReLU units of the network: one layer of 32 caught more grained blur than a logistic
#: regression on the same features (docs/quality.md) at the same share of sharp photos flagged.
HIDDEN_UNITS = 32
#: Share of the sharp variants' out-of-fold probabilities that must stay under the threshold.
SHARP_QUANTILE = 0.995
#: Blur strengths, as fractions of the long side: sharp variants stay at or under the first
#: (Gaussian-equivalent sigma), blurred ones at or over the reject strengths of docs/quality.md.
SHARP_MAX_SIGMA = 0.003
FOCUS_SIGMA = (0.01, 0.03)
SHAKE_LENGTH = (0.05, 0.10)
GRAIN_SIGMA = (1.0, 6.0)


# --- degradations -----------------------------------------------------------------------------


def _linear(rgb: np.ndarray) -> np.ndarray:
    return quality_features.srgb_to_linear(rgb.astype(np.float32) / 255.0)


def _convolve_light(rgb: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur as optics do, in linear light."""
    kernel = kernel / kernel.sum()
    blurred = cv2.filter2D(_linear(rgb), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return quality_features.linear_to_srgb8(blurred)


def defocus(rgb: np.ndarray, sigma_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: a uniform disc (the lens's aperture) softened slightly, whose per-axis
    spread equals a Gaussian of ``sigma_fraction`` of the long side (radius = 2 sigma)."""
    sigma = sigma_fraction * max(rgb.shape[:2])
    radius = 2.0 * sigma
    size = 2 * math.ceil(radius) + 3
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    cv2.circle(kernel, (c * 16, c * 16), round(radius * 16), 1.0, -1, cv2.LINE_AA, shift=4)
    kernel = cv2.GaussianBlur(kernel, (0, 0), 0.5 + 0.3 * rng.random())
    return _convolve_light(rgb, kernel)


def shake(rgb: np.ndarray, length_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Camera shake: a path ``length_fraction`` of the long side long, in two strokes whose
    direction turns by up to 30 degrees, at a random angle."""
    length = max(2.0, length_fraction * max(rgb.shape[:2]))
    size = 2 * math.ceil(length / 2) + 5
    kernel = np.zeros((size, size), np.float32)
    angle = rng.uniform(0, math.pi)
    turn = math.radians(rng.uniform(-30, 30))
    split = rng.uniform(0.3, 0.7)
    start = np.array([size / 2, size / 2]) - 0.5 * length * np.array(
        [math.cos(angle), math.sin(angle)]
    )
    middle = start + split * length * np.array([math.cos(angle), math.sin(angle)])
    end = middle + (1 - split) * length * np.array([math.cos(angle + turn), math.sin(angle + turn)])
    points = np.round(np.stack([start, middle, end]) * 16).astype(np.int32)
    cv2.polylines(kernel, [points], False, 1.0, 1, cv2.LINE_AA, shift=4)
    return _convolve_light(rgb, kernel)


def grain(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A sensor's grain of about ``sigma`` code values: partly shared between the channels (as
    a phone's processing leaves it), stronger in bright areas (photon noise)."""
    shared = rng.uniform(0.0, 1.0)
    common = rng.normal(0, 1, rgb.shape[:2]).astype(np.float32)[..., None]
    own = rng.normal(0, 1, rgb.shape).astype(np.float32)
    noise = math.sqrt(shared) * common + math.sqrt(1 - shared) * own
    level = np.sqrt(0.4 + 1.2 * rgb.astype(np.float32) / 255.0)
    return np.clip(rgb + sigma * level * noise + 0.5, 0, 255).astype(np.uint8)


def sharpen(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone's unsharp masking."""
    amount, radius = rng.uniform(0.3, 1.0), rng.uniform(0.6, 1.5)
    image = rgb.astype(np.float32)
    soft = cv2.GaussianBlur(image, (0, 0), radius)
    return np.clip(image + amount * (image - soft) + 0.5, 0, 255).astype(np.uint8)


def exposure(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to 0.7 stops brighter or darker, in linear light."""
    return quality_features.linear_to_srgb8(_linear(rgb) * 2.0 ** rng.uniform(-0.7, 0.7))


def dark_rim(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dermatoscope's black surround: the lit disc's radius a random share of the half
    diagonal, its rim soft over a few pixels."""
    height, width = rgb.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot(xx - width / 2, yy - height / 2) / (0.5 * math.hypot(width, height))
    edge = rng.uniform(0.62, 0.95)
    lit = np.clip((edge - r) / 0.02, 0.0, 1.0)[..., None]
    return np.clip(rgb * lit + rng.uniform(2, 12) * (1 - lit) + 0.5, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Through a JPEG at a random quality, as a photo reaches the service."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        return np.asarray(img.convert("RGB"))


def sharp_variants(rgb: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Four photos a dermatologist would accept as sharp."""
    light_blur = defocus(rgb, rng.uniform(0.0005, SHARP_MAX_SIGMA), rng)
    return [
        rgb,
        sharpen(grain(rgb, rng.uniform(*GRAIN_SIGMA), rng), rng),
        grain(dark_rim(exposure(rgb, rng), rng), rng.uniform(0.0, GRAIN_SIGMA[1]), rng),
        grain(light_blur, rng.uniform(0.0, GRAIN_SIGMA[1]), rng),
    ]


def blurred_variants(rgb: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Four photos blurred past what a dermatologist accepts: defocus and shake, each once
    clean and once with grain (and, at random, sharpening, an exposure shift or a rim)."""
    out = []
    for with_grain in (False, True):
        for kind in (defocus, shake):
            span = FOCUS_SIGMA if kind is defocus else SHAKE_LENGTH
            picture = kind(
                exposure(rgb, rng) if rng.random() < 0.3 else rgb, rng.uniform(*span), rng
            )
            if rng.random() < 0.2:
                picture = dark_rim(picture, rng)
            if with_grain:
                picture = grain(picture, rng.uniform(*GRAIN_SIGMA), rng)
            if rng.random() < 0.3:
                picture = sharpen(picture, rng)
            out.append(picture)
    return out


# --- fitting ----------------------------------------------------------------------------------


def features_of(rgb: np.ndarray) -> np.ndarray:
    """:func:`pipeline.quality_blur.blur_features` as the quality check computes them."""
    working = quality_features.working_rgb(rgb, WORKING_SIDE)
    y = quality_features.luma(working)
    fov, _ = quality_features.field_of_view(y)
    return quality_blur.photo_features(y, fov)


@dataclass(frozen=True)
class BlurFit:
    """A fitted model with its out-of-fold figures at its own threshold."""

    model: quality_blur.BlurModel
    sharp_false_alarm: float  # out of fold, at the threshold
    blurred_detected: float  # out of fold, at the threshold


def fitting_lesions(metadata: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """One photo per lesion for ``count`` lesions of the classifier's training split."""
    split = config_split(metadata, TrainConfig())
    train_lesions = set(split.loc[split["split"] == "train", "lesion_id"])
    pool = metadata[metadata["lesion_id"].isin(train_lesions)]
    per_lesion = pool.sort_values("image_id").drop_duplicates("lesion_id")
    return per_lesion.sample(n=min(count, len(per_lesion)), random_state=seed)


def degraded_features(chosen: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features, labels, groups)`` of every degraded variant of the chosen photos (label 1:
    blurred; group: the photo's index, so folds never split one lesion's variants)."""
    rng = np.random.default_rng(seed)
    rows, labels, groups = [], [], []
    for group, path in enumerate(chosen["image_path"]):
        rgb = read_rgb(path)
        for label, variants in ((0, sharp_variants(rgb, rng)), (1, blurred_variants(rgb, rng))):
            for picture in variants:
                rows.append(features_of(jpeg(picture, rng)))
                labels.append(label)
                groups.append(group)
    return np.nan_to_num(np.stack(rows)), np.asarray(labels), np.asarray(groups)


def fit_blur_model(dataset_dir: Path, *, lesions: int = 1500, seed: int = 0) -> BlurFit:
    """Degrade, measure and fit; see the module's docstring."""
    metadata = load_metadata(dataset_dir)
    chosen = fitting_lesions(metadata, lesions, seed)
    x, y, groups = degraded_features(chosen, seed)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    network = MLPClassifier((HIDDEN_UNITS,), alpha=1e-3, max_iter=2000, random_state=seed)
    folds = GroupKFold(n_splits=5)
    oof = cross_val_predict(network, z, y, groups=groups, cv=folds, method="predict_proba")
    threshold = float(np.quantile(oof[y == 0, 1], SHARP_QUANTILE))
    threshold = min(max(threshold, 1e-4), 1 - 1e-4)
    network.fit(z, y)
    false_alarm = float((oof[y == 0, 1] > threshold).mean())
    detected = float((oof[y == 1, 1] > threshold).mean())
    fit = {
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": Path(dataset_dir).name,
        "lesions": len(chosen),
        "seed": seed,
        "photos": len(x),
        "threshold_rule": f"{SHARP_QUANTILE:.3f} quantile of sharp variants, out of fold",
        "out_of_fold": {"sharp_false_alarm": false_alarm, "blurred_detected": detected},
        "lesion_ids": sorted(chosen["lesion_id"]),
        "image_ids": sorted(chosen["image_id"]),
    }
    model = quality_blur.BlurModel(
        mean=mean,
        scale=scale,
        hidden_weights=network.coefs_[0].astype(np.float64),
        hidden_bias=network.intercepts_[0].astype(np.float64),
        output_weights=network.coefs_[1][:, 0].astype(np.float64),
        output_bias=float(network.intercepts_[1][0]),
        threshold=threshold,
        fit=fit,
    )
    logger.info(
        "blur model: %d photos from %d lesions; out of fold at %.3f: sharp flagged %.2f %%, "
        "blurred caught %.1f %%",
        len(x),
        len(chosen),
        threshold,
        100 * false_alarm,
        100 * detected,
    )
    return BlurFit(model=model, sharp_false_alarm=false_alarm, blurred_detected=detected)


def log_fit(result: BlurFit, tracking_uri: str, artifact_root: str | None = None) -> str:
    """Record a fit in MLflow (parameters, out-of-fold figures, the model file, the code's
    commit), as the classifier's runs are; returns the run id. The model file in git stays the
    shipped version: the run says how each version came about."""
    fit = result.model.fit
    experiment_id = tracking.configure(tracking_uri, EXPERIMENT, artifact_root)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(
            {
                "lesions": fit["lesions"],
                "photos": fit["photos"],
                "seed": fit["seed"],
                "dataset": fit["dataset"],
                "hidden_units": HIDDEN_UNITS,
                "sharp_quantile": SHARP_QUANTILE,
            }
        )
        mlflow.log_metrics(
            {
                "threshold": result.model.threshold,
                "oof_sharp_false_alarm": result.sharp_false_alarm,
                "oof_blurred_detected": result.blurred_detected,
            }
        )
        mlflow.set_tag("git_commit", tracking.git_commit(_PROJECT_DIR) or "unknown")
        tracking.log_json(result.model.to_json(), quality_blur.MODEL_FILE)
    return run.info.run_id
