"""The training reference of a version: what drift is measured against, stored with the version.

Drift (:mod:`pipeline.drift`) compares each week of live photos with what the version saw on its
held-out test split: its malignant scores there, the photos' brightness and size, and how often
the quality checks would have complained. This module computes that reference once (re-scoring the
test split through the inference engine, the live code path, see
:func:`training.report.load_version_evaluation`) and stores it as the artefact
``governance/reference.json`` of the version's training run, so that the drift page works
offline and never re-scores. When the run lacks ROC or calibration plots (a version registered
from the shipped folder, see :mod:`training.bootstrap`), they are drawn from the same scores and
stored beside it (``governance/roc.png``, ``governance/calibration.png``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from models.engine import EngineConfig, InferenceEngine
from models.predictor import Predictor
from pipeline.drift import BRIGHTNESS, SCORE, SHORT_SIDE, Reference
from pipeline.quality import assess_bytes
from training import plots
from training.data import load_metadata
from training.evaluate import predict_frame
from training.export import load_model_dir, read_metadata, read_split
from training.governance import artifact_bytes, find_plots
from training.metrics import malignant_scores
from training.registry import get_version
from training.report import VersionEvaluation, load_version_evaluation

logger = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "governance/reference.json"
REFERENCE_TAG = "governance.reference"
SHIPPED_REFERENCE_FILE = "reference.json"


def reference_from_cases(cases: pd.DataFrame, version: str, source: str) -> Reference:
    """The reference of scored test images: ``cases`` has ``image_path`` and ``p_malignant``.

    Each image also goes through the quality checks: ``brightness`` is their median skin luma,
    ``short_side`` the image's smaller side in pixels, and a problem counts once per image.
    """
    brightness, short_side = [], []
    problems: dict[str, int] = {}
    for path in cases["image_path"]:
        report = assess_bytes(Path(path).read_bytes(), lang="en")
        found = report.to_dict()["metrics"]
        if "median_luma" in found:
            brightness.append(float(found["median_luma"]))
        if "original_width" in found and "original_height" in found:
            short_side.append(float(min(found["original_width"], found["original_height"])))
        for code in set(report.codes):
            problems[code] = problems.get(code, 0) + 1
    return Reference(
        version=version,
        n_photos=len(cases),
        values={
            SCORE: tuple(float(p) for p in cases["p_malignant"]),
            BRIGHTNESS: tuple(brightness),
            SHORT_SIDE: tuple(short_side),
        },
        problem_counts=dict(sorted(problems.items())),
        source=source,
    )


def reference_from_evaluation(evaluation: VersionEvaluation) -> Reference:
    """The reference of a registered version scored on its own test split."""
    info = evaluation.info
    return reference_from_cases(
        evaluation.cases,
        f"{info.model_name}/{info.version}",
        f"test split of run {info.run_id} ({len(evaluation.cases)} images, "
        "lesions unseen in training)",
    )


def reference_from_model_dir(
    model_dir: Path, dataset_dir: Path | Sequence[Path], device: str = "cpu"
) -> Reference:
    """The reference of a shipped model folder (see :mod:`training.export`), without MLflow:
    its network scores the test split of its own ``split.csv`` through the inference engine."""
    model, metadata = load_model_dir(model_dir)
    split = read_split(model_dir)
    cases = load_metadata(dataset_dir).merge(split.loc[split["split"] == "test", ["image_id"]])
    if cases.empty:
        raise ValueError(f"no test image of {model_dir} found in {dataset_dir}")
    cases = cases.sort_values("image_id").reset_index(drop=True)
    predictor = Predictor(model, image_size=int(metadata["image_size"]), version="shipped")
    engine = InferenceEngine(predictor, EngineConfig(device=device))
    try:
        probs, _ = predict_frame(engine, cases)
    finally:
        engine.close()
    _, cases["p_malignant"] = malignant_scores(cases["label"].to_numpy(), probs)
    return reference_from_cases(
        cases,
        f"shipped model of run {metadata.get('run_id')}",
        f"test split of the shipped model (run {metadata.get('run_id')}, {len(cases)} images, "
        "lesions unseen in training)",
    )


def write_shipped_reference(
    model_dir: Path, dataset_dir: Path | Sequence[Path], device: str = "cpu"
) -> Path:
    """Compute the shipped folder's reference and save it beside the weights."""
    reference = reference_from_model_dir(model_dir, dataset_dir, device)
    path = model_dir / SHIPPED_REFERENCE_FILE
    path.write_text(json.dumps(reference.to_dict(), indent=1), encoding="utf-8")
    logger.info("wrote %s (%d photos)", path, reference.n_photos)
    return path


def _log_missing_plots(
    client: mlflow.MlflowClient, run_id: str, evaluation: VersionEvaluation
) -> list[str]:
    have = find_plots(client, run_id)
    y = evaluation.cases["malignant"].to_numpy()
    p = evaluation.cases["p_malignant"].to_numpy()
    drawers = {"roc": plots.roc_figure, "calibration": plots.calibration_figure}
    logged = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, draw in drawers.items():
            if name in have:
                continue
            path = Path(tmp) / f"{name}.png"
            draw(y, p).savefig(path, dpi=110)
            client.log_artifact(run_id, str(path), "governance")
            logged.append(f"governance/{name}.png")
    return logged


def store_reference(
    client: mlflow.MlflowClient,
    name: str,
    version: str,
    *,
    tracking_uri: str,
    dataset_dir: Path | Sequence[Path],
    device: str = "cpu",
) -> Reference:
    """Compute the reference of ``name`` version ``version`` and store it with its run.

    Also tags the version ``governance.reference`` with the artefact path, and draws the ROC and
    calibration plots when the run has none. Takes as long as scoring the test split once.
    """
    model_version = get_version(client, name, version)
    if not model_version.run_id:
        raise ValueError(f"{name} version {version} has no training run to hold its reference")
    evaluation = load_version_evaluation(
        f"models:/{name}/{version}",
        tracking_uri=tracking_uri,
        dataset_dir=dataset_dir,
        device=device,
    )
    reference = reference_from_evaluation(evaluation)
    client.log_text(
        model_version.run_id, json.dumps(reference.to_dict(), indent=1), REFERENCE_ARTIFACT
    )
    drawn = _log_missing_plots(client, model_version.run_id, evaluation)
    client.set_model_version_tag(name, str(version), REFERENCE_TAG, REFERENCE_ARTIFACT)
    logger.info(
        "%s version %s: reference of %d photos stored (median score %.3f)%s",
        name,
        version,
        reference.n_photos,
        float(np.median(reference.values[SCORE])) if reference.n_photos else float("nan"),
        f"; drew {', '.join(drawn)}" if drawn else "",
    )
    return reference


def load_reference(
    client: mlflow.MlflowClient, name: str, version: str, shipped_dir: Path | None = None
) -> Reference | None:
    """The stored reference of a version, or None when none was ever computed.

    A version registered from the shipped folder (its run's ``origin_run_id`` tag names the run
    in ``shipped_dir/model.json``) falls back on ``shipped_dir/reference.json``, which ships with
    the weights: a fresh installation has its drift reference without scoring anything.
    """
    model_version = get_version(client, name, version)
    if not model_version.run_id:
        return None
    data = artifact_bytes(client, model_version.run_id, REFERENCE_ARTIFACT)
    if data is not None:
        return Reference.from_dict(json.loads(data))
    if shipped_dir is None or not (shipped_dir / SHIPPED_REFERENCE_FILE).is_file():
        return None
    origin = client.get_run(model_version.run_id).data.tags.get("origin_run_id")
    if origin is None or origin != read_metadata(shipped_dir).get("run_id"):
        return None
    stored = json.loads((shipped_dir / SHIPPED_REFERENCE_FILE).read_text(encoding="utf-8"))
    return replace(Reference.from_dict(stored), version=f"{name}/{version}")
