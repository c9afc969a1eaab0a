"""A learned lesion outline: a small FPN on EfficientNet-Lite0 that finds the lesion in a photo.

Why it exists: the photo-quality checks need to know where the lesion is (is it cut by the
frame, far off-centre, too small because the phone was too far; focus, exposure and glare
measured on the lesion and its surroundings). Hand-made colour rules found it well enough on
dermoscopy but had no outlines to learn from; HAM10000 ships a dermatologist-checked outline for
every image, so a network can learn it.

The network is `segmentation_models_pytorch`'s FPN on timm's ``efficientnet_lite0`` (the
classifier's backbone), started from the same offline ImageNet weights
(:func:`models.network.offline_imagenet_state_dict`). It runs at :data:`DEFAULT_SIZE` pixels:
a lesion outline needs no more, and one photo then costs a few tens of milliseconds on one CPU
thread. The fitted weights ship beside this module (``segmenter/``) with a JSON card; the
version is the first 12 hex digits of the weights file's sha256, so any refit is a new version
and a verdict can name the outline it was judged with.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from models.network import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainedWeightsError,
    offline_imagenet_state_dict,
)

#: The backbone whose offline ImageNet weights start the encoder.
BACKBONE = "efficientnet_lite0"
#: Side (pixels) of the square the photo is resized to for the network.
DEFAULT_SIZE = 128
#: Probability above which a pixel is lesion.
DEFAULT_THRESHOLD = 0.5
#: Where the shipped weights and their card live.
SHIPPED_DIR = Path(__file__).resolve().parent / "segmenter"
WEIGHTS_FILE = "segmenter.safetensors"
CARD_FILE = "segmenter.json"
#: FPN widths: 64 channels are plenty for one smooth blob and keep the decoder cheap on a CPU.
DECODER_CHANNELS = 64

_MEAN = np.asarray(IMAGENET_MEAN, np.float32) * 255.0
_STD = np.asarray(IMAGENET_STD, np.float32) * 255.0


def build_segmenter(*, pretrained: bool = True) -> nn.Module:
    """An FPN lesion segmenter (one output channel: lesion logit), its encoder started from the
    offline ImageNet Lite0 weights when ``pretrained``.

    smp's ``tu-efficientnet_lite0`` encoder is timm's network without its head, under a
    ``model.`` prefix; its tensors are the first ones of the full network in the same order.
    They are matched by position and every shape is checked, so a changed library fails loudly
    instead of loading half the weights.
    """
    import segmentation_models_pytorch as smp  # heavy import; only where a network is built

    network = smp.FPN(
        encoder_name=f"tu-{BACKBONE}",
        encoder_weights=None,
        classes=1,
        decoder_pyramid_channels=DECODER_CHANNELS,
        decoder_segmentation_channels=DECODER_CHANNELS,
    )
    if pretrained:
        source = list(offline_imagenet_state_dict(BACKBONE).items())
        target = network.encoder.state_dict()
        if len(target) > len(source):
            raise PretrainedWeightsError(
                f"encoder has {len(target)} tensors, the weights only {len(source)}"
            )
        mapped = {}
        for (dst_name, dst), (src_name, src) in zip(target.items(), source, strict=False):
            if dst.shape != src.shape or not dst_name.endswith(src_name):
                raise PretrainedWeightsError(
                    f"{src_name} {tuple(src.shape)} does not fit {dst_name} {tuple(dst.shape)}"
                )
            mapped[dst_name] = src
        network.encoder.load_state_dict(mapped, strict=True)
    return network


def file_version(path: Path) -> str:
    """The version of a weights file: the first 12 hex digits of its sha256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def save_weights(network: nn.Module, directory: Path, card: dict[str, Any]) -> str:
    """Write the weights (fp16: half the size, outlines unchanged) and the card; returns the
    version, which is also written into the card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {
        k: v.detach().to("cpu", torch.float16).contiguous()
        for k, v in network.state_dict().items()
        if v.is_floating_point()
    }
    weights_path = directory / WEIGHTS_FILE
    save_file(weights, str(weights_path))
    version = file_version(weights_path)
    card = {"version": version, "weights": WEIGHTS_FILE, **card}
    (directory / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return version


def to_input(image: Image.Image | np.ndarray, size: int) -> torch.Tensor:
    """A photo as the network reads it: RGB, squashed to ``size`` x ``size`` (area averaging),
    ImageNet-normalised, (1, 3, size, size). Training feeds it the same way."""
    rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got shape {rgb.shape}")
    small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    x = (small.astype(np.float32) - _MEAN) / _STD
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


@dataclass(frozen=True)
class Segmentation:
    """A lesion outline: ``mask`` (bool, the input's height x width) and the segmenter's
    ``version``; ``probability`` is the network's map at its own size, for callers that want
    a softer edge or another threshold."""

    mask: np.ndarray
    version: str
    probability: np.ndarray


class Segmenter:
    """Loaded weights plus what is needed to use them: size, threshold, version.

    Thread-safe (one forward at a time): the quality check may call it from several requests.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        version: str,
        size: int = DEFAULT_SIZE,
        threshold: float = DEFAULT_THRESHOLD,
        card: dict[str, Any] | None = None,
    ) -> None:
        self.network = network.eval()
        self.version = version
        self.size = size
        self.threshold = threshold
        self.card = card or {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path = SHIPPED_DIR) -> Segmenter:
        """The segmenter saved in ``directory``; the version is recomputed from the file, so a
        card that does not match its weights is refused."""
        directory = Path(directory)
        card = json.loads((directory / CARD_FILE).read_text(encoding="utf-8"))
        weights_path = directory / card.get("weights", WEIGHTS_FILE)
        version = file_version(weights_path)
        if card.get("version") != version:
            raise ValueError(
                f"{weights_path}: version {version} but its card says {card.get('version')}"
            )
        network = build_segmenter(pretrained=False)
        state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
        network.load_state_dict(state, strict=False)
        missing = set(network.state_dict()) - set(state)
        if any(not k.endswith("num_batches_tracked") for k in missing):
            raise ValueError(f"{weights_path}: missing tensors {sorted(missing)[:5]}")
        return cls(
            network,
            version=version,
            size=int(card.get("image_size", DEFAULT_SIZE)),
            threshold=float(card.get("threshold", DEFAULT_THRESHOLD)),
            card=card,
        )

    @torch.inference_mode()
    def probability(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The lesion probability map at the network's size (float32, size x size)."""
        x = to_input(image, self.size)
        with self._lock:
            logits = self.network(x)
        return torch.sigmoid(logits)[0, 0].numpy()

    def segment(self, image: Image.Image | np.ndarray) -> Segmentation:
        """The lesion outline of ``image`` at its own size (the probability map resized with
        bilinear interpolation, then thresholded, so the edge is smooth at any size)."""
        rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
        probability = self.probability(rgb)
        height, width = rgb.shape[:2]
        full = cv2.resize(probability, (width, height), interpolation=cv2.INTER_LINEAR)
        return Segmentation(
            mask=full > self.threshold, version=self.version, probability=probability
        )


@cache
def shipped_segmenter() -> Segmenter:
    """The segmenter committed in ``models/segmenter/``, loaded once per process."""
    return Segmenter.load(SHIPPED_DIR)


def segment(image: Image.Image | np.ndarray) -> tuple[np.ndarray, str]:
    """The shipped segmenter's lesion mask (bool, the image's size) and its version.

    The one call the quality checks need: ``mask, version = segment(photo)``.
    """
    result = shipped_segmenter().segment(image)
    return result.mask, result.version


def iou_and_dice(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Intersection over union and Dice of two boolean masks (1, 1 when both are empty)."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    inter = float(np.logical_and(predicted, truth).sum())
    union = float(np.logical_or(predicted, truth).sum())
    total = float(predicted.sum() + truth.sum())
    if union == 0:
        return 1.0, 1.0
    return inter / union, 2 * inter / total
