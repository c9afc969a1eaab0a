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
from pathlib import Path

import mlflow
import numpy as np

from pipeline.drift import BRIGHTNESS, SCORE, SHORT_SIDE, Reference
from pipeline.quality import assess_bytes
from training import plots
from training.governance import artifact_bytes, find_plots
from training.registry import get_version
from training.report import VersionEvaluation, load_version_evaluation

logger = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "governance/reference.json"
REFERENCE_TAG = "governance.reference"


def reference_from_evaluation(evaluation: VersionEvaluation) -> Reference:
    """The reference of an evaluated version: scores plus quality checks of each test image.

    ``brightness`` is the quality check's median skin luma; ``short_side`` the image's smaller
    side in pixels; a problem counts once per image.
    """
    cases = evaluation.cases
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
    info = evaluation.info
    return Reference(
        version=f"{info.model_name}/{info.version}",
        n_photos=len(cases),
        values={
            SCORE: tuple(float(p) for p in cases["p_malignant"]),
            BRIGHTNESS: tuple(brightness),
            SHORT_SIDE: tuple(short_side),
        },
        problem_counts=dict(sorted(problems.items())),
        source=f"test split of run {info.run_id} ({len(cases)} images, lesions unseen in training)",
    )


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
    dataset_dir: Path,
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


def load_reference(client: mlflow.MlflowClient, name: str, version: str) -> Reference | None:
    """The stored reference of a version, or None when :func:`store_reference` never ran."""
    model_version = get_version(client, name, version)
    if not model_version.run_id:
        return None
    data = artifact_bytes(client, model_version.run_id, REFERENCE_ARTIFACT)
    return None if data is None else Reference.from_dict(json.loads(data))
