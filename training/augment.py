"""albumentations pipelines for training and evaluation.

The training pipeline imitates what varies between real requests: dermoscopy has no up or down
(flips and any rotation), phone photos vary in framing, light, white balance, focus and JPEG
compression. Nothing here changes the colour of a lesion beyond what a camera would.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from models.network import IMAGENET_MEAN, IMAGENET_STD
from models.preprocess import to_model_input


def _wrap(pipeline: A.Compose) -> Callable[[np.ndarray], torch.Tensor]:
    def apply(image: np.ndarray) -> torch.Tensor:
        return pipeline(image=image)["image"]

    return apply


def train_transform(size: int, photometric: bool = False) -> Callable[[np.ndarray], torch.Tensor]:
    """Random augmentation for training: RGB uint8 (H, W, 3) -> normalised float (3, size, size).

    ``photometric`` adds what changes between clinics rather than between photos of one clinic:
    another lamp's colour temperature and the camera's tone curve, a smaller sensor or a photo
    from further away, sensor noise and harsher JPEG (``TrainConfig.photometric_augmentation``).
    """
    between_clinics = (
        [
            A.PlanckianJitter(mode="blackbody", p=0.3),
            A.RandomGamma(gamma_limit=(70, 140), p=0.3),
            A.Downscale(scale_range=(0.4, 0.8), p=0.15),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.15),
        ]
        if photometric
        else []
    )
    return _wrap(
        A.Compose(
            [
                A.RandomResizedCrop(size=(size, size), scale=(0.55, 1.0), ratio=(0.8, 1.25)),
                A.HorizontalFlip(),
                A.VerticalFlip(),
                A.RandomRotate90(),
                A.Affine(rotate=(-30, 30), shear=(-5, 5), p=0.5),
                A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.03, p=0.7),
                *between_clinics,
                A.OneOf(
                    [A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.15
                ),
                A.ImageCompression(
                    quality_range=(50, 95) if photometric else (60, 95),
                    p=0.3 if photometric else 0.25,
                ),
                A.CoarseDropout(
                    num_holes_range=(1, 3),
                    hole_height_range=(0.05, 0.12),
                    hole_width_range=(0.05, 0.12),
                    p=0.2,
                ),
                A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                ToTensorV2(),
            ]
        )
    )


def eval_transform(size: int) -> Callable[[np.ndarray], torch.Tensor]:
    """Deterministic preprocessing for validation and test: the very function serving uses."""
    return partial(to_model_input, size=size)
