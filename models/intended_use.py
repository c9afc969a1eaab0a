"""The classifier's intended use, enforced: only photos the modality check calls dermoscopic are
scored; every other photo gets no probability, and the reason.

One function for every scoring path (the service's worker and ``dermtriage score``), so a clinical
photo can never be scored by one path and refused by another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from models.modality import INTENDED_DOMAIN, ModalityVerdict

#: The registry tag that names the photos a registered version is for, and its value.
INTENDED_USE_TAG = "intended_use"
INTENDED_USE_DOMAIN = INTENDED_DOMAIN
#: What the registered model and its card declare (the model's intended use).
INTENDED_USE = (
    "dermoscopic images of a single skin lesion (contact or polarised dermatoscope). Not for "
    "clinical photos taken without a dermatoscope, nor for anything else: such photos get no "
    "score (a photo-modality check decides, from the pixels)."
)


class ScoresPhotos(Protocol):
    """What :func:`score_within_intended_use` needs of a predictor."""

    version: str

    def predict(self, images: Sequence[Image.Image]) -> Sequence[object]: ...


class ChecksModality(Protocol):
    version: str

    def check(self, images: Sequence[Image.Image | np.ndarray]) -> list[ModalityVerdict]: ...


@dataclass(frozen=True)
class PhotoOutcome:
    """One photo: the modality verdict, and the prediction when the photo was within the
    intended use (``None`` otherwise: :attr:`ModalityVerdict.reason` says why)."""

    verdict: ModalityVerdict
    prediction: object | None

    @property
    def scored(self) -> bool:
        return self.prediction is not None


def score_within_intended_use(
    predictor: ScoresPhotos, check: ChecksModality, images: Sequence[Image.Image]
) -> list[PhotoOutcome]:
    """Check every photo's modality, then score only the dermoscopic ones, in one batch."""
    verdicts = check.check(images)
    applicable = [i for i, v in enumerate(verdicts) if v.domain == INTENDED_DOMAIN]
    predictions = list(predictor.predict([images[i] for i in applicable])) if applicable else []
    if len(predictions) != len(applicable):
        raise ValueError("the model returned a different number of predictions")
    by_index = dict(zip(applicable, predictions, strict=True))
    return [PhotoOutcome(v, by_index.get(i)) for i, v in enumerate(verdicts)]
