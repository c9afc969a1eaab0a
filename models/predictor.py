"""Scoring photos with a trained classifier: calibrated probabilities, uncertainty, Grad-CAM.

A :class:`Predictor` wraps one calibrated model and the name of the version it came from, so that
every score carries the version that produced it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from models.network import (
    CLASSES,
    CalibratedClassifier,
    balanced_decision,
    malignant_probability,
    normalised_entropy,
)
from models.preprocess import square_resize, to_model_input

if TYPE_CHECKING:
    import mlflow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One photo's score."""

    probabilities: dict[str, float]
    p_malignant: float
    uncertainty: float
    predicted_class: str
    model_version: str


def predictions_from_probabilities(
    probabilities: torch.Tensor, class_prior: torch.Tensor, model_version: str
) -> list[Prediction]:
    """Turn an (N, C) probability tensor into :class:`Prediction` values."""
    probabilities = probabilities.detach().float().cpu()
    p_malignant = malignant_probability(probabilities)
    uncertainty = normalised_entropy(probabilities)
    decided = balanced_decision(probabilities, class_prior.cpu())
    return [
        Prediction(
            probabilities={c: float(p) for c, p in zip(CLASSES, row.tolist(), strict=True)},
            p_malignant=float(p_malignant[i]),
            uncertainty=float(uncertainty[i]),
            predicted_class=CLASSES[int(decided[i])],
            model_version=model_version,
        )
        for i, row in enumerate(probabilities)
    ]


class Predictor:
    """A calibrated model, its input size and its version, ready to score PIL images."""

    def __init__(
        self,
        model: CalibratedClassifier,
        *,
        image_size: int,
        version: str,
        device: torch.device | str = "cpu",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = image_size
        self.version = version
        self.metadata = metadata or {}

    @classmethod
    def from_directory(cls, model_dir: Path, *, device: str = "cpu") -> Predictor:
        """A shipped model folder (see ``training.export``); version ``shipped:<run id>``."""
        import json

        from safetensors.torch import load_file

        from models.network import build_network

        metadata = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
        model = CalibratedClassifier(build_network(metadata["backbone"], pretrained=False))
        model.load_state_dict(load_file(str(model_dir / "model.safetensors")), strict=True)
        return cls(
            model,
            image_size=int(metadata["image_size"]),
            version=f"shipped:{metadata.get('run_id', 'unknown')[:12]}",
            device=device,
            metadata=metadata,
        )

    @classmethod
    def load(cls, model_uri: str, *, tracking_uri: str, device: str = "cpu") -> Predictor:
        """A model from MLflow (``models:/name@alias``, ``models:/name/3`` or ``runs:/...``).

        The version string names the registered version an alias pointed to at load time
        (``dermtriage-classifier/3``), never the alias itself, which moves.
        """
        import mlflow
        from mlflow.models import Model

        version = resolve_model_version(model_uri, tracking_uri)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_source(model_uri, tracking_uri), tracking_uri=tracking_uri
        )
        metadata = Model.load(Path(local) / "MLmodel").metadata or {}
        model = mlflow.pytorch.load_model(local, map_location=torch.device(device))
        return cls(
            model,
            image_size=int(metadata.get("image_size", 224)),
            version=version,
            device=device,
            metadata=metadata,
        )

    def batch_tensor(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        """Normalised (N, 3, S, S) float tensor for a list of photos."""
        return torch.stack([to_model_input(image, self.image_size) for image in images])

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated (N, C) probabilities for an already normalised batch."""
        return self.model(batch.to(self.device)).float().cpu()

    def predict(self, images: Sequence[Image.Image | np.ndarray]) -> list[Prediction]:
        """Score photos; one :class:`Prediction` each, in order."""
        if not images:
            return []
        probs = self.probabilities(self.batch_tensor(images))
        return predictions_from_probabilities(probs, self.model.class_prior, self.version)

    def saliency(self, image: Image.Image | np.ndarray, target: str | None = None) -> np.ndarray:
        """Grad-CAM of the malignant score (or of class ``target``) over the model's input crop.

        Returns an (S, S) float array in [0, 1] aligned with :func:`square_resize` of the photo:
        where the network looked when it scored the lesion. A guide for the expert's eye, not a
        segmentation.
        """
        from models.saliency import grad_cam

        batch = self.batch_tensor([image]).to(self.device)
        return grad_cam(self.model, batch, target=target)

    def model_input_image(self, image: Image.Image | np.ndarray) -> Image.Image:
        """The square crop the model sees, for overlaying :meth:`saliency` on it."""
        return square_resize(image, self.image_size)


def resolve_model_version(model_uri: str, tracking_uri: str) -> str:
    """``name/version`` for a registry URI (alias resolved now), else the URI itself."""
    if not model_uri.startswith("models:/"):
        return model_uri
    client = _client(tracking_uri)
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return f"{name}/{client.get_model_version_by_alias(name, alias).version}"
    return ref


def _client(tracking_uri: str) -> mlflow.MlflowClient:
    import mlflow

    # Pin the registry to the same store: MLflow otherwise lets a process-wide setting win.
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def artifact_source(model_uri: str, tracking_uri: str) -> str:
    """Where a model's files are: a registered version (or alias) becomes its artefact folder.

    Resolving through a pinned client keeps ``models:/name@champion`` working in a fresh process
    whatever MLflow's process-wide registry setting says.
    """
    if not model_uri.startswith("models:/"):
        return model_uri
    ref = model_uri.removeprefix("models:/")
    if "/" not in ref and "@" not in ref:
        return model_uri  # a logged model id (models:/m-...)
    name, number = resolve_model_version(model_uri, tracking_uri).split("/", 1)
    return _client(tracking_uri).get_model_version(name, number).source
