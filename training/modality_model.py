"""Fit the photo-modality check of :mod:`models.modality` (dermoscopic, clinical, other).

Data, and which photos may be used for what:

- **dermoscopic**: derm-dev plus ham-extra (the whole of HAM10000). Only lesions of the
  classifier's training split are fitted on (:func:`training.data.config_split` with the default
  config for derm-dev's lesions; ham-extra's lesions that derm-dev also has take derm-dev's
  split, the others are split by ``lesion_id`` with the same fractions and seed). Validation
  lesions set the out-of-distribution threshold; test lesions give the final figure only.
- **clinical**: the ``clinical-phone`` photos hand-labelled ``modality=clinical`` in
  ``benchmarks/clinical_phone_labels.csv`` (docs/photo-labels.md). Not every phone photo is
  clinical: the 107 labelled ``dermoscopic`` (all the 384 x 288 ones, a second dermatoscope)
  join the **dermoscopic** class, each with its variants; the one ``unsure`` photo is left out.
  A photo is in the ``holdout`` when the first 8 hex digits of the sha256 of its file name,
  modulo 10, are below 3, else in ``fit`` (the CSV's ``split`` column; checked to agree): a fixed
  rule anyone can recompute. Holdout photos are never fitted on nor used for a threshold; they
  give the final figures only, clinical and dermoscopic rows apart.
- **other**: pictures that are not photos of skin (documents, screens, walls, sky, objects,
  textures) made in code here, deliberately not by :mod:`benchmarks.synthetic`, so the tests and
  the benchmark judge the check on a family it was not fitted on.

Clinical-looking photos cannot be made honestly from dermoscopic ones (a dermoscopic image
cropped or blurred is still a dermoscopic image), so the clinical class is the phone photos
labelled clinical and their augmentations only.

Every photo used for fitting goes through :func:`vary` (crop, zoom, aspect, flips, light,
rescaling to 120-700 px and a JPEG at quality 50-95) so the check cannot key on the size or the
JPEG artefacts that differ between the folders (derm-dev is 224 px, ham-extra 150 px, the phone
photos 384 px).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFont
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict

from models.modality import DOMAINS, FeatureExtractor, ModalityModel
from training import tracking
from training.config import TrainConfig
from training.data import config_split, lesion_disjoint_split, load_metadata

logger = logging.getLogger(__name__)

EXPERIMENT = "dermtriage-modality-check"
_PROJECT_DIR = Path(__file__).resolve().parents[1]

#: Inverse regularisation strength of the logistic regression (chosen by grouped cross-validation
#: on the fit photos; see docs/training.md).
C = 0.01
#: Principal axes kept for the out-of-distribution distance.
OOD_COMPONENTS = 32
#: Share of held-out in-distribution (validation) dermoscopic photos under the OOD threshold.
OOD_QUANTILE = 0.99
CLINICAL_HOLDOUT_SHARE = 3  # in tenths
#: A photo reads dermoscopic when p(dermoscopic) reaches the CLINICAL_PASS_QUANTILE quantile of
#: the clinical fit photos' out-of-fold p(dermoscopic) (at least 0.5): scoring a clinical photo
#: misleads, refusing a dermoscopic one only loses the AI's help, so the error is put there.
CLINICAL_PASS_QUANTILE = 0.93
DERMOSCOPIC_THRESHOLD_RULE = (
    f"max(0.5, {CLINICAL_PASS_QUANTILE} quantile of clinical fit photos' out-of-fold "
    "p(dermoscopic))"
)


def clinical_split(file_name: str) -> str:
    """``holdout`` or ``fit`` for a clinical-phone photo, from its file name alone."""
    bucket = int(hashlib.sha256(file_name.encode()).hexdigest()[:8], 16) % 10
    return "holdout" if bucket < CLINICAL_HOLDOUT_SHARE else "fit"


#: Hand labels of the clinical-phone photos (docs/photo-labels.md); ``modality`` is the column
#: read here.
LABELS_FILE = _PROJECT_DIR / "benchmarks" / "clinical_phone_labels.csv"


def clinical_photos(clinical_dir: Path, labels_file: Path = LABELS_FILE) -> pd.DataFrame:
    """``file, path, split, modality`` of every clinical-phone photo with its hand label.

    ``modality`` is ``clinical``, ``dermoscopic`` or ``unsure`` as labelled; a photo without a
    label is an error (a new photo must be labelled before it is fitted on or counted).
    """
    frame = pd.read_csv(Path(clinical_dir) / "images.csv")
    labels = pd.read_csv(labels_file).set_index("file")
    missing = sorted(set(frame["file"]) - set(labels.index))
    if missing:
        raise ValueError(f"clinical-phone photos without a modality label: {missing[:5]}")
    frame["path"] = [str(Path(clinical_dir) / "images" / f) for f in frame["file"]]
    frame["split"] = [clinical_split(f) for f in frame["file"]]
    if not (frame["split"].to_numpy() == labels.loc[frame["file"], "split"].to_numpy()).all():
        raise ValueError(f"{labels_file.name}: split column disagrees with the holdout rule")
    frame["modality"] = labels.loc[frame["file"], "modality"].to_numpy()
    unknown = set(frame["modality"]) - {"clinical", "dermoscopic", "unsure"}
    if unknown:
        raise ValueError(f"{labels_file.name}: unknown modality labels {sorted(unknown)}")
    return frame[["file", "path", "split", "modality"]]


def dermoscopic_split(derm_dev_dir: Path, ham_extra_dir: Path | None) -> pd.DataFrame:
    """``image_id, lesion_id, image_path, source, split`` over derm-dev and ham-extra, by lesion.

    derm-dev keeps the classifier's own split; a ham-extra lesion that derm-dev has takes the
    same split, a new one is split with the classifier's fractions and seed.
    """
    config = TrainConfig()
    derm = load_metadata(derm_dev_dir)
    derm_split = config_split(derm, config).set_index("image_id")["split"]
    derm["split"] = derm["image_id"].map(derm_split)
    derm["source"] = "derm-dev"
    parts = [derm]
    if ham_extra_dir is not None and (Path(ham_extra_dir) / "metadata.csv").is_file():
        ham = load_metadata(ham_extra_dir)
        known = derm.groupby("lesion_id")["split"].first()
        ham["split"] = ham["lesion_id"].map(known)
        new = ham[ham["split"].isna()]
        if len(new):
            fresh = lesion_disjoint_split(
                new,
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
                seed=config.seed,
            ).set_index("image_id")["split"]
            ham.loc[ham["split"].isna(), "split"] = ham.loc[ham["split"].isna(), "image_id"].map(
                fresh
            )
        ham["source"] = "ham-extra"
        parts.append(ham)
    cols = ["image_id", "lesion_id", "image_path", "source", "split"]
    return pd.concat([p[cols] for p in parts], ignore_index=True)


# --- augmentation -----------------------------------------------------------------------------


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Through a JPEG at ``quality``, as a photo reaches the service."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        return img.convert("RGB")


def resized(image: Image.Image, short_side: int) -> Image.Image:
    """``image`` scaled so that its short side is ``short_side`` (aspect kept)."""
    width, height = image.size
    factor = short_side / min(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC)


def vary(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random variant of a photo: framing, orientation, light, size and JPEG changed."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    keep = rng.uniform(0.6, 1.0)
    aspect = math.exp(rng.uniform(-0.3, 0.3))
    ch = min(height, max(16, round(height * keep / math.sqrt(aspect))))
    cw = min(width, max(16, round(width * keep * math.sqrt(aspect))))
    top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
    rgb = rgb[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    rgb = np.rot90(rgb, int(rng.integers(0, 4)))
    light = rgb.astype(np.float32) / 255.0
    light = light ** (2.0 ** rng.uniform(-0.4, 0.4))
    light = light * rng.uniform(0.8, 1.15) * rng.uniform(0.92, 1.08, 3)
    rgb = np.clip(light * 255 + 0.5, 0, 255).astype(np.uint8)
    out = resized(Image.fromarray(np.ascontiguousarray(rgb)), int(rng.integers(120, 701)))
    return jpeg(out, int(rng.integers(50, 96)))


# --- pictures that are not skin (not benchmarks.synthetic's: see the module docstring) ----------


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _noise_field(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    small = rng.normal(0, 1, (h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _text_page(size: tuple[int, int], rng: np.random.Generator, dark: bool) -> np.ndarray:
    w, h = size
    background = (25, 25, 30) if dark else tuple(int(v) for v in rng.uniform(200, 255, 3))
    page = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=max(8, int(h * rng.uniform(0.025, 0.07))))
    letters = "abcdefghijklmnopqrstuvwxyz0123456789 "
    y = int(h * rng.uniform(0.02, 0.1))
    while y < h * 0.95:
        if rng.random() < 0.15:
            draw.rectangle(
                (int(w * 0.05), y, int(w * rng.uniform(0.3, 0.95)), y + int(h * 0.06)),
                fill=tuple(int(v) for v in _colour(rng)),
            )
        else:
            line = "".join(rng.choice(list(letters), size=int(rng.integers(10, 60))))
            ink = (220, 220, 220) if dark else tuple(int(v) for v in rng.uniform(0, 90, 3))
            draw.text((int(w * 0.05), y), line, fill=ink, font=font)
        y += int(h * rng.uniform(0.04, 0.09))
    return np.asarray(page)


def wall(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Painted plaster, tiles or bricks under uneven light."""
    w, h = size
    base = _colour(rng) * 0.6 + 80
    texture = 0.06 * _noise_field((h, w), 4, rng) + 0.03 * rng.normal(0, 1, (h, w))
    img = base[None, None, :] * (1 + texture[..., None])
    if rng.random() < 0.5:
        step = int(rng.integers(12, 60))
        img[::step, :, :] *= 0.6
        img[:, :: int(step * rng.uniform(1, 2.5)), :] *= 0.6
    light = np.linspace(rng.uniform(0.6, 1.1), rng.uniform(0.6, 1.1), w)[None, :, None]
    return np.clip(img * light, 0, 255).astype(np.uint8)


def sky(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Blue sky with soft clouds, sometimes a roof line or trees at the bottom."""
    w, h = size
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top = np.array([rng.uniform(30, 90), rng.uniform(90, 150), rng.uniform(180, 240)])
    low = np.array([rng.uniform(150, 200), rng.uniform(190, 225), rng.uniform(225, 255)])
    img = top * (1 - t) + low * t + np.zeros((1, w, 1))
    clouds = np.clip(_noise_field((h, w), int(rng.integers(16, 64)), rng), 0, None)[..., None]
    img = img * (1 - 0.4 * clouds) + 245 * 0.4 * clouds
    if rng.random() < 0.5:
        horizon = int(h * rng.uniform(0.6, 0.9))
        img[horizon:] = (
            _colour(rng) * 0.4 * (1 + 0.2 * _noise_field((h - horizon, w), 3, rng))[..., None]
        )
    return np.clip(img, 0, 255).astype(np.uint8)


def objects(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Shaded everyday shapes (cups, boxes, balls) on a table or floor."""
    w, h = size
    img = np.ones((h, w, 3), np.float32) * _colour(rng)
    img *= 1 + 0.08 * _noise_field((h, w), 8, rng)[..., None]
    for _ in range(int(rng.integers(1, 6))):
        colour = _colour(rng)
        mask = np.zeros((h, w), np.float32)
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        r = int(min(w, h) * rng.uniform(0.08, 0.35))
        if rng.random() < 0.5:
            cv2.circle(mask, (cx, cy), r, 1.0, -1)
        else:
            cv2.rectangle(mask, (cx - r, cy - r // 2), (cx + r, cy + r), 1.0, -1)
        shade = np.linspace(1.2, 0.6, w, dtype=np.float32)[None, :]
        mask = cv2.GaussianBlur(mask, (0, 0), 1.5)[..., None]
        img = img * (1 - mask) + (colour * shade[..., None]) * mask
    return np.clip(img, 0, 255).astype(np.uint8)


def screen(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A phone or computer screen: text and coloured blocks, light or dark mode."""
    return _text_page(size, rng, dark=rng.random() < 0.4)


def paper(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A printed or handwritten page photographed at an angle of light."""
    page = _text_page(size, rng, dark=False).astype(np.float32)
    w = size[0]
    light = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0), w)[None, :, None]
    return np.clip(page * light, 0, 255).astype(np.uint8)


def texture(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Fabric, wood or carpet: a coloured multi-scale texture."""
    w, h = size
    img = _colour(rng)[None, None, :] * np.ones((h, w, 1))
    for cell in (2, 8, 32):
        img = img * (1 + rng.uniform(0.05, 0.25) * _noise_field((h, w), cell, rng)[..., None])
    if rng.random() < 0.5:
        stripes = np.sin(np.arange(w) / rng.uniform(2, 12))[None, :, None]
        img = img * (1 + 0.15 * stripes)
    return np.clip(img, 0, 255).astype(np.uint8)


OTHER_KINDS: dict[str, Callable[[tuple[int, int], np.random.Generator], np.ndarray]] = {
    "wall": wall,
    "sky": sky,
    "objects": objects,
    "screen": screen,
    "paper": paper,
    "texture": texture,
}


def other_pictures(count: int, rng: np.random.Generator) -> list[Image.Image]:
    """``count`` non-skin pictures, the kinds in turn, at random sizes."""
    out = []
    kinds = list(OTHER_KINDS.values())
    for i in range(count):
        size = (int(rng.integers(200, 800)), int(rng.integers(200, 800)))
        out.append(Image.fromarray(kinds[i % len(kinds)](size, rng)))
    return out


# --- fitting ----------------------------------------------------------------------------------


def _open(path: str) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


@dataclass
class FeatureSets:
    """Pooled features of every photo set the fit and its report need, with their groups."""

    fit_x: np.ndarray
    fit_y: np.ndarray
    fit_groups: np.ndarray
    derm_train_original: np.ndarray
    derm_val: np.ndarray
    derm_test: np.ndarray
    derm_test_384: np.ndarray
    clinical_holdout: np.ndarray
    clinical_holdout_224: np.ndarray
    clinical_holdout_600: np.ndarray
    phone_dermoscopic_holdout: np.ndarray
    other_holdout: np.ndarray
    counts: dict[str, int]
    seconds: float


def extract_features(
    derm_dev_dir: Path,
    ham_extra_dir: Path | None,
    clinical_dir: Path,
    *,
    derm_fit: int,
    clinical_variants: int,
    others: int,
    seed: int,
    extractor: FeatureExtractor | None = None,
) -> FeatureSets:
    """Decode, augment and run the frozen backbone over every set (the slow part)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    extractor = extractor or FeatureExtractor()
    derm = dermoscopic_split(derm_dev_dir, ham_extra_dir)
    clinical = clinical_photos(clinical_dir)

    def feats(images: list[Image.Image]) -> np.ndarray:
        return extractor.features(images)

    def per_lesion(frame: pd.DataFrame, n: int) -> pd.DataFrame:
        one = frame.sort_values("image_id").drop_duplicates("lesion_id")
        return one.sample(n=min(n, len(one)), random_state=seed)

    train = per_lesion(derm[derm["split"] == "train"], derm_fit)
    val = per_lesion(derm[derm["split"] == "val"], max(200, derm_fit // 4))
    test = derm[derm["split"] == "test"]

    train_images = [_open(p) for p in train["image_path"]]
    derm_train_original = feats(train_images)
    derm_varied = feats([vary(im, rng) if rng.random() < 0.8 else im for im in train_images])
    # Phone photos by their hand label: clinical ones are the clinical class, dermoscopic ones
    # (a second dermatoscope) join the dermoscopic class, unsure ones are left out. Each photo
    # and its variants are one group, so a fold never splits them.
    fit_phone = clinical[
        (clinical["split"] == "fit") & clinical["modality"].isin(["clinical", "dermoscopic"])
    ].reset_index(drop=True)
    phone_images, phone_groups, phone_y = [], [], []
    for i, (path, modality) in enumerate(
        zip(fit_phone["path"], fit_phone["modality"], strict=True)
    ):
        label = 1 if modality == "clinical" else 0
        image = _open(path)
        phone_images.append(image)
        for _ in range(clinical_variants):
            phone_images.append(vary(image, rng))
        phone_groups += [i] * (clinical_variants + 1)
        phone_y += [label] * (clinical_variants + 1)
    phone_fit = feats(phone_images)
    other_fit = feats([vary(im, rng) for im in other_pictures(others, rng)])

    fit_x = np.concatenate([derm_varied, phone_fit, other_fit])
    fit_y = np.concatenate(
        [np.zeros(len(derm_varied)), np.asarray(phone_y), np.full(len(other_fit), 2)]
    ).astype(int)
    fit_groups = np.concatenate(
        [
            np.arange(len(derm_varied)),
            10**6 + np.asarray(phone_groups),
            2 * 10**6 + np.arange(len(other_fit)),
        ]
    )

    test_images = [_open(p) for p in test["image_path"]]
    holdout = clinical[(clinical["split"] == "holdout") & (clinical["modality"] == "clinical")]
    holdout_images = [_open(p) for p in holdout["path"]]
    phone_derm_holdout = clinical[
        (clinical["split"] == "holdout") & (clinical["modality"] == "dermoscopic")
    ]
    held_rng = np.random.default_rng(seed + 1000)
    sets = FeatureSets(
        fit_x=fit_x,
        fit_y=fit_y,
        fit_groups=fit_groups,
        derm_train_original=derm_train_original,
        derm_val=feats([_open(p) for p in val["image_path"]]),
        derm_test=feats(test_images),
        derm_test_384=feats([jpeg(resized(im, 384), 85) for im in test_images[::3]]),
        clinical_holdout=feats(holdout_images),
        clinical_holdout_224=feats([jpeg(resized(im, 224), 85) for im in holdout_images]),
        clinical_holdout_600=feats([jpeg(resized(im, 600), 85) for im in holdout_images]),
        phone_dermoscopic_holdout=feats([_open(p) for p in phone_derm_holdout["path"]]),
        other_holdout=feats(other_pictures(max(60, others // 4), held_rng)),
        counts={
            "derm_fit_photos": len(train),
            "derm_fit_lesions": int(train["lesion_id"].nunique()),
            "derm_fit_from_ham_extra": int((train["source"] == "ham-extra").sum()),
            "clinical_fit_photos": int((fit_phone["modality"] == "clinical").sum()),
            "phone_dermoscopic_fit_photos": int((fit_phone["modality"] == "dermoscopic").sum()),
            "phone_fit_with_variants": len(phone_fit),
            "phone_unsure_left_out": int((clinical["modality"] == "unsure").sum()),
            "other_fit": len(other_fit),
            "derm_val": len(val),
            "derm_test": len(test),
            "derm_test_lesions": int(test["lesion_id"].nunique()),
            "clinical_holdout": len(holdout),
            "phone_dermoscopic_holdout": len(phone_derm_holdout),
        },
        seconds=0.0,
    )
    sets.seconds = time.perf_counter() - started
    return sets


def fit_head(x: np.ndarray, y: np.ndarray, seed: int, c: float | None = None) -> LogisticRegression:
    """The multinomial logistic regression (classes weighted to count equally)."""
    head = LogisticRegression(
        C=C if c is None else c, class_weight="balanced", max_iter=3000, random_state=seed
    )
    return head.fit(x, y)


def fit_ood(
    features: np.ndarray, held_out: np.ndarray, components: int = OOD_COMPONENTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Mean, principal axes and variances of the training photos' features; the residual
    variance per dimension; the threshold at :data:`OOD_QUANTILE` of ``held_out``'s distances."""
    mean = features.mean(axis=0)
    centred = features - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variances_all = singular**2 / (len(features) - 1)
    k = min(components, len(variances_all) - 1)
    residual = float(variances_all[k:].sum() / (features.shape[1] - k))
    probe = ModalityModel(
        mean=np.zeros(features.shape[1]),
        scale=np.ones(features.shape[1]),
        coef=np.zeros((len(DOMAINS), features.shape[1])),
        intercept=np.zeros(len(DOMAINS)),
        ood_mean=mean,
        ood_components=vt[:k],
        ood_variances=variances_all[:k],
        ood_residual_variance=residual,
        ood_threshold=math.inf,
    )
    threshold = float(np.quantile(probe.ood_distance(held_out), OOD_QUANTILE))
    return mean, vt[:k], variances_all[:k], residual, threshold


@dataclass(frozen=True)
class ModalityFit:
    model: ModalityModel
    figures: dict[str, float]


def fit_modality_model(
    derm_dev_dir: Path,
    ham_extra_dir: Path | None,
    clinical_dir: Path,
    *,
    derm_fit: int = 2000,
    clinical_variants: int = 5,
    others: int = 600,
    seed: int = 0,
) -> ModalityFit:
    """Extract, fit, measure; see the module docstring."""
    torch.manual_seed(seed)
    sets = extract_features(
        derm_dev_dir,
        ham_extra_dir,
        clinical_dir,
        derm_fit=derm_fit,
        clinical_variants=clinical_variants,
        others=others,
        seed=seed,
    )
    return fit_from_features(sets, seed=seed, sources=(derm_dev_dir, ham_extra_dir, clinical_dir))


def fit_from_features(
    sets: FeatureSets, *, seed: int, sources: tuple[Path | None, ...] = ()
) -> ModalityFit:
    """The head, the OOD reference and the figures, from already extracted features."""
    # Dermoscopic photos enter twice, as they are and as a variant (one group, so a fold never
    # splits them): the variants teach size and JPEG independence, the originals keep the
    # boundary where real dermoscopy lies (measured: derm recall 91 % without them, 95 % with).
    n_original = len(sets.derm_train_original)
    x = np.concatenate([sets.derm_train_original, sets.fit_x])
    y = np.concatenate([np.zeros(n_original, int), sets.fit_y])
    groups = np.concatenate([np.arange(n_original), sets.fit_groups])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    folds = GroupKFold(n_splits=5)
    oof = cross_val_predict(
        LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed),
        z,
        y,
        groups=groups,
        cv=folds,
        method="predict_proba",
    )
    head = fit_head(z, y, seed)
    # Out of fold, at most 1 - CLINICAL_PASS_QUANTILE of the clinical photos may read dermoscopic.
    clinical_oof = oof[y == 1, 0]
    threshold_derm = float(max(0.5, np.quantile(clinical_oof, CLINICAL_PASS_QUANTILE)))
    ood_mean, components, variances, residual, threshold = fit_ood(
        sets.derm_train_original, sets.derm_val
    )
    model = ModalityModel(
        mean=mean,
        scale=scale,
        coef=head.coef_,
        intercept=head.intercept_,
        ood_mean=ood_mean,
        ood_components=components,
        ood_variances=variances,
        ood_residual_variance=residual,
        ood_threshold=threshold,
        dermoscopic_threshold=threshold_derm,
    )

    def share(features: np.ndarray, domain: str) -> float:
        verdicts = model.verdicts(features)
        return float(np.mean([v.domain == domain for v in verdicts]))

    def ood_share(features: np.ndarray) -> float:
        return float(np.mean([v.ood for v in model.verdicts(features)]))

    oof_pred = np.where(oof[:, 0] >= threshold_derm, 0, 1 + oof[:, 1:].argmax(axis=1))
    figures = {
        "oof_dermoscopic": float((oof_pred[y == 0] == 0).mean()),
        "oof_clinical": float((oof_pred[y == 1] == 1).mean()),
        "oof_other": float((oof_pred[y == 2] == 2).mean()),
        "test_dermoscopic": share(sets.derm_test, "dermoscopic"),
        "test_dermoscopic_384px_jpeg": share(sets.derm_test_384, "dermoscopic"),
        "holdout_clinical": share(sets.clinical_holdout, "clinical"),
        "holdout_clinical_224px": share(sets.clinical_holdout_224, "clinical"),
        "holdout_clinical_600px": share(sets.clinical_holdout_600, "clinical"),
        "holdout_other": share(sets.other_holdout, "other"),
        "holdout_clinical_scored": share(sets.clinical_holdout, "dermoscopic"),
        "holdout_phone_dermoscopic": share(sets.phone_dermoscopic_holdout, "dermoscopic"),
        "ood_flagged_holdout_phone_dermoscopic": ood_share(sets.phone_dermoscopic_holdout),
        "ood_flagged_test_dermoscopic": ood_share(sets.derm_test),
        "ood_threshold": threshold,
        "dermoscopic_threshold": threshold_derm,
        "extraction_seconds": sets.seconds,
    }
    fit = {
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "sources": [Path(s).name for s in sources if s is not None],
        "C": C,
        "ood_components": OOD_COMPONENTS,
        "ood_threshold_rule": f"{OOD_QUANTILE:.2f} quantile of validation-split dermoscopy",
        "dermoscopic_threshold_rule": DERMOSCOPIC_THRESHOLD_RULE,
        "clinical_holdout_rule": "int(sha256(file_name)[:8], 16) % 10 < 3",
        "phone_labels": "benchmarks/clinical_phone_labels.csv modality: clinical -> clinical, "
        "dermoscopic -> dermoscopic, unsure left out",
        "counts": sets.counts,
        "figures": {k: round(v, 5) for k, v in figures.items()},
    }
    model = ModalityModel(**{**model.__dict__, "fit": fit})
    for name, value in figures.items():
        logger.info("modality check %s: %.4f", name, value)
    return ModalityFit(model=model, figures=figures)


def log_fit(
    result: ModalityFit, model_file: Path, tracking_uri: str, artifact_root: str | None = None
) -> str:
    """Record a fit in MLflow (parameters, figures, the model file, the commit); returns the
    run id. The file in git stays the shipped version; the run says how it came about."""
    from models.modality import load_modality_model

    experiment_id = tracking.configure(tracking_uri, EXPERIMENT, artifact_root)
    fit = result.model.fit
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(
            {
                "seed": fit["seed"],
                "C": C,
                "ood_components": OOD_COMPONENTS,
                "ood_quantile": OOD_QUANTILE,
                **{f"n_{k}": v for k, v in fit["counts"].items()},
            }
        )
        mlflow.log_metrics(result.figures)
        mlflow.set_tag("git_commit", tracking.git_commit(_PROJECT_DIR) or "unknown")
        mlflow.set_tag("modality_version", load_modality_model(model_file).version)
        mlflow.log_artifact(str(model_file))
    return run.info.run_id
