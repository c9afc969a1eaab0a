"""Turning a photo into the tensor the network expects: one definition for training and serving.

Evaluation, batch scoring and the live service all call :func:`to_model_input`, so a score in
production is computed exactly as the test figures were.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from models.network import IMAGENET_MEAN, IMAGENET_STD

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def square_resize(image: Image.Image | np.ndarray, size: int) -> Image.Image:
    """Centre-crop to a square then resize to ``size`` x ``size`` (bilinear, antialiased).

    Cropping instead of squashing keeps a phone photo's lesion round; requests are framed with
    the lesion in the centre, which the quality check verifies.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W) or (N, 3, H, W) -> float32 normalised with the ImageNet statistics."""
    mean, std = _MEAN.to(pixels.device), _STD.to(pixels.device)
    return (pixels.float() / 255.0 - mean) / std


def to_model_input(image: Image.Image | np.ndarray, size: int) -> torch.Tensor:
    """A photo (PIL or RGB uint8 array) as a normalised float32 tensor of shape (3, size, size)."""
    pixels = np.asarray(square_resize(image, size), dtype=np.uint8)
    return normalise(torch.from_numpy(pixels.copy()).permute(2, 0, 1))


def shades_of_grey(images: torch.Tensor, power: float) -> torch.Tensor:
    """Shades of Grey colour constancy (Finlayson and Trezzi, 2004) on normalised images.

    The light a photo was taken under (a dermatoscope's LEDs, a warm room, a phone's white
    balance) tints every pixel; the classifier should see the lesion, not the lamp. Each
    image's illuminant is estimated as the Minkowski ``power``-mean of each channel and divided
    out, keeping the overall brightness; ``power`` 0 returns the images unchanged. It works on
    the normalised (N, 3, H, W) batch the network reads, so the model applies it itself
    (:class:`models.network.CalibratedClassifier`) on every path that feeds it, CPU or GPU, and
    training applies the very same function to its batches.
    """
    if power <= 0:
        return images
    mean, std = _MEAN.to(images.device), _STD.to(images.device)
    pixels = (images.float() * std + mean).clamp(0.0, 1.0)
    illuminant = pixels.clamp_min(1e-4).pow(power).mean(dim=(2, 3)).pow(1.0 / power)
    gain = illuminant.mean(dim=1, keepdim=True) / illuminant.clamp_min(1e-4)
    balanced = (pixels * gain[:, :, None, None]).clamp(0.0, 1.0)
    return ((balanced - mean) / std).to(images.dtype)
