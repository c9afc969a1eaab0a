"""Grad-CAM: where in the photo the network's evidence for a class lies (Selvaraju et al., 2017)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.network import CLASSES, MALIGNANT_INDICES, CalibratedClassifier


def _last_feature_layer(network: nn.Module) -> nn.Module:
    """The last layer producing a spatial feature map (timm EfficientNet/ResNet/MobileNet)."""
    for name in ("bn2", "conv_head", "layer4", "blocks"):
        layer = getattr(network, name, None)
        if isinstance(layer, nn.Module):
            return layer
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("no convolutional layer to explain")
    return convs[-1]


def grad_cam(
    model: CalibratedClassifier, batch: torch.Tensor, target: str | None = None
) -> np.ndarray:
    """Grad-CAM of one image (a batch of 1) for ``target`` or the malignant score, in [0, 1]."""

    if batch.shape[0] != 1:
        raise ValueError("grad_cam explains one image at a time")
    layer = _last_feature_layer(model.network)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["features"] = output

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            probs = model(batch.detach().requires_grad_(False))
            if target is None:
                score = probs[:, list(MALIGNANT_INDICES)].sum()
            else:
                score = probs[:, CLASSES.index(target)].sum()
            model.zero_grad(set_to_none=True)
            score.backward()
    finally:
        handle.remove()
        model.train(was_training)
    features = captured["features"].detach()
    grads = captured["features"].grad
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * features).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam
    return np.asarray(cam.detach().cpu(), dtype=np.float32)
