"""Writing and reading a self-contained model folder: the form in which DermTriage ships a model.

A fresh installation has an empty MLflow store; the shipped folder (weights, metadata, split,
test figures and a model card) is what it registers as its first champion, so ``make run`` serves a
model trained by this pipeline without training for half an hour first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from models.network import CLASSES, CalibratedClassifier, build_network

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.train import TrainResult

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
SPLIT_FILE = "split.csv"
SUBGROUPS_FILE = "subgroups.csv"
CARD_FILE = "MODEL_CARD.md"


def export_model_dir(
    result: TrainResult, config: TrainConfig, out_dir: Path, *, dataset_dir: Path | Sequence[Path]
) -> Path:
    """Write ``result`` as a model folder: weights, metadata and the run's split and figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    run = mlflow.get_run(result.run_id)
    client = mlflow.MlflowClient()
    for artifact, name in (
        ("split/split.csv", SPLIT_FILE),
        ("evaluation/subgroups.csv", SUBGROUPS_FILE),
    ):
        local = client.download_artifacts(result.run_id, artifact, str(out_dir))
        Path(local).replace(out_dir / name)
    for leftover in ("split", "evaluation"):
        folder = out_dir / leftover
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    metadata: dict[str, Any] = {
        "backbone": config.backbone,
        "image_size": config.image_size,
        "classes": list(CLASSES),
        "temperature": result.temperature,
        "config": config.model_dump(),
        "run_id": result.run_id,
        "git_commit": run.data.tags.get("git_commit"),
        "dataset_digest": run.data.tags.get("dataset_digest"),
        "dataset_source": "+".join(
            Path(d).name for d in ([dataset_dir] if isinstance(dataset_dir, Path) else dataset_dir)
        ),
        "datasets": json.loads(run.data.tags.get("datasets", "[]")),
        "trained_by": run.data.tags.get("trained_by"),
        "device": run.data.tags.get("device"),
        "test_metrics": result.test_metrics,
        "history": result.history,
    }
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return out_dir


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """The metadata of a model folder."""
    return json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))


def load_model_dir(model_dir: Path) -> tuple[CalibratedClassifier, dict[str, Any]]:
    """Rebuild the calibrated model from a folder written by :func:`export_model_dir`."""
    metadata = read_metadata(model_dir)
    network = build_network(metadata["backbone"], pretrained=False)
    model = CalibratedClassifier(network)
    state = load_file(str(model_dir / WEIGHTS_FILE))
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
    return model.eval(), metadata


def read_split(model_dir: Path) -> pd.DataFrame:
    """The lesion-disjoint split the folder's model was trained and evaluated on."""
    return pd.read_csv(model_dir / SPLIT_FILE)
