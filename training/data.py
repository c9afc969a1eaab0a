"""The labelled data set, its lesion-disjoint splits, and the torch Dataset over it.

Several photos can show one lesion; a split by image would put the same lesion in training and
test and flatter every figure. Splits are therefore drawn over lesions, stratified by diagnosis,
from a seed, and saved with the run so that any figure can be recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from models.network import CLASSES
from training.config import TrainConfig

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image_id", "lesion_id", "dx")
SPLITS = ("train", "val", "test")


def load_metadata(dataset_dir: Path) -> pd.DataFrame:
    """``metadata.csv`` of a derm-dev style data set, checked, with an ``image_path`` column."""
    csv = Path(dataset_dir) / "metadata.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"no metadata.csv in {dataset_dir}")
    frame = pd.read_csv(csv)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv}: missing columns {missing}")
    unknown = sorted(set(frame["dx"]) - set(CLASSES))
    if unknown:
        raise ValueError(f"{csv}: unknown diagnoses {unknown}; expected {CLASSES}")
    frame["image_path"] = [
        str(Path(dataset_dir) / "images" / f"{image_id}.jpg") for image_id in frame["image_id"]
    ]
    frame["label"] = frame["dx"].map(CLASSES.index).astype(int)
    return frame


def lesion_disjoint_split(
    metadata: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int
) -> pd.DataFrame:
    """Assign each image to train, val or test so that no lesion spans two splits.

    Lesions are stratified by diagnosis (every image of a lesion carries the same one). Returns
    ``image_id, lesion_id, dx, split``, sorted by image_id so the saved file is stable.
    """
    lesions = metadata.groupby("lesion_id", sort=True)["dx"].first().reset_index()
    rest, test = train_test_split(
        lesions, test_size=test_fraction, stratify=lesions["dx"], random_state=seed
    )
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(
        rest, test_size=val_share, stratify=rest["dx"], random_state=seed + 1
    )
    split_of = {
        **dict.fromkeys(train["lesion_id"], "train"),
        **dict.fromkeys(val["lesion_id"], "val"),
        **dict.fromkeys(test["lesion_id"], "test"),
    }
    out = metadata[["image_id", "lesion_id", "dx"]].copy()
    out["split"] = out["lesion_id"].map(split_of)
    return out.sort_values("image_id").reset_index(drop=True)


def config_split(metadata: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """The split a training run with ``config`` uses: what is "the classifier's training split"
    for every other fitted part (the quality check's blur detector is fitted on it only)."""
    return lesion_disjoint_split(
        metadata,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )


def stratified_subset(metadata: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """About ``limit`` images keeping every diagnosis, for smoke runs and tests."""
    if limit >= len(metadata):
        return metadata
    per_class = max(1, limit // len(CLASSES))
    parts = [
        group.sample(n=min(len(group), per_class), random_state=seed)
        for _, group in metadata.groupby("dx", sort=True)
    ]
    return pd.concat(parts).sort_values("image_id").reset_index(drop=True)


def read_rgb(path: str | Path, size: int | None = None) -> np.ndarray:
    """An image file as an RGB uint8 array, resized to ``size`` x ``size`` when given."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8)


def preload_images(paths: list[str], size: int | None, workers: int = 4) -> list[np.ndarray]:
    """Decode every image once into memory: each epoch then reads RAM instead of JPEG files.

    At 224 px the 6,000 derm-dev images take about 0.9 GB; decoding them per epoch would cost
    more than the forward pass on a small CPU.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: read_rgb(p, size), paths))


class LesionDataset(Dataset):
    """Images (decoded ahead of time) with their class labels, through a transform.

    ``transform`` takes an RGB uint8 array and returns a normalised (3, H, W) float tensor.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        labels: list[int],
        transform: Callable[[np.ndarray], torch.Tensor],
    ) -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.labels[index]
