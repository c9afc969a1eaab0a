"""A tiny real run, end to end: train, register, promote, score a folder, ship, bootstrap.

Everything is real (derm-dev images, timm network, albumentations, a SQLite MLflow store); only
the sizes are small: 84 images, one epoch, 64 px. Its figures mean nothing; its plumbing must hold.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from serving.cli import main
from serving.settings import get_settings
from tests.conftest import TinyRun
from training.bootstrap import current_champion, register_shipped_model
from training.evaluate import evaluate_model_uri
from training.export import load_model_dir
from training.registry import GatePolicy, open_client, promote

NAME = "dermtriage-classifier"


def test_a_run_logs_what_an_auditor_needs(tiny_run: TinyRun) -> None:
    client = open_client(tiny_run.tracking_uri)
    run = client.get_run(tiny_run.result.run_id)
    assert run.data.params["backbone"] == "efficientnet_lite0"
    assert "val_malignant_auroc" in run.data.metrics
    assert "test_malignant_auroc" in run.data.metrics
    assert run.data.tags["trained_by"] == "test-data-scientist"
    assert run.data.tags["git_commit"]
    assert run.inputs.dataset_inputs[0].dataset.digest == run.data.tags["dataset_digest"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/roc.png", "evaluation/calibration.png"} <= artifacts
    assert {"evaluation/confusion_matrix.png", "evaluation/subgroups.csv"} <= artifacts
    assert tiny_run.result.registered_version == "1"


def test_the_split_is_saved_and_lesion_disjoint(tiny_run: TinyRun) -> None:
    from training.tracking import load_split

    split = load_split(tiny_run.result.run_id, tiny_run.tracking_uri)
    assert split.groupby("lesion_id")["split"].nunique().max() == 1


def test_promotion_then_scoring_a_folder_with_the_champion(
    tiny_run: TinyRun, tmp_path: Path, derm_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(tiny_run.tracking_uri)

    def evaluate(uri: str) -> dict[str, float]:
        return evaluate_model_uri(
            uri,
            tracking_uri=tiny_run.tracking_uri,
            dataset_dir=tiny_run.dataset_dir,
            split_of_run=tiny_run.result.run_id,
        )

    record = promote(
        client,
        NAME,
        "1",
        user="dr-senior",
        reason="first model",
        evaluate=evaluate,
        policy=GatePolicy(),
    )
    assert record.user == "dr-senior"
    assert current_champion(client, NAME) == "1"

    folder = tmp_path / "inbox"
    folder.mkdir()
    for path in derm_images[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "letter.jpg").write_text("Dear colleague, this is not a photo.")
    out = tmp_path / "scores.csv"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_run.tracking_uri)
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        assert main(["score", str(folder), "--out", str(out), "--device", "cpu"]) == 0
    finally:
        get_settings.cache_clear()
    rows = {row["image_id"]: row for row in csv.DictReader(out.open())}
    assert set(rows) == {p.stem for p in derm_images[:3]} | {"letter"}
    good = rows[derm_images[0].stem]
    probabilities = [
        float(good[f"p_{c}"]) for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    ]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert float(good["p_malignant"]) == pytest.approx(
        float(good["p_akiec"]) + float(good["p_bcc"]) + float(good["p_mel"]), abs=1e-5
    )
    assert good["model_version"] == f"{NAME}/1"
    assert rows["letter"]["error"]
    assert rows["letter"]["quality_problems"] == "unreadable_file"
    assert rows["letter"]["p_malignant"] == ""


def test_a_shipped_folder_reloads_exactly(tiny_run: TinyRun) -> None:
    model, metadata = load_model_dir(tiny_run.model_dir)
    original = tiny_run.result.model.state_dict()
    for key, value in model.state_dict().items():
        assert value.equal(original[key].cpu()), key
    assert metadata["test_metrics"]["n"] > 0


def test_a_fresh_store_makes_the_shipped_model_its_champion_once(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    kwargs = dict(
        tracking_uri=tracking_uri,
        registered_model_name=NAME,
        artifact_root=(tmp_path / "artifacts").as_uri(),
        dataset_dir=tiny_run.dataset_dir,
        experiment_name="bootstrap-test",
    )
    assert register_shipped_model(tiny_run.model_dir, **kwargs) == "1"
    assert register_shipped_model(tiny_run.model_dir, **kwargs) == "1"  # idempotent
    client = open_client(tracking_uri)
    version = client.get_model_version(NAME, "1")
    assert version.tags["promoted_by"] == "dermtriage-bootstrap"
