"""Fixtures shared by the whole suite: the real derm-dev sample, system tools, fresh settings."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from serving.settings import PROJECT_ROOT, Settings
from training.config import load_config
from training.export import export_model_dir
from training.train import TrainResult, train

REQUIRE_SYSTEM_TOOLS = os.environ.get("DERMTRIAGE_REQUIRE_SYSTEM_TOOLS") == "1"

# The service precomputes the real-world figures in a background loop. In one test process many
# apps start and stop, each against a fresh MLflow store, and a loop touching a new store runs
# MLflow's Alembic migrations while another app runs ours: Alembic's context is process-global,
# so the two collide ("KeyError: 'script'"). Tests compute those figures directly instead (the
# loop is tested by reading stored results); servers they start inherit this too.
os.environ.setdefault("DERMTRIAGE_REAL_WORLD_REFRESH_SECONDS", "0")


def require_tool(found: bool, what: str) -> None:
    """Skip a test whose system tool is absent on a laptop; fail it in CI, where it must run."""
    if found:
        return
    if REQUIRE_SYSTEM_TOOLS:
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} not installed (scripts/system-test-deps.sh installs it)")


@pytest.fixture(autouse=True)
def _isolated_mlflow_uris() -> Iterator[None]:
    """Training points MLflow's process-wide URIs at its store; no test may inherit another's."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking, registry = tracking_utils._tracking_uri, registry_utils._registry_uri
    yield
    tracking_utils._tracking_uri, registry_utils._registry_uri = tracking, registry


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """The real derm-dev data set (read-only), located through the settings."""
    path = Settings().dataset_dir
    require_tool((path / "metadata.csv").is_file(), f"derm-dev data set at {path}")
    return path


@pytest.fixture(scope="session")
def derm_metadata(dataset_dir: Path) -> pd.DataFrame:
    return pd.read_csv(dataset_dir / "metadata.csv")


@pytest.fixture(scope="session")
def derm_images(dataset_dir: Path, derm_metadata: pd.DataFrame) -> list[Path]:
    """Twenty real dermoscopic images, a fixed sample spanning every diagnosis."""
    sample = derm_metadata.sort_values("image_id").groupby("dx", group_keys=False).head(3).head(20)
    return [dataset_dir / "images" / f"{image_id}.jpg" for image_id in sample["image_id"]]


@pytest.fixture(scope="session")
def clinical_holdout_photos(dataset_dir: Path) -> list[Path]:
    """Six real smartphone clinical photos (no dermatoscope) from ``clinical-phone``'s hold-out:
    rows the hand labels call ``clinical`` (a quarter of the folder is dermoscopic), which the
    modality check was never fitted on (``benchmarks/clinical_phone_labels.csv``)."""
    import csv

    folder = dataset_dir.parent / "clinical-phone" / "images"
    require_tool(folder.is_dir(), f"clinical-phone photos at {folder}")
    labels = Path(__file__).resolve().parent.parent / "benchmarks" / "clinical_phone_labels.csv"
    with labels.open(newline="") as handle:
        rows = [
            row["file"]
            for row in csv.DictReader(handle)
            if row["split"] == "holdout" and row["modality"] == "clinical"
        ]
    return [folder / name for name in sorted(rows)[:6]]


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's Chromium; Playwright drives it through ``executable_path`` (no browser download)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    require_tool(path is not None, "Debian's chromium")
    assert path is not None
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings whose every piece of state lives in a fresh temporary folder."""
    yield Settings(data_dir=tmp_path / "data", mlflow_tracking_uri=None, database_url=None)


@dataclass
class TinyRun:
    result: TrainResult
    tracking_uri: str
    model_dir: Path
    dataset_dir: Path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path) -> TinyRun:
    """One real tiny training run (84 images, one epoch, 64 px), registered as version 1.

    Shared by every test that needs a real trained model in a real MLflow store; train once.
    """
    root = tmp_path_factory.mktemp("tiny-run")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    config = load_config(PROJECT_ROOT / "configs" / "tiny.yaml")
    result = train(
        config,
        dataset_dir=dataset_dir,
        work_dir=root / "work",
        tracking_uri=tracking_uri,
        artifact_root=(root / "artifacts").as_uri(),
        registered_model_name="dermtriage-classifier",
        user="test-data-scientist",
    )
    mlflow.set_tracking_uri(tracking_uri)
    model_dir = export_model_dir(result, config, root / "shipped", dataset_dir=dataset_dir)
    return TinyRun(result, tracking_uri, model_dir, dataset_dir)
