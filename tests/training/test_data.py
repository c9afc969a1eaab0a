"""The data set loader and its splits: lesion-disjoint, stratified, repeatable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.network import CLASSES
from training.data import lesion_disjoint_split, load_metadata, stratified_subset


@pytest.fixture(scope="module")
def metadata(dataset_dir: Path) -> pd.DataFrame:
    return load_metadata(dataset_dir)


def test_metadata_has_a_path_and_label_for_every_image(metadata: pd.DataFrame) -> None:
    assert len(metadata) == 5984
    assert Path(metadata["image_path"].iloc[0]).is_file()
    assert set(metadata["label"]) == set(range(len(CLASSES)))


def test_split_never_puts_one_lesion_in_two_splits(metadata: pd.DataFrame) -> None:
    split = lesion_disjoint_split(metadata, val_fraction=0.15, test_fraction=0.15, seed=1)
    splits_per_lesion = split.groupby("lesion_id")["split"].nunique()
    assert splits_per_lesion.max() == 1
    assert set(split["split"]) == {"train", "val", "test"}


def test_split_keeps_each_diagnosis_in_proportion(metadata: pd.DataFrame) -> None:
    split = lesion_disjoint_split(metadata, val_fraction=0.15, test_fraction=0.15, seed=1)
    lesions = split.drop_duplicates("lesion_id")
    shares = lesions.groupby("dx")["split"].apply(lambda s: (s == "test").mean())
    assert shares.between(0.10, 0.20).all(), shares


def test_same_seed_same_split_other_seed_other_split(metadata: pd.DataFrame) -> None:
    a = lesion_disjoint_split(metadata, val_fraction=0.15, test_fraction=0.15, seed=7)
    b = lesion_disjoint_split(metadata, val_fraction=0.15, test_fraction=0.15, seed=7)
    c = lesion_disjoint_split(metadata, val_fraction=0.15, test_fraction=0.15, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


def test_subset_keeps_every_diagnosis(metadata: pd.DataFrame) -> None:
    subset = stratified_subset(metadata, 70, seed=0)
    assert len(subset) == 70
    assert subset["dx"].value_counts().to_dict() == dict.fromkeys(CLASSES, 10)


def test_a_metadata_file_with_an_unknown_diagnosis_is_refused(tmp_path: Path) -> None:
    pd.DataFrame({"image_id": ["a"], "lesion_id": ["l"], "dx": ["psoriasis"]}).to_csv(
        tmp_path / "metadata.csv", index=False
    )
    with pytest.raises(ValueError, match="psoriasis"):
        load_metadata(tmp_path)
