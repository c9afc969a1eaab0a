"""The network factory, the offline ImageNet weights and the calibrated wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.network import (
    CLASSES,
    CalibratedClassifier,
    PretrainedWeightsError,
    balanced_decision,
    build_network,
    malignant_probability,
    normalised_entropy,
    offline_imagenet_state_dict,
)
from models.preprocess import square_resize, to_model_input


def test_offline_weights_load_strictly_into_timm_efficientnet_lite0() -> None:
    weights = offline_imagenet_state_dict("efficientnet_lite0")
    assert len(weights) == 296
    network = build_network("efficientnet_lite0", pretrained=True)
    assert torch.equal(network.conv_stem.weight, weights["conv_stem.weight"])
    assert network.classifier.out_features == len(CLASSES)


def test_a_backbone_without_offline_weights_is_a_clear_error() -> None:
    with pytest.raises(PretrainedWeightsError, match="resnet18"):
        build_network("resnet18", pretrained=True)


def test_calibrated_output_is_a_probability_distribution() -> None:
    model = CalibratedClassifier(build_network(pretrained=False), temperature=2.0).eval()
    with torch.no_grad():
        probs = model(torch.randn(3, 3, 64, 64))
    assert probs.shape == (3, len(CLASSES))
    torch.testing.assert_close(probs.sum(1), torch.ones(3))


def test_malignant_probability_sums_melanoma_bcc_and_akiec() -> None:
    probs = torch.tensor([[0.1, 0.2, 0.0, 0.0, 0.3, 0.4, 0.0]])
    assert malignant_probability(probs).item() == pytest.approx(0.6)


def test_entropy_is_zero_when_certain_and_one_when_uniform() -> None:
    certain = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0]])
    uniform = torch.full((1, 7), 1 / 7)
    assert normalised_entropy(certain).item() == pytest.approx(0.0, abs=1e-6)
    assert normalised_entropy(uniform).item() == pytest.approx(1.0)


def test_balanced_decision_gives_a_rare_class_its_due() -> None:
    prior = torch.tensor([0.03, 0.04, 0.1, 0.01, 0.08, 0.72, 0.02])
    probs = torch.tensor([[0.02, 0.02, 0.05, 0.0, 0.3, 0.6, 0.01]])
    assert CLASSES[int(probs.argmax())] == "nv"
    assert CLASSES[int(balanced_decision(probs, prior))] == "mel"


def test_preprocessing_crops_a_landscape_photo_to_its_centre() -> None:
    pixels = np.zeros((300, 600, 3), dtype=np.uint8)
    pixels[:, 150:450] = 255  # the centre square is white, the sides black
    square = square_resize(Image.fromarray(pixels), 64)
    assert square.size == (64, 64)
    assert np.asarray(square).min() > 200
    tensor = to_model_input(pixels, 64)
    assert tensor.shape == (3, 64, 64)
    assert tensor.dtype == torch.float32
