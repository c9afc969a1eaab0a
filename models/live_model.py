"""The model the service scores live cases with: the champion, through the inference engine,
swapped in place when the ``champion`` alias moves.

Every ``check_seconds`` (at the next scoring call) it asks the registry which version the alias
names; when that changed, it loads the new version beside the old one and swaps it into the
engine. Requests already in a batch finish on the old model, later ones use the new one: nothing
is dropped, and every score carries the version that actually produced it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from models.engine import EngineConfig, InferenceEngine
from models.predictor import Prediction, Predictor, resolve_model_version

logger = logging.getLogger(__name__)


class LiveModel:
    """A registry URI (usually ``models:/name@champion``) kept loaded and current."""

    def __init__(
        self,
        model_uri: str,
        *,
        tracking_uri: str,
        engine_config: EngineConfig | None = None,
        check_seconds: float = 30.0,
    ) -> None:
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.check_seconds = check_seconds
        self._predictor = Predictor.load(model_uri, tracking_uri=tracking_uri)
        self.engine = InferenceEngine(self._predictor, engine_config).start()
        self._checked_at = time.monotonic()
        self._swap_lock = threading.Lock()

    @property
    def version(self) -> str:
        return self._predictor.version

    def refresh(self, force: bool = False) -> bool:
        """Swap in the version the alias names now, if it moved; returns True when it did."""
        if not force and time.monotonic() - self._checked_at < self.check_seconds:
            return False
        with self._swap_lock:
            self._checked_at = time.monotonic()
            try:
                current = resolve_model_version(self.model_uri, self.tracking_uri)
            except Exception:  # a registry hiccup must not stop scoring
                logger.warning("could not ask the registry for %s", self.model_uri, exc_info=True)
                return False
            if current == self._predictor.version:
                return False
            predictor = Predictor.load(self.model_uri, tracking_uri=self.tracking_uri)
            self.engine.swap(predictor)
            logger.info("model swapped: %s -> %s", self._predictor.version, predictor.version)
            self._predictor = predictor
            return True

    def predict(self, images: Sequence[Image.Image | np.ndarray]) -> list[Prediction]:
        """Score photos through the engine's shared batches (concurrent callers share passes)."""
        self.refresh()
        futures = [self.engine.submit(image) for image in images]
        return [future.result() for future in futures]

    def saliency(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Grad-CAM from the current model (see :meth:`Predictor.saliency`)."""
        return self._predictor.saliency(image)

    def model_input_image(self, image: Image.Image | np.ndarray) -> Image.Image:
        return self._predictor.model_input_image(image)

    def close(self) -> None:
        self.engine.close()
