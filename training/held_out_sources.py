"""Leave-one-source-out evaluation: how a training recipe does on a clinic it never saw.

HAM10000's ``dataset`` column names the four clinics and devices its photos come from. A model
measured on a random split of the same clinics flatters itself: the hidden sets it will meet
come from other dermatoscopes, other lamps, other populations. So a recipe is also trained once
per source with that source held out whole (``TrainConfig.holdout_source``) and tested on it;
the worst of those figures is the one recipes are chosen by, and the one the promotion gate
compares (``training.registry.WORST_SOURCE``). The runs are ordinary training runs, logged to
their own MLflow experiment and resumable, so a long evaluation survives an interrupted session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow

from training import tracking
from training.config import TrainConfig
from training.data import load_metadata
from training.registry import METRIC_TAG_PREFIX, WORST_SOURCE, get_version

logger = logging.getLogger(__name__)

EXPERIMENT = "dermtriage-held-out-sources"
FILE_NAME = "held_out_sources.json"
FIGURES = (
    "malignant_auroc",
    "balanced_accuracy",
    "sens_at_95_spec",
    "spec_at_95_sens",
    "ece_malignant",
    "n",
    "n_malignant",
)


def sources_in(dataset_dirs: Sequence[Path]) -> list[str]:
    """The sources (``dataset`` column) present in the data, sorted."""
    metadata = load_metadata(list(dataset_dirs))
    if "dataset" not in metadata.columns:
        raise ValueError("metadata.csv has no 'dataset' column: no sources to hold out")
    return sorted(metadata["dataset"].dropna().unique().tolist())


def evaluate_sources(
    config: TrainConfig,
    *,
    dataset_dirs: Sequence[Path],
    work_root: Path,
    tracking_uri: str,
    artifact_root: str | None = None,
    sources: Sequence[str] | None = None,
    user: str = "unknown",
) -> dict[str, Any]:
    """Train ``config`` once per held-out source and gather each run's test figures.

    Returns ``{"recipe", "data", "sources": {name: figures + run_id}, "worst_source",
    "worst_malignant_auroc"}``; also logged as a summary run of the experiment.
    """
    from training.train import train  # heavy: torch, timm

    chosen = list(sources) if sources else sources_in(dataset_dirs)
    recipe = config.model_copy(update={"holdout_source": None})
    per_source: dict[str, dict[str, Any]] = {}
    for source in chosen:
        run_config = config.model_copy(
            update={
                "holdout_source": source,
                "register_model": False,
                "experiment_name": EXPERIMENT,
            }
        )
        logger.info("held-out source %s: training on the others", source)
        result = train(
            run_config,
            dataset_dir=list(dataset_dirs),
            work_dir=work_root / source,
            tracking_uri=tracking_uri,
            artifact_root=artifact_root,
            user=user,
            resume=True,
        )
        figures = {k: float(result.test_metrics[k]) for k in FIGURES if k in result.test_metrics}
        per_source[source] = {**figures, "run_id": result.run_id}
    summary = summarise(recipe, dataset_dirs, per_source)
    experiment_id = tracking.configure(tracking_uri, EXPERIMENT, artifact_root)
    with mlflow.start_run(run_name="held-out-sources", experiment_id=experiment_id):
        mlflow.log_params({k: v for k, v in recipe.model_dump().items() if k != "holdout_source"})
        mlflow.log_metrics(as_metrics(summary))
        mlflow.log_dict(summary, FILE_NAME)
        mlflow.set_tag("trained_by", user)
    return summary


def summarise(
    recipe: TrainConfig, dataset_dirs: Sequence[Path], per_source: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The figures per source and the worst malignant AUROC among them."""
    scored = {s: f for s, f in per_source.items() if f.get("malignant_auroc") is not None}
    if not scored:
        raise ValueError("no held-out source produced a malignant AUROC")
    worst = min(scored, key=lambda s: scored[s]["malignant_auroc"])
    return {
        "recipe": recipe.model_dump(exclude={"holdout_source"}),
        "data": [Path(d).name for d in dataset_dirs],
        "sources": per_source,
        "worst_source": worst,
        "worst_malignant_auroc": scored[worst]["malignant_auroc"],
    }


def as_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Registry/MLflow metric names: ``source.<name>.<figure>`` and the worst-source figure."""
    found = {
        f"source.{name}.{key}": float(value)
        for name, figures in summary.get("sources", {}).items()
        for key, value in figures.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    if "worst_malignant_auroc" in summary:
        found[WORST_SOURCE] = float(summary["worst_malignant_auroc"])
    return found


def read_summary(path: Path) -> dict[str, Any]:
    """A summary written by ``dermtriage evaluate-sources --out``."""
    summary = json.loads(Path(path).read_text(encoding="utf-8"))
    if "sources" not in summary or "worst_malignant_auroc" not in summary:
        raise ValueError(f"{path}: not a held-out-sources summary")
    return summary


def attach_to_version(
    client: mlflow.MlflowClient, name: str, version: str, summary: dict[str, Any]
) -> None:
    """Store the recipe's held-out-source figures on a registered version, where the promotion
    gate and the governance pages read them."""
    get_version(client, name, version)
    for key, value in as_metrics(summary).items():
        client.set_model_version_tag(name, version, f"{METRIC_TAG_PREFIX}{key}", f"{value:.6g}")
    client.set_model_version_tag(name, version, "held_out_sources", json.dumps(summary)[:5000])
