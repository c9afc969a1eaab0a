"""The labelled data set, its lesion-disjoint splits, and the torch Dataset over it.

Several photos can show one lesion; a split by image would put the same lesion in training and
test and flatter every figure. Splits are therefore drawn over lesions, stratified by diagnosis,
from a seed, and saved with the run so that any figure can be recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
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


def load_metadata(dataset_dir: Path | Sequence[Path]) -> pd.DataFrame:
    """``metadata.csv`` of one or several derm-dev style data sets, checked, with ``image_path``
    and ``source_dir`` (the folder's name) columns.

    Several folders are stacked in the order given; an image id found in two of them is refused
    (the same photo twice would sit in two splits), while a lesion may span folders (ham-extra
    holds other photos of derm-dev's lesions) as long as its diagnosis agrees.
    """
    if not isinstance(dataset_dir, str | Path):
        folders = [Path(d) for d in dataset_dir]
        if not folders:
            raise ValueError("no data folder given")
        frame = pd.concat([load_metadata(d) for d in folders], ignore_index=True)
        repeated = frame["image_id"][frame["image_id"].duplicated()].unique()
        if len(repeated):
            raise ValueError(f"image ids in more than one data folder: {list(repeated[:5])}")
        diagnoses = frame.groupby("lesion_id")["dx"].nunique()
        clashing = diagnoses[diagnoses > 1].index.tolist()
        if clashing:
            raise ValueError(f"lesions with two diagnoses across data folders: {clashing[:5]}")
        return frame
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
    frame["source_dir"] = Path(dataset_dir).name
    return frame


def lesion_disjoint_split(
    metadata: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int
) -> pd.DataFrame:
    """Assign each image to train, val or test so that no lesion spans two splits.

    Lesions are stratified by diagnosis (every image of a lesion carries the same one). Returns
    ``image_id, lesion_id, dx, split``, sorted by image_id so the saved file is stable.
    """
    lesions = metadata.groupby("lesion_id", sort=True)["dx"].first().reset_index()
    rest, test = _split_lesions(lesions, test_fraction, seed)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = _split_lesions(rest, val_share, seed + 1)
    split_of = {
        **dict.fromkeys(train["lesion_id"], "train"),
        **dict.fromkeys(val["lesion_id"], "val"),
        **dict.fromkeys(test["lesion_id"], "test"),
    }
    out = metadata[["image_id", "lesion_id", "dx"]].copy()
    out["split"] = out["lesion_id"].map(split_of)
    return out.sort_values("image_id").reset_index(drop=True)


def _split_lesions(
    lesions: pd.DataFrame, share: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified by diagnosis; a handful of lesions (a smoke run's slice of a second data
    folder) with a diagnosis seen once cannot be stratified and is split at random."""
    try:
        return train_test_split(lesions, test_size=share, stratify=lesions["dx"], random_state=seed)
    except ValueError:
        return train_test_split(lesions, test_size=share, random_state=seed)


def config_split(metadata: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """The split a training run with ``config`` uses: what is "the classifier's training split"
    for every other fitted part (the quality check's blur detector is fitted on it only).

    Over several data folders (``source_dir``), the first folder is split on its own, exactly as
    a run on it alone would be; a later folder's lesion already seen takes that lesion's split,
    and its new lesions are split with the same fractions and seed. So adding ham-extra to
    derm-dev never moves a derm-dev test image into training: a model trained on derm-dev alone
    can still be compared with the new one on images neither has seen.

    With ``config.holdout_source`` (a value of the ``dataset`` column: the clinic or device),
    every image of that source is the test split and the other sources are split into train and
    validation by lesion: the leave-one-source-out evaluation.
    """
    if config.holdout_source is not None:
        return _source_holdout_split(metadata, config)
    folders = list(dict.fromkeys(metadata.get("source_dir", pd.Series(["?"] * len(metadata)))))
    if len(folders) <= 1:
        return lesion_disjoint_split(
            metadata,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            seed=config.seed,
        )
    known: dict[str, str] = {}
    parts = []
    for folder in folders:
        rows = metadata[metadata["source_dir"] == folder]
        seen = rows["lesion_id"].map(known)
        new = rows[seen.isna()]
        part = rows[["image_id", "lesion_id", "dx"]].copy()
        part["split"] = seen.astype(object)
        if len(new):
            fresh = lesion_disjoint_split(
                new,
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
                seed=config.seed,
            ).set_index("image_id")["split"]
            part.loc[seen.isna(), "split"] = part.loc[seen.isna(), "image_id"].map(fresh)
        known.update(part.groupby("lesion_id")["split"].first().to_dict())
        parts.append(part)
    return pd.concat(parts).sort_values("image_id").reset_index(drop=True)


def _source_holdout_split(metadata: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    source = config.holdout_source
    if "dataset" not in metadata.columns:
        raise ValueError("holdout_source needs a 'dataset' column in metadata.csv")
    held = metadata["dataset"] == source
    if not held.any():
        known = sorted(metadata["dataset"].dropna().unique())
        raise ValueError(f"no image of source {source!r}; sources are {known}")
    # A lesion photographed by two sources would leak: it goes to the held-out side whole.
    held_lesions = set(metadata.loc[held, "lesion_id"])
    held = metadata["lesion_id"].isin(held_lesions)
    rest = metadata[~held]
    lesions = rest.groupby("lesion_id", sort=True)["dx"].first().reset_index()
    train, val = _split_lesions(lesions, config.val_fraction, config.seed)
    split_of = {
        **dict.fromkeys(train["lesion_id"], "train"),
        **dict.fromkeys(val["lesion_id"], "val"),
    }
    out = metadata[["image_id", "lesion_id", "dx"]].copy()
    out["split"] = out["lesion_id"].map(split_of).where(~held, "test")
    return out.sort_values("image_id").reset_index(drop=True)


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
