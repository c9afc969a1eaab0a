"""Training on several data folders and holding a whole clinic out.

All of HAM10000 is derm-dev plus ham-extra, and ham-extra holds other photos of derm-dev's
lesions: the split must stay lesion-disjoint over both, and must not move any derm-dev test
image into training (the shipped model is still compared with new ones on that test split).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.config import TrainConfig
from training.data import config_split, load_metadata

HAM_EXTRA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ham-extra"
SOURCES = ("rosendahl", "vidir_modern", "vidir_molemax", "vienna_dias")


@pytest.fixture(scope="module")
def both(dataset_dir: Path) -> pd.DataFrame:
    if not (HAM_EXTRA / "metadata.csv").is_file():
        pytest.skip("ham-extra is not beside the project")
    return load_metadata([dataset_dir, HAM_EXTRA])


def test_two_folders_stack_and_say_where_each_image_came_from(both: pd.DataFrame) -> None:
    assert len(both) == 5984 + 4031
    assert both["source_dir"].value_counts().to_dict() == {"derm-dev": 5984, "ham-extra": 4031}
    assert all(Path(p).is_file() for p in both["image_path"].sample(20, random_state=0))


def test_the_split_over_both_folders_keeps_each_lesion_in_one_split(both: pd.DataFrame) -> None:
    split = config_split(both, TrainConfig())
    assert split.groupby("lesion_id")["split"].nunique().max() == 1
    assert len(split) == len(both)


def test_adding_a_folder_never_moves_a_first_folder_image(
    dataset_dir: Path, both: pd.DataFrame
) -> None:
    alone = config_split(load_metadata(dataset_dir), TrainConfig()).set_index("image_id")["split"]
    together = config_split(both, TrainConfig()).set_index("image_id")["split"]
    assert (together.loc[alone.index].to_numpy() == alone.to_numpy()).all()
    shipped = pd.read_csv(Path(__file__).resolve().parents[2] / "models/shipped/split.csv")
    assert (together.loc[shipped["image_id"]].to_numpy() == shipped["split"].to_numpy()).all()


@pytest.mark.parametrize("source", SOURCES)
def test_a_held_out_source_is_the_whole_test_split_and_nothing_else(
    both: pd.DataFrame, source: str
) -> None:
    split = config_split(both, TrainConfig(holdout_source=source)).merge(
        both[["image_id", "dataset"]], on="image_id"
    )
    assert (split.loc[split["dataset"] == source, "split"] == "test").all()
    tested_lesions = set(split.loc[split["split"] == "test", "lesion_id"])
    trained = split[split["split"] != "test"]
    assert not tested_lesions & set(trained["lesion_id"])
    assert set(trained["split"]) == {"train", "val"}


def test_an_unknown_source_is_refused_with_the_known_ones(both: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="rosendahl"):
        config_split(both, TrainConfig(holdout_source="elsewhere"))


def test_one_image_in_two_folders_is_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pd.DataFrame({"image_id": ["x1"], "lesion_id": ["l1"], "dx": ["nv"]}).to_csv(
            tmp_path / name / "metadata.csv", index=False
        )
    with pytest.raises(ValueError, match="x1"):
        load_metadata([tmp_path / "a", tmp_path / "b"])


def test_one_lesion_with_two_diagnoses_across_folders_is_refused(tmp_path: Path) -> None:
    for name, image, dx in (("a", "x1", "nv"), ("b", "x2", "mel")):
        (tmp_path / name).mkdir()
        pd.DataFrame({"image_id": [image], "lesion_id": ["l1"], "dx": [dx]}).to_csv(
            tmp_path / name / "metadata.csv", index=False
        )
    with pytest.raises(ValueError, match="l1"):
        load_metadata([tmp_path / "a", tmp_path / "b"])
