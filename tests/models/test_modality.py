"""The photo-modality check: which photos the classifier may read, whatever their size or JPEG.

Real photos: derm-dev test-split lesions (never fitted on) and clinical-phone holdout photos
(never fitted on nor used for a threshold), taken by their hand label
(``benchmarks/clinical_phone_labels.csv`` ``modality``: 107 phone photos are dermoscopic);
non-skin pictures from the benchmark's generators, a family the check was not fitted on (it is
fitted on :mod:`training.modality_model`'s own).
"""

from __future__ import annotations

import hashlib
import io
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks.synthetic import NON_SKIN
from models.modality import (
    DOMAINS,
    ModalityCheck,
    ModalityModel,
    load_modality_model,
    reason_text,
    version_of,
)
from training.config import TrainConfig
from training.data import config_split, load_metadata
from training.modality_model import (
    LABELS_FILE,
    FeatureSets,
    clinical_photos,
    clinical_split,
    fit_from_features,
)


@pytest.fixture(scope="module")
def check() -> ModalityCheck:
    return ModalityCheck()


@pytest.fixture(scope="module")
def test_split_photos(dataset_dir: Path) -> list[Path]:
    """Eight derm-dev photos of lesions in the classifier's test split, one per lesion."""
    metadata = load_metadata(dataset_dir)
    split = config_split(metadata, TrainConfig())
    test = split[split["split"] == "test"].drop_duplicates("lesion_id").sort_values("image_id")
    chosen = pd.concat([test.iloc[::97], test.iloc[5::131]]).head(8)
    return [dataset_dir / "images" / f"{i}.jpg" for i in chosen["image_id"]]


def labelled_holdout(dataset_dir: Path, modality: str, n: int = 6) -> list[Path]:
    """The first ``n`` clinical-phone holdout photos hand-labelled ``modality``."""
    folder = dataset_dir.parent / "clinical-phone"
    if not (folder / "images.csv").is_file():
        pytest.skip(f"no clinical-phone photos at {folder}")
    photos = clinical_photos(folder)
    chosen = photos[(photos["split"] == "holdout") & (photos["modality"] == modality)]
    return [Path(p) for p in chosen.sort_values("file")["path"].head(n)]


@pytest.fixture(scope="module")
def labelled_clinical_holdout(dataset_dir: Path) -> list[Path]:
    return labelled_holdout(dataset_dir, "clinical")


def reencoded(path: Path, short_side: int, quality: int = 85) -> Image.Image:
    with Image.open(path) as img:
        img = img.convert("RGB")
        factor = short_side / min(img.size)
        img = img.resize((round(img.width * factor), round(img.height * factor)))
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def domains(check: ModalityCheck, images: list[Image.Image]) -> list[str]:
    return [v.domain for v in check.check(images)]


def test_held_out_dermoscopy_reads_dermoscopic_even_resized_and_reencoded(
    check: ModalityCheck, test_split_photos: list[Path]
) -> None:
    originals = [Image.open(p).convert("RGB") for p in test_split_photos]
    assert domains(check, originals) == ["dermoscopic"] * len(originals)
    at_384 = [reencoded(p, 384) for p in test_split_photos]
    assert domains(check, at_384) == ["dermoscopic"] * len(at_384)


def test_clinical_phone_holdout_photos_labelled_clinical_read_clinical_at_any_size(
    check: ModalityCheck, labelled_clinical_holdout: list[Path]
) -> None:
    for side in (None, 224, 600):
        images = [
            Image.open(p).convert("RGB") if side is None else reencoded(p, side)
            for p in labelled_clinical_holdout
        ]
        verdicts = check.check(images)
        assert [v.domain for v in verdicts] == ["clinical"] * len(images), side
        assert all(not v.applicable and v.reason == "clinical_photo" for v in verdicts)


def test_phone_photos_take_their_class_from_the_hand_labels(dataset_dir: Path) -> None:
    photos = clinical_photos(dataset_dir.parent / "clinical-phone")
    counts = photos.groupby(["split", "modality"]).size().to_dict()
    assert counts == {
        ("fit", "clinical"): 228,
        ("fit", "dermoscopic"): 74,
        ("fit", "unsure"): 1,
        ("holdout", "clinical"): 120,
        ("holdout", "dermoscopic"): 33,
    }
    labels = pd.read_csv(LABELS_FILE).set_index("file")["modality"]
    assert (photos.set_index("file")["modality"] == labels[photos["file"]]).all()


def test_pictures_that_are_not_skin_are_never_read_as_dermoscopy(check: ModalityCheck) -> None:
    rng = np.random.default_rng(5)
    pictures = [
        Image.fromarray(make((480, 360), rng)) for make in NON_SKIN.values() for _ in range(2)
    ]
    assert "dermoscopic" not in domains(check, pictures)


def test_the_version_is_the_files_sha256_prefix_and_the_file_says_how_it_was_fitted() -> None:
    data = resources.files("models").joinpath("modality_model.json").read_bytes()
    model = load_modality_model()
    assert model.version == version_of(data) and model.version.startswith("sha256:")
    fit = json.loads(data)["fit"]
    assert fit["clinical_holdout_rule"] == "int(sha256(file_name)[:8], 16) % 10 < 3"
    # Fitted with the hand labels: phone photos labelled dermoscopic are dermoscopic.
    assert fit["phone_labels"].startswith("benchmarks/clinical_phone_labels.csv")
    assert fit["counts"]["clinical_fit_photos"] == 228
    assert fit["counts"]["phone_dermoscopic_fit_photos"] == 74
    assert fit["counts"]["clinical_holdout"] == 120
    # The shipped fit's own held-out figures (docs/inference.md).
    assert fit["figures"]["holdout_clinical"] >= 0.98
    assert fit["figures"]["test_dermoscopic"] >= 0.98
    assert fit["figures"]["holdout_phone_dermoscopic"] >= 0.9


def test_the_clinical_holdout_rule() -> None:
    names = [f"phone_{i:04d}.jpg" for i in range(1, 457)]
    held = [n for n in names if clinical_split(n) == "holdout"]
    assert 0.2 < len(held) / len(names) < 0.4
    # The rule, recomputed from its words in the brief.
    bucket = int(hashlib.sha256(b"phone_0001.jpg").hexdigest()[:8], 16) % 10
    assert clinical_split("phone_0001.jpg") == ("holdout" if bucket < 3 else "fit")


def test_a_fit_is_reproduced_exactly_from_its_seed() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 16))

    def cloud(label: int, n: int) -> np.ndarray:
        return centres[label] + rng.normal(0, 1, (n, 16))

    x = np.concatenate([cloud(0, 60), cloud(1, 60), cloud(2, 60)])
    sets = FeatureSets(
        fit_x=x,
        fit_y=np.repeat([0, 1, 2], 60),
        fit_groups=np.arange(180),
        derm_train_original=cloud(0, 80),
        derm_val=cloud(0, 40),
        derm_test=cloud(0, 30),
        derm_test_384=cloud(0, 10),
        clinical_holdout=cloud(1, 20),
        clinical_holdout_224=cloud(1, 20),
        clinical_holdout_600=cloud(1, 20),
        phone_dermoscopic_holdout=cloud(0, 10),
        other_holdout=cloud(2, 20),
        counts={},
        seconds=0.0,
    )

    def fitted() -> dict:
        model = fit_from_features(sets, seed=3).model
        out = model.to_json()
        out["fit"].pop("fitted_at")
        return out

    first, second = fitted(), fitted()
    assert first == second
    model = ModalityModel.from_json(first)
    assert [v.domain for v in model.verdicts(cloud(1, 5))] == ["clinical"] * 5
    far = model.verdicts(centres[0] + 25.0 * np.ones((1, 16)))[0]
    assert far.ood_distance > model.ood_threshold
    assert tuple(first["domains"]) == DOMAINS


def test_reasons_are_worded_in_french_by_default_and_english() -> None:
    assert reason_text("clinical_photo") == (
        "IA non applicable : photo clinique, le modèle lit des images dermoscopiques"
    )
    assert reason_text("clinical_photo", "en") == (
        "AI not applicable: clinical photo, the model reads dermoscopic images"
    )
