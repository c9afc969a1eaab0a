"""What a training run records in MLflow, in one place.

Runs log their parameters, per-epoch metrics, the data set (``mlflow.data`` with digest and
source), the split, the git commit, the plots and the model with its signature. A reader of the
registry can then answer "what was this version trained on, by which code" without asking anyone.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import numpy as np
import pandas as pd
import torch
from mlflow.models import infer_signature

from models.network import CLASSES, MALIGNANT_CLASSES, CalibratedClassifier

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
SPLIT_ARTIFACT = "split/split.csv"


def git_commit(repo_dir: Path) -> str | None:
    """The commit the code was run from, with ``-dirty`` when it had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def configure(tracking_uri: str, experiment_name: str, artifact_root: str | None = None) -> str:
    """Point MLflow at ``tracking_uri`` and make sure the experiment exists; returns its id."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(experiment_name, artifact_location=artifact_root)


def log_dataset(
    metadata: pd.DataFrame, dataset_dir: Path | Sequence[Path], name: str = "derm-dev"
) -> str:
    """Log the labelled table as the run's training input; returns the digest MLflow computed.

    Over several data folders each is also logged as its own input (named after its folder,
    with its own digest), and the run's ``datasets`` tag lists them, so the lineage of a model
    names every data set it learned from and the hash of what it read there.
    """
    folders = [Path(dataset_dir)] if isinstance(dataset_dir, str | Path) else list(dataset_dir)
    table = metadata.drop(columns=["image_path"], errors="ignore")
    if len(folders) == 1:
        dataset = mlflow.data.from_pandas(table, source=str(folders[0]), name=name, targets="dx")
        mlflow.log_input(dataset, context="training")
        mlflow.set_tag(
            "datasets",
            json.dumps([{"name": folders[0].name, "digest": dataset.digest, "images": len(table)}]),
        )
        return dataset.digest
    parts = []
    for folder in folders:
        rows = table[table["source_dir"] == folder.name]
        part = mlflow.data.from_pandas(rows, source=str(folder), name=folder.name, targets="dx")
        mlflow.log_input(part, context="training")
        parts.append({"name": folder.name, "digest": part.digest, "images": len(rows)})
    whole = mlflow.data.from_pandas(
        table,
        source=",".join(str(f) for f in folders),
        name="+".join(f.name for f in folders),
        targets="dx",
    )
    mlflow.log_input(whole, context="training")
    mlflow.set_tag("datasets", json.dumps(parts))
    return whole.digest


def log_split(split: pd.DataFrame, seed: int) -> None:
    """Save the lesion-disjoint split with the run so every figure can be recomputed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "split.csv"
        split.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="split")
    counts = split.groupby(["split", "dx"]).size().unstack(fill_value=0)
    mlflow.log_dict({"seed": seed, "counts": counts.to_dict(orient="index")}, "split/counts.json")


def log_frame(frame: pd.DataFrame, artifact_file: str) -> None:
    """A table as a CSV artefact."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact_file).parent))


def model_metadata(image_size: int, backbone: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """What a loader needs besides the weights: input size, classes, preprocessing."""
    return {
        "backbone": backbone,
        "image_size": image_size,
        "classes": list(CLASSES),
        "malignant_classes": list(MALIGNANT_CLASSES),
        "normalisation": "imagenet",
        **extra,
    }


def log_model(model: CalibratedClassifier, image_size: int, metadata: Mapping[str, Any]) -> str:
    """Log the calibrated model (PyTorch flavour, signature, input example); returns its URI."""
    model = model.cpu().eval()
    example = np.zeros((1, 3, image_size, image_size), dtype=np.float32)
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(
        model,
        name=MODEL_ARTIFACT,
        signature=infer_signature(example, output),
        input_example=example,
        metadata=dict(metadata),
        pip_requirements=["torch", "torchvision", "timm"],
        # A pickled nn.Module loads back as the same class, with eval() and buffers intact;
        # the newer pt2 export cannot be put in eval mode or moved between devices.
        serialization_format="pickle",
    )
    return info.model_uri


def load_split(run_id: str, tracking_uri: str) -> pd.DataFrame:
    """The split a run saved."""
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=SPLIT_ARTIFACT, tracking_uri=tracking_uri
    )
    return pd.read_csv(local)


def log_json(payload: Mapping[str, Any], artifact_file: str) -> None:
    """A small JSON document as an artefact (readable in the MLflow UI)."""
    mlflow.log_text(json.dumps(payload, indent=2, default=float), artifact_file)
