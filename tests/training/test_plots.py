"""Evaluation plots: real PNG files showing what they claim, drawn without pyplot global state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from models.network import CLASSES
from training.plots import (
    calibration_figure,
    confusion_figure,
    roc_figure,
    save_evaluation_plots,
)


def figure_texts(figure: Figure) -> str:
    """Every piece of text drawn on the figure (titles, labels, annotations, legends)."""
    return "\n".join(t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text")))


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    """200 cases over the seven classes; the true class gets most of the probability, noisily."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, len(CLASSES), size=200)
    logits = rng.normal(size=(200, len(CLASSES))) + 2.0 * np.eye(len(CLASSES))[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_save_evaluation_plots_writes_three_real_pngs(
    tmp_path: Path, predictions: tuple[np.ndarray, np.ndarray]
) -> None:
    y, probs = predictions
    written = save_evaluation_plots(y, probs, CLASSES, tmp_path / "plots")
    assert set(written) == {"roc", "calibration", "confusion_matrix"}
    assert {p.name for p in written.values()} == {
        "roc.png",
        "calibration.png",
        "confusion_matrix.png",
    }
    for path in written.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 15_000 < path.stat().st_size < 1_000_000
        with Image.open(path) as image:
            width, height = image.size
            assert 400 <= width <= 2000 and 400 <= height <= 2000
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
        assert pixels.std() > 10  # something is drawn, not a blank canvas


def test_roc_figure_reports_auroc_and_operating_points() -> None:
    y = np.array([0, 0, 1, 1])
    figure = roc_figure(y, np.array([0.1, 0.4, 0.35, 0.8]))
    text = figure_texts(figure)
    assert "AUROC 0.750" in text
    assert "@ 95% spec" in text and "@ 95% sens" in text
    assert "2 malignant, 2 benign" in text


def test_roc_figure_with_one_outcome_says_it_is_undefined() -> None:
    figure = roc_figure(np.zeros(5, dtype=int), np.linspace(0, 1, 5))
    assert "ROC undefined" in figure_texts(figure)


def test_calibration_figure_shows_ece_and_bin_counts() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    text = figure_texts(calibration_figure(y, p, n_bins=10))
    assert "ECE 0.100" in text
    assert "7 cases" in text
    lines = text.splitlines()
    assert "3" in lines and "4" in lines  # the two non-empty bins are annotated with their counts


def test_confusion_figure_is_normalised_per_true_class_with_counts() -> None:
    y_true = np.array([4, 4, 4, 4, 5, 5])
    y_pred = np.array([4, 4, 4, 5, 5, 5])
    text = figure_texts(confusion_figure(y_true, y_pred, CLASSES))
    assert "0.75\n(3)" in text  # three of four melanomas called melanoma
    assert "0.25\n(1)" in text
    assert "1.00\n(2)" in text
    assert "mel (4)" in text and "nv (2)" in text
    assert "n=0" in text  # classes with no case say so rather than showing zeros


def test_plotting_leaves_no_pyplot_figures_behind(
    tmp_path: Path, predictions: tuple[np.ndarray, np.ndarray]
) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    y, probs = predictions
    save_evaluation_plots(y, probs, CLASSES, tmp_path)
    assert plt.get_fignums() == before
