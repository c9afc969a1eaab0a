"""Evaluation plots (ROC, reliability diagram, confusion matrix) as PNG files.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``:
no global figure registry, no GUI backend, no state leaking between a training run, a test and a
web request that draw at the same time. Every figure states its sample size, so that a reader
does not take a curve drawn from twelve cases for a fact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from models.network import CLASSES, MALIGNANT_CLASSES
from training.metrics import (
    calibration_bins,
    expected_calibration_error,
    malignant_auroc,
    malignant_scores,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)

logger = logging.getLogger(__name__)

PLOT_FILES: dict[str, str] = {
    "roc": "roc.png",
    "calibration": "calibration.png",
    "confusion_matrix": "confusion_matrix.png",
}
DPI = 120


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def roc_figure(y_malignant: Any, p_malignant: Any, *, title: str = "Malignant vs benign") -> Figure:
    """The ROC curve of the malignant score, with the two operating points the product reports.

    Marks sensitivity at 95% specificity and specificity at 95% sensitivity (see
    :mod:`training.metrics` for their exact definitions). With a single outcome present the curve
    is undefined and the figure says so instead of drawing one.
    """
    y = np.asarray(y_malignant, dtype=np.int64)
    p = np.asarray(p_malignant, dtype=np.float64)
    figure = _new_figure(5.5, 5.0)
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    auroc = malignant_auroc(y, p)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if np.isnan(auroc):
        ax.text(0.5, 0.5, "ROC undefined:\nneeds malignant and benign cases", ha="center")
    else:
        fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
        ax.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"AUROC {auroc:.3f}")
        sens = sensitivity_at_specificity(y, p, 0.95)
        spec = specificity_at_sensitivity(y, p, 0.95)
        # The ROC points that achieve them: the lowest FPR giving ``sens``, the highest TPR at
        # the FPR giving ``spec``.
        sens_fpr = fpr[np.isclose(tpr, sens)].min()
        spec_tpr = tpr[np.isclose(fpr, 1 - spec)].max()
        ax.scatter(
            [sens_fpr], [sens], color="tab:red", zorder=3, label=f"sens {sens:.2f} @ 95% spec"
        )
        ax.scatter(
            [1 - spec], [spec_tpr], color="tab:green", zorder=3, label=f"spec {spec:.2f} @ 95% sens"
        )
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="1 - specificity (benign cases flagged)",
        ylabel="sensitivity (malignant cases flagged)",
        title=f"{title}\n{n_pos} malignant, {n_neg} benign",
        aspect="equal",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return figure


def calibration_figure(
    y_binary: Any, p: Any, *, n_bins: int = 15, title: str = "Malignant probability"
) -> Figure:
    """Reliability diagram: observed malignant rate against predicted probability, per bin.

    The upper panel shows each non-empty bin's observed frequency against its mean predicted
    probability (on the diagonal means calibrated), annotated with its case count; the lower panel
    shows how many cases fall in each bin, because a badly calibrated bin of three cases matters
    less than one of three hundred.
    """
    bins = calibration_bins(y_binary, p, n_bins)
    ece = expected_calibration_error(y_binary, p, n_bins)
    figure = _new_figure(5.5, 6.5)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    filled = bins[bins["count"] > 0]
    widths = bins["upper"] - bins["lower"]
    top.bar(
        filled["lower"],
        filled["frequency"],
        width=widths[filled.index],
        align="edge",
        alpha=0.35,
        edgecolor="tab:blue",
        label="observed rate per bin",
    )
    top.plot(filled["confidence"], filled["frequency"], marker="o", color="tab:blue")
    for _, row in filled.iterrows():
        top.annotate(
            f"{int(row['count'])}",
            (row["confidence"], row["frequency"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize="x-small",
        )
    top.set(
        ylim=(0, 1.05),
        ylabel="observed malignant rate",
        title=f"{title}\nECE {ece:.3f}, {int(bins['count'].sum())} cases, {n_bins} bins",
    )
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(bins["lower"], bins["count"], width=widths, align="edge", color="tab:grey")
    bottom.set(xlim=(0, 1), xlabel="predicted probability", ylabel="cases")
    return figure


def confusion_figure(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> Figure:
    """Confusion matrix normalised per true class, with the raw count in every cell.

    Row ``i`` reads "of the lesions that are truly class i, which share did the model call each
    class"; the diagonal is the per-class recall. A class absent from ``y_true`` shows an empty
    row marked ``n=0``.
    """
    y_t = np.asarray(y_true, dtype=np.int64)
    y_p = np.asarray(y_pred, dtype=np.int64)
    size = len(classes)
    counts = np.bincount(y_t * size + y_p, minlength=size * size).reshape(size, size)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, counts / totals, np.nan)
    figure = _new_figure(1.0 + 0.85 * size, 0.6 + 0.8 * size)
    ax = figure.add_subplot()
    image = ax.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    for i in range(size):
        for j in range(size):
            if totals[i, 0] == 0:
                text, colour = ("n=0" if j == 0 else ""), "black"
            else:
                text = f"{shares[i, j]:.2f}\n({counts[i, j]})"
                colour = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize="x-small", color=colour)
    ax.set_xticks(range(size), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(size), labels=[f"{c} ({int(totals[i, 0])})" for i, c in enumerate(classes)])
    ax.set(xlabel="predicted", ylabel="true (cases)", title=f"Confusion matrix, {len(y_t)} cases")
    return figure


def save_evaluation_plots(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    out_dir: Path,
    *,
    predicted: Any = None,
    malignant_classes: Sequence[str] = MALIGNANT_CLASSES,
    n_bins: int = 15,
) -> dict[str, Path]:
    """Write ``roc.png``, ``calibration.png`` and ``confusion_matrix.png`` into ``out_dir``.

    ``predicted`` is the class decided for each case (default: the most probable class), as in
    :func:`training.metrics.evaluate_predictions`. Returns ``{"roc": path, "calibration": path,
    "confusion_matrix": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_mal, p_mal = malignant_scores(y_true, probs, classes, malignant_classes)
    p = np.asarray(probs, dtype=np.float64)
    decided = p.argmax(axis=1) if predicted is None else np.asarray(predicted, dtype=np.int64)
    figures = {
        "roc": roc_figure(y_mal, p_mal),
        "calibration": calibration_figure(y_mal, p_mal, n_bins=n_bins),
        "confusion_matrix": confusion_figure(y_true, decided, classes),
    }
    written: dict[str, Path] = {}
    for key, figure in figures.items():
        path = out_dir / PLOT_FILES[key]
        figure.savefig(path, dpi=DPI)
        written[key] = path
        logger.debug("wrote %s", path)
    return written
