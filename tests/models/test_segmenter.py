"""The learned lesion segmenter: it builds, outlines a photo at the photo's own size, learns from
real outlines, writes a versioned file, and the shipped file outlines real held-out lesions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from models.network import offline_imagenet_state_dict
from models.segmenter import (
    CARD_FILE,
    SHIPPED_DIR,
    WEIGHTS_FILE,
    Segmenter,
    build_segmenter,
    iou_and_dice,
    segment,
    to_input,
)
from training.config import TrainConfig
from training.data import config_split, load_metadata
from training.segmenter import (
    DiceBCELoss,
    SegmenterConfig,
    _read_pair,
    load_sources,
    segmenter_split,
    train_segmenter,
)


@pytest.fixture(scope="module")
def extra_dir(dataset_dir: Path) -> Path | None:
    path = dataset_dir.parent / "ham-extra"
    return path if (path / "metadata.csv").is_file() else None


@pytest.fixture(scope="module")
def split(dataset_dir: Path, extra_dir: Path | None) -> pd.DataFrame:
    return segmenter_split(load_metadata(dataset_dir), load_sources(dataset_dir, extra_dir))


def test_the_network_outlines_a_photo_at_the_photos_own_size() -> None:
    segmenter = Segmenter(build_segmenter(pretrained=False), version="untrained", size=64)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 203, 3), np.uint8))
    result = segmenter.segment(photo)
    assert result.mask.shape == (150, 203)
    assert result.mask.dtype == bool
    assert result.probability.shape == (64, 64)
    assert result.version == "untrained"


def test_the_encoder_starts_from_the_offline_imagenet_weights() -> None:
    network = build_segmenter(pretrained=True)
    imagenet = offline_imagenet_state_dict("efficientnet_lite0")
    encoder = network.encoder.state_dict()
    assert torch.equal(encoder["model.conv_stem.weight"], imagenet["conv_stem.weight"])
    last = next(reversed(encoder))
    assert torch.equal(encoder[last], imagenet[last.removeprefix("model.")])


def test_no_lesion_spans_two_splits_and_the_classifiers_test_lesions_are_never_trained_on(
    dataset_dir: Path, split: pd.DataFrame
) -> None:
    assert split["split"].notna().all()
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()
    classifier = config_split(load_metadata(dataset_dir), TrainConfig())
    classifier_test = set(classifier.loc[classifier["split"] == "test", "lesion_id"])
    trained_on = set(split.loc[split["split"] == "train", "lesion_id"])
    assert not classifier_test & trained_on
    shares = split.drop_duplicates("lesion_id")["split"].value_counts(normalize=True)
    assert 0.12 < shares["test"] < 0.18


def test_a_few_steps_on_real_outlines_lower_the_loss(split: pd.DataFrame) -> None:
    torch.manual_seed(0)
    rows = split[split["split"] == "train"].sort_values("image_id").head(6)
    pairs = [
        _read_pair(i, m, 64) for i, m in zip(rows["image_path"], rows["mask_path"], strict=True)
    ]
    x = torch.cat([to_input(rgb, 64) for rgb, _ in pairs])
    y = torch.from_numpy(np.stack([m[None] for _, m in pairs]).astype(np.float32))
    network = build_segmenter(pretrained=True).train()
    optimiser = torch.optim.AdamW(network.parameters(), lr=2e-3)
    loss_fn = DiceBCELoss()
    losses = []
    for _ in range(8):
        loss = loss_fn(network(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_a_tiny_run_writes_a_loadable_file_whose_version_is_its_hash(
    dataset_dir: Path, extra_dir: Path | None, tmp_path: Path
) -> None:
    config = SegmenterConfig(epochs=1, image_size=64, batch_size=4, limit=4, threads=1)
    result = train_segmenter(dataset_dir, extra_dir, tmp_path, config, evaluate_test=False)
    weights = tmp_path / WEIGHTS_FILE
    version = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    loaded = Segmenter.load(tmp_path)
    assert loaded.version == result.card["version"] == version
    assert loaded.size == 64
    assert loaded.card["split"]["training_lesions_used"] == 4
    assert loaded.segment(np.zeros((40, 30, 3), np.uint8)).mask.shape == (40, 30)


def test_a_file_that_does_not_match_its_card_is_refused(tmp_path: Path) -> None:
    for name in (WEIGHTS_FILE, CARD_FILE):
        (tmp_path / name).write_bytes((SHIPPED_DIR / name).read_bytes())
    (tmp_path / WEIGHTS_FILE).write_bytes((tmp_path / WEIGHTS_FILE).read_bytes() + b" ")
    with pytest.raises(ValueError, match="card says"):
        Segmenter.load(tmp_path)


def test_the_shipped_segmenter_outlines_held_out_derm_dev_lesions(split: pd.DataFrame) -> None:
    """Twelve held-out photos (the first by image id): near the card's test figure (mean IoU
    0.83 over all 898 derm-dev test photos), and none lost (some outlines are loose: the
    first of these scores 0.60 against its mask)."""
    held_out = split[(split["split"] == "test") & (split["source"] == "derm-dev")]
    ious = []
    for row in held_out.sort_values("image_id").head(12).itertuples():
        rgb, truth = _read_pair(row.image_path, row.mask_path, None)
        mask, version = segment(Image.fromarray(rgb))
        assert mask.shape == truth.shape
        assert version == Segmenter.load().version
        ious.append(iou_and_dice(mask, truth.astype(bool))[0])
    assert np.mean(ious) > 0.75, ious
    assert min(ious) > 0.5, ious


def test_iou_and_dice_of_known_masks() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2], b[1:3] = True, True
    assert iou_and_dice(a, b) == pytest.approx((4 / 12, 8 / 16))
    assert iou_and_dice(a & False, b & False) == (1.0, 1.0)
