"""Evaluating any registered model on a run's held-out test split, through the inference engine.

Promotion gates compare the candidate and the champion on the *same* cases: the candidate's test
split, read back from its MLflow run. Scoring goes through :class:`models.engine.InferenceEngine`,
the very code path that scores live cases, so a gate judges what will actually run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from models.engine import EngineConfig, InferenceEngine
from models.network import CLASSES
from models.predictor import Prediction, Predictor
from training import metrics
from training.data import load_metadata
from training.tracking import load_split

logger = logging.getLogger(__name__)


def predict_frame(engine: InferenceEngine, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and balanced decisions (N,) for the ``image_path`` rows of ``frame``."""
    paths = [Path(p) for p in frame["image_path"]]
    outcomes = dict(engine.predict_files(paths))
    failed = [p.name for p, r in outcomes.items() if not isinstance(r, Prediction)]
    if failed:
        raise RuntimeError(f"{len(failed)} test images could not be scored, e.g. {failed[:3]}")
    predictions = [outcomes[p] for p in paths]
    probs = np.array([[r.probabilities[c] for c in CLASSES] for r in predictions])
    decided = np.array([CLASSES.index(r.predicted_class) for r in predictions])
    return probs, decided


def evaluate_model_uri(
    model_uri: str,
    *,
    tracking_uri: str,
    dataset_dir: Path | Sequence[Path],
    split_of_run: str,
    split_name: str = "test",
    device: str = "auto",
) -> dict[str, float]:
    """Figures of ``model_uri`` on the ``split_name`` images of the run ``split_of_run``."""
    split = load_split(split_of_run, tracking_uri)
    metadata = load_metadata(dataset_dir)
    chosen = split.loc[split["split"] == split_name, ["image_id"]]
    frame = metadata.merge(chosen, on="image_id")
    if frame.empty:
        raise ValueError(f"run {split_of_run} has no {split_name} images in {dataset_dir}")
    predictor = Predictor.load(model_uri, tracking_uri=tracking_uri, device="cpu")
    engine = InferenceEngine(predictor, EngineConfig(device=device))
    try:
        probs, decided = predict_frame(engine, frame)
    finally:
        engine.close()
    figures = metrics.evaluate_predictions(
        frame["label"].to_numpy(), probs, CLASSES, predicted=decided
    )
    logger.info(
        "%s on %d %s images: AUROC %.3f",
        model_uri,
        len(frame),
        split_name,
        figures["malignant_auroc"],
    )
    return {k: float(v) for k, v in figures.items()}
