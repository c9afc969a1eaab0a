"""The photo-modality check: is this a dermoscopic image, a clinical photo, or something else?

The classifier learned from dermoscopic images only. On clinical photos (a phone close-up, no
dermatoscope) its malignancy ranking is worse than chance (AUROC 0.47 on a hidden set), so a
score there would mislead the worklist. This check decides, from the pixels and never from the
photo kind the GP ticked, whether the classifier may read a photo at all.

How: a frozen ImageNet EfficientNet-Lite0 (the offline weights of
:func:`models.network.build_network`, never fine-tuned, so the check does not move when the
classifier is retrained) turns the photo's centre square at 224 px into 1,280 pooled features
plus the per-channel mean and spread of four intermediate feature maps (992 "style" statistics,
which capture how a photo was taken rather than what it shows); a multinomial logistic
regression over them (weights in ``modality_model.json`` beside this file,
fitted by ``dermtriage fit-modality-model``: :mod:`training.modality_model`) says which of
:data:`DOMAINS` it is. The same features give an out-of-distribution distance for dermoscopic
photos: the probabilistic-PCA Mahalanobis distance to the training split's dermoscopic photos,
flagged above a high percentile of held-out in-distribution photos, so a dermoscopic image unlike
anything the classifier learned from is not scored silently.

The file's sha256 prefix is the check's version, stored with every verdict.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.preprocess import to_model_input

MODEL_FILE = "modality_model.json"
DOMAINS: tuple[str, ...] = ("dermoscopic", "clinical", "other")
#: The photos the classifier is for (its intended use): dermoscopic images of a single lesion.
INTENDED_DOMAIN = "dermoscopic"
FEATURE_SIZE = 224
#: Stages of the backbone whose feature maps' per-channel mean and spread join the pooled
#: features: "style" statistics, which say how a photo was taken (dermatoscope or not) better
#: than the final features, which were trained to say what it shows (measured: docs/training.md).
STYLE_STAGES: tuple[int, ...] = (1, 2, 4, 6)
FEATURE_BACKBONE = "efficientnet_lite0"

#: Why a photo outside the intended use gets no score, by domain (stable codes, then words).
NOT_APPLICABLE_REASONS: dict[str, str] = {
    "clinical": "clinical_photo",
    "other": "not_a_skin_photo",
}
REASON_TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "clinical_photo": "IA non applicable : photo clinique, le modèle lit des images "
        "dermoscopiques",
        "not_a_skin_photo": "IA non applicable : pas une photo dermoscopique de lésion, le modèle "
        "lit des images dermoscopiques",
        "ood": "photo dermoscopique inhabituelle, loin des images d'apprentissage : score à "
        "prendre avec prudence",
    },
    "en": {
        "clinical_photo": "AI not applicable: clinical photo, the model reads dermoscopic images",
        "not_a_skin_photo": "AI not applicable: not a dermoscopic photo of a lesion, the model "
        "reads dermoscopic images",
        "ood": "unusual dermoscopic photo, far from the training images: read the score with "
        "caution",
    },
}


def reason_text(code: str, lang: str = "fr") -> str:
    """The sentence for a reason code, in French (default) or English."""
    return REASON_TEXTS.get(lang, REASON_TEXTS["fr"])[code]


@dataclass(frozen=True)
class ModalityVerdict:
    """One photo's verdict: its domain, how sure, and how far it is from the training photos."""

    domain: str
    probabilities: dict[str, float]
    ood_distance: float
    ood: bool
    version: str

    @property
    def applicable(self) -> bool:
        """True when the classifier may score the photo (its intended use)."""
        return self.domain == INTENDED_DOMAIN

    @property
    def reason(self) -> str | None:
        """Why the photo gets no score (a code of :data:`REASON_TEXTS`), None when it does."""
        return None if self.applicable else NOT_APPLICABLE_REASONS[self.domain]


@dataclass(frozen=True)
class ModalityModel:
    """The fitted head and the out-of-distribution reference, as stored in the model file."""

    mean: np.ndarray  # (D,) feature standardisation
    scale: np.ndarray  # (D,)
    coef: np.ndarray  # (len(DOMAINS), D) logistic regression on standardised features
    intercept: np.ndarray  # (len(DOMAINS),)
    ood_mean: np.ndarray  # (D,) mean of the training split's dermoscopic features
    ood_components: np.ndarray  # (K, D) principal axes of those features
    ood_variances: np.ndarray  # (K,) variance along each axis
    ood_residual_variance: float  # mean variance per dimension outside the K axes
    ood_threshold: float  # distance above which a dermoscopic photo is flagged
    # A photo reads dermoscopic only when p(dermoscopic) reaches this: set high, because scoring a
    # clinical photo misleads the worklist while refusing a dermoscopic one only costs the AI's
    # help (the rule: training.modality_model.DERMOSCOPIC_THRESHOLD_RULE).
    dermoscopic_threshold: float = 0.5
    fit: dict[str, Any] = field(default_factory=dict)
    version: str = "unversioned"

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, len(DOMAINS)) class probabilities for (N, D) pooled features."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def ood_distance(self, features: np.ndarray) -> np.ndarray:
        """Probabilistic-PCA Mahalanobis distance to the dermoscopic training photos, (N,).

        Inside the K main axes each coordinate is divided by its own spread; what lies outside
        them is divided by the mean residual spread, so a photo that is unusual in a direction
        the training photos never vary along still reads far. Divided by sqrt(D) so the figure
        does not grow with the number of features (an in-distribution photo reads about 1).
        """
        centred = np.asarray(features, np.float64) - self.ood_mean
        projected = centred @ self.ood_components.T
        residual = (centred**2).sum(axis=1) - (projected**2).sum(axis=1)
        squared = (projected**2 / self.ood_variances).sum(axis=1) + np.maximum(
            residual, 0.0
        ) / self.ood_residual_variance
        return np.sqrt(squared / centred.shape[1])

    def verdicts(self, features: np.ndarray) -> list[ModalityVerdict]:
        """One :class:`ModalityVerdict` per row of ``features``."""
        probs = self.probabilities(features)
        distances = self.ood_distance(features)
        out = []
        intended = DOMAINS.index(INTENDED_DOMAIN)
        for row, distance in zip(probs, distances, strict=True):
            if row[intended] >= self.dermoscopic_threshold:
                domain = INTENDED_DOMAIN
            else:
                others = [i for i in range(len(DOMAINS)) if i != intended]
                domain = DOMAINS[max(others, key=lambda i: row[i])]
            out.append(
                ModalityVerdict(
                    domain=domain,
                    probabilities={d: float(p) for d, p in zip(DOMAINS, row, strict=True)},
                    ood_distance=float(distance),
                    ood=bool(domain == INTENDED_DOMAIN and distance > self.ood_threshold),
                    version=self.version,
                )
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """The model file's content (floats rounded to 7 significant digits)."""

        def arr(a: np.ndarray) -> Any:
            return np.asarray(a, np.float64).round(7).tolist()

        return {
            "format": "dermtriage-modality-model/1",
            "domains": list(DOMAINS),
            "backbone": FEATURE_BACKBONE,
            "feature_size": FEATURE_SIZE,
            "mean": arr(self.mean),
            "scale": arr(self.scale),
            "coef": arr(self.coef),
            "intercept": arr(self.intercept),
            "dermoscopic_threshold": float(self.dermoscopic_threshold),
            "ood": {
                "mean": arr(self.ood_mean),
                "components": np.asarray(self.ood_components, np.float32).tolist(),
                "variances": arr(self.ood_variances),
                "residual_variance": float(self.ood_residual_variance),
                "threshold": float(self.ood_threshold),
            },
            "fit": self.fit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], version: str = "unversioned") -> ModalityModel:
        if tuple(data["domains"]) != DOMAINS:
            raise ValueError(f"modality model domains {data['domains']}, expected {DOMAINS}")
        ood = data["ood"]
        return cls(
            mean=np.asarray(data["mean"], np.float64),
            scale=np.asarray(data["scale"], np.float64),
            coef=np.asarray(data["coef"], np.float64),
            intercept=np.asarray(data["intercept"], np.float64),
            ood_mean=np.asarray(ood["mean"], np.float64),
            ood_components=np.asarray(ood["components"], np.float64),
            ood_variances=np.asarray(ood["variances"], np.float64),
            ood_residual_variance=float(ood["residual_variance"]),
            ood_threshold=float(ood["threshold"]),
            dermoscopic_threshold=float(data.get("dermoscopic_threshold", 0.5)),
            fit=data.get("fit", {}),
            version=version,
        )


def version_of(data: bytes) -> str:
    """A model file's version: the first 12 hex digits of its sha256."""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


def load_modality_model(path: Path | None = None) -> ModalityModel:
    """The model file at ``path``, or the one shipped beside this module."""
    if path is None:
        data = resources.files("models").joinpath(MODEL_FILE).read_bytes()
    else:
        data = Path(path).read_bytes()
    return ModalityModel.from_json(json.loads(data), version=version_of(data))


class FeatureExtractor:
    """Frozen ImageNet EfficientNet-Lite0: a photo's centre square at 224 px -> 1,280 pooled
    features and the style statistics of :data:`STYLE_STAGES` (2,272 in all). Thread-safe (one
    forward pass at a time)."""

    def __init__(self, device: str = "cpu") -> None:
        from models.network import build_network

        self.device = torch.device(device)
        network = build_network(FEATURE_BACKBONE, num_classes=0, pretrained=True, drop_rate=0.0)
        self.network = network.to(self.device).eval().to(memory_format=torch.channels_last)
        self._lock = threading.Lock()

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        net = self.network
        x = net.bn1(net.conv_stem(batch))
        style = []
        for index, block in enumerate(net.blocks):
            x = block(x)
            if index in STYLE_STAGES:
                style += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        pooled = net.global_pool(net.bn2(net.conv_head(x)))
        return torch.cat([pooled, *style], dim=1)

    @torch.inference_mode()
    def features(self, images: Sequence[Image.Image | np.ndarray], step: int = 4) -> np.ndarray:
        """(N, 2272) float32 features, ``step`` photos per forward pass (the CPU's sweet spot,
        see :class:`models.engine.EngineConfig`)."""
        out = []
        with self._lock:
            for start in range(0, len(images), step):
                batch = torch.stack(
                    [to_model_input(im, FEATURE_SIZE) for im in images[start : start + step]]
                )
                batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
                out.append(self._forward(batch).float().cpu().numpy())
        if not out:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(out)


class ModalityCheck:
    """The fitted model and its feature extractor: photos in, verdicts out."""

    def __init__(
        self, model: ModalityModel | None = None, extractor: FeatureExtractor | None = None
    ) -> None:
        self.model = model or load_modality_model()
        self.extractor = extractor or FeatureExtractor()

    @property
    def version(self) -> str:
        return self.model.version

    def check(self, images: Sequence[Image.Image | np.ndarray]) -> list[ModalityVerdict]:
        """One verdict per photo, in order."""
        return self.model.verdicts(self.extractor.features(images))
