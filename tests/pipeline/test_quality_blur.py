"""The fitted blur detector: what its shipped file must hold, and what its features must ignore.

Whether it catches blur is specified with the other blur checks, through the whole quality
check (``tests/pipeline/test_quality.py``); here are the properties that make its figures mean
something: it is judged on lesions it was not fitted on, it refuses a file made for other
features, and its features depend on the photo's sharpness, not on its contrast or its size.
"""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks import synthetic
from benchmarks.quality import load_sample
from pipeline.quality import DEFAULT_THRESHOLDS
from pipeline.quality_blur import (
    CANONICAL_SIDE,
    FEATURE_NAMES,
    BlurModel,
    canonical_view,
    shipped_blur_model,
)
from training.blur_model import features_of
from training.config import TrainConfig
from training.data import config_split


@pytest.fixture(scope="module")
def photo(dataset_dir: Path, derm_metadata: pd.DataFrame) -> np.ndarray:
    fitted = set(shipped_blur_model().fit["lesion_ids"])
    image_id = sorted(derm_metadata.loc[~derm_metadata["lesion_id"].isin(fitted), "image_id"])[0]
    return np.asarray(Image.open(dataset_dir / "images" / f"{image_id}.jpg").convert("RGB"))


def test_the_shipped_model_was_fitted_on_training_lesions_only(
    derm_metadata: pd.DataFrame,
) -> None:
    model = shipped_blur_model()
    split = config_split(derm_metadata, TrainConfig())
    split_of = dict(zip(split["lesion_id"], split["split"], strict=False))

    fitted = model.fit["lesion_ids"]
    assert len(fitted) == model.fit["lesions"] >= 1000
    # The classifier's validation and test lesions stay unseen by every fitted part.
    assert {split_of[lesion] for lesion in fitted} == {"train"}


def test_the_quality_check_uses_the_shipped_models_own_threshold() -> None:
    model = shipped_blur_model()

    assert 0.0 < model.threshold < 1.0
    assert DEFAULT_THRESHOLDS.blur_probability == model.threshold


def test_a_model_file_made_for_other_features_is_refused() -> None:
    data = shipped_blur_model().to_json()
    assert BlurModel.from_json(copy.deepcopy(data)).threshold == data["threshold"]

    renamed = copy.deepcopy(data)
    renamed["features"][0] = "something_else"
    with pytest.raises(ValueError, match="other features"):
        BlurModel.from_json(renamed)
    short = copy.deepcopy(data)
    short["mean"] = short["mean"][:-1]
    with pytest.raises(ValueError, match="feature count"):
        BlurModel.from_json(short)


def test_features_are_measured_on_a_copy_the_size_of_the_photos_it_was_fitted_on() -> None:
    y = np.random.default_rng(0).random((576, 768), dtype=np.float32)
    small, fov = canonical_view(y, np.ones_like(y, dtype=bool))

    assert max(small.shape) == CANONICAL_SIDE and fov.shape == small.shape
    tiny = y[:150, :200]
    assert canonical_view(tiny, np.ones_like(tiny, dtype=bool))[0] is tiny  # never enlarged


def test_features_do_not_depend_on_contrast(photo: np.ndarray) -> None:
    # Every feature is a ratio or a spread of log energies: halving the contrast (a flatter
    # light) must not move the verdict.
    flat = (128 + (photo.astype(np.float32) - 128) * 0.5).astype(np.uint8)
    a, b = features_of(photo), features_of(flat)

    assert a.shape == (len(FEATURE_NAMES),)
    model = shipped_blur_model()
    assert abs(model.probability(a) - model.probability(b)) < 0.1


def test_a_12_mp_photo_and_its_small_copy_get_the_same_verdict(photo: np.ndarray) -> None:
    # Blur is judged relative to the frame: the same scene as a 224 px crop and as a 12-MP photo
    # (up-sampled, then read at the working size and reduced) reads alike, sharp or blurred.
    model = shipped_blur_model()
    blurred = synthetic.gaussian_blur(photo, 0.02, np.random.default_rng(1))
    for picture, expected in ((photo, False), (blurred, True)):
        big = cv2.resize(picture, (4000, 4000), interpolation=cv2.INTER_CUBIC)
        for version in (picture, big):
            p = model.probability(features_of(version))
            assert (p >= model.threshold) is expected, (version.shape, p)


def test_the_benchmark_never_samples_a_lesion_the_blur_detector_was_fitted_on(
    dataset_dir: Path, derm_metadata: pd.DataFrame
) -> None:
    fitted = set(shipped_blur_model().fit["lesion_ids"])
    lesion_of = dict(zip(derm_metadata["image_id"], derm_metadata["lesion_id"], strict=False))

    every = load_sample(dataset_dir, None, seed=0)

    assert not {lesion_of[image_id] for image_id, _ in every} & fitted
    assert len(every) == derm_metadata["lesion_id"].nunique() - len(fitted)
