"""``dermtriage score`` on a fresh install: the shipped model, the intended use, clean errors."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.network import CLASSES
from serving.cli import main
from serving.settings import get_settings

COLUMNS = [
    "image_id",
    "p_malignant",
    *(f"p_{c}" for c in CLASSES),
    "predicted_class",
    "uncertainty",
    "domain",
    "ood",
    "quality_acceptable",
    "quality_problems",
    "model_version",
    "error",
]


@pytest.fixture
def fresh_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings on an empty data folder: no registry, no champion (``serve`` never ran)."""
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(tmp_path / "data"))
    for name in ("MLFLOW_TRACKING_URI", "DERMTRIAGE_MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture
def photos(tmp_path: Path, derm_images: list[Path], clinical_holdout_photos: list[Path]) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(derm_images[0], folder / "dermoscopic.jpg")
    shutil.copy(clinical_holdout_photos[0], folder / "clinical.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_an_empty_registry_scores_with_the_shipped_model_and_says_so_in_one_line(
    fresh_install: Path, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = fresh_install / "scores.csv"
    assert main(["score", str(photos), "--out", str(out)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "shipped model" in line]
    assert len(said) == 1 and "models/shipped" in said[0]
    with out.open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        rows = {row["image_id"]: row for row in reader}
    dermoscopic, clinical, notes = rows["dermoscopic"], rows["clinical"], rows["notes"]
    assert dermoscopic["domain"] == "dermoscopic" and dermoscopic["error"] == ""
    assert 0.0 <= float(dermoscopic["p_malignant"]) <= 1.0
    assert dermoscopic["model_version"].startswith("shipped:")
    assert clinical["domain"] == "clinical"
    assert all(clinical[c] == "" for c in ("p_malignant", "predicted_class", "uncertainty"))
    assert all(clinical[f"p_{c}"] == "" for c in CLASSES)
    assert clinical["error"].startswith(
        "clinical_photo: AI not applicable: clinical photo, the model reads dermoscopic images"
    )
    assert notes["domain"] == "" and notes["p_malignant"] == "" and notes["error"]


def test_a_wrong_model_is_a_one_line_error_not_a_traceback(
    fresh_install: Path, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = fresh_install / "scores.csv"
    code = main(["score", str(photos), "--out", str(out), "--model", "models:/no-such-model@x"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    ours = [line for line in err.splitlines() if line.startswith("dermtriage score")]
    assert len(ours) == 1 and ours[0].startswith("dermtriage score: cannot load model")
    assert "no-such-model" in ours[0] and "Traceback" not in err
