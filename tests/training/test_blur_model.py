"""Fitting the quality check's blur detector: its degradations are what they claim, and the
command writes a model file the quality check can use."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline.quality_blur import BlurModel, load_blur_model
from serving.cli import main
from serving.settings import get_settings
from training import blur_model as fitting


def _point_spread(make, size: int = 101, **kwargs) -> np.ndarray:
    """The response of ``make`` to one lit pixel on black, in linear light, normalised."""
    dot = np.zeros((size, size, 3), np.uint8)
    dot[size // 2, size // 2] = 255
    out = fitting._linear(make(dot, **kwargs))[..., 1].astype(np.float64)
    return out / out.sum()


def test_defocus_spreads_light_as_far_as_a_gaussian_of_the_stated_sigma() -> None:
    # 3 % of a 101 px frame is sigma 3.03 px per axis, from a disc of radius 6.06 px.
    psf = _point_spread(fitting.defocus, sigma_fraction=0.03, rng=np.random.default_rng(0))
    coords = np.arange(psf.shape[0]) - psf.shape[0] // 2
    sigma_x = math.sqrt(float((psf.sum(axis=0) * coords**2).sum()))

    expected = 0.03 * 101
    # The disc is softened by a Gaussian of 0.5-0.8 px, which adds in quadrature; its drawn,
    # anti-aliased rim adds a little more.
    assert expected <= sigma_x <= 1.1 * math.hypot(expected, 0.8)


def test_shake_smears_light_along_a_path_of_the_stated_length() -> None:
    psf = _point_spread(fitting.shake, length_fraction=0.2, rng=np.random.default_rng(3))
    ys, xs = np.nonzero(psf > psf.max() * 0.05)
    extent = math.hypot(xs.max() - xs.min(), ys.max() - ys.min())

    # A path of 20 px that may bend by up to 30 degrees spans between cos(15 deg) of it and it.
    assert 0.2 * 101 * 0.9 <= extent <= 0.2 * 101 + 3


def test_grain_has_the_stated_strength_on_mid_grey() -> None:
    grey = np.full((200, 200, 3), 128, np.uint8)
    noisy = fitting.grain(grey, 4.0, np.random.default_rng(5)).astype(np.float64)

    # sqrt(0.4 + 1.2 * 128 / 255) = 1.0: mid-grey gets the stated sigma.
    assert abs(float(noisy.std()) - 4.0) < 0.3


def test_the_command_fits_a_model_the_quality_check_can_load_and_logs_the_fit(
    tmp_path: Path,
    dataset_dir: Path,
    derm_metadata: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "blur_model.json"
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DERMTRIAGE_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    try:
        args = ["fit-blur-model", "--lesions", "24", "--seed", "3", "--out", str(out)]
        assert main(args) == 0
        tracking_uri = get_settings().tracking_uri
    finally:
        get_settings.cache_clear()

    model = load_blur_model(out)
    assert isinstance(model, BlurModel) and 0.0 < model.threshold < 1.0
    assert model.fit["lesions"] == 24 and model.fit["photos"] == 24 * 8
    fitted_images = derm_metadata["image_id"].isin(model.fit["image_ids"])
    assert set(derm_metadata.loc[fitted_images, "lesion_id"]) == set(model.fit["lesion_ids"])
    figures = model.fit["out_of_fold"]
    assert 0.0 <= figures["sharp_false_alarm"] <= 1.0
    assert 0.0 <= figures["blurred_detected"] <= 1.0
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then moved into place
    assert json.loads(out.read_text())["features"] == list(model.to_json()["features"])

    # The fit is tracked like a classifier's run: parameters, figures and the very file.
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(fitting.EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["lesions"] == "24"
    assert run.data.metrics["threshold"] == pytest.approx(model.threshold)
    logged = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "blur_model.json", str(tmp_path))
        ).read_text()
    )
    assert logged["threshold"] == pytest.approx(model.threshold)


def test_the_command_refuses_too_few_lesions_to_fit(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="at least 20"):
        main(["fit-blur-model", "--lesions", "5", "--out", str(tmp_path / "m.json")])


def test_a_fit_is_reproduced_exactly_from_its_seed(dataset_dir: Path) -> None:
    # The model file in git must be re-creatable: same lesions, same degradations, same weights.
    first = fitting.fit_blur_model(dataset_dir, lesions=20, seed=4).model.to_json()
    second = fitting.fit_blur_model(dataset_dir, lesions=20, seed=4).model.to_json()

    for data in (first, second):
        data["fit"].pop("fitted_at")
    assert first == second
