"""Giving a fresh installation its first champion: the shipped model folder, registered in MLflow.

``make run`` on a new machine finds an empty MLflow store. Rather than serve nothing, or train for
half an hour first, it registers the model folder that ships in ``models/shipped/`` (trained by
this pipeline, see its MODEL_CARD.md) as version 1 and makes it the champion, recording that the
promotion was the bootstrap's and not a person's. Nothing happens when a champion already exists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    dataset_dir: Path | Sequence[Path] | None = None,
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
        folders = _trained_on(metadata, dataset_dir)
        if folders:
            from training.data import load_metadata

            tracking.log_dataset(load_metadata(folders), folders)
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
        metrics={**test_metrics, **source_metrics(model_dir)},
        tags={
            "trained_by": metadata.get("trained_by") or "unknown",
            "run_id": run.info.run_id,
            "datasets": json.dumps(metadata.get("datasets", [])),
        },
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


def _trained_on(metadata: dict[str, Any], dataset_dir: Path | Sequence[Path] | None) -> list[Path]:
    """The given data folders the shipped model was trained on (its ``dataset_source`` names
    them, ``derm-dev+ham-extra``), those that exist here."""
    if dataset_dir is None:
        return []
    given = [Path(dataset_dir)] if isinstance(dataset_dir, str | Path) else list(dataset_dir)
    names = str(metadata.get("dataset_source") or given[0].name).split("+")
    return [d for d in given if d.name in names and (d / "metadata.csv").is_file()]


def source_metrics(model_dir: Path) -> dict[str, float]:
    """The leave-one-source-out figures a model folder carries (``held_out_sources.json``,
    written by ``dermtriage evaluate-sources``), as registry metrics; none when it has none."""
    from training.held_out_sources import FILE_NAME, as_metrics, read_summary

    path = model_dir / FILE_NAME
    return as_metrics(read_summary(path)) if path.is_file() else {}
