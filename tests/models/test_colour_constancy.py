"""Shades of Grey colour constancy: the lamp is divided out, the lesion stays.

It is part of the model (a buffer of ``CalibratedClassifier``), so every path that feeds the
model applies it; models saved before it existed load with it off and score as they did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.network import IMAGENET_MEAN, IMAGENET_STD, CalibratedClassifier, build_network
from models.preprocess import shades_of_grey, to_model_input

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _photo(path: Path) -> torch.Tensor:
    return to_model_input(Image.open(path), 96)[None]


def _tinted(batch: torch.Tensor, gains: tuple[float, float, float]) -> torch.Tensor:
    pixels = batch * STD + MEAN
    return (pixels * torch.tensor(gains).view(1, 3, 1, 1) - MEAN) / STD


def test_the_same_lesion_under_two_lamps_reads_nearly_the_same(derm_images: list[Path]) -> None:
    photo = _photo(derm_images[0])
    warm, cold = _tinted(photo, (1.0, 0.8, 0.6)), _tinted(photo, (0.7, 0.85, 1.0))
    before = (warm - cold).abs().mean()
    after = (shades_of_grey(warm, 6) - shades_of_grey(cold, 6)).abs().mean()
    assert after < before / 4


def test_power_zero_changes_nothing(derm_images: list[Path]) -> None:
    photo = _photo(derm_images[1])
    assert torch.equal(shades_of_grey(photo, 0), photo)


def test_a_grey_lit_photo_keeps_its_brightness(derm_images: list[Path]) -> None:
    photo = _photo(derm_images[2])
    out = shades_of_grey(photo, 6)
    brightness = lambda x: float((x * STD + MEAN).mean())  # noqa: E731
    assert abs(brightness(out) - brightness(photo)) < 0.08


def test_the_model_applies_it_itself_and_old_weights_load_with_it_off() -> None:
    torch.manual_seed(0)
    net = build_network("efficientnet_lite0", pretrained=False).eval()
    with_cc = CalibratedClassifier(net, colour_constancy_power=6).eval()
    images = _tinted(torch.randn(2, 3, 64, 64).clamp(-2, 2), (1.0, 0.7, 0.5))
    with torch.no_grad():
        expected = net(shades_of_grey(images, 6))
        assert torch.allclose(with_cc.logits(images), expected, atol=1e-5)

    old_state = {k: v for k, v in with_cc.state_dict().items() if k != "colour_constancy_power"}
    reloaded = CalibratedClassifier(build_network("efficientnet_lite0", pretrained=False))
    reloaded.load_state_dict(old_state, strict=True)
    assert float(reloaded.colour_constancy_power) == 0.0
    with torch.no_grad():
        assert torch.allclose(reloaded.eval().logits(images), net(images), atol=1e-5)


def test_an_all_black_photo_stays_finite() -> None:
    black = ((torch.zeros(1, 3, 32, 32) - MEAN) / STD).float()
    assert torch.isfinite(shades_of_grey(black, 6)).all()
    assert np.isfinite(shades_of_grey(black, 6).numpy()).all()
