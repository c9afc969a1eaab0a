"""Giving a fresh installation its first champion: the shipped model folder, registered in MLflow.

``make run`` on a new machine finds an empty MLflow store. Rather than serve nothing, or train for
half an hour first, it registers the model folder that ships in ``models/shipped/`` (trained by
this pipeline, see its MODEL_CARD.md) as version 1 and makes it the champion, recording that the
promotion was the bootstrap's and not a person's. Nothing happens when a champion already exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from training import tracking
from training.export import SPLIT_FILE, SUBGROUPS_FILE, load_model_dir

logger = logging.getLogger(__name__)

BOOTSTRAP_USER = "dermtriage-bootstrap"


def current_champion(client: mlflow.MlflowClient, name: str) -> str | None:
    """The version the ``champion`` alias points to, or None when there is none yet."""
    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        return None


def register_shipped_model(
    model_dir: Path,
    *,
    tracking_uri: str,
    registered_model_name: str,
    experiment_name: str = "dermtriage-classifier",
    artifact_root: str | None = None,
    dataset_dir: Path | None = None,
) -> str:
    """Make the shipped model the champion when the registry has none; returns the champion."""
    from training.registry import GatePolicy, promote, register_version

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    existing = current_champion(client, registered_model_name)
    if existing is not None:
        return existing
    model, metadata = load_model_dir(model_dir)
    experiment_id = tracking.configure(tracking_uri, experiment_name, artifact_root)
    with mlflow.start_run(run_name="shipped-model", experiment_id=experiment_id) as run:
        mlflow.log_params(metadata.get("config", {}))
        mlflow.set_tags(
            {
                "trained_by": metadata.get("trained_by") or "unknown",
                "git_commit": metadata.get("git_commit") or "unknown",
                "dataset_digest": metadata.get("dataset_digest") or "unknown",
                "device": metadata.get("device") or "unknown",
                "origin_run_id": metadata.get("run_id") or "unknown",
                "registered_by": BOOTSTRAP_USER,
            }
        )
        for step, row in enumerate(metadata.get("history", []), start=1):
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=step)
        test_metrics = {k: float(v) for k, v in metadata["test_metrics"].items()}
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        split = pd.read_csv(model_dir / SPLIT_FILE)
        tracking.log_split(split, int(metadata.get("config", {}).get("seed", 0)))
        if dataset_dir is not None and (dataset_dir / "metadata.csv").is_file():
            from training.data import load_metadata

            tracking.log_dataset(load_metadata(dataset_dir), dataset_dir)
        if (model_dir / SUBGROUPS_FILE).is_file():
            mlflow.log_artifact(str(model_dir / SUBGROUPS_FILE), artifact_path="evaluation")
        model_uri = tracking.log_model(
            model,
            int(metadata["image_size"]),
            tracking.model_metadata(
                int(metadata["image_size"]),
                metadata["backbone"],
                {"temperature": metadata.get("temperature"), "shipped": True},
            ),
        )
    version = register_version(
        client,
        registered_model_name,
        model_uri,
        metrics=test_metrics,
        tags={"trained_by": metadata.get("trained_by") or "unknown", "run_id": run.info.run_id},
    )
    promote(
        client,
        registered_model_name,
        str(version.version),
        user=BOOTSTRAP_USER,
        reason="first start: the model shipped with DermTriage (models/shipped/MODEL_CARD.md)",
        evaluate=lambda _uri: test_metrics,
        policy=GatePolicy(),
    )
    logger.info(
        "registered the shipped model as %s version %s, champion",
        registered_model_name,
        version.version,
    )
    return str(version.version)
