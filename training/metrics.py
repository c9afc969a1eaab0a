"""Evaluation figures for the malignancy classifier: pure functions of labels and probabilities.

Everything here takes numpy arrays (and, for subgroups, a metadata ``DataFrame``) and returns
numbers or tables; nothing reads files, MLflow or settings. The same functions score a training run,
a promotion gate and the auditor pages, so the figures an auditor sees are the ones the gates used.

Conventions, so that every caller reads the numbers the same way:

- ``y_true`` holds class indices into ``classes`` (default ``models.network.CLASSES``); ``probs`` is
  an ``(N, C)`` array of calibrated class probabilities in the same order.
- The malignant probability of a case is the sum of the probabilities of ``MALIGNANT_CLASSES``
  (akiec + bcc + mel): this is the score that sorts the dermatologists' worklist.
- A figure that is undefined for the data at hand (an AUROC with a single class present, a recall
  for an absent class) is ``nan``, never a made-up 0 or 1, so that tables show the gap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from models.network import CLASSES, MALIGNANT_CLASSES

# One age cut for test and live figures; and the product's operating point (the worklist's high
# tier, pipeline.priority.TIER_THRESHOLDS), registered so the live sensitivity alert compares
# like with like.
from pipeline.real_world import AGE_BANDS, OPERATING_POINT, UNKNOWN, age_band

logger = logging.getLogger(__name__)

# Absolute slack when comparing a specificity or sensitivity read off the ROC curve with its target:
# 1 - 0.05 is not exactly 0.95 in binary floating point.
_RATE_EPS = 1e-9

DEFAULT_SUBGROUP_COLUMNS: tuple[str, ...] = ("sex", "age_band", "localization", "dx_type")
SUBGROUP_METRICS: tuple[str, ...] = (
    "malignant_auroc",
    "sens_at_95_spec",
    "spec_at_95_sens",
    "balanced_accuracy",
    "ece_malignant",
)


def _as_binary(y: Any, name: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.int64)


def _as_scores(p: Any, n: int, name: str = "p") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def _both_classes_present(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


def malignant_auroc(y_malignant: Any, p_malignant: Any) -> float:
    """Area under the ROC curve of the malignant score; ``nan`` unless both outcomes occur.

    It is the probability that a random malignant case scores above a random benign one (ties count
    one half), i.e. how well the score orders the worklist regardless of any threshold.
    """
    y = _as_binary(y_malignant, "y_malignant")
    p = _as_scores(p_malignant, len(y), "p_malignant")
    if not _both_classes_present(y):
        return math.nan
    return float(roc_auc_score(y, p))


def _roc(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(false positive rates, true positive rates) at every distinct threshold, or None."""
    y_arr = _as_binary(y)
    p_arr = _as_scores(p, len(y_arr))
    if not _both_classes_present(y_arr):
        return None
    fpr, tpr, _ = roc_curve(y_arr, p_arr, drop_intermediate=False)
    return fpr, tpr


def rates_at_threshold(y: Any, p: Any, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of calling a case positive when ``p >= threshold``; each
    ``nan`` when its denominator is empty (no positive, no negative case)."""
    y_arr = _as_binary(y)
    p_arr = _as_scores(p, y_arr.size)
    called = p_arr >= threshold
    positives, negatives = y_arr == 1, y_arr == 0
    sensitivity = float(called[positives].mean()) if positives.any() else math.nan
    specificity = float((~called[negatives]).mean()) if negatives.any() else math.nan
    return sensitivity, specificity


def sensitivity_at_specificity(y: Any, p: Any, specificity: float = 0.95) -> float:
    """The best sensitivity reachable while keeping specificity at least ``specificity``.

    Exact definition: over every threshold ``t`` of the empirical ROC curve (a case is called
    positive when ``p >= t``, including ``t = +inf`` where nothing is positive), keep the thresholds
    whose specificity ``1 - FPR`` is ``>= specificity`` and return the largest sensitivity (TPR)
    among them. No interpolation between ROC points: the value is one a real threshold achieves.
    ``nan`` unless both outcomes occur.
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError("specificity must lie in [0, 1]")
    roc = _roc(y, p)
    if roc is None:
        return math.nan
    fpr, tpr = roc
    feasible = (1.0 - fpr) >= specificity - _RATE_EPS
    return float(tpr[feasible].max())


def specificity_at_sensitivity(y: Any, p: Any, sensitivity: float = 0.95) -> float:
    """The best specificity reachable while keeping sensitivity at least ``sensitivity``.

    The mirror of :func:`sensitivity_at_specificity`: over every threshold of the empirical ROC
    curve (including the one calling every case positive), keep those with TPR ``>= sensitivity``
    and return the largest ``1 - FPR`` among them. This answers "if we must miss at most 5% of
    cancers, what share of benign cases can we keep off the urgent list?". ``nan`` unless both
    outcomes occur.
    """
    if not 0.0 <= sensitivity <= 1.0:
        raise ValueError("sensitivity must lie in [0, 1]")
    roc = _roc(y, p)
    if roc is None:
        return math.nan
    fpr, tpr = roc
    feasible = tpr >= sensitivity - _RATE_EPS
    return float((1.0 - fpr[feasible]).max())


def per_class_recall(
    y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES
) -> dict[str, float]:
    """Recall of each class (share of its cases predicted as it); ``nan`` for an absent class."""
    y_t = np.asarray(y_true, dtype=np.int64)
    y_p = np.asarray(y_pred, dtype=np.int64)
    if y_t.shape != y_p.shape or y_t.ndim != 1:
        raise ValueError("y_true and y_pred must be one-dimensional arrays of the same length")
    recalls: dict[str, float] = {}
    for index, name in enumerate(classes):
        members = y_t == index
        count = int(members.sum())
        recalls[name] = float((y_p[members] == index).sum() / count) if count else math.nan
    return recalls


def balanced_accuracy(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's definition).

    On a data set where 72% of lesions are naevi, plain accuracy rewards calling everything a
    naevus; balanced accuracy gives each diagnosis the same weight. ``nan`` for an empty input.
    """
    y_t = np.asarray(y_true, dtype=np.int64)
    if y_t.size == 0:
        return math.nan
    size = n_classes if n_classes is not None else int(max(y_t.max(), np.max(y_pred)) + 1)
    recalls = per_class_recall(y_t, y_pred, classes=[str(i) for i in range(size)])
    present = [r for r in recalls.values() if not math.isnan(r)]
    return float(np.mean(present))


def calibration_bins(y_binary: Any, p: Any, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin counts, mean confidence and observed frequency over ``n_bins`` equal-width bins.

    Bin ``k`` covers ``(k/n_bins, (k+1)/n_bins]``; the first also takes ``p = 0``. Empty bins are
    kept (count 0, NaN means) so that a reliability diagram shows where there is no data.
    Columns: ``lower``, ``upper``, ``count``, ``confidence`` (mean ``p``), ``frequency`` (mean
    ``y``).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    y = _as_binary(y_binary, "y_binary")
    probs = _as_scores(p, len(y))
    if ((probs < 0) | (probs > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.digitize(probs, edges[1:-1], right=True)
    counts = np.bincount(index, minlength=n_bins)
    sum_p = np.bincount(index, weights=probs, minlength=n_bins)
    sum_y = np.bincount(index, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, sum_p / counts, np.nan)
        frequency = np.where(counts > 0, sum_y / counts, np.nan)
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": counts.astype(np.int64),
            "confidence": confidence,
            "frequency": frequency,
        }
    )


def expected_calibration_error(y_binary: Any, p: Any, n_bins: int = 15) -> float:
    """ECE of probabilities ``p`` for binary outcomes ``y_binary`` (Naeini et al. 2015, Guo 2017).

    ``sum_k (n_k / N) * |mean(y in bin k) - mean(p in bin k)|`` over :func:`calibration_bins`.
    0 means a score of 0.3 is malignant 30% of the time; ``nan`` for an empty input.
    """
    bins = calibration_bins(y_binary, p, n_bins)
    total = int(bins["count"].sum())
    if total == 0:
        return math.nan
    filled = bins[bins["count"] > 0]
    gaps = (filled["frequency"] - filled["confidence"]).abs()
    return float((filled["count"] * gaps).sum() / total)


def top_label_ece(y_true: Any, probs: Any, n_bins: int = 15) -> float:
    """Multiclass ECE of the top label: is the model right 80% of the time when it says 0.8?

    The confidence of a case is its largest class probability and the outcome is whether that class
    is the true one; then :func:`expected_calibration_error` over those pairs.
    """
    p = np.asarray(probs, dtype=np.float64)
    y_t = np.asarray(y_true, dtype=np.int64)
    if p.ndim != 2 or len(p) != len(y_t):
        raise ValueError("expected probs of shape (N, C) and y_true of shape (N,)")
    if len(y_t) == 0:
        return math.nan
    correct = (p.argmax(axis=1) == y_t).astype(np.int64)
    return expected_calibration_error(correct, p.max(axis=1), n_bins)


def malignant_scores(
    y_true: Any,
    probs: Any,
    classes: Sequence[str] = CLASSES,
    malignant_classes: Sequence[str] = MALIGNANT_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """(``y_malignant`` 0/1, ``p_malignant``) from class indices and class probabilities."""
    y_t, p = _check_multiclass(y_true, probs, classes)
    indices = [list(classes).index(name) for name in malignant_classes]
    y_malignant = np.isin(y_t, indices).astype(np.int64)
    p_malignant = np.clip(p[:, indices].sum(axis=1), 0.0, 1.0)
    return y_malignant, p_malignant


def _check_multiclass(
    y_true: Any, probs: Any, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    y_t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y_t.ndim != 1 or p.ndim != 2 or len(y_t) != len(p):
        raise ValueError(f"expected y_true (N,) and probs (N, C); got {y_t.shape} and {p.shape}")
    if p.shape[1] != len(classes):
        raise ValueError(f"probs has {p.shape[1]} columns for {len(classes)} classes")
    if y_t.size and (y_t.min() < 0 or y_t.max() >= len(classes)):
        raise ValueError("y_true holds an index outside the class list")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs must be finite and non-negative")
    if p.size and not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("each row of probs must sum to 1 (pass softmax outputs, not logits)")
    return y_t, p


def _decisions(probs: np.ndarray, predicted: Any) -> np.ndarray:
    """The class decided for each case: ``predicted`` when given, else the most probable class."""
    if predicted is None:
        return probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    decided = np.asarray(predicted, dtype=np.int64)
    if decided.shape != (len(probs),):
        raise ValueError(f"predicted must have shape ({len(probs)},), got {decided.shape}")
    if decided.size and (decided.min() < 0 or decided.max() >= probs.shape[1]):
        raise ValueError("predicted holds an index outside the class list")
    return decided


def evaluate_predictions(
    y_true: Any,
    probs: Any,
    classes: Sequence[str] = CLASSES,
    malignant_classes: Sequence[str] = MALIGNANT_CLASSES,
    n_bins: int = 15,
    *,
    predicted: Any = None,
) -> dict[str, float]:
    """Every headline figure of a model on one split, as a flat ``{name: float}`` dict.

    Keys: ``malignant_auroc``, ``sens_at_95_spec``, ``spec_at_95_sens``, ``balanced_accuracy``,
    ``ece_malignant``, ``ece_top_label``, ``sens_at_operating_point`` and
    ``spec_at_operating_point`` (calling malignant at the product's operating point, ``p >=
    0.40``: the figure the live sensitivity alert of ``pipeline.real_world`` compares with),
    ``recall_<class>`` for each class, ``n`` and
    ``n_malignant``. Flat and float so that it goes straight into ``mlflow.log_metrics`` and into
    registry tags.

    ``predicted`` holds the class decision of each case when the product uses a decision rule
    other than the most probable class (e.g. one that corrects for class priors); balanced accuracy
    and recalls are computed on it. The default is ``argmax(probs)``. The top-label ECE always
    reads the most probable class, since it judges the probabilities themselves.
    """
    y_t, p = _check_multiclass(y_true, probs, classes)
    y_mal, p_mal = malignant_scores(y_t, p, classes, malignant_classes)
    y_pred = _decisions(p, predicted)
    figures: dict[str, float] = {
        "malignant_auroc": malignant_auroc(y_mal, p_mal),
        "sens_at_95_spec": sensitivity_at_specificity(y_mal, p_mal, 0.95),
        "spec_at_95_sens": specificity_at_sensitivity(y_mal, p_mal, 0.95),
        "balanced_accuracy": balanced_accuracy(y_t, y_pred, len(classes)),
        "ece_malignant": expected_calibration_error(y_mal, p_mal, n_bins),
        "ece_top_label": top_label_ece(y_t, p, n_bins),
    }
    figures["sens_at_operating_point"], figures["spec_at_operating_point"] = rates_at_threshold(
        y_mal, p_mal, OPERATING_POINT
    )
    for name, recall in per_class_recall(y_t, y_pred, classes).items():
        figures[f"recall_{name}"] = recall
    figures["n"] = float(len(y_t))
    figures["n_malignant"] = float(y_mal.sum())
    return figures


def _subgroup_labels(metadata: pd.DataFrame, column: str) -> pd.Series:
    """The subgroup label of each row for ``column``; missing values become ``unknown``."""
    if column == "age_band" and "age_band" not in metadata.columns:
        return metadata["age"].map(age_band)
    values = metadata[column]
    labels = values.astype("string").str.strip().fillna(UNKNOWN)
    labels = labels.mask(labels == "", UNKNOWN)
    return labels.astype(object)


def _ordered_values(column: str, labels: pd.Series) -> list[str]:
    present = set(labels)
    if column == "age_band":
        return [band for band in AGE_BANDS if band in present]
    known = sorted(v for v in present if v != UNKNOWN)
    return known + ([UNKNOWN] if UNKNOWN in present else [])


def subgroup_table(
    y_true: Any,
    probs: Any,
    metadata: pd.DataFrame,
    classes: Sequence[str] = CLASSES,
    columns: Sequence[str] = DEFAULT_SUBGROUP_COLUMNS,
    min_n: int = 30,
    malignant_classes: Sequence[str] = MALIGNANT_CLASSES,
    *,
    predicted: Any = None,
) -> pd.DataFrame:
    """The headline figures within each subgroup, to spot a population the model serves badly.

    ``metadata`` is aligned row by row with ``y_true`` (its index is ignored). ``age_band`` is
    derived from an ``age`` column when the metadata has no such column; missing values form an
    ``unknown`` subgroup. The first row (``column == "overall"``) is the whole split, for
    comparison. Columns: ``column``, ``value``, ``n``, ``n_malignant``, the metrics of
    :data:`SUBGROUP_METRICS` (NaN where undefined, e.g. no malignant case in the subgroup) and
    ``small_sample`` (``n < min_n``: too few cases to read much into the figures). ``predicted``
    is the class decision of each case, as in :func:`evaluate_predictions`.
    """
    y_t, p = _check_multiclass(y_true, probs, classes)
    decided = _decisions(p, predicted)
    if len(metadata) != len(y_t):
        raise ValueError(f"metadata has {len(metadata)} rows for {len(y_t)} predictions")
    missing = [
        c
        for c in columns
        if c not in metadata.columns and not (c == "age_band" and "age" in metadata.columns)
    ]
    if missing:
        raise ValueError(f"metadata lacks subgroup columns {missing}")
    frame = metadata.reset_index(drop=True)

    def row(column: str, value: str, mask: np.ndarray) -> dict[str, Any]:
        figures = evaluate_predictions(
            y_t[mask], p[mask], classes, malignant_classes, predicted=decided[mask]
        )
        n = int(mask.sum())
        return {
            "column": column,
            "value": value,
            "n": n,
            "n_malignant": int(figures["n_malignant"]),
            **{name: figures[name] for name in SUBGROUP_METRICS},
            "small_sample": n < min_n,
        }

    rows = [row("overall", "all", np.ones(len(y_t), dtype=bool))]
    for column in columns:
        labels = _subgroup_labels(frame, column)
        for value in _ordered_values(column, labels):
            rows.append(row(column, value, (labels == value).to_numpy()))
    table = pd.DataFrame(rows)
    logger.debug("subgroup table: %d rows over %s", len(table), list(columns))
    return table
